"""An error as one readable line: the one formatting shared by the command line (`cli.common`) and the web app."""

from __future__ import annotations

import re

__all__ = ["one_line"]


def one_line(err: BaseException) -> str:
    """The first line of an error message, without torch's advice to load pickles with weights_only=False."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "weights_only" not in line:
            return line
    for line in lines:
        kept = " ".join(s for s in re.split(r"(?<=\.)\s+", line) if "weights_only" not in s)
        if kept:
            return kept
    return type(err).__name__
