"""Video classification datasets as `datasets.Dataset` (`video` paths, `label` ClassLabel), decoded lazily."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import datasets
import torch

from ..data.annotations import read_annotation_file, read_labels_file, read_table_file
from .augment import VideoTrainAugmentation
from .bad_samples import BAD_VIDEO_POLICIES

__all__ = ["read_labels_file", "load_annotation_file", "load_table_file", "load_video_dataset", "VideoClipTransform"]


def _as_dataset(videos: list[str], labels: list[int], class_names: Sequence[str]) -> datasets.Dataset:
    """A Dataset with `video` paths and `label` ClassLabel (both checked by the reader)."""
    features = datasets.Features({"video": datasets.Value("string"), "label": datasets.ClassLabel(names=list(class_names))})
    return datasets.Dataset.from_dict({"video": videos, "label": labels}, features=features)


def load_annotation_file(annotation_file, class_names: Sequence[str], video_root=None) -> datasets.Dataset:
    """Dataset from an X-CLIP annotation file: one `relative/path.mp4 label_id` per line (supp. Sec. 3)."""
    videos, labels = read_annotation_file(annotation_file, class_names, video_root)
    return _as_dataset(videos, labels, class_names)


def load_table_file(
    data_file, class_names: Sequence[str] | None = None, video_column: str = "video", label_column: str = "label", video_root=None
) -> tuple[datasets.Dataset, list[str]]:
    """(Dataset, class names) from a CSV / JSON / JSON-lines file read by `datasets` (labels as ids or names)."""
    videos, labels, class_names = read_table_file(data_file, class_names, video_column, label_column, video_root)
    return _as_dataset(videos, labels, class_names), class_names


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
    """`Dataset.set_transform` function: decode and process videos lazily through the video processor (Sec. 4.2).

    With `augmentation` (training): one random sparse clip, augmented in place of the crop; without (evaluation):
    `num_temporal_clips x num_spatial_crops` views. Returns `pixel_values` (T, 3, H, W) or (V, T, 3, H, W) and `labels`.
    `on_bad_video`: "raise" names the file; "skip" marks the row (`bad_video`, `bad_video_error`) for
    `SkipBadSamplesCollator`.
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
