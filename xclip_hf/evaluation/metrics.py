"""Classification figures of an evaluation (pure numpy): top-k, per-class accuracy, confusion matrix, mean +- std."""

from __future__ import annotations

import numpy as np

from ..training.metrics.video_accuracy import topk_accuracy

__all__ = ["topk_accuracy", "classification_figures", "per_class_accuracy", "confusion_matrix", "mean_std",
           "save_confusion_png"]


def confusion_matrix(predictions: np.ndarray, references: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(references, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Top-1 accuracy of each true class (NaN for a class without videos)."""
    totals = matrix.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def classification_figures(scores: np.ndarray, references: np.ndarray, class_names: list[str],
                           top_k=(1, 5)) -> dict:
    """Top-k accuracy (%), mean and per-class accuracy and the confusion matrix; top-1 ties go to the lower index."""
    scores = np.asarray(scores, dtype=np.float64)
    references = np.asarray(references, dtype=np.int64)
    ks = tuple(k for k in top_k if k <= scores.shape[1]) or (1,)
    acc = topk_accuracy(scores, references, ks)
    matrix = confusion_matrix(scores.argmax(1), references, len(class_names))
    per_class = per_class_accuracy(matrix)
    return {
        **{name: 100.0 * value for name, value in acc.items()},
        "mean_class_accuracy": float(100.0 * np.nanmean(per_class)) if np.isfinite(per_class).any() else None,
        "num_videos": int(len(references)),
        "per_class_accuracy": {name: (None if np.isnan(v) else float(100.0 * v)) for name, v in zip(class_names, per_class)},
        "confusion_matrix": matrix.tolist(),
    }


def mean_std(values) -> dict:
    """Mean and standard deviation over splits (population std, ddof=0, as numpy's default), with the values."""
    values = np.asarray([float(v) for v in values], dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_std: no values")
    return {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}


def save_confusion_png(path: str, matrix, class_names: list[str], title: str = "confusion matrix") -> str:
    """The confusion matrix as a PNG (rows: true class, columns: predicted; row-normalised colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = min(24, 3 + 0.25 * len(class_names))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if len(class_names) <= 60:
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
