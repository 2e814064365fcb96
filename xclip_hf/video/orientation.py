"""How decoded frames are turned for display: the ``rotate`` tag and the display matrix, as FFmpeg's tools do."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Orientation"]


@dataclass(frozen=True)
class Orientation:
    """Coded frame -> displayed frame: transpose (swap rows and columns) first, then reverse rows and/or columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The displayed ``(H, W, C)`` frame of a coded one (contiguous; the same array when nothing changes)."""
        if self == Orientation():
            return frame
        out = frame.swapaxes(0, 1) if self.transpose else frame
        out = out[::-1] if self.flip_rows else out
        out = out[:, ::-1] if self.flip_cols else out
        return np.ascontiguousarray(out)

    def display_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of displayed frames for coded frames of ``height`` x ``width``."""
        return (width, height) if self.transpose else (height, width)

    @classmethod
    def from_clockwise(cls, degrees: float) -> "Orientation":
        """Turn clockwise by ``degrees`` (a right angle within 1 degree; anything else: as coded)."""
        degrees = float(degrees)
        quarter = round(degrees / 90.0) if np.isfinite(degrees) else 0
        if abs(degrees - 90.0 * quarter) > 1.0 or not np.isfinite(degrees):
            return cls()
        # clockwise 90: row r of the display is column r of the frame read bottom-up
        return [cls(), cls(True, False, True), cls(False, True, True), cls(True, True, False)][quarter % 4]

    @classmethod
    def from_rotate_tag(cls, metadata) -> "Orientation | None":
        """From a stream's ``rotate`` tag (clockwise degrees); None when absent or 0, so the display matrix decides."""
        for key, value in dict(metadata or {}).items():
            if key.lower() == "rotate":
                try:
                    degrees = float(value)
                except (TypeError, ValueError):
                    return None
                return cls.from_clockwise(degrees) if degrees % 360 else None
        return None

    @classmethod
    def from_matrix(cls, matrix) -> "Orientation":
        """From a 3x3 display matrix in FFmpeg's layout (9 int32, 16.16 fixed point); right angles, mirrors."""
        a, b, _, c, d = (float(v) for v in np.asarray(matrix, dtype=np.int64).reshape(-1)[:5])
        if max(abs(a), abs(d)) < 1e-3 * max(abs(b), abs(c)):  # x' comes from y and y' from x: transposed
            return cls(True, flip_rows=b < 0, flip_cols=c < 0)
        if max(abs(b), abs(c)) < 1e-3 * max(abs(a), abs(d)):
            return cls(False, flip_rows=d < 0, flip_cols=a < 0)
        return cls()  # not a right angle (or a zero matrix): as coded

    @classmethod
    def of_frame(cls, frame) -> "Orientation":
        """From the display matrix a decoder attached to a PyAV frame (as coded when there is none)."""
        for side in getattr(frame, "side_data", None) or ():
            if getattr(side.type, "name", str(side.type)).upper().endswith("DISPLAYMATRIX"):
                return cls.from_matrix(np.frombuffer(bytes(side), dtype=np.int32)[:9])
        return cls()
