"""`xclip-hf export --model M OUTPUT.pth`: a model directory -> a checkpoint of the original X-CLIP code."""

from __future__ import annotations

import os

from .common import CommandFailure, add_model_argument, check_model_source, library_progress

HELP = "export a model directory to the original X-CLIP checkpoint layout (.pth)"


def add_arguments(e) -> None:
    """Arguments of `export` (no heavy import here: `--help` must answer at once)."""
    add_model_argument(e, note="ours or a classifier", positional_alias=True)
    e.add_argument("output", help="the .pth file to write")


def run(args) -> int:
    from ..conversion.original import export_original
    from ..models.loading import load_model

    if os.path.isdir(args.output):
        raise CommandFailure(f"output {args.output!r} is a directory; give the .pth file to write")
    check_model_source(args.model, prog="xclip-hf export")
    with library_progress(no_progress=False):  # transformers' weight-loading bar only on a terminal
        model = load_model(args.model)
    state = export_original(model, args.output)  # a failed write raises naming the file
    print(f"exported {args.model} -> {args.output} ({len(state)} tensors, original X-CLIP layout)")
    return 0
