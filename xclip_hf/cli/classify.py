"""`xclip-hf classify VIDEO... --labels ... --model M`: zero-shot classification of video files."""

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


def _format_table(path: str, predictions: list[dict]) -> str:
    """A readable block per video: rank, label, score."""
    width = max(len(p["label"]) for p in predictions) if predictions else 0
    lines = [path]
    for rank, p in enumerate(predictions, 1):
        lines.append(f"  {rank:>3}  {p['label']:<{width}}  {p['score']:.4f}")
    return "\n".join(lines)


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..pipelines.video_inputs import is_url

    labels = read_labels(args.labels, args.labels_file)
    missing = [v for v in args.videos if not is_url(v) and not os.path.isfile(v)]
    if missing:
        raise ValueError("video file(s) not found: " + ", ".join(repr(m) for m in missing))
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
                num_temporal_clips=args.num_temporal_clips, num_spatial_crops=args.num_spatial_crops)
    pipe._sanitize_parameters(**call)  # validate labels and options before reading any video
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

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    extra = {"compile": True} if compile else {}
    return pipeline("zero-shot-video-classification", model=model, device=device, dtype=torch_dtype, **extra)


