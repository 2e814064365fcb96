"""`xclip-hf` command line. Each subcommand is one module of this package with `HELP`, `add_arguments(parser)`
and `run(args) -> int`; modules import torch/transformers inside `run` only, so `--help` answers at once.

    xclip-hf classify VIDEO... (--labels "a,b,c" | --labels-file FILE) --model M [--top-k K] [--json]
    xclip-hf info --model M    (M: a model directory, a hub id, or a variant name such as xclip-base-patch32)
    xclip-hf embed VIDEO... --model M --output DIR [--chunk-length S] [--num-workers N] [--save-context]
    xclip-hf search --index DIR "a person surfing" --model M [--top-k K] [--json]
    xclip-hf index DIR [--memory-gb N] [--kind auto|flat|ivfpq|hnsw]   (a FAISS index search then uses; needs faiss)
    xclip-hf convert ORIGINAL.pth OUTPUT_DIR [--bpe FILE] [--labels CSV]
    xclip-hf export --model M OUTPUT.pth
    xclip-hf export-onnx --model M OUTPUT_DIR [--quantize int8]
    xclip-hf app [--model M] [--index DIR] [--host 127.0.0.1] [--port 7860] [--video-dir DIR]   (needs ".[app]")

Exit status, the same for every subcommand (`common.exit_status`): 0 success, 1 a runtime failure (one line
naming the file), 2 bad arguments.
    xclip-hf evaluate PROTOCOL --model M --data FILE --output DIR ...   (closed-set, zero-shot, ...)

One vocabulary (`common.add_*_argument`): the model is `--model`, an `embed` output read back is `--index`, and
`--device`, `--dtype`, `--num-workers` mean the same wherever they appear. Old spellings (a positional MODEL,
search's positional DATASET, retrieval's --embeddings) still parse, hidden from --help.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["main", "build_parser", "COMMANDS"]

# subcommand -> module of this package (one owner per command; add a line to add a command)
COMMANDS = {
    "classify": "classify",
    "info": "info",
    "embed": "embed",
    "search": "search",
    "index": "index",
    "convert": "convert",
    "export": "export",
    "app": "app",
    "export-onnx": "export_onnx",
    "evaluate": "evaluate",
}


def _command_module(name: str):
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")


def build_parser():
    """The `xclip-hf` argument parser, one subparser per entry of COMMANDS."""
    from .common import CliParser

    parser = CliParser(prog="xclip-hf", description="X-CLIP video recognition (Hugging Face format).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = _command_module(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `xclip-hf`; returns the exit status of the one contract (`common.exit_status`): 0 ok, 1 a runtime failure
    (a file, model, video or OS error; one line naming the file), 2 bad arguments. Errors are one line on stderr
    (XCLIP_HF_DEBUG=1 shows the traceback)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)  # argparse's own errors: status 2
    try:
        return _command_module(args.command).run(args)
    except Exception as err:  # noqa: BLE001 - every failure becomes one line and an exit status
        from .common import debug_enabled, report_error

        if debug_enabled():
            raise
        return report_error(args.command, err)
