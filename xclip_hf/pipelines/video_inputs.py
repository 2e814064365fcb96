"""Remote videos for the zero-shot pipeline: an http(s) URL becomes a local temporary file, removed after use."""

from __future__ import annotations

import contextlib
import os
import tempfile

from ..video.fetch import FetchHints, fetch_video

__all__ = ["is_url", "download_video", "local_video", "DEFAULT_URL_TIMEOUT", "MAX_URL_BYTES"]

DEFAULT_URL_TIMEOUT = 60.0  # seconds for a whole download (lookup, connection, headers and body)
MAX_URL_BYTES = 4 * 10**9  # a download stops here: an endless or huge body cannot fill the disk
LIBRARY_HINTS = FetchHints(time="pass a larger url_timeout= to the pipeline, or download the file and pass its path")


def is_url(value) -> bool:
    """True for strings that start with http:// or https://."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def download_video(url: str, timeout: float = DEFAULT_URL_TIMEOUT) -> str:
    """``url`` downloaded to a temporary file (the caller deletes it) within ``timeout`` seconds overall and
    `MAX_URL_BYTES`; any address (the caller chose the URL), errors naming the URL."""
    return fetch_video(url, tempfile.gettempdir(), max_bytes=MAX_URL_BYTES, timeout=timeout, allow_private=True,
                       hints=LIBRARY_HINTS)


@contextlib.contextmanager
def local_video(data, timeout: float = DEFAULT_URL_TIMEOUT):
    """``data`` itself, or for an http(s) URL the path of a temporary download, deleted on exit."""
    if not is_url(data):
        yield data
        return
    path = download_video(data, timeout=timeout)
    try:
        yield path
    finally:
        if os.path.exists(path):
            os.unlink(path)
