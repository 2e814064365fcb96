"""`xclip-hf classify VIDEO... --labels ... --model M`: zero-shot classification of video files.

With `--chunk-length S [--stride H] [--segments] [--plot timeline.png]`, untrimmed videos are classified window by
window and printed as a timeline (start - end, score, top label).
"""

from __future__ import annotations

import json
import os
import sys

from .common import check_model_arg, check_model_source, device_arg, library_progress, model_load_failure, read_labels

HELP = "zero-shot classification of video files against free-form labels"


def add_arguments(c) -> None:
    """Arguments of `classify` (no heavy import here: `--help` must answer at once)."""
    c.add_argument("videos", nargs="+", help="video files (paths or http(s) URLs)")
    group = c.add_mutually_exclusive_group(required=True)
    group.add_argument("--labels", help='comma-separated candidate labels, e.g. "running,swimming,cooking"')
    group.add_argument("--labels-file", help="a text file with one candidate label per line (blank lines ignored)")
    c.add_argument("--model", required=True, help="model directory or hub id (ours or the published microsoft/xclip-*)")
    c.add_argument("--top-k", type=int, default=None, help="print only the K best labels per video")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.add_argument("--template", default="{}", help='hypothesis template, default "{}" (the paper\'s bare label)')
    c.add_argument("--num-temporal-clips", type=int, default=1, help="temporal views averaged per video (paper: 4)")
    c.add_argument("--num-spatial-crops", type=int, default=1, help="spatial crops averaged per video (paper: 3)")
    c.add_argument("--batch-size", type=int, default=1, help="videos per model forward")
    c.add_argument("--device", default=None, type=device_arg, help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    c.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights/compute dtype (bfloat16 is fastest on recent CPUs)")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    c.add_argument("--compile", action="store_true",
                   help="torch.compile the video forward: faster per video after a one-off warm-up (minutes for "
                        "B/32 on a CPU); worth it for many videos")
    c.add_argument("--num-frames", type=int, default=None,
                   help="frames per clip or window (default: the model's; another count resamples the MIT's "
                        "temporal position embedding)")
    w = c.add_argument_group("untrimmed videos (windows)")
    w.add_argument("--chunk-length", type=float, default=None, metavar="SECONDS",
                   help="classify windows of this many seconds and print a timeline")
    w.add_argument("--stride", type=float, default=None, metavar="SECONDS",
                   help="hop between windows in seconds (default: the window length)")
    w.add_argument("--segments", action="store_true",
                   help="merge consecutive windows with the same top label into segments")
    w.add_argument("--plot", default=None, metavar="PNG",
                   help="save each label's probability over time (one panel per video) to this PNG")


def _format_table(path: str, predictions: list[dict]) -> str:
    """A readable block per video: rank, label, score."""
    width = max(len(p["label"]) for p in predictions) if predictions else 0
    lines = [path]
    for rank, p in enumerate(predictions, 1):
        lines.append(f"  {rank:>3}  {p['label']:<{width}}  {p['score']:.4f}")
    return "\n".join(lines)


def _format_timeline(path: str, rows: list[dict], segments: bool) -> str:
    """A readable block per video: start-end, top label, score (one row per window or per segment)."""
    lines = [path]
    for row in rows:
        if segments:
            start, end, label, score = row["start_s"], row["end_s"], row["label"], row["score"]
        else:
            (start, end), label, score = row["timestamp"], row["labels"][0]["label"], row["labels"][0]["score"]
        lines.append(f"  {start:8.2f} - {end:8.2f} s  {score:.4f}  {label}")
    return "\n".join(lines)


def _check_window_args(args) -> None:
    """Reject window options that make no sense before loading anything."""
    from ..video.windows import check_window_lengths

    if args.chunk_length is None:
        given = [flag for flag, value in (("--stride", args.stride), ("--segments", args.segments),
                                          ("--plot", args.plot)) if value]
        if given:
            raise ValueError(f"{', '.join(given)} need --chunk-length (window length in seconds)")
        return
    check_window_lengths(args.chunk_length, args.stride)
    if args.num_temporal_clips != 1:
        raise ValueError("--num-temporal-clips does not apply to windows (each window is one clip); use --stride")


def run_windows(args, pipe, labels) -> int:
    """`--chunk-length`: a timeline per video (windows or segments), optional JSON and PNG."""
    from ..video.windows import merge_segments

    call = dict(candidate_labels=labels, hypothesis_template=args.template, num_frames=args.num_frames,
                num_spatial_crops=args.num_spatial_crops, chunk_length_s=args.chunk_length,
                stride_length_s=args.stride, return_timestamps=True, batch_size=max(1, args.batch_size),
                progress=False if args.no_progress else None)
    results, timelines, failures = [], {}, 0
    for path in args.videos:
        try:
            windows = pipe(path, **call)
        except Exception as err:
            failures += 1
            results.append({"video": path, "error": f"{type(err).__name__}: {err}"})
            if not args.json:
                print(f"{path}\n  error: {err}", flush=True)
            continue
        timelines[path] = windows
        rows = merge_segments(windows) if args.segments else [
            {"timestamp": w["timestamp"], "labels": w["labels"][:args.top_k] if args.top_k else w["labels"]}
            for w in windows]
        results.append({"video": path, "segments" if args.segments else "windows": rows})
        if not args.json:
            print(_format_timeline(path, rows, args.segments), flush=True)
    if args.plot and timelines:
        from ..pipelines.timeline import save_timeline

        stride = args.stride if args.stride is not None else args.chunk_length
        save_timeline(args.plot, timelines, args.chunk_length, stride)
        print(f"saved {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    if failures:
        print(f"xclip-hf: {failures} of {len(args.videos)} video(s) could not be classified", file=sys.stderr)
    return 1 if failures else 0


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..pipelines.video_inputs import is_url
    from ..video.reader import check_video_path

    labels = read_labels(args.labels, args.labels_file)
    unreadable = []
    for video in args.videos:  # every path checked before the model loads
        try:
            is_url(video) or check_video_path(video)
        except ValueError as err:
            unreadable.append(str(err))
    if unreadable:
        raise ValueError("; ".join(unreadable))
    _check_window_args(args)
    check_model_arg(args.model)
    check_model_source(args.model)
    try:
        with library_progress(args.no_progress):
            pipe = build_pipeline(args.model, args.device, args.dtype, compile=getattr(args, "compile", False))
    except Exception as err:
        if os.path.isdir(args.model):  # it exists but cannot be loaded: a runtime failure naming its files
            raise model_load_failure(args.model, err) from err
        raise
    call = dict(candidate_labels=labels, hypothesis_template=args.template, top_k=args.top_k,
                num_temporal_clips=args.num_temporal_clips, num_spatial_crops=args.num_spatial_crops,
                num_frames=args.num_frames)
    pipe._sanitize_parameters(**call)  # validate labels and options before reading any video
    if args.chunk_length is not None:
        return run_windows(args, pipe, labels)
    results, failures = [], 0
    chunk = max(1, args.batch_size)
    bar = tqdm(total=len(args.videos), unit="video", desc="classifying", disable=args.no_progress or None,
               file=sys.stderr)
    for start in range(0, len(args.videos), chunk):
        paths = args.videos[start:start + chunk]
        try:
            outputs = pipe(paths, batch_size=len(paths), **call)
            results.extend({"video": p, "predictions": o} for p, o in zip(paths, outputs))
        except Exception:
            for p in paths:  # find which file failed, keep the others
                try:
                    results.append({"video": p, "predictions": pipe(p, **call)})
                except Exception as err:
                    failures += 1
                    results.append({"video": p, "error": f"{type(err).__name__}: {err}"})
        bar.update(len(paths))
        if not args.json:
            for r in results[-len(paths):]:
                text = _format_table(r["video"], r["predictions"]) if "predictions" in r else f"{r['video']}\n  error: {r['error']}"
                bar.write(text + "\n", file=sys.stdout)
    bar.close()
    if args.json:
        print(json.dumps(results, indent=2))
    if failures:
        print(f"xclip-hf: {failures} of {len(args.videos)} video(s) could not be classified", file=sys.stderr)
    return 1 if failures else 0


def build_pipeline(model: str, device: str | None, dtype: str, compile: bool = False):
    import torch
    from transformers import pipeline

    import xclip_hf  # noqa: F401  (registers the task)

    from ..deploy.manifest import is_export_dir

    exported = is_export_dir(model)
    if device is None:
        device = "cuda" if torch.cuda.is_available() and not exported else "cpu"
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    extra = {"compile": True} if compile else {}
    if exported:  # graphs written by `xclip-hf export-onnx`: run by the one loader's runtime, no torch model
        from ..models.loading import load_model_and_processor

        if compile:
            raise ValueError(f"--compile applies to torch models; {model!r} holds exported graphs")
        model = load_model_and_processor(model, dtype=torch_dtype).model
    return pipeline("zero-shot-video-classification", model=model, device=device, dtype=torch_dtype, **extra)


