"""Pieces shared by the `xclip-hf` subcommands: the exit-code contract, argument types, labels, the model-source
check, transformers' progress bars (kept free of heavy imports)."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

from ..utils.messages import one_line


# ----------------------------------------------------------------------------------------------- exit status
# The contract of every subcommand, written once (`exit_status` is the only place that picks a code):
#   0  success;
#   1  a runtime failure: a file, a model, a video, an OS error (read-only output, disk full); one line naming it;
#   2  bad arguments only: argparse's errors and option values invalid on their face (`--device tpu`,
#      `--num-frames 0`, `--stride` longer than `--chunk-length`, an empty label), raised as `UsageError`.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# device types torch accepts (`torch.device` would need torch imported just to parse the argument)
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hpu", "npu", "mtia", "xla", "meta", "ipu", "hip", "ve", "fpga", "maia",
                "lazy", "vulkan", "mkldnn", "opengl", "opencl", "ideep", "privateuseone")


class UsageError(ValueError):
    """A bad command-line argument, invalid on its face (exit status 2)."""


class CommandFailure(RuntimeError):
    """A runtime failure of a command, already phrased to name the file (exit status 1)."""


def exit_status(err: BaseException) -> int:
    """The exit status of a command that raised ``err``: 2 for a `UsageError`, 1 for everything else."""
    return EXIT_USAGE if isinstance(err, UsageError) else EXIT_FAILURE


@contextlib.contextmanager
def usage_errors():
    """Treat a ValueError raised inside as a bad argument (`UsageError`): wrap checks of option values only."""
    try:
        yield
    except UsageError:
        raise
    except ValueError as err:
        raise UsageError(one_line(err)) from err


@contextlib.contextmanager
def writing(path: str):
    """Name ``path`` in any failure while writing it: disk full (safetensors' and torch's writers raise without a
    file name), read-only file systems, ... become a `CommandFailure` (exit status 1)."""
    try:
        yield
    except CommandFailure:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the writer raised, the output could not be written
        raise CommandFailure(f"cannot write {path!r}: {type(err).__name__}: {one_line(err)}") from err


def read_labels(labels: str | None, labels_file: str | None) -> list[str]:
    """Candidate labels from `--labels "a,b"` (an empty label is a `UsageError`) or `--labels-file` (one per line;
    a missing or empty file is a `CommandFailure` naming it)."""
    if labels_file is not None:
        if not os.path.isfile(labels_file):
            raise CommandFailure(f"labels file {labels_file!r} does not exist")
        with open(labels_file, encoding="utf-8") as f:
            items = [line.strip() for line in f]
        items = [item for item in items if item]
        if not items:
            raise CommandFailure(f"labels file {labels_file!r} holds no label")
        return items
    items = [item.strip() for item in labels.split(",")]
    if any(not item for item in items):
        raise UsageError(f"--labels {labels!r} has an empty label (check for doubled or trailing commas)")
    return items


def _number(text: str, kind, minimum, what: str, strict: bool = False):
    """argparse type helper: ``kind(text)``, finite, >= ``minimum`` (> with ``strict``); else an error naming `what`."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (seconds)."""
    return _number(text, float, 0, "a number > 0", strict=True)


def nonempty_text(text: str) -> str:
    """argparse type: a text with something besides spaces (a query, a factory string)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a non-empty text, got {text!r}")
    return text


def device_arg(text: str) -> str:
    """argparse type: a torch device string such as cpu, cuda, cuda:1, mps (parsed without importing torch)."""
    kind, _, index = text.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N, mps, xpu, ...")
    return text


def debug_enabled() -> bool:
    """XCLIP_HF_DEBUG=1 (or true / yes) shows tracebacks; unset, 0, false, no and anything else do not."""
    return os.environ.get("XCLIP_HF_DEBUG", "").strip().lower() in ("1", "true", "yes")


def report_error(command: str, err: BaseException) -> int:
    """Print one line for ``err`` and return its exit status (`exit_status`)."""
    print(f"xclip-hf {command}: error: {one_line(err)}", file=sys.stderr)
    return exit_status(err)


def failed_inputs(command: str, failed: list[str], total: int, verb: str, shown: int = 5) -> int:
    """`EXIT_OK` when nothing failed; else one stderr line naming the failed inputs (the first `shown`) and
    `EXIT_FAILURE` (the others were processed: their results are printed or stored)."""
    if not failed:
        return EXIT_OK
    names = ", ".join(failed[:shown]) + (f", ... ({len(failed) - shown} more)" if len(failed) > shown else "")
    print(f"xclip-hf {command}: error: {len(failed)} of {total} video(s) {verb}: {names}", file=sys.stderr)
    return EXIT_FAILURE


_hub_note_printed = False


def check_model_source(model: str, prog: str = "xclip-hf") -> str:
    """The model argument checked by the one loader's `resolve_model_source` at once (a missing folder, a file such
    as dir/config.json, an offline hub id not cached: `ModelLoadError` naming it); returns it.

    Without HF_HUB_OFFLINE=1, the hub client retries an unreachable hub for 30 s or more (45 s measured for one
    config file) before it falls back to the local cache or gives up: a hub id gets one note before that wait.
    """
    global _hub_note_printed
    from huggingface_hub import constants

    from ..models.loading import resolve_model_source

    name = resolve_model_source(model)
    if not os.path.isdir(name) and not constants.HF_HUB_OFFLINE and not _hub_note_printed:
        _hub_note_printed = True
        print(f"{prog}: {model!r} is not a local folder: looking it up on the Hugging Face Hub. If the hub cannot be "
              "reached, the hub client retries for 30 s or more before it uses the local cache or gives up; set "
              "HF_HUB_OFFLINE=1 to use the local cache only.", file=sys.stderr)
    return name


@contextlib.contextmanager
def library_progress(no_progress: bool):
    """transformers' own progress bars while loading a model: none with `--no-progress`; its "Loading weights" bar
    only when stdout and stderr are both terminals; the others only when stderr is one (tqdm's `disable=None`)."""
    from transformers.utils import logging as hf_logging

    show_weights = sys.stdout.isatty() and sys.stderr.isatty()

    def hook(factory, args, kwargs):
        if kwargs.get("desc") == "Loading weights" and not show_weights:
            kwargs = {**kwargs, "disable": True}
        kwargs.setdefault("disable", None)
        return factory(*args, **kwargs)

    was_enabled = hf_logging.is_progress_bar_enabled()
    previous = hf_logging.set_tqdm_hook(hook)
    if no_progress:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)
        if no_progress and was_enabled:
            hf_logging.enable_progress_bar()
