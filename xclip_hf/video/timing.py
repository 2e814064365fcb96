"""When each frame is shown: presentation times in seconds, and where a video ends."""

from __future__ import annotations

import numpy as np

__all__ = ["frame_clock", "frame_times_at_rate", "time_tolerance", "GRID_SNAP_S"]

# Containers round times to their time base (Matroska/WebM: 1 ms): times within this of the constant-rate grid
# ``i / fps`` are that grid (see `frame_clock`)
GRID_SNAP_S = 5e-4


def time_tolerance(seconds) -> np.ndarray | float:
    """How far apart two times may be and still count as equal: 1 microsecond plus 1e-7 of the time."""
    return 1e-6 + 1e-7 * np.abs(seconds)


def frame_clock(num_frames: int, starts=None, last_duration=None, fps=None,
                time_base=None) -> tuple[np.ndarray | None, float | None]:
    """``(frame_times, end_s)``: each frame's presentation time in seconds from the first, and the end of the video.

    ``starts`` are in units of ``time_base`` (seconds when None); without usable times frame ``i`` is at ``i / fps``.
    The end is the last frame's time plus its duration (``last_duration``), else the interval before it, else
    ``1 / fps``; ``(None, None)`` with neither times nor a frame rate. Times within `GRID_SNAP_S` of ``i / fps`` are
    that grid.
    """
    rate = float(fps) if fps is not None and np.isfinite(float(fps)) and float(fps) > 0 else None
    ticks = None if starts is None else np.asarray(starts, dtype=np.float64).reshape(-1)
    if ticks is not None and (ticks.size != num_frames or not np.isfinite(ticks).all() or (np.diff(ticks) < 0).any()):
        ticks = None
    if ticks is None:
        if rate is None:
            return None, None
        times = np.arange(num_frames, dtype=np.float64) / rate
        times.setflags(write=False)
        return times, num_frames / rate
    num, den = (time_base.numerator, time_base.denominator) if time_base is not None else (1, 1)
    ticks = ticks - ticks[0]
    steps = [last_duration, ticks[-1] - ticks[-2] if num_frames > 1 else None, den / (num * rate) if rate else None]
    step = next((float(x) for x in steps if x is not None and np.isfinite(x) and x > 0), 0.0)
    times = ticks * num / den  # multiplied before dividing: exact seconds for integer ticks
    end = float((ticks[-1] + step) * num / den)
    if rate is not None:
        grid = np.arange(num_frames, dtype=np.float64) / rate
        if np.abs(times - grid).max() <= GRID_SNAP_S:
            times = grid
            if abs(end - num_frames / rate) <= 2 * GRID_SNAP_S:  # the last time and its duration are both rounded
                end = num_frames / rate
    times.setflags(write=False)
    return times, end


def frame_times_at_rate(num_frames, fps, name: str = "video") -> tuple[np.ndarray, float]:
    """The clock of frames without timestamps: frame ``i`` at ``i / fps``, the end at ``num_frames / fps``."""
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        rate = float("nan")
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"{name}: windows in seconds need a frame rate; got fps={fps!r}")
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"{name}: cannot cut windows from a video with {num_frames!r} frames")
    return frame_clock(int(num_frames), None, None, rate)
