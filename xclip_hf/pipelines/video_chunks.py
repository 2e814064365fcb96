"""One dataset of video chunks for the zero-shot pipeline and `embed` (`VideoChunks`), its collate and its DataLoader."""

from __future__ import annotations

import collections.abc
import os
import pickle
from typing import Callable, Iterable

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

__all__ = ["VideoChunks", "collate_chunks", "build_loader", "inflight_paths", "error_message"]


def error_message(err: BaseException) -> str:
    """The text of an error row: exception type and its first line."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:1000]


def _portable(err: Exception) -> Exception:
    """``err``, or a RuntimeError with its type and message when it cannot cross from a worker to the caller (one
    that does not pickle would be lost on the way, the video silently missing; one that does not unpickle would
    raise a TypeError of its own in the caller)."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(error_message(err))


class VideoChunks(IterableDataset):
    """The chunks ``produce(video)`` gives for each of ``videos`` (dicts with ``pixel_values`` (1, ...) and
    ``video_name``), tagged ``video_index`` and ``last``; video i is read by DataLoader worker i % num_workers.

    A video whose producer raises ends with ``{"video_index", "error": exception, "pixel_values": None, "last": True}``
    and reading goes on (``keep_going=False``: that worker stops). ``inflight_dir``: each worker writes the index of
    the video it reads to ``<inflight_dir>/<pid>.inflight`` (`inflight_paths` names a dead worker's videos).
    """

    def __init__(self, videos, produce: Callable[[object], Iterable[dict]], inflight_dir: str | None = None,
                 keep_going: bool = True):
        self.videos, self.produce = videos, produce
        self.inflight_dir, self.keep_going = inflight_dir, keep_going

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if isinstance(self.videos, collections.abc.Sized):
            dealt = ((index, None) for index in range(worker, len(self.videos), workers))
        else:  # a stream: every reader walks it and keeps its share
            dealt = ((index, video) for index, video in enumerate(self.videos) if index % workers == worker)
        for index, video in dealt:
            self._mark(index)
            failed = False
            for item in self._video_items(index, video, in_worker=info is not None):
                failed = failed or item.get("error") is not None
                yield item
            if failed and not self.keep_going:
                break
        self._mark(None)

    def _video_items(self, index: int, video, in_worker: bool):
        """The items of video ``index`` (``video`` None: ``videos[index]``), the last one marked; one item behind
        the producer, so that the last is known when it is handed on."""
        held = None
        try:
            for chunk in self.produce(self.videos[index] if video is None else video):
                if held is not None:
                    yield held
                chunk.update(video_index=index, last=False)
                held = chunk
        except Exception as err:
            if held is not None:
                yield held
            held = {"video_index": index, "pixel_values": None,
                    "error": _portable(err) if in_worker else err}
        if held is not None:
            held["last"] = True
            yield held

    def _mark(self, index: int | None) -> None:
        """Write the index of the video this process now reads (None: none) to its in-flight marker, if kept."""
        if self.inflight_dir is not None:
            with open(os.path.join(self.inflight_dir, f"{os.getpid()}.inflight"), "w") as f:
                f.write("" if index is None else str(index))


def collate_chunks(items: list[dict]) -> dict:
    """Batch items: ``pixel_values`` the good chunks' pixel values concatenated (None if there is none), ``good``
    their positions, ``items`` every item without its pixels. A chunk processed to another shape than the batch's
    first good one becomes an error item naming its video."""
    good, pixels = [], []
    for pos, item in enumerate(items):
        value = item.get("pixel_values")
        if value is None or item.get("error") is not None:
            continue
        if pixels and value.shape != pixels[0].shape:
            name = item.get("video_name", f"video {item.get('video_index')}")
            item["error"] = ValueError(
                f"{name}: processed to shape {tuple(value.shape[1:])} but this batch has {tuple(pixels[0].shape[1:])}; "
                "use batch_size=1 or a video processor that center-crops to a fixed size")
            item["pixel_values"] = None
            continue
        good.append(pos)
        pixels.append(value)
    meta = [{key: value for key, value in item.items() if key != "pixel_values"} for item in items]
    return {"items": meta, "good": good, "pixel_values": torch.cat(pixels) if pixels else None}


def _one_math_thread(_):
    """Worker init: one math thread (workers decode and resize; the model owns the cores' math threads)."""
    torch.set_num_threads(1)


def build_loader(dataset: VideoChunks, batch_size: int, num_workers: int, timeout_s: float | None = None) -> DataLoader:
    """The DataLoader over ``dataset`` with `collate_chunks`: ``num_workers`` processes at most, one per video (none
    for a stream of unknown length); ``timeout_s``: longest wait for a batch before the workers count as stalled."""
    sized = isinstance(dataset.videos, collections.abc.Sized)
    workers = max(0, min(int(num_workers), len(dataset.videos))) if sized else 0
    extra = {}
    if workers:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as transformers does beside DataLoader workers
        extra = {"worker_init_fn": _one_math_thread, "prefetch_factor": 2, "persistent_workers": False}
        if timeout_s:
            extra["timeout"] = float(timeout_s)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_chunks, **extra)


def inflight_paths(dataset: VideoChunks) -> list:
    """The videos the workers of ``dataset`` were reading when they stopped (their markers are removed)."""
    found = []
    for name in sorted(os.listdir(dataset.inflight_dir)):
        marker = os.path.join(dataset.inflight_dir, name)
        with open(marker) as f:
            text = f.read().strip()
        os.remove(marker)
        if text:
            found.append(dataset.videos[int(text)])
    return found
