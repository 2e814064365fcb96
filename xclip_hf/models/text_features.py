"""Text features of label sets and queries: validation, a label-embedding cache, and the one text-encoding path."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from .fingerprint import weights_key
from .prompt_ensembles import ensemble_text_features, phrasings_for, templates_of

TEXT_FEATURE_CHUNK = 512  # texts encoded per text-encoder forward (bounds memory for very large label sets)

logger = logging.getLogger(__name__)

__all__ = ["LabelSet", "LabelEmbeddingCache", "TextFeatureEncoder", "build_label_set", "text_weights_fingerprint",
           "label_cache_key", "TEXT_FEATURE_CHUNK",
           "tokenizer_key"]


@dataclass(eq=False)
class LabelSet:
    """The validated candidate labels of one call and the texts (template applied) fed to the text encoder."""

    labels: tuple[str, ...]
    template: str | tuple[str, ...]  # one template, or several (a prompt ensemble)
    phrasings: tuple[tuple[str, ...], ...] | None = None  # per label, from class descriptions: replace the names
    texts: tuple[str, ...] = field(init=False)  # every label's texts (phrasings x templates), in label order
    counts: tuple[int, ...] = field(init=False)  # how many texts each label has

    def __post_init__(self):
        templates = (self.template,) if isinstance(self.template, str) else tuple(self.template)
        names = self.phrasings if self.phrasings is not None else tuple((label,) for label in self.labels)
        groups = [tuple(template.format(name) for name in group for template in templates) for group in names]
        self.texts = tuple(text for group in groups for text in group)
        self.counts = tuple(len(group) for group in groups)

    def __len__(self):
        return len(self.labels)

    @property
    def is_ensemble(self) -> bool:
        """True when some label has several texts (templates x phrasings) to ensemble."""
        return any(count != 1 for count in self.counts)

    def grouped(self, rows) -> list[tuple]:
        """``rows`` (one per text) split into one tuple per label."""
        rows = iter(rows)
        return [tuple(itertools.islice(rows, count)) for count in self.counts]


def build_label_set(candidate_labels, hypothesis_template="{}", tokenizer=None, descriptions=None) -> LabelSet:
    """Validate ``candidate_labels`` (non-empty strings, no duplicates, also after tokenizing) and the template(s).

    A single string is read as a comma-separated list, as in transformers' zero-shot-classification pipeline.
    ``hypothesis_template``: one template or a list (a prompt ensemble); ``descriptions``: a JSON path or a mapping
    of class name -> phrasings that replace the names (see `prompt_ensembles`).
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
    templates = templates_of(hypothesis_template)
    phrasings = None if descriptions is None else phrasings_for(candidate_labels, descriptions)
    label_set = LabelSet(labels=tuple(candidate_labels),
                         template=hypothesis_template if isinstance(hypothesis_template, str) else templates,
                         phrasings=phrasings)
    if tokenizer is not None:
        from .processing_xclip import check_label_tokens

        ids = tokenizer(list(label_set.texts), add_special_tokens=True, verbose=False)["input_ids"]
        if label_set.is_ensemble:  # labels clash when all their texts do
            ids = label_set.grouped([tuple(row) for row in ids])
        check_label_tokens(label_set.labels, ids)
    return label_set


def text_weights_fingerprint(model: torch.nn.Module) -> tuple:
    """Key part for the text branch's weights (see `fingerprint.weights_key`)."""
    return weights_key(getattr(model, "text_model", model))[0]


def tokenizer_key(tokenizer) -> tuple:
    """The tokenizer object and the settings that change its token ids (vocabulary, length limit, special tokens)."""
    if tokenizer is None:
        return (None,)
    settings = tuple(
        getattr(tokenizer, name, None)
        for name in ("name_or_path", "model_max_length", "padding_side", "truncation_side", "pad_token_id",
                     "bos_token_id", "eos_token_id", "unk_token_id")
    )
    return (id(tokenizer), len(tokenizer)) + settings


_SCALARS = (int, float, str, bool, type(None))


def text_config_key(model) -> tuple:
    """Every scalar setting of the text config plus the joint projection size."""
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None)
    items = vars(text_config).items() if text_config is not None else ()
    return (getattr(config, "projection_dim", None),) + tuple(
        sorted((k, v) for k, v in items if isinstance(v, _SCALARS))
    )


def label_cache_key(label_set: LabelSet, tokenizer, model) -> tuple[tuple, tuple]:
    """``(key, keepalive)`` for the features of ``label_set``; ``keepalive`` must live as long as the entry."""
    weights, storages = weights_key(getattr(model, "text_model", model))
    texts = (label_set.texts, label_set.counts) if label_set.is_ensemble else label_set.texts
    return (texts, tokenizer_key(tokenizer), text_config_key(model), weights), (tokenizer, storages)


class LabelEmbeddingCache:
    """Bounded, thread-safe LRU map from a `label_cache_key` to text features (K, D), handed out as copies."""

    def __init__(self, max_entries: int = 4):
        if not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 0:
            raise ValueError(f"label_cache_size must be a non-negative integer, got {max_entries!r}")
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()  # key -> (features, keepalive)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        with self._lock:
            return len(self._entries)

    def clear(self):
        """Drop every cached entry."""
        with self._lock:
            self._entries.clear()

    def get(self, key):
        """A copy of the cached features for ``key`` (marked most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            features = entry[0]
        return features.clone()

    def put(self, key, value, keepalive=()):
        """Store a copy of ``value`` under ``key``, evicting LRU entries and those of replaced weights."""
        if self.max_entries == 0:
            return
        entry = (value.detach().clone(), keepalive)
        storages = _storage_ids(keepalive)
        with self._lock:
            if storages:
                for old_key in [k for k, (_, keep) in self._entries.items() if _storage_ids(keep) != storages]:
                    del self._entries[old_key]  # features of replaced weights: stale, and they pin old memory
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_compute(self, key, compute, keepalive=()):
        """The features for ``key``: a cached copy, or ``compute()`` (stored, and returned as the caller's own)."""
        cached = self.get(key)
        if cached is not None:
            return cached
        features = compute()
        self.put(key, features, keepalive)
        return features


def _storage_ids(keepalive) -> tuple:
    """Addresses of the weight storages held by an entry (its second keepalive item), or ()."""
    if len(keepalive) < 2:
        return ()
    return tuple(storage.data_ptr() for storage in keepalive[1])


def max_text_length(model, tokenizer) -> int:
    """Tokens the text encoder accepts: its position embeddings (77 for CLIP), capped by the tokenizer's limit."""
    length = model.config.text_config.max_position_embeddings
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < length:
        length = tok_max
    return length


class TextFeatureEncoder:
    """Unprompted text features c (Eq. 1) of a label set through one cache (zero-shot pipeline and search)."""

    def __init__(self, model, processor, cache_size: int = 4):
        self.model = model
        self.processor = processor
        self.cache = LabelEmbeddingCache(cache_size)
        self.calls = 0

    def features(self, label_set: LabelSet) -> torch.Tensor:
        """(K, D) features of `label_set`: a cached copy, or one text-encoder run in chunks of 512 texts."""
        key, keepalive = label_cache_key(label_set, self.processor.tokenizer, self.model)
        return self.cache.get_or_compute(key, lambda: self._encode_label_set(label_set), keepalive)

    def _encode_label_set(self, label_set: LabelSet) -> torch.Tensor:
        """(K, D) features: one per label, or each label's texts ensembled (`prompt_ensembles`)."""
        if not label_set.is_ensemble:
            return self._encode(label_set.texts)
        return ensemble_text_features(self._encode(label_set.texts, distinct=False), label_set.counts)

    def _encode(self, texts, distinct: bool = True) -> torch.Tensor:
        self.calls += 1
        model = self.model
        max_length = max_text_length(model, self.processor.tokenizer)
        device = model.device
        chunks = []
        for start in range(0, len(texts), TEXT_FEATURE_CHUNK):
            tokens = self.processor.tokenize_labels(list(texts[start:start + TEXT_FEATURE_CHUNK]), padding=True,
                                                    max_length=max_length, return_tensors="pt",
                                                    vocab_size=model.config.text_config.vocab_size,
                                                    distinct=distinct)
            out = model.get_text_features(input_ids=tokens["input_ids"].to(device),
                                          attention_mask=tokens["attention_mask"].to(device))
            chunks.append(out if isinstance(out, torch.Tensor) else out.pooler_output)
        return torch.cat(chunks, dim=0)
