"""Temporal localisation from per-window scores (pure functions): per-frame averages, best segmentation, merging.

Input: the windowed pipeline's output with every label, ``[{"timestamp": (start_s, end_s), "labels": [...]}]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["window_matrix", "frame_scores", "frame_labels", "segments_from_frames", "aggregate_segments",
           "best_segmentation", "segment_windows", "aggregate_windows", "timeline_segments", "AGGREGATIONS", "MIN_DURATION_FRACTION", "SEGMENTATION_MIN_DURATION_FRACTION"]

# default minimum segment duration of "frames", as a fraction of the window length (chosen: README, "Untrimmed videos")
MIN_DURATION_FRACTION = 0.625
# shortest segment of `best_segmentation`, as a fraction of the window length (chosen likewise)
SEGMENTATION_MIN_DURATION_FRACTION = 0.5


def window_matrix(windows: list[dict], labels: list[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(window spans (W, 2) seconds, label names (K,), scores (W, K)); a label missing from a window scores 0."""
    if not windows:
        raise ValueError("no windows to aggregate")
    if labels is None:
        labels = sorted({item["label"] for w in windows for item in w["labels"]})
    column = {label: k for k, label in enumerate(labels)}
    scores = np.zeros((len(windows), len(labels)))
    spans = np.zeros((len(windows), 2))
    for i, window in enumerate(windows):
        spans[i] = [float(t) for t in window["timestamp"]]
        if not spans[i, 1] > spans[i, 0]:
            raise ValueError(f"window {window['timestamp']} has no duration")
        for item in window["labels"]:
            if item["label"] in column:
                scores[i, column[item["label"]]] = float(item["score"])
    return spans, list(labels), scores


def frame_scores(spans: np.ndarray, scores: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(T, K) scores at `times`: the mean of the windows covering each time, else the window with the nearest centre."""
    times = np.asarray(times, dtype=np.float64)
    start, end = spans[:, 0][None], spans[:, 1][None]
    t = times[:, None]
    covers = ((start <= t) & (t < end)) | ((t == end) & (end == spans[:, 1].max()))
    counts = covers.sum(1, keepdims=True)
    out = (covers.astype(np.float64) @ scores) / np.maximum(counts, 1)
    lonely = counts[:, 0] == 0
    if lonely.any():
        centres = spans.mean(1)
        out[lonely] = scores[np.abs(times[lonely, None] - centres[None]).argmin(1)]
    return out


def frame_labels(per_frame: np.ndarray) -> np.ndarray:
    """Top label index per frame (ties: the lower index, as argmax)."""
    return per_frame.argmax(1)


def _runs(labels: np.ndarray) -> list[list[int]]:
    """[start, stop, label] runs of equal consecutive labels."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append([start, i, int(labels[start])])
            start = i
    return runs


def segments_from_frames(times: np.ndarray, per_frame: np.ndarray, labels: list[str], end_s: float,
                         min_duration_s: float = 0.0) -> list[dict]:
    """Segments tiling [0, end_s] from per-frame scores (T, K): top-label runs, short runs merged into a neighbour."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) != len(per_frame) or not len(times):
        raise ValueError(f"times {times.shape} and per-frame scores {np.shape(per_frame)} do not match")
    if np.any(np.diff(times) < 0):
        raise ValueError("frame times must be sorted")
    edges = np.concatenate([[0.0], (times[1:] + times[:-1]) / 2, [max(float(end_s), float(times[-1]))]])
    runs = _runs(frame_labels(per_frame))
    while len(runs) > 1:
        lengths = [edges[b] - edges[a] for a, b, _ in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_duration_s:
            break
        a, b, _ = runs[i]
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        best = max(neighbours, key=lambda j: per_frame[a:b, runs[j][2]].mean())
        runs[i][2] = runs[best][2]
        merged = []  # join equal neighbours
        for run in runs:
            if merged and merged[-1][2] == run[2]:
                merged[-1][1] = run[1]
            else:
                merged.append(run)
        runs = merged
    return [{"start_s": float(edges[a]), "end_s": float(edges[b]), "label": labels[k],
             "score": float(per_frame[a:b, k].mean())} for a, b, k in runs]


def aggregate_segments(windows: list[dict], frame_times, end_s: float, labels: list[str] | None = None,
                       min_duration_s: float | None = None) -> list[dict]:
    """Per-window results -> segments by per-frame averages (`frame_scores`, then `segments_from_frames`)."""
    spans, names, scores = window_matrix(windows, labels)
    if min_duration_s is None:
        min_duration_s = MIN_DURATION_FRACTION * float(np.median(spans[:, 1] - spans[:, 0]))
    times = np.asarray(frame_times, dtype=np.float64)
    return segments_from_frames(times, frame_scores(spans, scores, times), names, end_s, min_duration_s)


def best_segmentation(spans: np.ndarray, scores: np.ndarray, end_s: float, min_duration_s: float,
                      eps: float = 1e-6) -> list[tuple[float, float, int]]:
    """The segmentation of [0, end_s] that the windows lying wholly inside one segment explain best.

    A window inside a segment of label y scores log p_w(y) - log 1/K; a window across a boundary is no evidence.
    Solved exactly by dynamic programming over window starts and ends (segments of at least `min_duration_s`, except at
    the ends). Returns [(start_s, end_s, label index or -1 when no whole window lies inside)] tiling [0, end_s].
    """
    num_windows, num_labels = scores.shape
    gain = np.log(np.clip(scores, eps, 1.0)) + np.log(num_labels)  # (W, K), 0 = uninformative
    lengths = spans[:, 1] - spans[:, 0]
    longest = float(lengths.max())
    short = np.flatnonzero(lengths < longest - 1e-9)  # windows cut short by the end of the video
    grid = np.unique(np.concatenate([[0.0, float(end_s)], np.clip(spans.ravel(), 0.0, float(end_s))]))
    tol = 1e-9
    # inside(i, j) = A(j) - B(i) when grid[j] - grid[i] >= longest: windows ending by grid[j] minus those starting
    # before grid[i] (such a window ends before grid[i] + longest <= grid[j])
    by_end, by_start = np.argsort(spans[:, 1], kind="stable"), np.argsort(spans[:, 0], kind="stable")
    cum_end = np.vstack([np.zeros(num_labels), np.cumsum(gain[by_end], 0)])
    cum_start = np.vstack([np.zeros(num_labels), np.cumsum(gain[by_start], 0)])
    ended = cum_end[np.searchsorted(spans[by_end, 1], grid + tol, side="right")]  # (M, K)
    started = cum_start[np.searchsorted(spans[by_start, 0], grid - tol, side="left")]  # (M, K)
    size = len(grid)
    best = np.full(size, -np.inf)  # best score of a segmentation of [0, grid[j]]
    best[0] = 0.0
    back = np.zeros((size, 2), dtype=np.int64)  # (previous boundary, label or -1 for an empty segment)
    running = np.full(num_labels, -np.inf)  # max over i <= long_end of best[i] - started[i]
    running_arg = np.zeros(num_labels, dtype=np.int64)
    long_end = -1
    for j in range(1, size):
        while long_end + 1 < j and grid[j] - grid[long_end + 1] >= longest - tol:
            long_end += 1
            candidate = best[long_end] - started[long_end]
            better = candidate > running
            running[better], running_arg[better] = candidate[better], long_end
        values = ended[j] + running  # segments holding whole windows, per label
        label = int(values.argmax())
        best[j], back[j] = values[label], (running_arg[label], label)
        # segments shorter than the longest window (at least min_duration_s unless touching an end): only a
        # shorter window (the end of a video) fits inside; with none inside they score 0 (label -1)
        for i in range(long_end + 1, j):
            if grid[j] - grid[i] < min_duration_s - tol and i != 0 and j != size - 1:
                continue
            inside = short[(spans[short, 0] >= grid[i] - tol) & (spans[short, 1] <= grid[j] + tol)]
            sums = gain[inside].sum(0) if len(inside) else None
            label = int(sums.argmax()) if sums is not None else -1
            value = best[i] + (sums[label] if sums is not None else 0.0)
            if value > best[j]:
                best[j], back[j] = value, (i, label)
    cuts, j = [], size - 1
    while j > 0:
        i, label = back[j]
        cuts.append((float(grid[i]), float(grid[j]), int(label)))
        j = i
    return cuts[::-1]


def segment_windows(windows: list[dict], end_s: float, labels: list[str] | None = None,
                    min_duration_s: float | None = None) -> list[dict]:
    """Per-window results -> segments `{"start_s", "end_s", "label", "score"}` by `best_segmentation`."""
    spans, names, scores = window_matrix(windows, labels)
    if min_duration_s is None:
        min_duration_s = SEGMENTATION_MIN_DURATION_FRACTION * float(np.median(spans[:, 1] - spans[:, 0]))
    end_s = max(float(end_s), float(spans[:, 1].max()))
    out: list[dict] = []
    for start, end, label in best_segmentation(spans, scores, end_s, min_duration_s):
        overlap = (spans[:, 0] < end) & (spans[:, 1] > start)
        inside = (spans[:, 0] >= start - 1e-9) & (spans[:, 1] <= end + 1e-9)
        mean = scores[inside if inside.any() else overlap].mean(0)
        label = int(mean.argmax()) if label < 0 else label
        if out and out[-1]["label"] == names[label]:
            out[-1]["end_s"] = end
            continue
        out.append({"start_s": start, "end_s": end, "label": names[label], "score": float(mean[label])})
    return out


AGGREGATIONS = ("segments", "frames", "segmentation")


def aggregate_windows(windows: list[dict], how: str, *, end_s: float, frame_times=None, labels: list[str] | None = None,
                      min_duration_s: float | None = None) -> list[dict]:
    """Per-window results (every label) -> segments by ``"segments"``, ``"frames"`` or ``"segmentation"``."""
    if how == "segments":
        from ..video.windows import merge_segments

        return merge_segments(windows)
    if how == "frames":
        if frame_times is None:
            raise ValueError("aggregate='frames' needs the video's frame times")
        return aggregate_segments(windows, frame_times, end_s, labels, min_duration_s)
    if how == "segmentation":
        return segment_windows(windows, end_s, labels, min_duration_s)
    raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {how!r}")


def timeline_segments(windows: list[dict], labels: list[str] | None = None) -> list[dict]:
    """The segments shown for a per-window timeline (CLI, plots, app): ``"segmentation"`` to the last window's end."""
    end = max(float(w["timestamp"][1]) for w in windows) if windows else 0.0
    return aggregate_windows(windows, "segmentation", end_s=end, labels=labels)
