"""The videos of an embedding run: explicit paths, directories (searched recursively), globs and list files."""

from __future__ import annotations

import glob
import os
import re

__all__ = ["VIDEO_EXTENSIONS", "expand_inputs", "read_list_file", "is_url"]

# extensions picked up when a directory is given (explicit paths and list-file entries are taken as they are)
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts",
                    ".ogv")
_GLOB_CHARS = set("*?[")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(entry) -> bool:
    """Whether an input is a URL (``scheme://...``: http(s), file, s3 and the other fsspec protocols)."""
    return isinstance(entry, str) and _URL.match(entry) is not None


def read_list_file(list_file) -> list[str]:
    """Paths from a UTF-8 list file, one per line exactly as written (BOM dropped); blank and '#' lines skipped."""
    list_file = os.fspath(list_file)
    if not os.path.isfile(list_file):
        raise ValueError(f"list file {list_file!r} does not exist")
    with open(list_file, encoding="utf-8-sig") as f:  # a BOM is dropped; "\r\n" and "\r" end lines too
        lines = [line.rstrip("\n") for line in f]
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _directory_videos(directory: str) -> list[str]:
    """Video files under ``directory``: recursive, sorted, symlinks followed, each directory once, no hidden ones."""
    found, seen = [], set()
    for root, dirs, files in os.walk(directory, followlinks=True):
        info = os.stat(root)
        if (info.st_dev, info.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(VIDEO_EXTENSIONS))
    return found


def expand_inputs(videos=(), list_file=None) -> list[str]:
    """One ordered list of video paths, each once, from files, directories, globs (``**`` recursive) and other paths.

    A path that is not a directory or a pattern is kept as given (a missing file becomes an error row), and so is a
    URL; an empty directory, a pattern matching nothing, or an empty result is an error naming it.
    """
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    entries = [os.fspath(v) for v in videos]
    if list_file is not None:
        entries += read_list_file(list_file)
    paths: list[str] = []
    for entry in entries:
        if is_url(entry):
            paths.append(entry)
        elif os.path.isdir(entry):
            found = _directory_videos(entry)
            if not found:
                raise ValueError(f"directory {entry!r} holds no video file (extensions: {', '.join(VIDEO_EXTENSIONS)})")
            paths.extend(found)
        elif _GLOB_CHARS & set(entry) and not os.path.exists(entry):
            found = sorted(p for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
            if not found:
                raise ValueError(f"pattern {entry!r} matches no file")
            paths.extend(found)
        else:
            paths.append(entry)
    if not paths:
        raise ValueError("no input videos: pass video files, directories or globs, or a list file (one path per line)")
    seen, unique = set(), []
    for path in paths:
        key = path if is_url(path) else os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
