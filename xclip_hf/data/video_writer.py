"""Write small synthetic videos with PyAV (tests, demos, benchmarks), reproducibly byte for byte.

Pixel formats: ``yuv420p``; ``yuv444p`` for odd sizes with H.264 (no padding or cropping); ``gray`` for grayscale
where the codec has it. ``lossless=True``: ``crf=0`` / VP9 lossless; default ``crf=10``.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

__all__ = ["write_video", "default_codec_for_path"]

# same frames -> same bytes (see the module docstring): one encoder thread, no version strings in the output
_DETERMINISTIC_CODEC_OPTIONS = {"threads": "1", "flags": "+bitexact"}
# x264's lookahead (B-frame / scene-cut decisions, macroblock tree) gives different bytes for the same small frames
_X264_NO_LOOKAHEAD = "bframes=0:rc-lookahead=0:scenecut=0:mbtree=0"

_CODEC_BY_EXT = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "libx264", ".webm": "libvpx-vp9"}


def default_codec_for_path(path) -> str:
    """Codec chosen from the file extension (``.mp4`` -> libx264, ``.webm`` -> libvpx-vp9)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in _CODEC_BY_EXT:
        raise ValueError(f"write_video: cannot choose a codec for {path!r}; pass codec= or use one of {sorted(_CODEC_BY_EXT)}")
    return _CODEC_BY_EXT[ext]


def _as_frames(frames, path) -> tuple[np.ndarray, bool]:
    """Validate frames; return a uint8 (T, H, W, 3) or (T, H, W) array and whether it is grayscale."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_video({path!r}): frames must be uint8, got dtype {arr.dtype}")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        gray = True
    elif arr.ndim == 4 and arr.shape[-1] == 3:
        gray = False
    else:
        raise ValueError(f"write_video({path!r}): frames must be (T, H, W, 3) or (T, H, W[, 1]), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"write_video({path!r}): need at least one non-empty frame, got shape {arr.shape}")
    return np.ascontiguousarray(arr), gray


def _pick_pix_fmt(codec_name: str, height: int, width: int, gray: bool) -> str:
    """Pixel format: gray for grayscale when supported, yuv444p for odd sizes with H.264, else yuv420p."""
    import av

    supported = [f.name for f in (av.codec.Codec(codec_name, "w").video_formats or [])]
    if gray and "gray" in supported:
        return "gray"
    odd = (height % 2) or (width % 2)
    if odd and codec_name in ("libx264", "h264") and "yuv444p" in supported:
        return "yuv444p"
    return "yuv420p" if "yuv420p" in supported or not supported else supported[0]


def write_video(
    path,
    frames,
    fps: float = 30,
    codec: str | None = None,
    pix_fmt: str | None = None,
    lossless: bool = False,
    gop_size: int | None = None,
) -> str:
    """Encode uint8 frames ``(T, H, W, 3)`` (or grayscale ``(T, H, W)``) to ``path`` with PyAV; returns the path."""
    import av

    path = os.fspath(path)
    arr, gray = _as_frames(frames, path)
    codec = codec or default_codec_for_path(path)
    num_frames, height, width = arr.shape[:3]
    pix_fmt = pix_fmt or _pick_pix_fmt(codec, height, width, gray)
    rate = Fraction(fps).limit_denominator(1001)
    options = {}
    if codec in ("libx264", "h264"):
        options = {"crf": "0" if lossless else "10", "preset": "veryfast", "x264-params": _X264_NO_LOOKAHEAD}
    elif codec.startswith("libvpx"):
        options = {"lossless": "1"} if lossless else {"crf": "10", "b": "0"}
        options.update({"deadline": "realtime", "cpu-used": "8"})
    if gop_size is not None:
        options["g"] = str(int(gop_size))  # key-frame interval; the codec default (x264: 250) otherwise
    options.update(_DETERMINISTIC_CODEC_OPTIONS)
    src_format = "gray" if gray else "rgb24"
    if gray and pix_fmt == "gray":
        # a gray H.264 stream stores luma only and decoders read it as limited-range (16..235) Y: map to it
        arr = np.round(16.0 + arr.astype(np.float32) * (219.0 / 255.0)).astype(np.uint8)
    with av.open(path, mode="w") as container:
        container.flags |= av.container.Flags.bitexact.value  # no muxer version string, no random Matroska UID
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.thread_count = 1  # one encoder thread: the bytes do not depend on the machine's core count
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(arr[i], format=src_format)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
