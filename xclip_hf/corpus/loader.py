"""Decode-side data loading for `embed`: (path, window) items produced in DataLoader workers, batched for the model.

Each worker reads its share of the videos through ``models.video_windows.VideoWindowStream`` (the "video ->
processed windows" piece the zero-shot pipeline uses too): each file opened once, its windows planned (or one
window over the whole video, sampled like the video processor does), their frames read in one pass and processed.
A video that cannot be opened, read or processed becomes an item carrying its ``error`` instead of pixels, so the
run goes on; the last item of every video says so (``last``), which lets the consumer commit whole videos only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..models.video_windows import VideoWindowStream

__all__ = ["WindowPlan", "VideoWindowItems", "collate_items", "build_loader", "error_message", "inflight_paths"]


def error_message(err: BaseException) -> str:
    """The text of an error row: exception type and its first line."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:1000]


@dataclass(frozen=True)
class WindowPlan:
    """How videos become rows: one whole-video row (``chunk_length_s=None``) or windows of ``chunk_length_s``."""

    num_frames: int
    chunk_length_s: float | None = None
    stride_length_s: float | None = None
    decode_backend: str = "auto"


class VideoWindowItems(IterableDataset):
    """Items ``{index, path, start_s, end_s, pixel_values | None, error | None, last}`` for each window of each video.

    Videos are dealt to DataLoader workers round-robin (video ``i`` goes to worker ``i % num_workers``). With
    ``inflight_dir``, each worker keeps the index of the video it is reading in ``<inflight_dir>/<pid>.inflight``,
    so that when a worker dies (a decoder crash) or stalls, the consumer knows which videos were being read.
    """

    def __init__(self, paths: list[str], processor, plan: WindowPlan, inflight_dir: str | None = None):
        self.paths = list(paths)
        self.processor = processor
        self.plan = plan
        self.inflight_dir = inflight_dir

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index in range(worker, len(self.paths), workers):
            self._mark(index)
            yield from self.video_items(index)
        self._mark(None)

    def _mark(self, index: int | None) -> None:
        if self.inflight_dir is not None:
            with open(os.path.join(self.inflight_dir, f"{os.getpid()}.inflight"), "w") as f:
                f.write("" if index is None else str(index))

    def video_items(self, index: int):
        """The items of video ``index``: one per window, or one error item (after the windows that did succeed)."""
        path = self.paths[index]
        base = {"index": index, "path": path}
        stream = VideoWindowStream(path, self.processor, num_frames=self.plan.num_frames,
                                   chunk_length_s=self.plan.chunk_length_s, stride_length_s=self.plan.stride_length_s,
                                   decode_backend=self.plan.decode_backend)
        try:
            stream.open()
        except Exception as err:
            stream.close()
            yield {**base, "start_s": 0.0, "end_s": None, "pixel_values": None, "error": error_message(err), "last": True}
            return
        with stream:
            windows, done = stream.windows, 0
            try:
                for window, pixels in stream:
                    done += 1
                    yield {**base, "start_s": float(window.start_s), "end_s": _seconds(window.end_s),
                           "pixel_values": pixels[0], "error": None, "last": done == len(windows)}
            except Exception as err:  # decoding or processing failed part-way: the rest of the video is one error row
                rest = sorted(windows, key=lambda w: w.start_s)[done:]
                start = float(rest[0].start_s) if rest else 0.0
                end = _seconds(rest[-1].end_s) if rest else None
                yield {**base, "start_s": start, "end_s": end, "pixel_values": None, "error": error_message(err),
                       "last": True}


def _seconds(value):
    return None if value is None else float(value)


def collate_items(items: list[dict]) -> dict:
    """Batch items: stack the pixels of the good ones (``good`` lists their positions); keep every item's metadata.

    An item whose pixels have a different shape from the batch's first good item becomes an error item (this can
    only happen with a processor that does not crop to a fixed size).
    """
    good, pixels = [], []
    for pos, item in enumerate(items):
        value = item["pixel_values"]
        if value is None:
            continue
        if pixels and value.shape != pixels[0].shape:
            item["error"] = (f"ValueError: processed to shape {tuple(value.shape)} but this batch has "
                             f"{tuple(pixels[0].shape)}; use a processor that center-crops to a fixed size")
            item["pixel_values"] = None
            continue
        good.append(pos)
        pixels.append(value)
    meta = [{k: v for k, v in item.items() if k != "pixel_values"} for item in items]
    return {"items": meta, "good": good, "pixel_values": torch.stack(pixels) if pixels else None}


def _worker_init(_):
    torch.set_num_threads(1)  # workers decode and resize; the model owns the cores' math threads


def inflight_paths(dataset: VideoWindowItems) -> list[str]:
    """The videos the workers of ``dataset`` were reading when they stopped (their markers are removed)."""
    found = []
    for name in sorted(os.listdir(dataset.inflight_dir)):
        marker = os.path.join(dataset.inflight_dir, name)
        with open(marker) as f:
            text = f.read().strip()
        os.remove(marker)
        if text:
            found.append(dataset.paths[int(text)])
    return found


def build_loader(paths: list[str], processor, plan: WindowPlan, batch_size: int, num_workers: int,
                 inflight_dir: str | None = None, timeout_s: float | None = None) -> DataLoader:
    """A DataLoader whose workers decode and process windows in parallel with the model; ``timeout_s``: longest
    wait for a batch before the workers count as stalled (workers only)."""
    dataset = VideoWindowItems(paths, processor, plan, inflight_dir)
    workers = max(0, min(int(num_workers), len(paths)))
    extra = {"worker_init_fn": _worker_init, "prefetch_factor": 2, "persistent_workers": False} if workers else {}
    if workers and timeout_s:
        extra["timeout"] = float(timeout_s)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_items, **extra)
