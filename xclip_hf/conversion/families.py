"""Checkpoint families `xclip-hf convert --from NAME` reads: name -> converter, imported on use (no torch here).

Add a family with one `Family(...)` line in `FAMILIES` (or `register_family` from its own module). A converter is
called as ``convert(checkpoint, output_dir, bpe=, labels=, template=, num_frames=, trust_pickle=, progress=,
**options)`` with `options` among the family's `options`, and returns a `ConvertedCheckpoint`.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

__all__ = ["Family", "FAMILIES", "DEFAULT_FAMILY", "register_family", "get_family", "convert_checkpoint"]


@dataclass(frozen=True)
class Family:
    """A checkpoint family: its converter ("module:function" under xclip_hf.conversion), template, extra options."""

    name: str
    converter: str
    summary: str
    default_template: str = "{}"
    options: tuple[str, ...] = ()  # keyword options beyond the common ones, e.g. ("clip",)
    required: tuple[str, ...] = ()  # those of `options` the family cannot convert without
    fixed: tuple[tuple[str, str], ...] = ()  # keyword arguments always passed, e.g. (("family", "froster"),)

    def load(self):
        """The converter function (its module imported now), with the family's fixed arguments bound."""
        module, _, function = self.converter.partition(":")
        convert = getattr(importlib.import_module(f"{__package__}.{module}"), function)
        return functools.partial(convert, **dict(self.fixed)) if self.fixed else convert


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("xclip", "convert:convert_original_checkpoint", "X-CLIP, the original code's .pth (microsoft/VideoX)"),
    Family("vificlip", "vificlip:convert_vificlip_checkpoint",
           "ViFi-CLIP .pth (muzairkhattak/ViFi-CLIP); needs --clip, the CLIP it was fine-tuned from",
           "a photo of a {}.", ("clip",), ("clip",)),
    Family("openvclip", "openvclip:convert_successor_checkpoint",
           "Open-VCLIP PySlowFast .pth (wengzejia1/Open-VCLIP); --clip with --patching-ratio interpolates the weights",
           options=("clip", "patching_ratio"), fixed=(("family", "openvclip"),)),
    Family("froster", "openvclip:convert_successor_checkpoint",
           "FROSTER PySlowFast .pth (Visual-AI/FROSTER); --clip with --patching-ratio interpolates the weights",
           options=("clip", "patching_ratio"), fixed=(("family", "froster"),)),
)}
DEFAULT_FAMILY = "xclip"


def register_family(family: Family) -> Family:
    """Add `family` to `FAMILIES` (ValueError if the name is taken by another converter)."""
    known = FAMILIES.get(family.name)
    if known is not None and known != family:
        raise ValueError(f"checkpoint family {family.name!r} is already registered ({known.converter})")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The family called `name`; ValueError naming the known ones otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown checkpoint family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def convert_checkpoint(family: str, checkpoint, output_dir, *, template: str | None = None, **options):
    """Convert `checkpoint` of `family` to a model directory (`template` None: the family's default)."""
    spec = get_family(family)
    extra = {k: v for k, v in options.items() if k not in _COMMON}
    unknown = sorted(set(extra) - set(spec.options))
    if unknown:
        raise ValueError(f"checkpoint family {family!r} takes no option {', '.join(unknown)} "
                         f"(its options: {', '.join(spec.options) or 'none beyond the common ones'})")
    return spec.load()(checkpoint, output_dir, template=spec.default_template if template is None else template,
                       **options)


_COMMON = ("bpe", "labels", "num_frames", "trust_pickle", "progress")
