"""Keeping a C library's log lines off the terminal: file descriptor 2 captured around its calls."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

__all__ = ["Fd2Capture"]


class Fd2Capture:
    """fd 2 captured around calls into a C library, keeping its log lines (``own_line``) off the terminal.

    Shared by threads (reference-counted); lines that are not the library's are written back afterwards (delayed,
    not lost); each call gets the lines written while it ran, for its error message.
    """

    def __init__(self, own_line: re.Pattern):
        self._own_line = own_line
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = self._file = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self):
        """A child forked while a thread was inside a decord call: give the child its own fd 2 back."""
        self._lock = threading.Lock()
        if self._depth:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._file.close()
            self._depth, self._saved, self._file = 0, None, None

    @contextlib.contextmanager
    def captured(self, sink: list):
        """Capture fd 2 in the block; append what was written meanwhile to ``sink``."""
        start = self._enter()
        try:
            yield
        finally:
            if start is not None:
                sink.append(self._leave(start))

    def _enter(self):
        with self._lock:
            if self._depth == 0:
                try:
                    sys.stderr.flush()
                    self._saved = os.dup(2)
                except (OSError, ValueError, AttributeError):  # no usable fd 2 (e.g. some embedded interpreters)
                    return None
                self._file = tempfile.TemporaryFile()
                os.dup2(self._file.fileno(), 2)
            self._depth += 1
            return os.lseek(2, 0, os.SEEK_END)

    def _leave(self, start: int) -> str:
        with self._lock:
            end = os.lseek(2, 0, os.SEEK_END)
            mine = os.pread(self._file.fileno(), end - start, start).decode("utf-8", "replace")
            self._depth -= 1
            if self._depth == 0:
                os.dup2(self._saved, 2)
                os.close(self._saved)
                everything = os.pread(self._file.fileno(), end, 0).decode("utf-8", "replace")
                self._file.close()
                others = [line for line in everything.splitlines(keepends=True) if not self._own_line.match(line)]
                if others:
                    os.write(2, "".join(others).encode("utf-8", "replace"))
            return mine
