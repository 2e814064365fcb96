"""What the exporters share: their output folder's check and a quiet context for the converters' chatter."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

__all__ = ["check_output", "quiet"]


@contextlib.contextmanager
def quiet():
    """Silence the exporters' progress prints, warnings and advice; errors still raise."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_output(output_dir) -> str:
    """`output_dir` as a string; ValueError when it is a file or a folder that is not empty."""
    output_dir = os.fspath(output_dir)
    if os.path.isfile(output_dir):
        raise ValueError(f"output {output_dir!r} is a file; give a new (or empty) folder for the exported model")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ValueError(f"output folder {output_dir!r} is not empty; give a new (or empty) folder")
    return output_dir
