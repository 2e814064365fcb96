"""Windowed zero-shot classification of untrimmed videos: the `chunk_length_s` path of the pipeline.

Each video is cut into windows (`windows.plan_windows`); a file is read in one pass with the windows' frames
streamed in time order (`windows.iter_window_frames`), so memory does not grow with the video's length; windows
are processed like short clips (`num_frames` frames each, already sampled), scored in batches of `batch_size`
through the pipeline's own `forward` (one label-cache lookup, the prompt generator per window), and returned per
window, merged into segments, or averaged.
"""

from __future__ import annotations

import os
import sys

import torch

from ..video.reader import VideoFile
from ..video.timing import frame_times_at_rate
from ..video.windows import check_window_lengths, iter_window_frames, merge_segments, plan_windows, positive_number
from .video_inputs import VideoSource, download_video, is_url, normalize_videos

__all__ = ["classify_windows"]

AGGREGATES = ("mean", "segments", "frames")


def _check_options(options: dict) -> dict:
    """Validate the window options of one call; returns them resolved (lengths in seconds, output mode)."""
    chunk, stride = check_window_lengths(options["chunk_length_s"], options.get("stride_length_s"))
    aggregate = options.get("aggregate")
    if aggregate is not None and aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES} or None, got {aggregate!r}")
    timestamps = options.get("return_timestamps", False)
    if not isinstance(timestamps, bool):
        raise ValueError(f"return_timestamps must be True or False, got {timestamps!r}")
    if timestamps and aggregate is not None:
        raise ValueError(f"return_timestamps=True returns every window; aggregate={aggregate!r} merges them: pass one")
    fps = options.get("fps")
    if fps is not None:
        fps = positive_number(fps, "fps", "frames per second")
    mode = "windows" if timestamps else (aggregate or "mean")
    return {"chunk": chunk, "stride": stride, "mode": mode, "fps": fps, "progress": options.get("progress")}


def classify_windows(pipe, videos, options: dict, batch_size=None, num_workers=None, **kwargs):
    """Windowed classification of one video or a list of videos (see the pipeline's `__call__` for the options)."""
    opts = _check_options(options)
    preprocess, _, postprocess = pipe._sanitize_parameters(**kwargs)
    label_set = preprocess.get("label_set") or pipe._preprocess_params.get("label_set")
    if label_set is None:
        raise ValueError("zero-shot-video-classification needs `candidate_labels`.")
    if preprocess.get("num_temporal_clips", 1) != 1:
        raise ValueError("num_temporal_clips > 1 does not apply to windows (each window is one temporal clip); "
                         "use a shorter stride_length_s for denser coverage")
    batch_size = int(batch_size or getattr(pipe, "_batch_size", None) or 1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    settings = dict(label_set=label_set, batch_size=batch_size, top_k=postprocess.get("top_k"),
                    num_frames=preprocess.get("num_frames") or pipe.model.config.vision_config.num_frames,
                    num_spatial_crops=preprocess.get("num_spatial_crops", 1), **opts)
    sources, is_batch = normalize_videos(videos)
    results = [_classify_one(pipe, source, settings) for source in sources]
    return results if is_batch else results[0]


def _classify_one(pipe, source: VideoSource, s: dict):
    """Windows of one video -> its result in the requested mode."""
    temp_path = None
    data = source.data
    try:
        if is_url(data):
            temp_path = data = download_video(data, timeout=pipe.url_timeout)
        if isinstance(data, str):
            with VideoFile(data) as video:
                times, end = video.frame_times, video.duration
                if times is None:  # neither timestamps nor a frame rate in the file: fps= is its clock
                    times, end = frame_times_at_rate(video.num_frames, s["fps"], source.name)
                windows = plan_windows(times, end, s["chunk"], s["stride"], s["num_frames"], source.name)
                scored = _score_windows(pipe, source, iter_window_frames(video, windows), len(windows), s)
        else:
            if s["fps"] is None:
                raise ValueError(f"video {source.name}: a frame array has no clock; pass fps= (frames per second) to "
                                 "cut it into windows of chunk_length_s seconds")
            times, end = frame_times_at_rate(data.shape[0], s["fps"], source.name)
            windows = plan_windows(times, end, s["chunk"], s["stride"], s["num_frames"], source.name)
            take = (lambda i: data[torch.as_tensor(i)]) if isinstance(data, torch.Tensor) else (lambda i: data[i])
            scored = _score_windows(pipe, source, ((w, take(w.indices)) for w in windows), len(windows), s)
    finally:
        if temp_path is not None and os.path.exists(temp_path):
            os.unlink(temp_path)
    return _format(pipe, scored, s, times, end)


def _score_windows(pipe, source: VideoSource, stream, total: int, s: dict) -> list:
    """(window, frames) stream -> [(window, scores (K,))], batch_size windows per model forward."""
    from tqdm.auto import tqdm

    scored, batch = [], []
    disable = None if s["progress"] is None else not s["progress"]
    with tqdm(total=total, unit="window", desc="windows", file=sys.stderr, disable=disable, leave=False) as bar:
        for window, frames in stream:
            try:
                pixel_values = pipe.video_processor([frames], return_tensors="pt", num_frames=s["num_frames"],
                                                    do_sample_frames=False,
                                                    num_spatial_crops=s["num_spatial_crops"])["pixel_values"]
            except Exception as err:
                raise ValueError(f"Could not process window {window.timestamp} of video {source.name}: "
                                 f"{type(err).__name__}: {err}") from err
            batch.append((window, pixel_values))
            if len(batch) == s["batch_size"]:
                scored.extend(_forward_batch(pipe, source, batch, s))
                bar.update(len(batch))
                batch = []
        if batch:
            scored.extend(_forward_batch(pipe, source, batch, s))
            bar.update(len(batch))
    return scored


def _forward_batch(pipe, source: VideoSource, batch: list, s: dict) -> list:
    """One model forward for a batch of windows (through the pipeline's `forward`: device, dtype, label cache)."""
    inputs = {"pixel_values": torch.cat([pv for _, pv in batch]).to(pipe.dtype),
              "label_set": [s["label_set"]] * len(batch),
              "video_name": [f"{source.name} window {w.timestamp}" for w, _ in batch]}
    scores = pipe.forward(inputs)["scores"]
    return [(window, row) for (window, _), row in zip(batch, scores)]


def _ranked(pipe, scores: torch.Tensor, s: dict, top_k) -> list[dict]:
    return pipe.postprocess({"scores": scores[None], "label_set": s["label_set"]}, top_k=top_k)


def _format(pipe, scored: list, s: dict, times=None, end=None):
    """The result of one video in the requested mode (per window, segments, or the mean over windows)."""
    if s["mode"] == "frames":  # per-frame scores over covering windows, minimum duration (pipelines/segments.py)
        from .segments import aggregate_segments

        windows = [{"timestamp": (w.start_s, w.end_s), "labels": _ranked(pipe, row, s, None)} for w, row in scored]
        return aggregate_segments(windows, times, end, list(s["label_set"].labels))
    if s["mode"] == "mean":
        return _ranked(pipe, torch.stack([row for _, row in scored]).mean(0), s, s["top_k"])
    windows = [{"timestamp": (round(w.start_s, 6), round(w.end_s, 6)),
                "labels": _ranked(pipe, row, s, s["top_k"] if s["mode"] == "windows" else None)}
               for w, row in scored]
    return windows if s["mode"] == "windows" else merge_segments(windows)
