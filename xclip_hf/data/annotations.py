"""Annotation and label-list readers shared by training and evaluation, returning checked plain lists."""

from __future__ import annotations

import csv
import os
from typing import Sequence

__all__ = ["read_labels_file", "read_annotation_file", "read_table_file", "check_annotations"]


def read_labels_file(path) -> list[str]:
    """Class names from a labels csv with an `id,name` header and ids 0..K-1 (X-CLIP's label lists)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"labels file not found: {path!r}")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["id", "name"]:
        raise ValueError(f"labels file {path!r} must start with the header 'id,name', got {rows[0] if rows else 'an empty file'}")
    names = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) < 2 or not row[0].strip().lstrip("-").isdigit():
            raise ValueError(f"labels file {path!r} line {line_no}: expected 'id,name', got {','.join(row)!r}")
        label_id, name = int(row[0]), ",".join(row[1:]).strip()
        if label_id in names:
            raise ValueError(f"labels file {path!r} line {line_no}: id {label_id} appears twice")
        names[label_id] = name
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"labels file {path!r}: ids must be 0..{len(names) - 1} without gaps, got {sorted(names)[:10]}...")
    if not names:
        raise ValueError(f"labels file {path!r} has no classes")
    return [names[i] for i in range(len(names))]


def _check_videos_exist(videos: Sequence[str], source: str) -> None:
    """Raise naming the first missing files (cheap stat calls; decoding stays lazy)."""
    missing = [v for v in videos if not os.path.isfile(v)]
    if missing:
        raise ValueError(f"{len(missing)} video file(s) listed in {source!r} do not exist, e.g. {missing[:3]}")


def check_annotations(videos: list[str], labels: list[int], class_names: Sequence[str], source: str) -> None:
    """Raise naming `source` when it lists no videos, a label outside the classes, or a missing video file."""
    if not videos:
        raise ValueError(f"{source!r} lists no videos")
    bad = [(v, l) for v, l in zip(videos, labels) if not 0 <= l < len(class_names)]
    if bad:
        raise ValueError(f"{source!r}: label {bad[0][1]} of {bad[0][0]!r} is outside the {len(class_names)} classes of the labels file")
    _check_videos_exist(videos, source)


def read_annotation_file(annotation_file, class_names: Sequence[str], video_root=None) -> tuple[list[str], list[int]]:
    """(absolute paths, class ids) of an X-CLIP `relative/path.mp4 label_id` file, relative to `video_root`."""
    annotation_file = os.fspath(annotation_file)
    if not os.path.isfile(annotation_file):
        raise ValueError(f"annotation file not found: {annotation_file!r}")
    root = os.fspath(video_root) if video_root is not None else os.path.dirname(os.path.abspath(annotation_file))
    videos, labels = [], []
    with open(annotation_file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            path, _, label = line.strip().rpartition(" ")  # the path may contain spaces, the label cannot
            if not path or not label.lstrip("-").isdigit():
                raise ValueError(f"{annotation_file!r} line {line_no}: expected 'relative/path label_id', got {line.strip()!r}")
            videos.append(os.path.abspath(os.path.join(root, path.strip())))
            labels.append(int(label))
    check_annotations(videos, labels, class_names, annotation_file)
    return videos, labels


def _label_ids(raw_labels: list, class_names: Sequence[str], data_file: str) -> list[int]:
    """Class ids of a table's label column (ids, or names of `class_names`)."""
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for row, label in enumerate(raw_labels):
        if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
            if label not in index:
                raise ValueError(f"data file {data_file!r} row {row}: label {label!r} is not one of the classes {list(class_names)[:10]}...")
            labels.append(index[label])
        else:
            labels.append(int(label))
    return labels


def read_table_file(data_file, class_names: Sequence[str] | None = None, video_column: str = "video",
                    label_column: str = "label", video_root=None) -> tuple[list[str], list[int], list[str]]:
    """(absolute paths, class ids, class names) of a CSV / JSON(L) table (labels as ids or names)."""
    data_file = os.fspath(data_file)
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(os.path.splitext(data_file)[1].lower())
    if builder is None:
        raise ValueError(f"data file {data_file!r} must be .csv, .json or .jsonl (or an X-CLIP annotation .txt)")
    if not os.path.isfile(data_file):
        raise ValueError(f"data file not found: {data_file!r}")
    import datasets

    table = datasets.load_dataset(builder, data_files=data_file, split="train")
    for column in (video_column, label_column):
        if column not in table.column_names:
            raise ValueError(f"data file {data_file!r} has no column {column!r}; its columns are {table.column_names}")
    raw_labels = table[label_column]
    if class_names is None:
        if all(isinstance(l, int) for l in raw_labels):
            raise ValueError(f"data file {data_file!r} has integer labels: pass a labels file to name the classes")
        class_names = sorted({str(l) for l in raw_labels})
    labels = _label_ids(raw_labels, class_names, data_file)
    root = os.fspath(video_root) if video_root is not None else os.path.dirname(os.path.abspath(data_file))
    videos = [os.path.abspath(os.path.join(root, str(v))) for v in table[video_column]]
    check_annotations(videos, labels, class_names, data_file)
    return videos, labels, list(class_names)
