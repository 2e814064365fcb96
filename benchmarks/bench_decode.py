"""Decoding speed: our loader (8 sparse frames, decord / PyAV seek) vs the PyAV recipe of transformers' X-CLIP docs.

The script writes a 10 s, 30 fps, 640x360 H.264 video (a moving textured pattern) with ``write_video`` and
times, alternated in one run (ABAB... so that background load hits both equally):

* ``recipe``: decode every frame with PyAV up to the last sampled index and keep the sampled ones (the
  ``read_video_pyav`` recipe in transformers' X-CLIP documentation), given the same 8 sparse indices;
* ``ours``: ``xclip_hf.video_io.read_video`` (decord ``get_batch``, auto backend) with those indices;
* ``ours-pyav``: the same with the PyAV fallback backend (key-frame seeks).

Frames/s = sampled frames delivered per second of wall time (median over repeats). The ratio depends on the
key-frame interval: a decoder must start at the key frame before a wanted frame, so with x264's default
interval (250 frames = one key frame in the whole clip) no reader can skip much. The script therefore
reports the default interval and ``--gop`` values (default: 250 and 30, i.e. a key frame every second).

    python benchmarks/bench_decode.py [--repeats 5] [--gop 250 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from xclip_hf.data.video_writer import write_video  # noqa: E402
from xclip_hf.sampling import sparse_sample_indices  # noqa: E402
from xclip_hf.video_io import read_video  # noqa: E402


def make_frames(num_frames=300, height=360, width=640, seed=0) -> np.ndarray:
    """A moving textured pattern: gradients drifting at different speeds plus fixed fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        r = 128 + 100 * np.sin((x + 4 * t) / 37.0) * np.cos(y / 23.0)
        g = 128 + 100 * np.sin((y + 3 * t) / 29.0)
        b = 128 + 100 * np.cos((x - 2 * t + y) / 41.0)
        frames[t] = np.clip(np.stack([r, g, b], -1) + texture, 0, 255).astype(np.uint8)
    return frames


def recipe_read(path, indices) -> np.ndarray:
    """transformers' X-CLIP docs recipe: decode from the start, keep frames whose counter is in ``indices``."""
    import av

    with av.open(path) as container:
        frames = []
        container.seek(0)
        start, end = indices[0], indices[-1]
        for i, frame in enumerate(container.decode(video=0)):
            if i > end:
                break
            if i >= start and i in indices:
                frames.append(frame)
        return np.stack([f.to_ndarray(format="rgb24") for f in frames])


def bench(path, indices, repeats):
    """Median seconds per call of each reader, runs alternated; also checks all readers agree."""
    readers = {
        "recipe": lambda: recipe_read(path, list(indices)),
        "ours": lambda: read_video(path, indices, backend="auto"),
        "ours-pyav": lambda: read_video(path, indices, backend="pyav"),
    }
    ref = readers["recipe"]()
    for name, fn in readers.items():
        if not np.array_equal(fn(), ref):
            raise RuntimeError(f"{name} returned different frames than the recipe")
    times = {name: [] for name in readers}
    for _ in range(repeats):
        for name, fn in readers.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gop", type=int, nargs="+", default=[250, 30], help="key-frame intervals to test")
    parser.add_argument("--num-frames", type=int, default=8)
    args = parser.parse_args(argv)

    frames = make_frames()
    indices = sparse_sample_indices(len(frames), args.num_frames)
    print(f"video: {frames.shape[0]} frames, 30 fps, {frames.shape[2]}x{frames.shape[1]} h264; sparse indices {indices.tolist()}")
    with tempfile.TemporaryDirectory() as tmp:
        for gop in args.gop:
            path = write_video(os.path.join(tmp, f"bench_g{gop}.mp4"), frames, fps=30, gop_size=gop)
            sec = bench(path, indices, args.repeats)
            fps = {k: len(indices) / v for k, v in sec.items()}
            print(
                f"gop={gop:4d}: recipe {fps['recipe']:7.1f} frames/s | ours {fps['ours']:7.1f} frames/s "
                f"(x{sec['recipe'] / sec['ours']:.2f}) | ours-pyav {fps['ours-pyav']:7.1f} frames/s "
                f"(x{sec['recipe'] / sec['ours-pyav']:.2f})"
            )


if __name__ == "__main__":
    main()
