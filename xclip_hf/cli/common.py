"""Pieces shared by the `xclip-hf` subcommands (kept free of heavy imports)."""

from __future__ import annotations

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
