"""A local web app (Gradio, ``pip install -e ".[app]"``): classify a video against typed labels, search an index."""

from __future__ import annotations

import importlib

__all__ = ["build_app", "launch_app", "AppService", "AppLimits", "AppAccess", "parse_labels"]

_EXPORTS = {"build_app": "ui", "launch_app": "ui", "AppService": "service", "AppLimits": "service",
            "AppAccess": "access", "parse_labels": "service"}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _EXPORTS[name] == "ui":
        _require_gradio()
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def _require_gradio() -> None:
    """A clear error when the optional extra is not installed."""
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise ImportError('the web app needs gradio: pip install -e ".[app]" (or pip install gradio)') from err
