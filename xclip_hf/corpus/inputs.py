"""The videos of an embedding run: explicit paths, directories (searched recursively), globs and list files."""

from __future__ import annotations

import glob
import os

__all__ = ["VIDEO_EXTENSIONS", "expand_inputs", "read_list_file"]

# extensions picked up when a directory is given (explicit paths and list-file entries are taken as they are)
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts",
                    ".ogv")
_GLOB_CHARS = set("*?[")


def read_list_file(list_file) -> list[str]:
    """Paths from a UTF-8 text file, one per line, each exactly as written minus its line ending (leading and
    trailing spaces are part of the name; a leading BOM is dropped). Lines that are empty or white space only are
    skipped, and so are comments: lines whose first character is '#' (write a path starting with '#' as ./#name)."""
    list_file = os.fspath(list_file)
    if not os.path.isfile(list_file):
        raise ValueError(f"list file {list_file!r} does not exist")
    with open(list_file, encoding="utf-8-sig") as f:  # a BOM is dropped; "\r\n" and "\r" end lines too
        lines = [line.rstrip("\n") for line in f]
    return [line for line in lines if line.strip() and not line.startswith("#")]


def _directory_videos(directory: str) -> list[str]:
    """Video files under ``directory``, recursively and sorted, following symlinked directories; a directory
    reached twice (a symlink loop, or two links to one place) is searched once; hidden directories are skipped."""
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
    """One ordered list of video paths, each once (first occurrence kept; identity is the absolute path).

    A directory contributes its video files (by extension, recursively, sorted); a pattern with ``*?[`` that is
    not an existing path is expanded with ``glob`` (``**`` recursive); any other entry is kept as given, so that a
    missing or unreadable file becomes an error row instead of vanishing. An empty directory or a pattern that
    matches nothing is an error naming it, as is an empty result.
    """
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    entries = [os.fspath(v) for v in videos]
    if list_file is not None:
        entries += read_list_file(list_file)
    paths: list[str] = []
    for entry in entries:
        if os.path.isdir(entry):
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
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique
