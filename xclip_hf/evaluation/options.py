"""The options every evaluation protocol shares (`EvaluationOptions`): the same names and defaults everywhere."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["EvaluationOptions", "evaluation_options", "check_unused", "text_settings"]


@dataclass(frozen=True)
class EvaluationOptions:
    """The options shared by every evaluation protocol.

    Each protocol takes ``options=EvaluationOptions(...)`` and/or the same names as keyword arguments; a keyword
    overrides the field. An option a protocol cannot honour is a ValueError unless left at its default.
    """

    output_dir: Any = None  # report.json/.md (and predictions/, resumable) go here
    video_root: Any = None  # folder the annotation paths are relative to (default: the file's folder)
    processor: Any = None  # an XClipProcessor to use instead of the model's
    num_temporal_clips: int = 1  # temporal views per video (paper: 4)
    num_spatial_crops: int = 1  # spatial crops per view (paper: 3)
    num_frames: int | None = None  # frames per view (default: the model's)
    template: Any = "{}"  # text template (the paper's bare label), or a list of them (a prompt ensemble)
    descriptions: Any = None  # JSON file (or mapping) of class name -> phrasings replacing the name (ensembled)
    batch_size: int = 1  # chunks per model forward
    on_bad_video: str = "skip"  # "skip" (list it in the report) or "raise"
    device: Any = None  # None: the pipeline's default (this process's device under torchrun)
    dtype: Any = None  # None: the model's
    progress: bool | None = None  # None: tqdm's default, False: hidden
    paper_figures: Any = None  # paper_figures.json (default: the shipped one)
    dataset: str | None = None  # dataset key of the paper figure (default: from the label list)
    shard_size: int = 64  # videos per committed predictions shard (the unit of resumption)
    num_workers: int = 0  # processes decoding videos while the model runs (same scores as 0)

    def __post_init__(self):
        from .runner import ON_BAD_VIDEO

        if self.on_bad_video not in ON_BAD_VIDEO:
            raise ValueError(f"on_bad_video must be one of {ON_BAD_VIDEO}, got {self.on_bad_video!r}")
        if isinstance(self.template, list):  # a frozen, hashable value
            object.__setattr__(self, "template", tuple(self.template))


DEFAULTS = {f.name: f.default for f in dataclasses.fields(EvaluationOptions)}
FIELDS = tuple(DEFAULTS)


def evaluation_options(options: EvaluationOptions | None = None, overrides: dict | None = None) -> EvaluationOptions:
    """`options` (default: all defaults) with `overrides` applied; an override that is not a field is a TypeError."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown evaluation option(s) {', '.join(map(repr, unknown))}; the options are: "
                        f"{', '.join(FIELDS)}")
    if options is not None and not isinstance(options, EvaluationOptions):
        raise TypeError(f"options must be an EvaluationOptions, got {type(options).__name__}")
    return dataclasses.replace(options or EvaluationOptions(), **overrides)


def check_unused(options: EvaluationOptions, protocol: str, names: tuple[str, ...], why: str) -> None:
    """ValueError if any of `names` is set to other than its default: `protocol` cannot honour it (`why`)."""
    given = [name for name in names if getattr(options, name) != DEFAULTS[name]]
    if given:
        raise ValueError(f"{protocol}: {', '.join(given)} do{'es' if len(given) == 1 else ''} not apply ({why})")


def text_settings(options: EvaluationOptions) -> dict:
    """A report's record of how class names became texts: the template(s), and the descriptions file if any."""
    described = options.descriptions
    if described is None:
        return {"template": options.template}
    return {"template": options.template,
            "descriptions": str(described) if isinstance(described, (str, os.PathLike)) else "(a mapping)"}
