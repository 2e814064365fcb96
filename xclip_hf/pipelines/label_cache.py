"""Candidate-label handling for zero-shot video classification: validation and a label-embedding cache.

X-CLIP scores a video against K class texts (paper Sec. 3.1, Eq. 3). The text encoder's output for a label set
does not depend on the video: only the video-specific prompt generator (Sec. 3.3, Eq. 10) does. So the projected,
unprompted text features of a label set are computed once and reused for every video (and every call) with the
same labels, template and tokenizer, while the prompt generator still runs per video inside the model.

Cache invalidation ("when the model's weights change") uses a cheap fingerprint of the text branch: for every
parameter and buffer that the text features depend on, its storage pointer, dtype, device and version counter
(``tensor._version``). The version counter is bumped by every in-place update made through the tensor itself
(optimizer steps, ``load_state_dict``'s ``copy_``, ``with torch.no_grad(): p.mul_(...)``); ``model.to(...)`` and
reassigning ``param.data`` change the storage pointer. The model's ``training`` flag is part of the key too
(dropout). Not seen: writes through ``param.data.<op>_()`` (``.data`` has its own version counter); call
``pipeline.clear_label_cache()`` after such writes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ..fingerprint import weights_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["LabelSet", "LabelEmbeddingCache", "build_label_set", "text_weights_fingerprint"]


@dataclass(eq=False)
class LabelSet:
    """The validated candidate labels of one call and the texts (template applied) fed to the text encoder."""

    labels: tuple[str, ...]
    template: str
    texts: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        self.texts = tuple(self.template.format(label) for label in self.labels)

    def __len__(self):
        return len(self.labels)


def build_label_set(candidate_labels, hypothesis_template: str = "{}") -> LabelSet:
    """Validate ``candidate_labels`` (non-empty, strings, no duplicates) and the template; raise naming the culprit.

    Duplicate labels raise a ``ValueError`` rather than being merged: a softmax over a repeated label would split
    its probability, and silently dropping one would change the length and order of the output.
    A single string is read as a comma-separated list (``"running, swimming"``), as in transformers'
    zero-shot-classification pipeline.
    """
    if candidate_labels is None:
        raise ValueError("zero-shot-video-classification needs `candidate_labels`, e.g. candidate_labels=['running', 'swimming'].")
    if isinstance(candidate_labels, str):
        candidate_labels = [part.strip() for part in candidate_labels.split(",")]
    if not isinstance(candidate_labels, (list, tuple)):
        try:
            candidate_labels = list(candidate_labels)
        except TypeError:
            raise TypeError(
                f"candidate_labels must be a list of strings, got {type(candidate_labels).__name__}: {candidate_labels!r}"
            ) from None
    if len(candidate_labels) == 0:
        raise ValueError("candidate_labels is empty: pass at least one label (two or more for a meaningful softmax).")
    for index, label in enumerate(candidate_labels):
        if not isinstance(label, str):
            raise TypeError(
                f"candidate_labels[{index}] is {label!r} of type {type(label).__name__}; every label must be a string."
            )
        if not label.strip():
            raise ValueError(f"candidate_labels[{index}] is an empty string {label!r}; every label must have text.")
    seen, duplicates = set(), []
    for label in candidate_labels:
        if label in seen and label not in duplicates:
            duplicates.append(label)
        seen.add(label)
    if duplicates:
        raise ValueError(
            f"candidate_labels contains duplicates: {duplicates!r}. Remove them (each label must appear once; "
            "duplicates would share, and so split, their probability)."
        )
    if not isinstance(hypothesis_template, str):
        raise TypeError(f"hypothesis_template must be a string with one '{{}}', got {hypothesis_template!r}")
    try:
        probe = hypothesis_template.format("\x00")
    except (IndexError, KeyError, ValueError) as err:
        raise ValueError(
            f"hypothesis_template {hypothesis_template!r} is not a valid template with one '{{}}' placeholder ({err})."
        ) from None
    if "\x00" not in probe:
        raise ValueError(
            f"hypothesis_template {hypothesis_template!r} has no '{{}}' placeholder for the label; "
            "use '{}' (the paper's default) or e.g. 'a video of {}'."
        )
    return LabelSet(labels=tuple(candidate_labels), template=hypothesis_template)


def text_weights_fingerprint(model: torch.nn.Module) -> tuple:
    """Cheap key that changes when the text branch's weights change (see `weights_fingerprint`), plus train/eval."""
    return (bool(model.training), weights_fingerprint(getattr(model, "text_model", model)))


class LabelEmbeddingCache:
    """Bounded LRU map from (label texts, tokenizer, text-weight fingerprint) to projected text features (K, D)."""

    def __init__(self, max_entries: int = 4):
        if not isinstance(max_entries, int) or max_entries < 0:
            raise ValueError(f"label_cache_size must be a non-negative integer, got {max_entries!r}")
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._entries)

    def clear(self):
        """Drop every cached entry."""
        self._entries.clear()

    def get(self, key):
        """The cached features for ``key`` (marked most recently used), or None."""
        if key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]
        self.misses += 1
        return None

    def put(self, key, value):
        """Store ``value`` under ``key``, evicting the least recently used entries beyond ``max_entries``."""
        if self.max_entries == 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def tokenizer_key(tokenizer) -> tuple:
    """Identify a tokenizer for the cache key: the object itself, its name and vocabulary size."""
    return (id(tokenizer), getattr(tokenizer, "name_or_path", None), len(tokenizer) if tokenizer is not None else 0)
