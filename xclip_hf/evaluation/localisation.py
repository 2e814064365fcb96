"""Temporal localisation of untrimmed videos: frame-level accuracy and segment mAP at tIoU 0.3 / 0.5 / 0.7."""

from __future__ import annotations

import csv
import os
from collections import defaultdict

import numpy as np

from .options import EvaluationOptions, check_unused, evaluation_options

__all__ = ["TIOU_THRESHOLDS", "read_segments", "label_at", "frame_accuracy", "tiou", "average_precision",
           "segment_map", "evaluate_localisation"]

TIOU_THRESHOLDS = (0.3, 0.5, 0.7)


def read_segments(path, video_root=None) -> dict[str, list[dict]]:
    """{absolute video path: segments sorted by start} from a csv with columns video,start_s,end_s,label."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"segment annotation file not found: {path!r}")
    root = os.fspath(video_root) if video_root is not None else os.path.dirname(os.path.abspath(path))
    out: dict[str, list[dict]] = defaultdict(list)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video", "start_s", "end_s", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"segment file {path!r} lacks column(s) {sorted(missing)}; needs video,start_s,end_s,label")
        for line, row in enumerate(reader, start=2):
            try:
                start, end = float(row["start_s"]), float(row["end_s"])
            except ValueError:
                raise ValueError(f"segment file {path!r} line {line}: start_s/end_s must be numbers, got {row}") from None
            if not end > start >= 0:
                raise ValueError(f"segment file {path!r} line {line}: needs 0 <= start_s < end_s, got {start}, {end}")
            video = os.path.abspath(os.path.join(root, row["video"].strip()))
            out[video].append({"start_s": start, "end_s": end, "label": row["label"].strip()})
    if not out:
        raise ValueError(f"segment file {path!r} has no segments")
    return {v: sorted(s, key=lambda seg: seg["start_s"]) for v, s in out.items()}


def label_at(segments: list[dict], t: float) -> str | None:
    """The label of the segment holding time t (start <= t < end), or None."""
    return next((s["label"] for s in segments if s["start_s"] <= t < s["end_s"]), None)


def frame_accuracy(predicted: list[dict], truth: list[dict], fps: float) -> float:
    """Fraction of frame centres ((i + 0.5) / fps) in the annotated span whose predicted label is the annotated one."""
    start, end = min(s["start_s"] for s in truth), max(s["end_s"] for s in truth)
    times = (np.arange(int(np.floor(start * fps)), int(np.ceil(end * fps))) + 0.5) / fps
    times = times[(times >= start) & (times < end)]
    annotated = [(t, label_at(truth, t)) for t in times]
    annotated = [(t, label) for t, label in annotated if label is not None]
    if not annotated:
        raise ValueError("no annotated frame to score")
    return float(np.mean([label_at(predicted, t) == label for t, label in annotated]))


def tiou(a: dict, b: dict) -> float:
    """Temporal intersection over union of two segments."""
    inter = max(0.0, min(a["end_s"], b["end_s"]) - max(a["start_s"], b["start_s"]))
    union = max(a["end_s"], b["end_s"]) - min(a["start_s"], b["start_s"])
    return inter / union if union > 0 else 0.0


def average_precision(hits: list[bool], num_truth: int) -> float:
    """AP (all-point interpolation) of a ranked list of hits against `num_truth` annotated segments."""
    if num_truth == 0:
        return float("nan")
    hits = np.asarray(hits, dtype=bool)
    if not hits.size:
        return 0.0
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / num_truth
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
    previous = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - previous) * precision))


def segment_map(predicted: dict, truth: dict, thresholds=TIOU_THRESHOLDS) -> dict:
    """mAP (%) at each tIoU threshold over videos: `predicted` / `truth` map a video to its segments."""
    classes = sorted({s["label"] for segs in truth.values() for s in segs})
    out = {}
    for threshold in thresholds:
        aps = []
        for label in classes:
            preds = [(s["score"], video, s) for video, segs in predicted.items() for s in segs if s["label"] == label]
            preds.sort(key=lambda p: -p[0])
            gts = {video: [s for s in segs if s["label"] == label] for video, segs in truth.items()}
            used = {video: [False] * len(g) for video, g in gts.items()}
            hits = []
            for _, video, seg in preds:
                overlaps = [tiou(seg, g) if not used[video][j] else -1.0 for j, g in enumerate(gts.get(video, []))]
                j = int(np.argmax(overlaps)) if overlaps else -1
                hit = j >= 0 and overlaps[j] >= threshold
                if hit:
                    used[video][j] = True
                hits.append(hit)
            aps.append(average_precision(hits, sum(len(g) for g in gts.values())))
        out[f"mAP@{threshold:g}"] = float(100.0 * np.mean(aps))
    return out


def window_options(o) -> dict:
    """The pipeline options of `o` that apply to windows, only where they differ from the pipeline's defaults."""
    given = {"num_frames": o.num_frames, "num_spatial_crops": o.num_spatial_crops if o.num_spatial_crops != 1 else None,
             "num_workers": o.num_workers or None}
    return {k: v for k, v in given.items() if v is not None}


def evaluate_localisation(model, segments_file, labels=None, *, chunk_length_s: float, stride_length_s=None,
                          min_duration_s: float | None = None, aggregate: str = "segmentation",
                          fps: float | None = None, options: EvaluationOptions | None = None, **overrides) -> dict:
    """Frame accuracy and segment mAP of the windowed pipeline over the videos of `segments_file`.

    `aggregate`: the pipeline's `aggregate=` (`"segmentation"`, default; `"frames"`; `"segments"`, also accepted as
    `"windows"`). `labels`: class names (default: the annotated ones). `options` / `overrides`: the shared
    `EvaluationOptions` (a window is one clip; no predictions store).
    """
    from ..pipelines.failures import each_video
    from ..pipelines.segments import AGGREGATIONS, aggregate_windows
    from ..video.reader import VideoFile
    from ..video.timing import frame_times_at_rate
    from .labels import resolve_labels
    from .report import build_report, model_identity, write_report
    from .runner import pipeline_for

    o = evaluation_options(options, overrides)
    check_unused(o, "localisation", ("num_temporal_clips",), "each window is one clip; use stride_length_s")
    how = "segments" if aggregate == "windows" else aggregate  # "windows": this module's earlier name
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
    truth = read_segments(segments_file, o.video_root)
    class_names = resolve_labels(labels)[0] if labels is not None else sorted({s["label"] for v in truth.values() for s in v})
    unknown = sorted({s["label"] for v in truth.values() for s in v} - set(class_names))
    if unknown:
        raise ValueError(f"annotated labels {unknown[:5]} are not among the {len(class_names)} classes")
    pipe = pipeline_for(model, o)
    call = dict(candidate_labels=class_names, hypothesis_template=o.template, class_descriptions=o.descriptions,
                chunk_length_s=chunk_length_s, stride_length_s=stride_length_s, return_timestamps=True,
                batch_size=o.batch_size, progress=False,
                **window_options(o), **({"fps": fps} if fps else {}))

    def windows_and_clock(video):
        windows = pipe(video, **call)
        with VideoFile(video) as vf:
            times, end, rate = vf.frame_times, vf.duration, fps or vf.fps
            if times is None:  # no timestamps and no rate in the file: fps= is its clock
                times, end = frame_times_at_rate(vf.num_frames, fps, video)
        return windows, times, end, rate

    predicted, accuracies, bad = {}, {}, []
    for video, measured, err in each_video(windows_and_clock, truth):
        if err is not None:
            if o.on_bad_video == "raise":
                raise ValueError(f"video {video!r} could not be evaluated: {err}") from err
            bad.append({"video": video, "error": f"{type(err).__name__}: {err}"})
            continue
        windows, times, end, rate = measured
        predicted[video] = aggregate_windows(windows, how, end_s=end, frame_times=times, labels=class_names,
                                             min_duration_s=min_duration_s)
        accuracies[video] = frame_accuracy(predicted[video], truth[video], rate)
    if not predicted:
        raise ValueError(f"none of the {len(truth)} videos could be evaluated; the first error: {bad[0]['error']}")
    kept = {v: truth[v] for v in predicted}
    summary = {"frame_accuracy": float(100.0 * np.mean(list(accuracies.values()))), **segment_map(predicted, kept),
               "num_videos": len(predicted)}
    results = {"summary": summary, "per_video": {v: {"frame_accuracy": 100.0 * a, "segments": predicted[v]}
                                                 for v, a in accuracies.items()}}
    identity = model_identity(pipe.model, model if isinstance(model, (str, os.PathLike)) else None)
    settings = {"segments_file": os.fspath(segments_file), "chunk_length_s": chunk_length_s,
                "stride_length_s": stride_length_s, "aggregate": aggregate, "min_duration_s": min_duration_s,
                "template": o.template, "num_classes": len(class_names)}
    report = build_report("localisation", settings, identity, results, bad)
    if o.output_dir is not None:
        report["files"] = write_report(o.output_dir, report)
    return report
