"""Write small synthetic videos with PyAV (used by tests, demos and benchmarks).

Pixel format choice (documented behaviour):

* ``.mp4`` / ``.mkv`` / ``.mov`` default to ``libx264``. Even-sized RGB frames use ``yuv420p`` (what real
  videos use). H.264 4:2:0 needs even width and height, so odd sizes such as 97x61 are written with
  ``yuv444p`` instead: the file keeps its exact size and no pixel is padded or cropped.
* ``.webm`` defaults to ``libvpx-vp9`` with ``yuv420p`` (VP9 accepts odd sizes).
* Grayscale frames ``(T, H, W)`` or ``(T, H, W, 1)`` are written with the ``gray`` pixel format when the
  codec supports it (libx264 does), giving a true single-channel (4:0:0) source; values are mapped to
  limited-range luma so that decoders give the input values back. Otherwise the codec's default format is
  used and PyAV converts the gray frames.
* ``gop_size`` sets the key-frame interval (codec default otherwise: 250 frames for x264).
* ``lossless=True`` uses ``crf=0`` (x264) / ``lossless=1`` (VP9) so pixel values survive exactly up to the
  RGB<->YUV round trip; the default is a high-quality lossy setting (``crf=10``).
* Reproducible bytes: the same frames and arguments give the same file, byte for byte, with the same FFmpeg /
  x264 build. The encoder runs on ONE thread (``threads=1``: otherwise x264 and libvpx split the work by the
  number of CPU cores), x264's lookahead is off (no B-frames, scene-cut detection or macroblock tree: with it,
  the same small frames gave different bytes from the second video of a process on, 18 of 900 32x32 videos
  between two runs), and the container and codec use FFmpeg's ``bitexact`` flags (no version string, no random
  Matroska UID).
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

__all__ = ["write_video", "default_codec_for_path"]

# same frames -> same bytes (see the module docstring): one encoder thread, no version strings in the output
_DETERMINISTIC_CODEC_OPTIONS = {"threads": "1", "flags": "+bitexact"}
# x264's lookahead (B-frame / scene-cut decisions, macroblock tree) gave different bytes for the same small frames
# from the second video of a process on (18 of the demo's 900 32x32 videos differed between two runs): off
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
