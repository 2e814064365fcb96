"""Checkpoint families `xclip-hf convert --from NAME` reads: name -> converter (checkpoint, output_dir, **options)."""

from __future__ import annotations

import functools

__all__ = ["FAMILIES", "DEFAULT_FAMILY", "converter"]

DEFAULT_FAMILY = "xclip"
# name -> (module, function, fixed keyword arguments); imported on first use
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "xclip": ("convert", "convert_original_checkpoint", {}),
    "openvclip": ("openvclip", "convert_successor_checkpoint", {"family": "openvclip"}),
    "froster": ("openvclip", "convert_successor_checkpoint", {"family": "froster"}),
}


def converter(name: str):
    """The conversion function of family `name` (ValueError naming the known families otherwise)."""
    import importlib

    if name not in FAMILIES:
        raise ValueError(f"unknown checkpoint family {name!r}; known: {', '.join(FAMILIES)}")
    module, function, fixed = FAMILIES[name]
    convert = getattr(importlib.import_module(f".{module}", __package__), function)
    return functools.partial(convert, **fixed) if fixed else convert
