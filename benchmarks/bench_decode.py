"""Decoding speed: our readers (8 sparse frames) vs the PyAV recipe of transformers' X-CLIP docs, quiet and loaded.

The script writes 10 s, 30 fps, 640x360 H.264 videos (a moving textured pattern) with ``write_video``, one per
``--gop`` (key-frame interval; x264's default is 250 = one key frame per clip), and times, alternated in one run
(each repeat runs every reader once, in rotated order, so background load hits all of them equally):

* ``recipe``: decode every frame with PyAV up to the last sampled index and keep the sampled ones (the
  ``read_video_pyav`` recipe in transformers' X-CLIP documentation), given the same sparse indices;
* ``default``: ``xclip_hf.video.reader.read_video`` with ``backend="auto"`` (what the processor and pipeline use);
* ``decord`` / ``pyav``: each backend forced; ``pyav-noskip``: PyAV without skipping non-reference frames;
  ``pyav-slice``: PyAV without frame threading (slice threading only, PyAV's default, as the recipe has);
  ``pyav-frame``: PyAV with frame threading for every read (the default uses it only for long decode runs).

Modes (``--mode``, several allowed):

* ``quiet``: nothing else started by the script (other work on the machine still runs: say so when reporting);
* ``loaded``: one busy process per core spins for the whole measurement, as DataLoader workers and the model do;
* ``many``: ``--files`` files read by a pool of 2 worker processes (as a DataLoader with 2 workers), timed per
  reader over all files, with the busy processes running too;
* ``windows``: many windows of one file (2 s every 1 s, ``--num-frames`` each): the recipe cuts each window
  (decoding from the start every time), our readers stream all windows in one pass (``iter_window_frames``).

``--nonref`` adds a file without B-frames (no non-reference frames) to decide whether skipping them pays.
Every reader's frames are checked to equal a full decode of the file before timing.

    python benchmarks/bench_decode.py [--gop 250 60 30] [--mode quiet loaded many windows] [--repeats 5] [--nonref]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from xclip_hf.data.video_writer import write_video  # noqa: E402
from xclip_hf.video.sampling import sparse_sample_indices  # noqa: E402
from xclip_hf.video.reader import _PyAVBackend, read_video  # noqa: E402

READERS = ("recipe", "default", "decord", "pyav", "pyav-noskip", "pyav-slice", "pyav-frame")
# reader variants: the PyAV backend with one of its choices switched off
VARIANTS = {"pyav-noskip": {"skip_nonref": False}, "pyav-slice": {"frame_threads": False},
            "pyav-frame": {"FRAME_THREADING_MIN_RUN": 0}}


@contextlib.contextmanager
def backend_variant(reader: str):
    """Switch the PyAV backend's class flags for a reader variant, restoring them afterwards."""
    flags = VARIANTS.get(reader, {})
    saved = {name: getattr(_PyAVBackend, name) for name in flags}
    for name, value in flags.items():
        setattr(_PyAVBackend, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(_PyAVBackend, name, value)


def backend_of(reader: str) -> str:
    """The `backend=` argument of a reader."""
    return "pyav" if reader in VARIANTS else {"default": "auto"}.get(reader, reader)


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


def write_without_bframes(path, frames, gop, fps=30) -> str:
    """An H.264 file with no B-frames (x264 ``bf=0``): every frame is a reference frame."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": str(gop), "bf": "0", "crf": "10",
                                                                    "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def recipe_frames(container, indices) -> np.ndarray:
    """transformers' X-CLIP docs recipe (read_video_pyav): seek to 0, decode up to the last wanted index, keep the
    frames whose counter is in ``indices``."""
    frames = []
    container.seek(0)
    start, end = indices[0], indices[-1]
    for i, frame in enumerate(container.decode(video=0)):
        if i > end:
            break
        if i >= start and i in indices:
            frames.append(frame)
    return np.stack([f.to_ndarray(format="rgb24") for f in frames])


def recipe_read(path, indices) -> np.ndarray:
    """The recipe on a file it opens itself."""
    import av

    with av.open(path) as container:
        return recipe_frames(container, indices)


def read_with(reader: str, path: str, indices) -> np.ndarray:
    """One read of ``indices`` from ``path`` with the named reader."""
    if reader == "recipe":
        return recipe_read(path, list(indices))
    with backend_variant(reader):
        return read_video(path, indices, backend=backend_of(reader))


def read_windows(reader: str, path: str, windows) -> int:
    """All frames of ``windows``: the recipe cuts each window (decoding from the start every time), our readers
    stream them in one pass (``iter_window_frames``). Returns the number of frames delivered."""
    from xclip_hf.video.reader import VideoFile
    from xclip_hf.video.windows import iter_window_frames

    if reader == "recipe":
        return sum(len(recipe_read(path, w.indices.tolist())) for w in windows)
    with backend_variant(reader), VideoFile(path, backend=backend_of(reader)) as video:
        return sum(len(frames) for _, frames in iter_window_frames(video, windows))


CPU_SECONDS: dict = {}  # reader -> median CPU seconds (all threads of this process) of the last time_alternated


def time_alternated(readers, repeats, read) -> dict:
    """Median wall seconds of ``read(reader)`` for each reader, alternated in rotated order (CPU seconds of this
    process's threads go to ``CPU_SECONDS``: frame threading trades CPU for wall time)."""
    times = {r: [] for r in readers}
    cpu = {r: [] for r in readers}
    for rep in range(repeats):
        order = readers[rep % len(readers):] + readers[:rep % len(readers)]
        for reader in order:
            t0, c0 = time.perf_counter(), time.process_time()
            read(reader)
            times[reader].append(time.perf_counter() - t0)
            cpu[reader].append(time.process_time() - c0)
    CPU_SECONDS.clear()
    CPU_SECONDS.update({r: statistics.median(v) for r, v in cpu.items()})
    return {r: statistics.median(v) for r, v in times.items()}


def time_windows(path, windows, readers, repeats) -> dict:
    """Median seconds to read every window's frames with each reader."""
    return time_alternated(readers, repeats, lambda reader: read_windows(reader, path, windows))


def _read_many(job) -> int:
    reader, path, indices = job
    return len(read_with(reader, path, indices))


def _spin():
    """Keep one core busy until the benchmark process goes away (also when it is killed)."""
    parent = os.getppid()
    while os.getppid() == parent:
        for _ in range(100_000):
            pass


class BusyCores:
    """One busy process per core for the duration of a ``with`` block (the "loaded" condition)."""

    def __init__(self, enabled: bool):
        self.enabled, self.procs = enabled, []

    def __enter__(self):
        if self.enabled:
            ctx = mp.get_context("spawn")
            self.procs = [ctx.Process(target=_spin, daemon=True) for _ in range(os.cpu_count() or 1)]
            for p in self.procs:
                p.start()
            time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()


def check_frames(path, indices, readers):
    """Every reader must return exactly the frames of a full decode."""
    import av

    with av.open(path) as container:
        full = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    for reader in readers:
        if not np.array_equal(read_with(reader, path, indices), full[indices]):
            raise RuntimeError(f"{reader} returned other frames than a full decode of {path}")


def time_single(path, indices, readers, repeats) -> dict:
    """Median seconds per read of each reader."""
    return time_alternated(readers, repeats, lambda reader: read_with(reader, path, indices))


def time_many(paths, indices, readers, repeats, pool) -> dict:
    """Median seconds for a 2-worker pool to read all ``paths`` with each reader, alternated."""
    times = {r: [] for r in readers}
    for rep in range(repeats):
        order = readers[rep % len(readers):] + readers[:rep % len(readers)]
        for reader in order:
            t0 = time.perf_counter()
            list(pool.map(_read_many, [(reader, p, indices) for p in paths]))
            times[reader].append(time.perf_counter() - t0)
    return {r: statistics.median(v) for r, v in times.items()}


def report(tag, sec, frames_per_call, cpu=None):
    """One line of frames/s per reader (ratio to the recipe); with ``cpu``, CPU ms per frame of this process."""
    cells = []
    for reader, s in sec.items():
        ratio = "" if reader == "recipe" else f" (x{sec['recipe'] / s:.2f})"
        cells.append(f"{reader} {frames_per_call / s:6.1f}{ratio}")
    print(f"{tag}: frames/s " + " | ".join(cells), flush=True)
    if cpu:
        print(f"{' ' * len(tag)}  CPU ms/frame " + " | ".join(f"{r} {1e3 * c / frames_per_call:.1f}" for r, c in cpu.items()),
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gop", type=int, nargs="+", default=[250, 60, 30], help="key-frame intervals to test")
    parser.add_argument("--mode", nargs="+", default=["quiet", "loaded", "many", "windows"],
                        choices=["quiet", "loaded", "many", "windows"])
    parser.add_argument("--num-frames", type=int, default=8, help="sparse frames per read")
    parser.add_argument("--files", type=int, default=8, help="files per round in the many-files mode")
    parser.add_argument("--readers", nargs="+", default=list(READERS), choices=READERS)
    parser.add_argument("--nonref", action="store_true", help="also test a file without B-frames")
    args = parser.parse_args(argv)
    readers = list(dict.fromkeys(["recipe"] + args.readers))

    frames = make_frames()
    indices = sparse_sample_indices(len(frames), args.num_frames)
    print(f"video: {frames.shape[0]} frames, 30 fps, {frames.shape[2]}x{frames.shape[1]} h264; sparse indices "
          f"{indices.tolist()}; {os.cpu_count()} cores; readers {readers}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = {f"gop={gop}": write_video(os.path.join(tmp, f"g{gop}.mp4"), frames, fps=30, gop_size=gop)
                 for gop in args.gop}
        if args.nonref:
            for gop in args.gop:
                files[f"gop={gop} no-B"] = write_without_bframes(os.path.join(tmp, f"nob{gop}.mp4"), frames, gop)
        for path in files.values():
            check_frames(path, indices, readers)
        print("frames: every reader equals a full decode on every file", flush=True)
        for mode in args.mode:
            with BusyCores(mode in ("loaded", "many")):
                if mode == "windows":
                    from xclip_hf.video.timing import frame_times_at_rate
                    from xclip_hf.video.windows import plan_windows

                    windows = plan_windows(*frame_times_at_rate(len(frames), 30), 2, 1, num_frames=args.num_frames)
                    for name, path in files.items():
                        report(f"[windows, {len(windows)} x 2 s every 1 s] {name:12s}",
                               time_windows(path, windows, readers, args.repeats), len(windows) * args.num_frames,
                               CPU_SECONDS)
                elif mode == "many":
                    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
                        list(pool.map(_read_many, [("recipe", p, indices) for p in files.values()]))  # warm up
                        for name, path in files.items():
                            copies = [path] * args.files
                            sec = time_many(copies, indices, readers, args.repeats, pool)
                            report(f"[many, 2 workers, {args.files} files] {name:12s}", sec,
                                   len(indices) * args.files)
                else:
                    for name, path in files.items():
                        report(f"[{mode}] {name:12s}", time_single(path, indices, readers, args.repeats),
                               len(indices), CPU_SECONDS)


if __name__ == "__main__":
    main()
