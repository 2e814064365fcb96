"""Video classification datasets as `datasets.Dataset` (paths + labels only; frames are decoded lazily).

Two input formats:

* the original X-CLIP format: an annotation file of `relative/path.mp4 label_id` lines (paths relative to a
  video root) and a labels csv `id,name` (supplementary Sec. 3: Kinetics / UCF-101 / HMDB-51 lists);
* CSV / JSON / JSON-lines files read with `datasets`, with a video-path column and a label column holding
  either class ids or class names.

Every dataset has the columns `video` (absolute path) and `label` (`ClassLabel` with the class names).
`VideoClipTransform` decodes them lazily through `Dataset.set_transform` (so Trainer needs
`remove_unused_columns=False`: the `video` column is not a model input).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Sequence

import datasets
import torch

from .augment import VideoTrainAugmentation
from .bad_samples import BAD_VIDEO_POLICIES

__all__ = ["read_labels_file", "load_annotation_file", "load_table_file", "load_video_dataset", "VideoClipTransform"]


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


def _as_dataset(videos: list[str], labels: list[int], class_names: Sequence[str], source: str) -> datasets.Dataset:
    """A Dataset with `video` paths and `label` ClassLabel after validating both."""
    if not videos:
        raise ValueError(f"{source!r} lists no videos")
    bad = [(v, l) for v, l in zip(videos, labels) if not 0 <= l < len(class_names)]
    if bad:
        raise ValueError(f"{source!r}: label {bad[0][1]} of {bad[0][0]!r} is outside the {len(class_names)} classes of the labels file")
    _check_videos_exist(videos, source)
    features = datasets.Features({"video": datasets.Value("string"), "label": datasets.ClassLabel(names=list(class_names))})
    return datasets.Dataset.from_dict({"video": videos, "label": labels}, features=features)


def load_annotation_file(annotation_file, class_names: Sequence[str], video_root=None) -> datasets.Dataset:
    """Dataset from an X-CLIP annotation file: one `relative/path.mp4 label_id` per line (supp. Sec. 3)."""
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
    return _as_dataset(videos, labels, class_names, annotation_file)


def load_table_file(
    data_file, class_names: Sequence[str] | None = None, video_column: str = "video", label_column: str = "label", video_root=None
) -> tuple[datasets.Dataset, list[str]]:
    """(Dataset, class names) from a CSV / JSON / JSON-lines file read by `datasets` (labels as ids or names)."""
    data_file = os.fspath(data_file)
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json"}.get(os.path.splitext(data_file)[1].lower())
    if builder is None:
        raise ValueError(f"data file {data_file!r} must be .csv, .json or .jsonl (or an X-CLIP annotation .txt)")
    if not os.path.isfile(data_file):
        raise ValueError(f"data file not found: {data_file!r}")
    table = datasets.load_dataset(builder, data_files=data_file, split="train")
    for column in (video_column, label_column):
        if column not in table.column_names:
            raise ValueError(f"data file {data_file!r} has no column {column!r}; its columns are {table.column_names}")
    raw_labels = table[label_column]
    if class_names is None:
        if all(isinstance(l, int) for l in raw_labels):
            raise ValueError(f"data file {data_file!r} has integer labels: pass a labels file to name the classes")
        class_names = sorted({str(l) for l in raw_labels})
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for row, label in enumerate(raw_labels):
        if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
            if label not in index:
                raise ValueError(f"data file {data_file!r} row {row}: label {label!r} is not one of the classes {list(class_names)[:10]}...")
            labels.append(index[label])
        else:
            labels.append(int(label))
    root = os.fspath(video_root) if video_root is not None else os.path.dirname(os.path.abspath(data_file))
    videos = [os.path.abspath(os.path.join(root, str(v))) for v in table[video_column]]
    return _as_dataset(videos, labels, class_names, data_file), list(class_names)


def load_video_dataset(
    data_file, labels_file=None, video_root=None, video_column: str = "video", label_column: str = "label"
) -> tuple[datasets.Dataset, list[str]]:
    """(Dataset, class names) from an X-CLIP annotation file (.txt + labels csv) or a CSV/JSON table."""
    class_names = read_labels_file(labels_file) if labels_file is not None else None
    if os.fspath(data_file).lower().endswith(".txt"):
        if class_names is None:
            raise ValueError(f"annotation file {os.fspath(data_file)!r} needs a labels file (id,name csv) to name its classes")
        return load_annotation_file(data_file, class_names, video_root), class_names
    return load_table_file(data_file, class_names, video_column, label_column, video_root)


@dataclass
class VideoClipTransform:
    """`Dataset.set_transform` function: decode and process videos lazily, per batch (paper Sec. 4.2 sampling).

    Both go through the video processor, with its one resize geometry and normalisation. With `augmentation`
    (training): one sparse clip with random offsets inside the segments, resized, then the paper's train-time
    augmentation in place of the crop (the processor's `augmentation` option). Without (evaluation): the
    deterministic pipeline (middle of each segment, resize, centre or 3 crops), `num_temporal_clips x
    num_spatial_crops` views. Returns `pixel_values` (T, 3, H, W) or (V, T, 3, H, W) and `labels` per row.

    `on_bad_video`: "raise" (default) raises an error naming the file when a video cannot be decoded or processed;
    "skip" marks the row instead (`bad_video` = its path, `bad_video_error`; `pixel_values` None) for
    `SkipBadSamplesCollator`, which drops it from its batch (see bad_samples.py).
    """

    video_processor: object  # XClipVideoProcessor
    augmentation: VideoTrainAugmentation | None = None
    num_temporal_clips: int = 1
    num_spatial_crops: int = 1
    on_bad_video: str = "raise"

    def __post_init__(self):
        if self.on_bad_video not in BAD_VIDEO_POLICIES:
            raise ValueError(f"on_bad_video must be one of {BAD_VIDEO_POLICIES}, got {self.on_bad_video!r}")

    def _train_clip(self, path) -> torch.Tensor:
        """One randomly sampled, augmented, normalised clip (T, 3, H, W)."""
        # the seed of sampling and augmentation comes from torch's RNG, which Trainer seeds (and DataLoader re-seeds
        # per worker)
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        return self.video_processor(
            videos=path, random_sampling=True, seed=seed, augmentation=self.augmentation, return_tensors="pt",
        )["pixel_values"][0]

    def _eval_views(self, path) -> torch.Tensor:
        """The processor's evaluation views of one video: (T, 3, H, W), or (V, T, 3, H, W) for multi-view."""
        return self.video_processor(
            videos=path, num_temporal_clips=self.num_temporal_clips, num_spatial_crops=self.num_spatial_crops,
            return_tensors="pt",
        )["pixel_values"][0]

    def __call__(self, batch: dict) -> dict:
        if "video" not in batch:
            raise ValueError(
                f"VideoClipTransform needs the 'video' column, got {sorted(batch)}: set remove_unused_columns=False"
            )
        process = self._train_clip if self.augmentation is not None else self._eval_views
        pixels, errors = [], []
        for path in batch["video"]:
            try:
                pixels.append(process(path))
                errors.append(None)
            except Exception as err:  # noqa: BLE001 - decode or preprocessing failure of this one video
                message = f"{type(err).__name__}: {err}"
                if self.on_bad_video == "raise":
                    raise ValueError(f"video {path!r} could not be read or processed ({message}); pass "
                                     "--on_bad_video skip to skip such files") from err
                pixels.append(None)
                errors.append(message)
        out = {"pixel_values": pixels, "labels": list(batch["label"])}
        if self.on_bad_video == "skip":
            out["bad_video"] = [path if error else None for path, error in zip(batch["video"], errors)]
            out["bad_video_error"] = errors
        return out
