"""Few-shot and zero-shot data protocols (paper Sec. 4.3-4.4), shared by training and evaluation."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

__all__ = ["sample_k_shot", "check_disjoint_label_sets"]


def sample_k_shot(labels: Sequence[int], k: int, seed: int = 0, label_names: Sequence[str] | None = None) -> list[int]:
    """Indices keeping exactly K randomly chosen videos per class, seeded (supplementary Sec. 3.3)."""
    if int(k) != k or k < 1:
        raise ValueError(f"sample_k_shot: k must be a positive integer, got {k!r}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[int(label)].append(index)
    if not by_class:
        raise ValueError("sample_k_shot: the label list is empty")
    classes = sorted(by_class)
    if label_names is not None:
        classes = list(range(len(label_names)))  # every named class must be present K times
    rng = np.random.default_rng(seed)
    kept = []
    for label in classes:
        members = by_class.get(label, [])
        if len(members) < k:
            name = f" ({label_names[label]!r})" if label_names is not None and 0 <= label < len(label_names) else ""
            raise ValueError(f"sample_k_shot: class {label}{name} has {len(members)} videos, fewer than k={k}")
        kept.extend(int(i) for i in rng.choice(members, size=k, replace=False))
    return sorted(kept)


def check_disjoint_label_sets(train_labels: Iterable[str], eval_labels: Iterable[str]) -> None:
    """Raise if the zero-shot evaluation classes overlap the training classes (paper Sec. 4.3: unseen categories)."""
    normalise = lambda name: " ".join(str(name).lower().split())  # noqa: E731
    shared = sorted({normalise(n) for n in train_labels} & {normalise(n) for n in eval_labels})
    if shared:
        raise ValueError(
            f"zero-shot evaluation labels must be disjoint from the training labels; {len(shared)} shared: {shared[:10]}"
        )
