"""`pipelines.video_chunks`: the one dataset of video chunks (worker dealing, error items, in-flight markers), its
collate and its DataLoader, shared by the zero-shot pipeline and `embed`."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
import torch

from xclip_hf.pipelines.video_chunks import VideoChunks, build_loader, collate_chunks, error_message, inflight_paths

COUNTS = [3, 1, 2, 4, 1]  # chunks per video


def _numbered(video):
    """A producer: video ``(name, count)`` -> ``count`` chunks recording which process made them."""
    name, count = video
    for k in range(count):
        yield {"pixel_values": torch.full((1, 2, 3), float(k)), "video_name": name, "k": k, "pid": os.getpid()}


def _read(loader) -> list[dict]:
    """Every item of every batch of ``loader``, in order."""
    return [item for batch in loader for item in batch["items"]]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_dealing_gives_every_chunk_once_in_a_deterministic_order(workers):
    videos = [(f"v{i}", n) for i, n in enumerate(COUNTS)]
    first, again = (_read(build_loader(VideoChunks(videos, _numbered), batch_size=2, num_workers=workers))
                    for _ in range(2))
    got = [(item["video_index"], item["k"]) for item in first]
    assert got == [(item["video_index"], item["k"]) for item in again]  # the same order every time
    regrouped = sorted(got, key=lambda pair: pair[0])  # stable: each video's chunks in their own order
    assert regrouped == [(i, k) for i, n in enumerate(COUNTS) for k in range(n)]  # each chunk exactly once
    assert sorted((item["video_index"], item["k"]) for item in first if item["last"]) == [
        (i, n - 1) for i, n in enumerate(COUNTS)]  # each video's last chunk, and only it, says so
    readers = {}
    for item in first:
        readers.setdefault(item["video_index"], set()).add(item["pid"])
    if workers == 0:
        assert {pid for pids in readers.values() for pid in pids} == {os.getpid()}
    else:  # video i by worker i % workers: one process per video, `workers` processes in all, none of them this one
        assert all(len(pids) == 1 for pids in readers.values())
        by_worker = {i % workers: set() for i in readers}
        for i, pids in readers.items():
            by_worker[i % workers] |= pids
        assert all(len(pids) == 1 for pids in by_worker.values())
        assert len(set().union(*by_worker.values())) == workers and os.getpid() not in set().union(*readers.values())


def test_workers_are_capped_by_the_videos():
    assert build_loader(VideoChunks([("a", 1), ("b", 1)], _numbered), batch_size=1, num_workers=8).num_workers == 2
    stream = (video for video in [("a", 1), ("b", 1)])  # unknown length: read in this process
    loader = build_loader(VideoChunks(stream, _numbered), batch_size=1, num_workers=2)
    assert loader.num_workers == 0 and [item["video_name"] for item in _read(loader)] == ["a", "b"]


def _breaks_on_bad(video):
    """A producer whose video named "bad" fails after its first chunk, naming itself."""
    name, count = video
    for k in range(count):
        if name == "bad" and k == 1:
            raise ValueError(f"video {name!r}: cannot decode frame 7")
        yield {"pixel_values": torch.zeros(1, 2), "video_name": name, "k": k}


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_item_names_its_video_and_the_run_goes_on(workers):
    videos = [("a", 2), ("bad", 3), ("c", 2), ("d", 1)]
    items = _read(build_loader(VideoChunks(videos, _breaks_on_bad), batch_size=3, num_workers=workers))
    errors = [item for item in items if item.get("error") is not None]
    assert len(errors) == 1 and errors[0]["video_index"] == 1 and errors[0]["last"]
    assert isinstance(errors[0]["error"], ValueError) and "'bad'" in str(errors[0]["error"])
    assert error_message(errors[0]["error"]) == "ValueError: video 'bad': cannot decode frame 7"
    good = sorted((item["video_index"], item["k"]) for item in items if item.get("error") is None)
    assert good == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1), (3, 0)]  # the bad video's read chunk, then the others

    # keep_going=False (the pipeline: it raises the first error): this reader stops at the error
    stopped = _read(build_loader(VideoChunks(videos, _breaks_on_bad, keep_going=False), batch_size=3, num_workers=0))
    assert [(item["video_index"], item.get("k")) for item in stopped] == [(0, 0), (0, 1), (1, 0), (1, None)]


class _TwoPartError(Exception):
    """An exception that cannot be rebuilt from its pickle (its constructor needs two arguments, its args hold one)."""

    def __init__(self, what, where):
        super().__init__(f"{what} at {where}")


class _HandleError(Exception):
    """An exception that cannot be pickled (it holds a lock)."""

    def __init__(self, message):
        super().__init__(message)
        self.handle = threading.Lock()


def _unpicklable_failure(video):
    """A producer that fails at once with an exception that cannot cross processes (of the video's ``kind``)."""
    name, kind = video
    if kind == "rebuild":
        raise _TwoPartError("decoder state lost", name)
    raise _HandleError(f"decoder state lost at {name}")
    yield  # pragma: no cover - a generator


@pytest.mark.parametrize("kind", ["rebuild", "pickle"])
def test_an_error_that_cannot_leave_its_worker_arrives_as_text(kind):
    """Without the conversion the caller gets a TypeError from unpickling (rebuild), or the error item is lost on the
    way and the video silently has no item (pickle)."""
    loader = build_loader(VideoChunks([("x.mp4", kind)], _unpicklable_failure), batch_size=1, num_workers=1,
                          timeout_s=20)
    (item,) = _read(loader)
    assert isinstance(item["error"], RuntimeError)
    name = "_TwoPartError" if kind == "rebuild" else "_HandleError"
    assert str(item["error"]) == f"{name}: decoder state lost at x.mp4"


def test_a_shape_mismatch_becomes_an_error_item():
    items = [{"pixel_values": torch.zeros(1, 3, 4), "video_name": "video 'a.mp4'", "video_index": 0},
             {"pixel_values": torch.zeros(1, 3, 5), "video_name": "video 'b.mp4'", "video_index": 1},
             {"pixel_values": None, "error": OSError("gone"), "video_index": 2},
             {"pixel_values": torch.ones(1, 3, 4), "video_name": "video 'c.mp4'", "video_index": 3}]
    batch = collate_chunks(items)
    assert batch["good"] == [0, 3] and batch["pixel_values"].shape == (2, 3, 4)
    assert batch["pixel_values"][1].eq(1).all() and "pixel_values" not in batch["items"][1]
    err = batch["items"][1]["error"]
    assert isinstance(err, ValueError) and str(err).startswith("video 'b.mp4': processed to shape (3, 5)")
    assert "batch_size=1" in str(err) and "center-crops to a fixed size" in str(err)
    assert isinstance(batch["items"][2]["error"], OSError)  # an error item keeps its error and its metadata
    assert collate_chunks([{"pixel_values": None, "error": OSError("x"), "video_index": 0}])["pixel_values"] is None


def test_the_pipeline_raises_a_mismatched_batch_naming_the_video(tmp_path):
    """Videos of different shapes (no center crop) in one batch: a ValueError naming the video and the remedy."""
    from transformers import pipeline

    import xclip_hf  # noqa: F401  (registers the task)
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    from _helpers_pipeline import LABELS, NUM_FRAMES, make_our_checkpoint

    ckpt = make_our_checkpoint(tmp_path / "ckpt")
    pipe = pipeline("zero-shot-video-classification", model=ckpt, device="cpu")
    pipe.processor.video_processor = pipe.video_processor = XClipVideoProcessor(
        size={"shortest_edge": 32}, do_center_crop=False, num_frames=NUM_FRAMES)
    rng = np.random.default_rng(0)
    wide, tall = (rng.integers(0, 255, (NUM_FRAMES, h, w, 3), dtype=np.uint8) for h, w in ((32, 48), (48, 32)))
    with pytest.raises(ValueError, match=r"processed to shape .* use batch_size=1 or a video processor that "
                                         r"center-crops") as raised:
        pipe([wide, tall], candidate_labels=LABELS[:2], batch_size=2)
    assert "video 1" in str(raised.value)  # the second video of the batch


def _crashes_on_crash(video):
    """A producer whose video "crash" kills its worker process (a decoder crash)."""
    if video == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    yield {"pixel_values": torch.zeros(1, 2), "video_name": video}


def test_inflight_markers_name_the_video_a_killed_worker_was_reading(tmp_path):
    videos = ["a", "crash", "b", "c"]  # worker 1 reads "crash"
    dataset = VideoChunks(videos, _crashes_on_crash, inflight_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        _read(build_loader(dataset, batch_size=1, num_workers=2, timeout_s=30))
    assert "crash" in inflight_paths(dataset)
    assert os.listdir(tmp_path) == []  # the markers were read once and removed
    finished = VideoChunks(["a", "b"], _crashes_on_crash, inflight_dir=str(tmp_path))
    assert len(_read(build_loader(finished, batch_size=1, num_workers=2))) == 2
    assert inflight_paths(finished) == []  # workers that finished name no video
