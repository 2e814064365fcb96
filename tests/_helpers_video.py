"""Helpers for the video tests: synthetic frames that encode their index and position, small video files."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from fractions import Fraction

import av
import numpy as np

INDEX_STEP = 4  # red channel = frame index * INDEX_STEP (index < 64)


def index_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 (T, H, W, 3): R = index * 4 (frame index), G = column ramp 0..255, B = row ramp 0..255."""
    if num_frames > 256 // INDEX_STEP:
        raise ValueError("index_frames encodes at most 64 frames")
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    cols = np.round(np.arange(width) * 255.0 / max(width - 1, 1)).astype(np.uint8)
    rows = np.round(np.arange(height) * 255.0 / max(height - 1, 1)).astype(np.uint8)
    for t in range(num_frames):
        frames[t, ..., 0] = t * INDEX_STEP
        frames[t, ..., 1] = cols[None, :]
        frames[t, ..., 2] = rows[:, None]
    return frames


def long_index_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 frames whose index is written in base 8 in three coarse blocks (robust to lossy coding)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    third = width // 3
    for t in range(num_frames):
        digits = (t // 64, (t // 8) % 8, t % 8)
        for k, d in enumerate(digits):
            frames[t, :, k * third : (k + 1) * third, :] = 16 + d * 32
    return frames


def decode_long_index(frame: np.ndarray) -> int:
    """Inverse of ``long_index_frames`` for one decoded frame."""
    height, width = frame.shape[:2]
    third = width // 3
    digits = []
    for k in range(3):
        block = frame[height // 4 : 3 * height // 4, k * third + third // 4 : (k + 1) * third - third // 4]
        digits.append(int(round((float(block.mean()) - 16) / 32)))
    return digits[0] * 64 + digits[1] * 8 + digits[2]


def pyav_decode_all(path) -> np.ndarray:
    """Independent oracle: decode every frame with PyAV, in order, as RGB."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def encode_all(container, stream, frames, pixel_format="rgb24"):
    """Encode ``frames`` into ``stream`` and flush the encoder."""
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=pixel_format)):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_h264_with_bframes(path, frames, gop: int = 10, bframes: int = 3, crf: int = 18, fps: int = 30,
                            scenecut: bool = True):
    """An H.264 mp4 with B-frames and short GOPs (exercises seeking and frame reordering); ``scenecut=False``: key
    frames only every ``gop`` frames (x264 otherwise adds some where the content changes)."""
    t, h, w = frames.shape[:3]
    options = {"g": str(gop), "bf": str(bframes), "crf": str(crf), **({} if scenecut else {"sc_threshold": "0"})}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        encode_all(container, stream, frames)
    return str(path)


def write_zero_frame_video(path):
    """An mp4 with a video stream declared but no frames."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    return str(path)


@contextmanager
def no_hang(seconds: int = 60):
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def _raise(signum, frame):
        raise TimeoutError(f"operation took longer than {seconds}s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# the issue's file: 20 fps for 1 s, then 5 fps up to 5.0 s (40 frames; the average-rate clock put its end at 4.54 s)
VFR_TIMES = [i * 0.05 for i in range(20)] + [1.0 + i * 0.2 for i in range(20)]
VFR_END = 5.0


def write_timed_video(path, times, end, codec="libx264", size=(48, 64), bframes=0):
    """Frames that show their index (red = index * 4), each with the pts and duration we choose (1 ms time base);
    every packet's duration is set too, so the container knows when the last frame ends. ``bframes``: x264's."""
    base = Fraction(1, 1000)
    ticks = [round(t / base) for t in times]
    duration = dict(zip(ticks, np.diff(ticks + [round(end / base)]).tolist()))
    frames = index_frames(len(times), *size)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=20, options={"bf": str(bframes)} if codec == "libx264" else {})
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.codec_context.time_base = base

        def mux(packets):
            for packet in packets:
                packet.duration = duration[packet.pts]
                container.mux(packet)

        for frame, tick in zip(frames, ticks):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = tick, base
            mux(stream.encode(picture))
        mux(stream.encode())
    return str(path)


def on_screen(times, moment):
    """Oracle: index of the frame shown at ``moment`` (the last one that started at or before it)."""
    return max(i for i, t in enumerate(times) if t <= moment + 1e-9)


def write_oriented_video(path, frames, ccw_degrees=0, hflip=False, rotate_tag=None):
    """An H.264 file (mp4, mkv) of ``frames`` with a display matrix (PyAV's ``set_display_rotation``:
    counter-clockwise degrees, then a horizontal mirror) and/or a ``rotate`` tag (clockwise degrees)."""
    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10, options={"bf": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if ccw_degrees or hflip:
            stream.set_display_rotation(ccw_degrees, hflip=hflip)
        if rotate_tag is not None:
            stream.metadata["rotate"] = str(rotate_tag)
        encode_all(container, stream, frames)
    return str(path)


def write_gray_ffv1(path, frames):
    """Lossless single-channel FFV1 in mkv (decoded as gray8; write_video maps gray to H.264's limited range)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        encode_all(container, stream, frames, "gray")
    return str(path)
