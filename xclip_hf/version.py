"""The code version, in one place: for reports (`code_version()`) and job records (`package_version()`)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess

__all__ = ["package_version", "checkout_root", "git_commit", "code_version"]

_DISTRIBUTION = "xclip_hf"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _same_file(a, b) -> bool:
    """Whether two paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def package_version() -> str:
    """xclip_hf's version: the installed distribution's, when it installed this copy; else `__version__`."""
    from . import __version__

    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return __version__
    installed = dist.locate_file(os.path.join("xclip_hf", "__init__.py"))
    return dist.version if _same_file(installed, os.path.join(_PACKAGE_DIR, "__init__.py")) else __version__


def checkout_root() -> str | None:
    """The git checkout this package is part of (the folder above it holds `.git`), or None."""
    root = os.path.dirname(_PACKAGE_DIR)
    return root if os.path.exists(os.path.join(root, ".git")) else None


def git_commit() -> str | None:
    """`git describe --always --dirty=+dirty` of the checkout holding the package; None outside one or without git."""
    root, git = checkout_root(), shutil.which("git")
    if root is None or git is None:
        return None
    try:
        out = subprocess.run([git, "-C", root, "describe", "--always", "--dirty=+dirty"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def code_version() -> dict:
    """{"xclip_hf": the version, "git": the commit (`+dirty` for uncommitted changes) or None} for reports."""
    return {"xclip_hf": package_version(), "git": git_commit()}
