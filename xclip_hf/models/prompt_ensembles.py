"""Prompt ensembles: several templates and per-class descriptions per label, ensembled in text-feature space.

Recipe (CLIP's prompt-ensembling notebook): each text's features are L2-normalised, averaged over a label's texts,
and the mean re-normalised. X-CLIP's prompt generator (Eq. 10) then runs on the ensembled feature, which must
therefore live where a single text's feature lives: its LayerNorm-ed residual branch adds a prompt whose size does not
follow the input's, so a unit vector would change the weight of the prompt against c. The ensemble is thus the
re-normalised mean direction scaled by the mean norm of the label's text features; a label with one text keeps its
features unchanged, so a one-template ensemble is exactly the single template.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import torch

__all__ = ["check_template", "templates_of", "load_class_descriptions", "check_class_descriptions",
           "phrasings_for", "ensemble_text_features"]


def check_template(template) -> str:
    """A valid hypothesis template (a string with one ``{}`` placeholder for the label), else a clear error."""
    if not isinstance(template, str):
        raise TypeError(f"hypothesis_template must be a string with one '{{}}', got {template!r}")
    try:
        probe = template.format("\x00")
    except (IndexError, KeyError, ValueError) as err:
        raise ValueError(
            f"hypothesis_template {template!r} is not a valid template with one '{{}}' placeholder ({err})."
        ) from None
    if "\x00" not in probe:
        raise ValueError(
            f"hypothesis_template {template!r} has no '{{}}' placeholder for the label; "
            "use '{}' (the paper's default) or e.g. 'a video of {}'."
        )
    return template


def templates_of(hypothesis_template) -> tuple[str, ...]:
    """The templates of ``hypothesis_template``: one string, or a non-empty list/tuple of distinct templates."""
    if isinstance(hypothesis_template, str):
        return (check_template(hypothesis_template),)
    if not isinstance(hypothesis_template, (list, tuple)):
        raise TypeError(f"hypothesis_template must be a string with one '{{}}' or a list of such strings, got "
                        f"{hypothesis_template!r}")
    if not hypothesis_template:
        raise ValueError("hypothesis_template is an empty list: give at least one template, e.g. ['a video of {}.'].")
    templates = tuple(check_template(t) for t in hypothesis_template)
    repeated = sorted({t for t in templates if templates.count(t) > 1})
    if repeated:
        raise ValueError(f"hypothesis_template lists {repeated!r} more than once; each template must appear once "
                         "(a repeat would silently weight it twice in the ensemble).")
    return templates


def check_class_descriptions(descriptions, source: str = "class_descriptions") -> dict[str, tuple[str, ...]]:
    """``descriptions`` (class name -> non-empty list of distinct phrasings) validated; errors name ``source``."""
    if not isinstance(descriptions, Mapping):
        raise ValueError(f"{source}: class descriptions must be a JSON object mapping each class name to a list of "
                         f"phrasings, got {type(descriptions).__name__}")
    checked = {}
    for name, phrasings in descriptions.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{source}: class name {name!r} must be a non-empty string")
        if not isinstance(phrasings, (list, tuple)):
            raise ValueError(f"{source}: class {name!r} must map to a list of strings (its phrasings), got "
                             f"{type(phrasings).__name__} {phrasings!r}")
        if not phrasings:
            raise ValueError(f"{source}: class {name!r} has an empty list of phrasings; give at least one")
        for index, phrasing in enumerate(phrasings):
            if not isinstance(phrasing, str) or not phrasing.strip():
                raise ValueError(f"{source}: class {name!r}, phrasing {index} is {phrasing!r}; every phrasing must "
                                 "be a non-empty string")
        repeated = sorted({p for p in phrasings if phrasings.count(p) > 1})
        if repeated:
            raise ValueError(f"{source}: class {name!r} lists {repeated!r} more than once")
        checked[name] = tuple(phrasings)
    return checked


def load_class_descriptions(path) -> dict[str, tuple[str, ...]]:
    """Read and validate a JSON file of class name -> list of phrasings; errors name the file (and the class)."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as err:  # a ValueError: a bad argument, as a malformed file is
        raise ValueError(f"class descriptions file {source!r} cannot be read: {err.strerror or err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"class descriptions file {source!r} is not valid JSON: {err}") from None
    return check_class_descriptions(data, source=source)


def phrasings_for(labels, descriptions) -> tuple[tuple[str, ...], ...]:
    """Each label's phrasings from ``descriptions`` (a JSON path or a mapping); a label without any is an error."""
    if isinstance(descriptions, (str, os.PathLike)):
        source, table = os.fspath(descriptions), load_class_descriptions(descriptions)
    else:
        source, table = "class_descriptions", check_class_descriptions(descriptions)
    missing = [label for label in labels if label not in table]
    if missing:
        raise ValueError(f"{source}: no descriptions for class{'es' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing[:10]))}{' ...' if len(missing) > 10 else ''}; "
                         "every candidate label needs a list of phrasings")
    return tuple(table[label] for label in labels)


def ensemble_text_features(features: torch.Tensor, counts) -> torch.Tensor:
    """(sum(counts), D) text features -> (len(counts), D): per label, normalise(mean(normalise(c_i))) * mean|c_i|."""
    counts = [int(c) for c in counts]
    if sum(counts) != features.shape[0] or min(counts, default=1) < 1:
        raise ValueError(f"text features of shape {tuple(features.shape)} do not split into groups of {counts}")
    if all(c == 1 for c in counts):
        return features
    rows = []
    for group in torch.split(features, counts):
        if group.shape[0] == 1:
            rows.append(group[0])
            continue
        norms = group.norm(dim=-1, keepdim=True)
        direction = torch.nn.functional.normalize((group / norms).mean(0), dim=-1)
        rows.append(direction * norms.mean())
    return torch.stack(rows)
