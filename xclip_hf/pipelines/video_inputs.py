"""Remote videos for the zero-shot pipeline: an http(s) URL becomes a local temporary file, removed after use."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["is_url", "download_video", "local_video"]

DEFAULT_URL_TIMEOUT = 10.0


def is_url(value) -> bool:
    """True for strings that start with http:// or https://."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def download_video(url: str, timeout: float = DEFAULT_URL_TIMEOUT) -> str:
    """Download ``url`` to a temporary file (the caller deletes it); a clear error naming the URL when unreachable."""
    suffix = os.path.splitext(urllib.parse.urlparse(url).path)[1] or ".mp4"
    handle, path = tempfile.mkstemp(prefix="xclip_video_", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError) as err:
        os.unlink(path)
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"Could not download video {url!r} (timeout {timeout:g} s): {reason}. "
            "Check the address and your network, or download the file and pass its local path."
        ) from err
    return path


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
