"""Pieces shared by the `xclip-hf` subcommands: exit statuses, argument types, the shared flags, labels, devices."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

from ..utils.messages import one_line


# ----------------------------------------------------------------------------------------------- exit status
# The contract of every subcommand (`exit_status` is the only place that picks a code): 0 success; 1 a runtime
# failure, one line naming the file; 2 bad arguments only (argparse's and `UsageError`: values invalid on their face).
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
    """Name ``path`` in any failure while writing it (disk full, read-only): a `CommandFailure` (exit status 1)."""
    try:
        yield
    except CommandFailure:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the writer raised, the output could not be written
        raise CommandFailure(f"cannot write {path!r}: {type(err).__name__}: {one_line(err)}") from err


def add_template_arguments(p, what: str = "label") -> None:
    """`--template` (repeatable: a prompt ensemble) and `--descriptions FILE.json` (class -> phrasings)."""
    p.add_argument("--template", action="append", default=None,
                   help=f'text template of each {what}, default "{{}}" (the paper\'s bare label); repeat it for a '
                        "prompt ensemble (text features averaged over the templates, CLIP's recipe)")
    p.add_argument("--descriptions", default=None, metavar="FILE.json",
                   help="JSON object of class name -> list of phrasings that replace the class name, ensembled "
                        "like templates (every class must be listed)")


def template_option(values: list[str] | None) -> str | list[str]:
    """The pipeline's `hypothesis_template` from repeated `--template` flags: "{}", one string, or a list."""
    if not values:
        return "{}"
    return values[0] if len(values) == 1 else list(values)


def read_labels(labels: str | None, labels_file: str | None) -> list[str]:
    """Candidate labels from `--labels "a,b"` or `--labels-file` (one per line); errors name the label or file."""
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


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (seconds)."""
    return _number(text, float, 0, "a number >= 0")


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


# ----------------------------------------------------------------------------------------------- shared flags
# One definition per flag that several subcommands take: the same spelling, help text and validation everywhere.
MODEL_HELP = "model directory or hub id (ours or the published microsoft/xclip-*)"
INDEX_HELP = "the --output folder of `xclip-hf embed` (made with the same model)"
DEVICE_HELP = "cpu, cuda, cuda:1, mps, ... (default: the best available: cuda, else mps, else cpu)"
DTYPE_HELP = "weights and compute dtype of the model (auto: as stored; bfloat16 is fastest on recent CPUs)"
DTYPES = ("auto", "float32", "bfloat16", "float16")
NUM_WORKERS_HELP = ("processes that decode and preprocess videos while the model runs (0: in this one; default "
                    "%(default)s)")


class CliParser(argparse.ArgumentParser):
    """argparse's parser that then runs its arguments' `after_parse` checks (a ValueError is exit status 2)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.after_parse = []

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        for check in self.after_parse:
            try:
                check(namespace)
            except ValueError as err:
                self.error(str(err))
        return namespace, extras


def run_after_parse(parser, check) -> None:
    """Run ``check(namespace)`` once ``parser`` has parsed (a plain ArgumentParser never runs it)."""
    if not hasattr(parser, "after_parse"):
        parser.after_parse = []
    parser.after_parse.append(check)


def merge_alias(namespace, dest: str, alias_dest: str, flag: str, alias: str, required: bool = False) -> None:
    """Fold the old spelling ``alias_dest`` into ``dest``; both given and different is a ValueError naming both."""
    value, old = getattr(namespace, dest, None), getattr(namespace, alias_dest, None)
    if hasattr(namespace, alias_dest):
        delattr(namespace, alias_dest)
    if old is not None:
        if value is not None and value != old:
            raise ValueError(f"{flag} {value!r} and {alias} {old!r} differ: give one of them ({alias} is the old "
                             f"spelling of {flag})")
        setattr(namespace, dest, old)
    if required and getattr(namespace, dest, None) is None:
        raise ValueError(f"the following arguments are required: {flag}")


def add_model_argument(parser, note: str | None = None, positional_alias: bool = False, default=None) -> None:
    """`--model M` (required unless ``default``), optionally also the old positional MODEL (hidden)."""
    required = default is None
    help_text = MODEL_HELP + (f"; {note}" if note else "") + (f" (default {default})" if default else "")
    if not positional_alias:
        parser.add_argument("--model", required=required, default=default, metavar="M", help=help_text)
        return
    parser.add_argument("--model", default=default, metavar="M", help=help_text)
    parser.add_argument("model_positional", nargs="?", default=None, help=argparse.SUPPRESS)
    run_after_parse(parser, lambda ns: merge_alias(ns, "model", "model_positional", "--model", "positional MODEL",
                                                required=required))


def add_index_argument(parser, required: bool = True, alias: str | None = None, note: str | None = None) -> None:
    """`--index DIR` (an `embed` output), optionally also an old option spelling ``alias`` (hidden)."""
    parser.add_argument("--index", default=None, metavar="DIR", required=required and alias is None,
                        help=INDEX_HELP + (f"; {note}" if note else ""))
    if alias is not None:
        alias_dest = "index_" + alias.lstrip("-").replace("-", "_")
        parser.add_argument(alias, dest=alias_dest, default=None, help=argparse.SUPPRESS)
        run_after_parse(parser, lambda ns: merge_alias(ns, "index", alias_dest, "--index", alias, required=required))


def add_device_argument(parser) -> None:
    """`--device` (default None: `resolve_device` picks the best available at run time)."""
    parser.add_argument("--device", default=None, type=device_arg, help=DEVICE_HELP)


def add_dtype_argument(parser) -> None:
    """`--dtype auto|float32|bfloat16|float16`."""
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help=DTYPE_HELP)


def add_num_workers_argument(parser, default: int = 0) -> None:
    """`--num-workers N` (an integer >= 0) for the commands that read videos."""
    parser.add_argument("--num-workers", type=nonnegative_int, default=default, metavar="N", help=NUM_WORKERS_HELP)


def default_device() -> str:
    """The best device of this machine: CUDA (this process's GPU under torchrun), else MPS, else the CPU."""
    import torch

    if torch.cuda.is_available():
        rank = os.environ.get("LOCAL_RANK", "")
        return f"cuda:{rank}" if rank.isdigit() and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


_device_note_printed = False


def resolve_device(device: str | None, command: str, model: str | None = None) -> str:
    """``device`` when given, else `default_device()` (the CPU for exported graphs), named once on stderr."""
    global _device_note_printed
    if device is not None:
        return device
    from ..deploy.manifest import is_export_dir

    chosen = "cpu" if model is not None and is_export_dir(model) else default_device()
    if not _device_note_printed and os.environ.get("RANK", "0") in ("", "0"):
        _device_note_printed = True
        print(f"xclip-hf {command}: --device not given: using {chosen}", file=sys.stderr)
    return chosen


def debug_enabled() -> bool:
    """XCLIP_HF_DEBUG=1 (or true / yes) shows tracebacks; unset, 0, false, no and anything else do not."""
    return os.environ.get("XCLIP_HF_DEBUG", "").strip().lower() in ("1", "true", "yes")


def report_error(command: str, err: BaseException) -> int:
    """Print one line for ``err`` and return its exit status (`exit_status`)."""
    print(f"xclip-hf {command}: error: {one_line(err)}", file=sys.stderr)
    return exit_status(err)


def failed_inputs(command: str, failed: list[str], total: int, verb: str, shown: int = 5) -> int:
    """`EXIT_OK` when nothing failed; else one stderr line naming the failed inputs and `EXIT_FAILURE`."""
    if not failed:
        return EXIT_OK
    names = ", ".join(failed[:shown]) + (f", ... ({len(failed) - shown} more)" if len(failed) > shown else "")
    print(f"xclip-hf {command}: error: {len(failed)} of {total} video(s) {verb}: {names}", file=sys.stderr)
    return EXIT_FAILURE


_hub_note_printed = False


def check_model_source(model: str, prog: str = "xclip-hf") -> str:
    """The model argument checked at once by `resolve_model_source`; a hub id without HF_HUB_OFFLINE=1 gets a note."""
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
    """transformers' progress bars while loading: none with `--no-progress`, else only on terminals."""
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
