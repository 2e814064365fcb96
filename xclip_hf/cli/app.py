"""`xclip-hf app [--model M] [--index DIR] [--host H] [--port P] [--video-dir DIR]...`: the local web app (Gradio)."""

from __future__ import annotations

import sys

from .common import (add_device_argument, add_index_argument, add_model_argument, check_model_source, library_progress,
                     positive_float, resolve_device)

HELP = "a local web app: classify a video against typed labels (timeline for long videos), search an index"


def add_arguments(p) -> None:
    """Arguments of `app` (no heavy import here: `--help` must answer at once)."""
    add_model_argument(p, default="microsoft/xclip-base-patch32")
    add_index_argument(p, required=False, note="enables the Search tab")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app to the "
                        "network, and the app then prints what it serves)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    add_device_argument(p)
    p.add_argument("--max-upload-mb", type=positive_float, default=200.0, help="largest video file accepted (MB)")
    p.add_argument("--max-video-s", type=positive_float, default=600.0, help="longest video accepted (seconds)")
    p.add_argument("--video-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose videos may be typed as local paths in the page (repeatable; without it the "
                        "path field is off)")
    p.add_argument("--no-urls", action="store_true", help="fetch no http(s) URLs typed in the page")
    p.add_argument("--allow-private-urls", action="store_true",
                   help="also fetch URLs of loopback, private-network, link-local and reserved addresses (by "
                        "default refused: a visitor could reach this machine's or this network's services)")
    p.add_argument("--url-timeout", type=positive_float, default=60.0,
                   help="seconds for downloading one URL, all of it (default 60)")


def run(args) -> int:
    from ..app import AppAccess, AppLimits, build_app, launch_app
    from ..app.access import exposure_notice

    check_model_source(args.model)
    limits = AppLimits(max_upload_mb=args.max_upload_mb, max_video_s=args.max_video_s)
    access = AppAccess(video_dirs=tuple(args.video_dir), urls=not args.no_urls, private_urls=args.allow_private_urls,
                       url_timeout=args.url_timeout)  # before the model loads: a --video-dir that is no folder
    with library_progress(no_progress=False):  # transformers' weight-loading bar only on a terminal
        app = build_app(args.model, args.index, limits=limits, access=access,
                        device=resolve_device(args.device, "app", args.model))
    for line in exposure_notice(args.host, access, args.index, limits.max_upload_mb):
        print(line, file=sys.stderr, flush=True)
    print(f"xclip-hf app: serving on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    launch_app(app, args.host, args.port, block=True, quiet=True)
    return 0
