"""A timeline picture of windowed classification: each label's probability over time, segments as a band."""

from __future__ import annotations

import os

import numpy as np

from .segments import timeline_segments

__all__ = ["window_probabilities", "top_labels", "plot_timeline", "save_timeline"]


def window_probabilities(windows: list[dict], labels: list[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(window centres in seconds (W,), label names (K,), probabilities (W, K)); labels missing from a window are 0."""
    if labels is None:
        labels = sorted({item["label"] for w in windows for item in w["labels"]})
    column = {label: k for k, label in enumerate(labels)}
    probs = np.zeros((len(windows), len(labels)))
    for i, window in enumerate(windows):
        for item in window["labels"]:
            if item["label"] in column:
                probs[i, column[item["label"]]] = item["score"]
    centres = np.array([(w["timestamp"][0] + w["timestamp"][1]) / 2 for w in windows], dtype=float)
    return centres, list(labels), probs


def top_labels(windows: list[dict], limit: int = 6) -> list[str]:
    """Labels worth a legend entry: every window's top-1 label first, then the highest peaks, at most `limit`."""
    _, labels, probs = window_probabilities(windows)
    if not labels:
        return []
    winners = [labels[k] for k in dict.fromkeys(probs.argmax(1).tolist())]
    peaks = [labels[k] for k in np.argsort(-probs.max(0)).tolist()]
    ordered = list(dict.fromkeys(sorted(winners, key=lambda l: -probs[:, labels.index(l)].max()) + peaks))
    return ordered[:limit]


def plot_timeline(ax, windows: list[dict], title: str, limit: int = 6, truth: list[dict] | None = None,
                  segments: list[dict] | None = None) -> None:
    """Draw the top labels' probabilities over time on `ax`, with the segments (and optional `truth`) as bands."""
    shown = top_labels(windows, limit)
    centres, labels, probs = window_probabilities(windows, shown)
    others = [seg["label"] for seg in (truth or []) if seg["label"] not in shown]
    colors = {label: f"C{k % 10}" for k, label in enumerate(dict.fromkeys(shown + others))}
    for k, label in enumerate(labels):
        ax.plot(centres, probs[:, k], marker="o", markersize=3, linewidth=1.5, color=colors[label], label=label)
    bands = [("model", timeline_segments(windows) if segments is None else segments, 1.04)]
    if truth:
        bands.append(("truth", truth, 1.13))
    for name, segments, bottom in bands:
        for seg in segments:
            ax.axvspan(seg["start_s"], seg["end_s"], ymin=(bottom - 0.0) / 1.22, ymax=(bottom + 0.07) / 1.22,
                       color=colors.get(seg["label"], "0.7"), alpha=0.9, linewidth=0)
        ax.text(-0.01, bottom + 0.035, name, transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8)
    end = max(w["timestamp"][1] for w in windows) if windows else 1.0
    ax.set(xlim=(0, end), ylim=(0, 1.22), xlabel="time (s)", ylabel="probability")
    ax.set_title(title, fontsize=10)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="top labels", title_fontsize=8)


def save_timeline(path: str, results: dict, window_s: float, stride_s: float, limit: int = 6) -> str:
    """One panel per video (`results`: name -> per-window output) in one PNG at `path`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.2 * len(results)), squeeze=False)
    for ax, (name, windows) in zip(axes[:, 0], results.items()):
        title = f"{os.path.basename(str(name))}\nlabel probability per {window_s:g} s window (hop {stride_s:g} s)"
        plot_timeline(ax, windows, title, limit)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
