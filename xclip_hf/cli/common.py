"""Pieces shared by the `xclip-hf` subcommands (kept free of heavy imports)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys


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


# ----------------------------------------------------------------------------------------------- errors, exit codes
# 0 success; 1 a runtime failure (a video, a model file that cannot be read), one line naming the file;
# 2 bad arguments (argparse errors, invalid values, missing inputs), one line.
EXIT_FAILURE, EXIT_USAGE = 1, 2

# device types torch accepts (`torch.device` would need torch imported just to parse the argument)
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hpu", "npu", "mtia", "xla", "meta", "ipu", "hip", "ve", "fpga", "maia",
                "lazy", "vulkan", "mkldnn", "opengl", "opencl", "ideep", "privateuseone")


class UsageError(ValueError):
    """A bad command-line argument (exit status 2)."""


class CommandFailure(RuntimeError):
    """A runtime failure of a command, already phrased to name the file (exit status 1)."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def device_arg(text: str) -> str:
    """argparse type: a torch device string such as cpu, cuda, cuda:1, mps (parsed without importing torch)."""
    kind, _, index = text.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N, mps, xpu, ...")
    return text


def check_model_arg(model: str) -> None:
    """A model is a directory or a hub id, never a file inside the directory (e.g. dir/config.json)."""
    if os.path.isfile(model):
        raise UsageError(f"--model {model!r} is a file; pass the model directory that holds it "
                         f"({os.path.dirname(model) or '.'!r})")


def weights_files(model: str) -> list[str]:
    """Paths of the weight files of a local model directory (for naming them in errors)."""
    if not os.path.isdir(model):
        return []
    return [os.path.join(model, name) for name in sorted(os.listdir(model))
            if name.endswith((".safetensors", ".bin", ".pth", ".pt"))]


def one_line(err: BaseException) -> str:
    """The first line of an error message, without advice to load pickles with weights_only=False (never safe)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and "weights_only" not in line]
    return lines[0] if lines else type(err).__name__


PROCESSOR_FILES = ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json")


def model_load_failure(model: str, err: BaseException) -> CommandFailure:
    """`CommandFailure` for a model that exists but cannot be loaded, naming its weight or processor-config file(s)."""
    text = str(err)
    if "XClipProcessor" in text or "processor config" in text:
        files = [os.path.join(model, name) for name in PROCESSOR_FILES if os.path.isfile(os.path.join(model, name))]
        what = "the processor config"
    else:
        files, what = weights_files(model), "model"
    where = ", ".join(repr(f) for f in files) if files else repr(model)
    return CommandFailure(f"cannot load {what} {where}: {type(err).__name__}: {one_line(err)}")


def report_error(command: str, err: BaseException) -> int:
    """Print one line for ``err`` and return its exit status (2 bad arguments, 1 runtime failure)."""
    usage = isinstance(err, (ValueError, TypeError, OSError)) and not isinstance(err, CommandFailure)
    print(f"xclip-hf {command}: error: {one_line(err)}", file=sys.stderr)
    return EXIT_USAGE if usage else EXIT_FAILURE


_hub_note_printed = False


def check_model_source(model: str, prog: str = "xclip-hf") -> None:
    """Fail early, naming the problem, for a model folder that does not exist; note once that a hub id may wait.

    A string that can only be a path (`./x`, `/x`, `~/x`, `a/b/c`, spaces ...) must be an existing folder; anything
    else that is not a folder is a hub id. Without HF_HUB_OFFLINE=1, the hub client retries an unreachable hub
    for 30 s or more (45 s measured for one config file) before it falls back to the local cache or gives up: say
    so before that wait starts.
    """
    global _hub_note_printed
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if os.path.isdir(model):
        return
    if os.path.exists(model):
        raise ValueError(f"model {model!r} is a file; pass the folder that holds its config.json")
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise ValueError(f"model folder {model!r} does not exist (and it is not a hub id either)") from None
    if model.startswith((".", "~")):
        raise ValueError(f"model folder {model!r} does not exist")
    if not constants.HF_HUB_OFFLINE and not _hub_note_printed:
        _hub_note_printed = True
        print(f"{prog}: {model!r} is not a local folder: looking it up on the Hugging Face Hub. If the hub cannot be "
              "reached, the hub client retries for 30 s or more before it uses the local cache or gives up; set "
              "HF_HUB_OFFLINE=1 to use the local cache only.", file=sys.stderr)


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
