"""Class-name lists shipped as package data (`--labels kinetics400`), and the label-source resolver.

Sources: ``kinetics400``: DeepMind's order (Kay et al. 2017, deepmind/kinetics-i3d `label_map.txt`; transcribed from
quic/ai-engine-direct-helper samples/python/resnet_3d); ``kinetics600``, ``ucf101``, ``hmdb51``: microsoft/VideoX
X-CLIP/labels/*.csv (Carreira et al. 2018; Soomro et al. 2012, classInd.txt order; Kuehne et al. 2011).
"""

from __future__ import annotations

import os
from typing import Sequence

from ..data.annotations import read_labels_file

__all__ = ["LABEL_LISTS", "LABEL_SOURCES", "label_list_path", "load_label_list", "resolve_labels"]

LABEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "labels")
LABEL_LISTS = {"kinetics400": "kinetics400.csv", "kinetics600": "kinetics600.csv", "ucf101": "ucf101.csv",
               "hmdb51": "hmdb51.csv"}
LABEL_SOURCES = {
    "kinetics400": "DeepMind Kinetics-400 label map (kinetics-i3d data/label_map.txt order)",
    "kinetics600": "microsoft/VideoX X-CLIP/labels/kinetics_600_labels.csv",
    "ucf101": "microsoft/VideoX X-CLIP/labels/ucf_101_labels.csv",
    "hmdb51": "microsoft/VideoX X-CLIP/labels/hmdb_51_labels.csv",
}
ALIASES = {"k400": "kinetics400", "k600": "kinetics600", "ucf": "ucf101", "hmdb": "hmdb51",
           "kinetics-400": "kinetics400", "kinetics-600": "kinetics600", "ucf-101": "ucf101", "hmdb-51": "hmdb51"}


def _canonical(name: str) -> str | None:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    return key if key in LABEL_LISTS else None


def label_list_path(name: str) -> str:
    """Path of a shipped `id,name` csv (`kinetics400`, `kinetics600`, `ucf101`, `hmdb51`, or an alias)."""
    key = _canonical(name)
    if key is None:
        raise ValueError(f"unknown label list {name!r}; shipped lists: {', '.join(LABEL_LISTS)} (or pass an id,name csv)")
    return os.path.join(LABEL_DIR, LABEL_LISTS[key])


def load_label_list(name: str) -> list[str]:
    """The class names of a shipped list, in id order."""
    return read_labels_file(label_list_path(name))


def resolve_labels(source: str | Sequence[str]) -> tuple[list[str], str | None]:
    """(class names, dataset key or None) from a shipped list name, an `id,name` csv path, or a list of names."""
    if not isinstance(source, (str, os.PathLike)):
        names = [str(n) for n in source]
        if not names:
            raise ValueError("the label list is empty")
        return names, None
    key = _canonical(os.fspath(source))
    if not os.path.isfile(os.fspath(source)):
        if key is None:
            raise ValueError(f"unknown label list {os.fspath(source)!r}: neither a shipped list "
                             f"({', '.join(LABEL_LISTS)}) nor an id,name csv file")
        return load_label_list(key), key
    return read_labels_file(source), None
