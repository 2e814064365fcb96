"""Untrimmed videos: the windowed pipeline vs the loop a user writes today, windows/s and peak memory.

The script writes 30 fps 640x360 H.264 files of ``--minutes`` (default 1 and 5; frames are generated and encoded
one by one, nothing holds the whole video), then classifies 2 s windows every 1 s against 20 labels:

* ``windowed``: ``pipe(path, chunk_length_s=2, stride_length_s=1, return_timestamps=True, batch_size=8)`` — one
  pass over the file, frames streamed window by window, windows batched, label features cached;
* ``loop``: what a user writes today — for each window, cut its frames with the PyAV recipe of transformers'
  X-CLIP docs (``read_video_pyav``: seek to 0, decode up to the last wanted frame) and call the pipeline on them.

Each measurement runs in a fresh child process (so its peak RSS, ``ru_maxrss``, belongs to that measurement alone)
and the two modes alternate (windowed, loop, windowed, loop, ...). The recipe decodes from the start of the file
for every window, so the loop's cost grows with the square of the length; with ``--loop-windows N`` (default 12)
it runs on N windows spread evenly over the file and its windows/s is measured on those (an unbiased estimate of
the whole loop's rate; ``--loop-windows 0`` runs all of them). Both modes score the same windows with the same
frames: the script checks that their scores agree.

The model is a randomly initialised X-CLIP of ``--variant`` (default ``xclip-tiny``, 32 px: the figures then
measure reading and the pipeline's own overhead; ``--variant xclip-base-patch32`` adds a realistic model cost).

    python benchmarks/bench_long_video.py [--minutes 1 5] [--repeats 2] [--variant xclip-tiny] [--loop-windows 12]
                                          [--num-workers 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from bench_decode import recipe_frames  # noqa: E402  (the recipe, one copy for all benchmarks)

LABELS = [f"{verb} {thing}" for verb in ("throwing", "catching", "kicking", "holding", "painting")
          for thing in ("a ball", "a box", "a hat", "a fence")]


def write_long_video(path: str, minutes: float, fps: int = 30, width: int = 640, height: int = 360) -> str:
    """A textured scene panning and changing brightness over time, encoded frame by frame (constant memory)."""
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height + 64, width * 2, 3), dtype=np.uint8)
    base = ((base.astype(np.uint16) + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, 2, 1)) // 4)
    base = base.astype(np.uint8)
    total = int(round(minutes * 60 * fps))
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(total):
            x, y = (3 * t) % width, (t // 7) % 64
            frame = base[y:y + height, x:x + width]
            frame = np.clip(frame.astype(np.int16) + int(40 * np.sin(t / 90.0)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_checkpoint(directory: str, variant: str) -> str:
    """A randomly initialised X-CLIP of `variant` with a processor and a tokenizer built on the labels."""
    import torch

    from xclip_hf import XClipConfig, XClipModel, XClipProcessor, XClipVideoProcessor
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer(LABELS, vocab_size=600)
    config = XClipConfig.from_variant(variant, num_frames=8, vocab_size=len(tokenizer))
    XClipModel(config).eval().save_pretrained(directory)
    size = config.vision_config.image_size
    video_processor = XClipVideoProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                          num_frames=8)
    XClipProcessor(video_processor=video_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def child(mode: str, path: str, checkpoint: str, chunk: float, stride: float, loop_windows: int,
          num_workers: int = 0) -> dict:
    """One measurement in this (fresh) process: windows/s, scores of the windows, peak RSS."""
    import av
    import torch
    from transformers import pipeline

    import xclip_hf  # noqa: F401
    from xclip_hf.video.reader import VideoFile
    from xclip_hf.video.windows import plan_windows

    torch.set_num_threads(os.cpu_count() or 1)
    pipe = pipeline("zero-shot-video-classification", model=checkpoint, device="cpu")
    with VideoFile(path) as video:
        windows = plan_windows(video.frame_times, video.duration, chunk, stride, num_frames=8)
    pipe(np.zeros((8, 64, 64, 3), np.uint8), candidate_labels=LABELS)  # warm-up: label features cached
    t0 = time.perf_counter()
    if mode == "windowed":
        out = pipe(path, candidate_labels=LABELS, chunk_length_s=chunk, stride_length_s=stride,
                   return_timestamps=True, batch_size=8, num_workers=num_workers, progress=False)
        scores = {str(r["timestamp"]): {i["label"]: i["score"] for i in r["labels"]} for r in out}
        count = len(out)
    else:
        chosen = windows
        if loop_windows and loop_windows < len(windows):
            chosen = [windows[k] for k in np.linspace(0, len(windows) - 1, loop_windows).round().astype(int)]
        scores = {}
        with av.open(path) as container:
            for w in chosen:
                frames = recipe_frames(container, w.indices.tolist())
                result = pipe(frames, candidate_labels=LABELS)
                scores[str((round(w.start_s, 6), round(w.end_s, 6)))] = {i["label"]: i["score"] for i in result}
        count = len(chosen)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "windows": count, "seconds": seconds, "peak_rss_mb": peak_mb, "scores": scores,
            "total_windows": len(windows)}


def run_child(args, mode, path, checkpoint) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--path", path, "--checkpoint", checkpoint,
           "--chunk", str(args.chunk), "--stride", str(args.stride), "--loop-windows", str(args.loop_windows),
           "--num-workers", str(args.num_workers)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variant", default="xclip-tiny")
    parser.add_argument("--chunk", type=float, default=2.0)
    parser.add_argument("--stride", type=float, default=1.0)
    parser.add_argument("--loop-windows", type=int, default=12, help="windows the loop runs (0: all)")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader workers of the windowed pipeline (decoding beside the model; default 0;"
                             " peak RSS counts the main process only)")
    parser.add_argument("--workdir", default=None, help="keep the written files here (default: a temp dir)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.path, args.checkpoint, args.chunk, args.stride, args.loop_windows,
                               args.num_workers)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        checkpoint = make_checkpoint(os.path.join(work, f"model-{args.variant}"), args.variant)
        files = {}
        for minutes in args.minutes:
            path = os.path.join(work, f"long_{minutes:g}min.mp4")
            if not os.path.exists(path):
                t0 = time.perf_counter()
                write_long_video(path, minutes)
                print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s",
                      flush=True)
            files[minutes] = path
        print(f"model {args.variant} (random weights), {len(LABELS)} labels, {args.chunk:g} s windows every "
              f"{args.stride:g} s, 8 frames each, batch 8, {args.num_workers} workers; {os.cpu_count()} cores", flush=True)
        results = {m: {"windowed": [], "loop": []} for m in files}
        for rep in range(args.repeats):
            for minutes, path in files.items():
                for mode in ("windowed", "loop"):
                    r = run_child(args, mode, path, checkpoint)
                    results[minutes][mode].append(r)
                    print(f"  repeat {rep + 1} {minutes:g} min {mode:8s}: {r['windows']} windows in "
                          f"{r['seconds']:.1f} s = {r['windows'] / r['seconds']:.2f} windows/s, peak RSS "
                          f"{r['peak_rss_mb']:.0f} MB", flush=True)
        print()
        for minutes, modes in results.items():
            wps = {mode: [r["windows"] / r["seconds"] for r in runs] for mode, runs in modes.items()}
            ratios = [w / l for w, l in zip(wps["windowed"], wps["loop"])]
            windowed_scores, loop_scores = modes["windowed"][0]["scores"], modes["loop"][0]["scores"]
            diff = max(abs(windowed_scores[key][label] - loop_scores[key][label])
                       for key in loop_scores for label in LABELS)
            rss = {mode: max(r["peak_rss_mb"] for r in runs) for mode, runs in modes.items()}
            print(f"{minutes:g} min ({modes['windowed'][0]['total_windows']} windows): windowed "
                  f"{min(wps['windowed']):.2f}-{max(wps['windowed']):.2f} windows/s, loop "
                  f"{min(wps['loop']):.2f}-{max(wps['loop']):.2f} windows/s (on {modes['loop'][0]['windows']} "
                  f"windows), ratio x{min(ratios):.1f}-x{max(ratios):.1f}; peak RSS windowed {rss['windowed']:.0f} MB, "
                  f"loop {rss['loop']:.0f} MB; max score difference {diff:.1e}")


if __name__ == "__main__":
    main()
