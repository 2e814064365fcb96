"""Pieces shared by the `xclip-hf` subcommands (kept free of heavy imports)."""

from __future__ import annotations

import argparse
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
