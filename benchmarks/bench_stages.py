"""Where a zero-shot pipeline call spends its time, per stage, on files as cameras and phones write them.

The pipeline (`pipeline("zero-shot-video-classification")`, B/32-8f with random weights, 400 labels, batch 4, no
workers) runs unchanged over each file set; timers wrapped around its own functions split the wall time into:
open (container open + packet index), decode (seek + decode), convert
(YUV -> RGB of the sampled frames), resize, crop + rescale + normalise (the rest of the video processor), model
(the forward: video tower, MIT, prompt generator, logits; the text features come from the label cache, filled
before timing) and other (the pipeline's own bookkeeping: what is left of the call). Frames decoded vs sampled
are counted by the decoder. Each file set is measured `--repeats` times; the table gives the median share and the
range of ms per video. ``--decode-mode keyframes`` measures the approximate decoding mode instead.

``--bounds`` measures what the stages are made of instead, per file set (8 sparse frames per file): the exact
decoding bound (frames from the key frame before each run of sampled frames to its last, the fewest frames a
decoder must produce for frames equal to a full decode), the packets each reader variant sends to the decoder, its
decode time (seek + decode, no conversion) per video and per decoded frame, with the decoder's threading as a
variant (see `DECODE_VARIANTS`), alone and with 2 DataLoader-like worker processes decoding the files in parallel;
then the colour conversion (YUV -> RGB, one frame), the float conversion and the resize of the sampled frames (ms
per frame).

    python benchmarks/bench_stages.py [--repeats 3] [--sets web-360p phone-720p phone-1080p] [--count 4]
    python benchmarks/bench_stages.py --bounds [--repeats 3] [--count 4]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from stage_timers import StageClock  # noqa: E402

# name -> (height, width, key-frame interval, B-frames): a web download (x264 defaults) and phones (1 s GOP, no B)
FILE_SETS = {"web-360p": (360, 640, 250, True), "phone-720p": (720, 1280, 30, False),
             "phone-1080p": (1080, 1920, 30, False)}
STAGES = ("open", "decode", "convert", "resize", "crop+normalise", "model", "other")


def write_set(directory: str, name: str, count: int, seconds: float = 10.0, fps: int = 30) -> list[str]:
    """`count` H.264 files of the set `name`: a moving noise texture (compresses like camera footage)."""
    import av

    height, width, gop, bframes = FILE_SETS[name]
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        texture = rng.integers(0, 256, size=(height // 4 + 64, width // 4 + 64, 3), dtype=np.uint8)
        texture = np.repeat(np.repeat(texture, 4, 0), 4, 1)  # 4x4 blocks: detail at the scale of real scenes
        path = os.path.join(directory, f"{name}_{i}.mp4")
        with av.open(path, "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
            stream.options = {"g": str(gop), "bf": "3" if bframes else "0", "preset": "veryfast", "crf": "23"}
            for t in range(int(seconds * fps)):
                dy, dx = (2 * t) % 256, (3 * t) % 256
                frame = av.VideoFrame.from_ndarray(texture[dy:dy + height, dx:dx + width], format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def measure(pipe, paths, labels, batch_size: int, decode_mode: str = "exact") -> tuple[dict, collections.Counter]:
    """One timed call over `paths`: seconds per stage and frame counts."""
    clock = StageClock()
    with clock.wrapped(pipe):
        start = time.perf_counter()
        pipe(paths, candidate_labels=labels, batch_size=batch_size, decode_mode=decode_mode)
        total = time.perf_counter() - start
    return clock.stages(total), clock.frames


# reader variants of --bounds: flags of the PyAV backend (`frame_threads`/`FRAME_THREADING_MIN_RUN` choose between
# slice and frame threading, `frame_thread_count` the threads of frame threading, `drain` stops feeding the decoder
# once the wanted packets are sent); "1-thread" decodes with one thread, "keyframes" reads the approximate mode's frames
DECODE_VARIANTS = {
    "no-drain": {"drain": False},
    "default": {},
    "1-thread": {"frame_threads": False, "threads": 1},
    "slice": {"frame_threads": False},
    "frame-2": {"FRAME_THREADING_MIN_RUN": 0, "frame_thread_count": 2},
    "frame-auto": {"FRAME_THREADING_MIN_RUN": 0, "frame_thread_count": 0},
    "keyframes": {"snap": True},  # the default reader on the frames of decode_mode="keyframes"
}


@contextlib.contextmanager
def decode_variant(name: str):
    """The PyAV backend switched to a `DECODE_VARIANTS` entry, frames left unconverted (decoding alone is timed)."""
    from xclip_hf.video import reader

    backend = reader._PyAVBackend
    flags = dict(DECODE_VARIANTS[name])
    threads = flags.pop("threads", None)
    flags.pop("snap", None)
    saved = {attr: getattr(backend, attr) for attr in (*flags, "_to_rgb", "_choose_threading")}
    for attr, value in flags.items():
        setattr(backend, attr, value)
    backend._to_rgb = lambda self, frame: frame
    if threads is not None:
        def one_thread(self, wanted, _choose=saved["_choose_threading"]):
            self._stream.codec_context.thread_count = threads
        backend._choose_threading = one_thread
    try:
        yield
    finally:
        for attr, value in saved.items():
            setattr(backend, attr, value)


def exact_bound(key_frames, indices) -> int:
    """Frames from the key frame before each run of sorted `indices` to the run's last: the exact decoding bound."""
    keys = list(key_frames)
    total, start, previous = 0, None, None
    for index in sorted(set(int(i) for i in indices)):
        key = keys[bisect.bisect_right(keys, index) - 1]
        if start is None or key > previous + 1:  # a new seek (as the reader decides)
            total += 0 if start is None else previous - start + 1
            start = key
        previous = index
    return total + previous - start + 1


def read_files(paths, variant: str) -> tuple[float, float, int, int]:
    """Decode 8 sparse frames of each of `paths` with a reader variant: (seconds, CPU seconds of the process's
    threads, packets sent, frames out)."""
    from xclip_hf.video import reader
    from xclip_hf.video.sampling import snap_to_key_frames, sparse_sample_indices

    seconds = cpu = sent = out = 0
    original = reader._PyAVBackend._decode_from

    def counted(self, *args):
        nonlocal out
        for item in original(self, *args):
            out += 1
            yield item

    with decode_variant(variant):
        reader._PyAVBackend._decode_from = counted
        try:
            for path in paths:
                with reader.VideoFile(path, backend="pyav") as video:
                    indices = sparse_sample_indices(video.num_frames, 8)
                    if DECODE_VARIANTS[variant].get("snap"):
                        indices = snap_to_key_frames(indices, video.key_frames)
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for _ in video.iter_frames(indices):
                        pass
                    seconds += time.perf_counter() - start
                    cpu += time.process_time() - start_cpu
                    sent += video._backend.packets_sent
        finally:
            reader._PyAVBackend._decode_from = original
    return seconds, cpu, sent, out


def read_in_workers(paths, variant: str, workers: int = 2) -> float:
    """Seconds to decode `paths` in `workers` processes marked as DataLoader workers (as the pipeline's)."""
    ctx = mp.get_context("fork")
    start = time.perf_counter()
    with ctx.Pool(workers, initializer=_as_dataloader_worker) as pool:
        pool.starmap(read_files, [(paths[w::workers], variant) for w in range(workers)])
    return time.perf_counter() - start


def _as_dataloader_worker() -> None:
    """Make `torch.utils.data.get_worker_info()` answer as in a DataLoader worker (the reader asks it)."""
    import torch.utils.data._utils.worker as worker

    worker._worker_info = worker.WorkerInfo(id=0, num_workers=2, seed=0, dataset=None)


def frame_costs(path) -> dict:
    """ms per frame of the colour conversion, the float conversion and the processor's resize, on 8 frames."""
    from xclip_hf.models import video_processing_xclip as vp
    from xclip_hf.video.reader import VideoFile
    from xclip_hf.video.sampling import sparse_sample_indices

    processor = vp.XClipVideoProcessor()
    size, resample = processor.size, processor.resample
    with decode_variant("default"), VideoFile(path, backend="pyav") as video:
        backend = video._backend
        raw = [frame for _, frame in video.iter_frames(sparse_sample_indices(video.num_frames, 8))]
    backend._to_rgb(raw[0])  # the converter's context for this size, made once per size and thread
    start = time.perf_counter()
    rgb = np.stack([backend._to_rgb(frame) for frame in raw])
    convert = time.perf_counter() - start
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    start = time.perf_counter()
    floats = x.float()
    to_float = time.perf_counter() - start
    start = time.perf_counter()
    vp.resize_short_side(floats, size, resample)
    resize = time.perf_counter() - start
    return {"convert": 1000 * convert / 8, "float": 1000 * to_float / 8, "resize": 1000 * resize / 8}


def bounds(args, work: str) -> None:
    """The --bounds tables: decoding bound, packets sent and decode time per reader variant, per-frame costs."""
    from xclip_hf.video.reader import VideoFile
    from xclip_hf.video.sampling import sparse_sample_indices

    variants = args.variants
    print(f"load {os.getloadavg()[0]:.1f}; per video, 8 sparse frames; ranges over {args.repeats} repeats; 'alone': "
          "one process, '2 workers': wall time of 2 DataLoader-like processes over the files", flush=True)
    print("| set | exact bound (frames) | reader | packets sent | frames out | decode ms alone | CPU ms alone | "
          "ms per frame out | decode ms, 2 workers |\n|---|---|---|---|---|---|---|---|---|")
    costs = {}
    for name in args.sets:
        paths = write_set(work, name, args.count)
        with VideoFile(paths[0], backend="pyav") as video:
            bound = exact_bound(video.key_frames.tolist(), sparse_sample_indices(video.num_frames, 8))
        timings, cpus, workers, counts = ({v: [] for v in variants} for _ in range(4))
        read_files(paths[:1], "default")  # warm-up
        for r in range(args.repeats):
            for v in variants[r % len(variants):] + variants[:r % len(variants)]:  # rotated: load hits all alike
                seconds, cpu, sent, out = read_files(paths, v)
                timings[v].append(1000 * seconds / len(paths))
                cpus[v].append(1000 * cpu / len(paths))
                counts[v] = (sent / len(paths), out / len(paths))
                workers[v].append(1000 * read_in_workers(paths, v) / len(paths))
        for v in variants:
            sent, out = counts[v]
            print(f"| {name} | {bound} | {v} | {sent:.0f} | {out:.0f} | {_range(timings[v])} | {_range(cpus[v])} | "
                  f"{_range([t / out for t in timings[v]], 2)} | {_range(workers[v])} |", flush=True)
        costs[name] = [frame_costs(paths[0]) for _ in range(args.repeats)]
    print("\n| set | convert ms/frame | float ms/frame | resize ms/frame |\n|---|---|---|---|")
    for name, runs in costs.items():
        print(f"| {name} | " + " | ".join(_range([run[k] for run in runs], 2) for k in ("convert", "float", "resize"))
              + " |")
    print(f"load at the end {os.getloadavg()[0]:.1f}")


def _range(values, digits: int = 0) -> str:
    """``low-high`` of `values` (one number when they round alike)."""
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}-{high}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(FILE_SETS), choices=list(FILE_SETS))
    parser.add_argument("--count", type=int, default=4, help="files per set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--labels", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 files of web-360p: a smoke test")
    parser.add_argument("--decode-mode", default="exact", choices=["exact", "keyframes"])
    parser.add_argument("--bounds", action="store_true", help="the decoding bound and per-frame costs (no model)")
    parser.add_argument("--variants", nargs="+", default=list(DECODE_VARIANTS), choices=list(DECODE_VARIANTS))
    args = parser.parse_args(argv)
    if args.bounds:
        with tempfile.TemporaryDirectory() as work:
            bounds(args, work)
        return 0
    from bench_zero_shot import make_labels, save_published_checkpoint
    from xclip_hf.pipelines import build_pipeline

    if args.quick:
        args.sets, args.count, args.repeats, args.labels = ["web-360p"], 2, 1, 20
    labels = make_labels(args.labels)
    with tempfile.TemporaryDirectory() as work:
        save_published_checkpoint(os.path.join(work, "model"), labels, quick=args.quick)
        pipe = build_pipeline(os.path.join(work, "model"), device="cpu")
        print(f"torch threads {torch.get_num_threads()}, {args.labels} labels, batch {args.batch_size}, "
              f"decode mode {args.decode_mode}, load {os.getloadavg()[0]:.1f}", flush=True)
        header = f"| set | frames decoded / sampled | ms per video (range) | " + " | ".join(STAGES) + " |"
        print(header + "\n|" + "---|" * (3 + len(STAGES)))
        for name in args.sets:
            paths = write_set(work, name, args.count)
            pipe(paths[:1], candidate_labels=labels)  # warm-up: first-call costs out of the timings
            runs = [measure(pipe, paths, labels, args.batch_size, args.decode_mode) for _ in range(args.repeats)]
            totals = [sum(stages.values()) * 1000 / len(paths) for stages, _ in runs]
            shares = {stage: statistics.median(stages[stage] / sum(stages.values()) for stages, _ in runs)
                      for stage in STAGES}
            frames = runs[0][1]
            cells = " | ".join(f"{100 * shares[stage]:.0f}%" for stage in STAGES)
            print(f"| {name} | {frames['decoded'] / len(paths):.0f} / {frames['converted'] / len(paths):.0f} | "
                  f"{statistics.median(totals):.0f} ({min(totals):.0f}-{max(totals):.0f}) | {cells} |", flush=True)
        print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
