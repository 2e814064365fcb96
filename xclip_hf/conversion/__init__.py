"""Checkpoints of the original X-CLIP code: reading, converting (`convert_original_checkpoint`) and exporting.

The names below are imported on first use (PEP 562): `xclip_hf.conversion.clip_bpe` stays free of torch.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it (imported on first access)
_EXPORTS = {
    **dict.fromkeys(["ConvertedCheckpoint", "convert_original_checkpoint", "original_video_processor"], "convert"),
    **dict.fromkeys(["export_original", "load_original", "read_original"], "original"),
    "build_tokenizer_from_bpe": "clip_bpe",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
