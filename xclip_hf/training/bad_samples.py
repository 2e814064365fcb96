"""Bad training samples never cost a run: skip, count and report videos that cannot be decoded or processed."""

from __future__ import annotations

import logging
import sys
from typing import Sequence

import torch
from torch.utils.data import default_collate
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

logger = logging.getLogger(__name__)

__all__ = ["BAD_VIDEO_POLICIES", "BadVideoCallback", "SkipBadSamplesCollator", "TooManyBadVideosError", "check_videos"]

BAD_VIDEO_POLICIES = ("skip", "raise")
BAD_VIDEO_KEY = "bad_videos"  # batch key holding [(path, error), ...] of the rows dropped from that batch


class TooManyBadVideosError(RuntimeError):
    """More than the allowed fraction of the listed videos failed to decode or process."""


class SkipBadSamplesCollator:
    """Collate rows, dropping those marked bad; they travel as ``batch["bad_videos"] = [(path, error), ...]``.

    A batch of bad rows only gets the last good row seen in their place (before any, it fails naming its files).
    """

    def __init__(self):
        self._reserve = None

    def __call__(self, rows: list[dict]) -> dict:
        bad = [(row["bad_video"], row.get("bad_video_error", "")) for row in rows if row.get("bad_video")]
        good = [{k: v for k, v in row.items() if k not in ("bad_video", "bad_video_error")}
                for row in rows if not row.get("bad_video")]
        if good:
            self._reserve = good[-1]
        elif self._reserve is not None:
            good = [self._reserve]
        else:
            raise TooManyBadVideosError(
                "no video of the batch could be read: " + "; ".join(f"{path}: {error}" for path, error in bad)
            )
        batch = default_collate(good)
        batch[BAD_VIDEO_KEY] = bad
        return batch


class BadVideoCallback(TrainerCallback, ExportableState):
    """Logs each bad video once, counts failures, enforces ``max_fraction`` of ``num_videos``, reports the files.

    The record is in ``trainer_state.json`` (``stateful_callbacks.BadVideoCallback``) and the logged ``bad_videos``;
    counts are per process under DDP.
    """

    def __init__(self, num_videos: int, max_fraction: float = 0.1):
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"max_bad_video_fraction must be in [0, 1], got {max_fraction!r}")
        self.num_videos = int(num_videos)
        self.max_fraction = float(max_fraction)
        self.failures: dict[str, str] = {}  # path -> first error
        self.num_failures = 0  # every failed read, a file failing each epoch counts each time

    def record(self, bad: Sequence[tuple[str, str]]) -> None:
        """Note failed rows; log new files once; raise `TooManyBadVideosError` past the limit."""
        for path, error in bad:
            self.num_failures += 1
            if path not in self.failures:
                self.failures[path] = error
                logger.warning(f"skipping bad video {path} ({error}); {len(self.failures)} bad file(s) so far")
        limit = self.max_fraction * max(self.num_videos, 1)
        if len(self.failures) > limit:
            shown = ", ".join(list(self.failures)[:5])
            raise TooManyBadVideosError(
                f"{len(self.failures)} of {self.num_videos} videos could not be read (more than "
                f"--max_bad_video_fraction {self.max_fraction:g}), e.g. {shown}; check the data (--check_videos "
                "lists every broken file) or raise the limit."
            )

    def summary(self) -> dict:
        """Distinct bad files, failed reads and the files with their first error."""
        return {"bad_videos": len(self.failures), "bad_video_reads": self.num_failures, "files": dict(self.failures)}

    def state(self) -> dict:
        return {"args": {"num_videos": self.num_videos, "max_fraction": self.max_fraction},
                "attributes": {"failures": dict(self.failures), "num_failures": self.num_failures}}

    def _export(self, state) -> None:
        if isinstance(getattr(state, "stateful_callbacks", None), dict):
            state.stateful_callbacks[type(self).__name__] = self.state()

    def restore(self, attributes: dict) -> None:
        """Take over a recorded state (`state()["attributes"]`): its files join this tracker's, counts go on."""
        self.failures = {**dict(attributes.get("failures") or {}), **self.failures}
        self.num_failures = max(self.num_failures, int(attributes.get("num_failures") or 0))

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed run takes over the checkpoint's record: seen files are not logged again, counts go on."""
        stored = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        stored = stored[0] if isinstance(stored, list) and stored else stored
        if isinstance(stored, dict) and stored.get("attributes", {}).get("failures"):
            self.restore(stored["attributes"])
            logger.info(f"resumed with {len(self.failures)} bad video(s) recorded before the checkpoint")
        self._export(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.failures:
            logs["bad_videos"] = len(self.failures)
        self._export(state)

    def on_save(self, args, state, control, **kwargs):
        self._export(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._export(state)
        if self.failures:
            logger.warning(f"{len(self.failures)} bad video(s) skipped ({self.num_failures} failed reads): "
                           + ", ".join(self.failures))


def check_videos(paths: Sequence[str], video_processor=None, disable_progress: bool | None = None) -> dict[str, str]:
    """Open every video and decode one clip of it (each path once, progress bar); {path: error} of the broken."""
    from tqdm.auto import tqdm

    from ..video.reader import load_video

    def sampler(length):
        if video_processor is None:
            return torch.arange(length).numpy()
        return video_processor.sample_indices(length)

    broken = {}
    for path in tqdm(list(dict.fromkeys(paths)), desc="checking videos", unit="video", file=sys.stderr,
                     disable=disable_progress):
        try:
            load_video(path, sampler, backend=getattr(video_processor, "decode_backend", "auto"))
        except Exception as err:  # noqa: BLE001 - any failure makes the file unusable
            broken[path] = f"{type(err).__name__}: {err}"
    return broken
