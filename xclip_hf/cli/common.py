"""Pieces shared by the `xclip-hf` subcommands (kept free of heavy imports)."""

from __future__ import annotations

import os


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


