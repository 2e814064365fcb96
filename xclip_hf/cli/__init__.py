"""`xclip-hf` command line: one module per subcommand (`HELP`, `add_arguments`, `run`), torch imported in `run` only."""

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
    "calibrate": "calibrate",
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
    """Run `xclip-hf`; returns the exit status (0 ok, 1 a runtime failure, 2 bad arguments), errors as one line."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)  # argparse's own errors: status 2
    try:
        return _command_module(args.command).run(args)
    except Exception as err:  # noqa: BLE001 - every failure becomes one line and an exit status
        from .common import debug_enabled, report_error

        if debug_enabled():
            raise
        return report_error(args.command, err)
