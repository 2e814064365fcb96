"""`xclip-hf app [--model M] [--index DIR] [--host 127.0.0.1] [--port 7860]`: the local web app (Gradio)."""

from __future__ import annotations

from .common import check_model_source, device_arg, library_progress

HELP = "a local web app: classify a video against typed labels (timeline for long videos), search an index"


def _positive(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def add_arguments(p) -> None:
    """Arguments of `app` (no heavy import here: `--help` must answer at once)."""
    p.add_argument("--model", default="microsoft/xclip-base-patch32",
                   help="model directory or hub id (default microsoft/xclip-base-patch32)")
    p.add_argument("--index", default=None, metavar="DIR",
                   help="a folder written by `xclip-hf embed` with the same model: enables the Search tab")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app, "
                        "which reads local paths and URLs typed into it, to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default=None, type=device_arg, help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--max-upload-mb", type=_positive, default=200.0, help="largest video file accepted (MB)")
    p.add_argument("--max-video-s", type=_positive, default=600.0, help="longest video accepted (seconds)")


def run(args) -> int:
    from ..app import AppLimits, build_app, launch_app

    check_model_source(args.model)
    limits = AppLimits(max_upload_mb=args.max_upload_mb, max_video_s=args.max_video_s)
    with library_progress(no_progress=False):  # transformers' weight-loading bar only on a terminal
        app = build_app(args.model, args.index, limits=limits, device=args.device)
    print(f"xclip-hf app: serving on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    launch_app(app, args.host, args.port, block=True, quiet=True)
    return 0
