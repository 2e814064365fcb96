"""`xclip-hf` command line: zero-shot classification of video files, and a summary of a model.

    xclip-hf classify VIDEO... (--labels "a,b,c" | --labels-file FILE) --model M [--top-k K] [--json]
    xclip-hf info M            (M: a model directory, a hub id, or a variant name such as xclip-base-patch32)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main", "build_parser", "read_labels", "model_summary"]


# ---------------------------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    """The `xclip-hf` argument parser (subcommands `classify` and `info`)."""
    parser = argparse.ArgumentParser(prog="xclip-hf", description="X-CLIP video recognition (Hugging Face format).")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("classify", help="zero-shot classification of video files against free-form labels")
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
    c.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    c.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights/compute dtype (bfloat16 is fastest on recent CPUs)")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    i = sub.add_parser("info", help="variant, parameters and FLOPs of a model")
    i.add_argument("model", help="model directory, hub id, or variant name (e.g. xclip-base-patch32)")
    i.add_argument("--num-frames", type=int, default=None, help="frames per view for a variant name (default 8)")
    i.add_argument("--json", action="store_true", help="print JSON")
    return parser


def read_labels(labels: str | None, labels_file: str | None) -> list[str]:
    """Candidate labels from `--labels "a,b"` or `--labels-file` (one per line); raises ValueError naming the problem."""
    if labels_file is not None:
        if not os.path.isfile(labels_file):
            raise ValueError(f"labels file {labels_file!r} does not exist")
        with open(labels_file, encoding="utf-8") as f:
            items = [line.strip() for line in f]
        items = [item for item in items if item]
        source = f"labels file {labels_file!r}"
    else:
        items = [item.strip() for item in labels.split(",")]
        if any(not item for item in items):
            raise ValueError(f"--labels {labels!r} has an empty label (check for doubled or trailing commas)")
        source = "--labels"
    if not items:
        raise ValueError(f"{source} holds no label")
    return items


# ---------------------------------------------------------------------------------------------------- classify
def _format_table(path: str, predictions: list[dict]) -> str:
    """A readable block per video: rank, label, score."""
    width = max(len(p["label"]) for p in predictions) if predictions else 0
    lines = [path]
    for rank, p in enumerate(predictions, 1):
        lines.append(f"  {rank:>3}  {p['label']:<{width}}  {p['score']:.4f}")
    return "\n".join(lines)


def _classify(args) -> int:
    from tqdm.auto import tqdm

    from .pipelines.video_inputs import is_url

    labels = read_labels(args.labels, args.labels_file)
    missing = [v for v in args.videos if not is_url(v) and not os.path.isfile(v)]
    if missing:
        raise ValueError("video file(s) not found: " + ", ".join(repr(m) for m in missing))
    pipe = _build_pipeline(args.model, args.device, args.dtype)
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


def _build_pipeline(model: str, device: str | None, dtype: str):
    import torch
    from transformers import pipeline

    import xclip_hf  # noqa: F401  (registers the task)

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    return pipeline("zero-shot-video-classification", model=model, device=device, dtype=torch_dtype)


# ---------------------------------------------------------------------------------------------------- info
def _load_config(model: str, num_frames: int | None):
    """Config of a variant name, a model directory or hub id (published ids fall back to the table when offline)."""
    from .configuration_xclip import PUBLISHED_CHECKPOINTS, VARIANTS, XClipConfig

    if model in VARIANTS:
        frames = num_frames or (8 if 8 in VARIANTS[model]["frames"] else VARIANTS[model]["frames"][0])
        return XClipConfig.from_variant(model, num_frames=frames)
    if num_frames is not None:
        raise ValueError("--num-frames applies to variant names only; a checkpoint's config fixes its frames")
    try:
        return XClipConfig.from_pretrained(model)
    except Exception as err:
        if model in PUBLISHED_CHECKPOINTS:
            name, frames = PUBLISHED_CHECKPOINTS[model]
            print(f"xclip-hf info: {model!r} is not reachable; using the variant table ({name}, {frames} frames)",
                  file=sys.stderr)
            return XClipConfig.from_variant(name, num_frames=frames)
        raise ValueError(
            f"could not read an X-CLIP config from {model!r} ({type(err).__name__}: {err}); pass a model directory, "
            f"a reachable hub id, or a variant name ({', '.join(VARIANTS)})"
        ) from err


def model_summary(model: str, num_frames: int | None = None) -> dict:
    """Variant, parameter counts (built on the meta device: nothing is allocated) and FLOPs per view of a model."""
    import torch

    from .flops import count_flops
    from .modeling_xclip import XClipModel

    config = _load_config(model, num_frames)
    with torch.device("meta"):
        net = XClipModel(config)
    total = sum(p.numel() for p in net.parameters())
    vision = sum(p.numel() for p in net.vision_model.parameters())
    new = net.new_parameter_names()
    added = sum(p.numel() for n, p in net.named_parameters() if n in new)
    macs = count_flops(config, num_labels=1, text_length=77)
    vc = config.vision_config
    return {
        "model": model,
        "variant": config.variant_name() or "custom",
        "num_frames": vc.num_frames,
        "image_size": vc.image_size,
        "patch_size": vc.patch_size,
        "projection_dim": config.projection_dim,
        "parameters": total,
        "parameters_vision": vision,
        "parameters_text": total - vision - 1,  # the logit scale is the one remaining parameter
        "parameters_added_to_clip": added,
        "gflops_per_view": macs / 1e9,
    }


def _flops_text(gflops: float) -> str:
    """39.0 G for full-size models, 2.63 M for tiny ones."""
    return f"{gflops:.1f} G" if gflops >= 0.1 else f"{gflops * 1e3:.2f} M"


def _format_summary(s: dict) -> str:
    rows = [
        ("model", s["model"]),
        ("variant", s["variant"]),
        ("frames x image", f"{s['num_frames']} x {s['image_size']}px (patch {s['patch_size']})"),
        ("joint dim", s["projection_dim"]),
        ("parameters", f"{s['parameters']:,} ({s['parameters'] / 1e6:.1f} M)"),
        ("  video encoder", f"{s['parameters_vision']:,}"),
        ("  text encoder + prompts", f"{s['parameters_text']:,}"),
        ("  added to CLIP", f"{s['parameters_added_to_clip']:,} (cross-frame attention, MIT, prompt generator)"),
        ("FLOPs per view", f"{_flops_text(s['gflops_per_view'])} (multiply-accumulates, 1 label of 77 tokens, as in the paper)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _info(args) -> int:
    summary = model_summary(args.model, args.num_frames)
    print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    return 0


# ---------------------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Run `xclip-hf`; returns the exit status (0 ok, 1 some videos failed, 2 bad arguments or model)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return _classify(args) if args.command == "classify" else _info(args)
    except (ValueError, TypeError, OSError) as err:
        print(f"xclip-hf {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
