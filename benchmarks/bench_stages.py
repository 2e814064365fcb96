"""Where a zero-shot pipeline call spends its time, per stage, on files as cameras and phones write them.

The pipeline (`pipeline("zero-shot-video-classification")`, B/32-8f with random weights, 400 labels, batch 4, no
workers) runs unchanged over each file set; timers wrapped around its own functions split the wall time into:
open (container open + packet index), decode (seek + decode), convert
(YUV -> RGB of the sampled frames), resize, crop + rescale + normalise (the rest of the video processor), model
(the forward: video tower, MIT, prompt generator, logits; the text features come from the label cache, filled
before timing) and other (the pipeline's own bookkeeping: what is left of the call). Frames decoded vs sampled
are counted by the decoder. Each file set is measured `--repeats` times; the table gives the median share and the
range of ms per video.

    python benchmarks/bench_stages.py [--repeats 3] [--sets web-360p phone-720p phone-1080p] [--count 4]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
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


class StageClock:
    """Seconds per stage, accumulated by wrappers around the pipeline's functions; frames decoded and converted."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.frames = collections.Counter()

    @contextlib.contextmanager
    def wrapped(self, pipe):
        """Wrap the reader, the processor and the forward of `pipe` for the duration of the block."""
        from xclip_hf.models import video_processing_xclip as vp
        from xclip_hf.video import reader

        saved = []

        def patch(owner, attr, stage, count=None):
            original = getattr(owner, attr)

            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    result = original(*args, **kwargs)
                finally:
                    self.seconds[stage] += time.perf_counter() - start
                if count is not None:
                    self.frames[count] += 1
                return result

            saved.append((owner, attr, original))
            setattr(owner, attr, timed)

        def patch_generator(owner, attr, stage):
            original = getattr(owner, attr)

            def timed(*args, **kwargs):
                inner = original(*args, **kwargs)
                while True:
                    start = time.perf_counter()
                    try:
                        item = next(inner)
                    except StopIteration:
                        self.seconds[stage] += time.perf_counter() - start
                        return
                    self.seconds[stage] += time.perf_counter() - start
                    self.frames["decoded"] += 1
                    yield item

            saved.append((owner, attr, original))
            setattr(owner, attr, timed)

        patch(reader._PyAVBackend, "__init__", "open")
        patch_generator(reader._PyAVBackend, "_decode_from", "read")  # seek + decode (conversion runs between items)
        patch(reader._PyAVBackend, "_to_rgb", "convert", count="converted")
        patch(vp, "resize_short_side", "resize")
        patch(vp.XClipVideoProcessor, "process_clips", "processor")
        patch(type(pipe), "_forward", "model")
        try:
            yield self
        finally:
            for owner, attr, original in reversed(saved):
                setattr(owner, attr, original)

    def stages(self, total: float) -> dict:
        """Seconds per named stage; `total`: the wall time of the call (`other` is what the stages leave)."""
        s = self.seconds
        out = {"open": s["open"], "decode": s["read"], "convert": s["convert"],
               "resize": s["resize"], "crop+normalise": max(0.0, s["processor"] - s["resize"]), "model": s["model"]}
        out["other"] = max(0.0, total - sum(out.values()))
        return out


def measure(pipe, paths, labels, batch_size: int) -> tuple[dict, collections.Counter]:
    """One timed call over `paths`: seconds per stage and frame counts."""
    clock = StageClock()
    with clock.wrapped(pipe):
        start = time.perf_counter()
        pipe(paths, candidate_labels=labels, batch_size=batch_size)
        total = time.perf_counter() - start
    return clock.stages(total), clock.frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(FILE_SETS), choices=list(FILE_SETS))
    parser.add_argument("--count", type=int, default=4, help="files per set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--labels", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 files of web-360p: a smoke test")
    args = parser.parse_args(argv)
    from bench_zero_shot import make_labels, save_published_checkpoint
    from xclip_hf.pipelines import build_pipeline

    if args.quick:
        args.sets, args.count, args.repeats, args.labels = ["web-360p"], 2, 1, 20
    labels = make_labels(args.labels)
    with tempfile.TemporaryDirectory() as work:
        save_published_checkpoint(os.path.join(work, "model"), labels, quick=args.quick)
        pipe = build_pipeline(os.path.join(work, "model"), device="cpu")
        print(f"torch threads {torch.get_num_threads()}, {args.labels} labels, batch {args.batch_size}, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        header = f"| set | frames decoded / sampled | ms per video (range) | " + " | ".join(STAGES) + " |"
        print(header + "\n|" + "---|" * (3 + len(STAGES)))
        for name in args.sets:
            paths = write_set(work, name, args.count)
            pipe(paths[:1], candidate_labels=labels)  # warm-up: first-call costs out of the timings
            runs = [measure(pipe, paths, labels, args.batch_size) for _ in range(args.repeats)]
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
