"""Extreme aspect ratios: crop-before-resize (what the video processor does) vs resizing the whole frame first.

A frame of 2 x 20000 pixels resized to short side 32 becomes 32 x 320000 before a 32 x 32 crop is taken. The
processor now resizes only the source region under each crop window (same scale, so the same pixels when the
window starts on the output grid). Timed alternated in one run (ABAB...), 3 crops per frame, uint8 frames:

* ``whole``: the previous path, forced by raising ``EXTREME_PIXELS`` above the frame size;
* ``crop-first``: the default.

Prints the time of each, the ratio range over repeats and the largest pixel difference between the two.

    python benchmarks/bench_extreme_aspect.py [--height 2] [--width 20000] [--frames 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import xclip_hf.models.video_processing_xclip as vp  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2)
    parser.add_argument("--width", type=int, default=20000)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    processor = vp.XClipVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                       num_frames=args.frames)
    video = np.random.default_rng(0).integers(0, 255, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    default = vp.EXTREME_PIXELS

    def run(limit):
        vp.EXTREME_PIXELS = limit
        start = time.perf_counter()
        out = processor(video, num_spatial_crops=3, do_normalize=False, do_rescale=False, return_tensors="pt")
        vp.EXTREME_PIXELS = default
        return time.perf_counter() - start, out["pixel_values"]

    ratios, diff = [], 0.0
    for _ in range(args.repeats):
        t_whole, whole = run(float("inf"))
        t_crop, crop = run(default)
        ratios.append(t_whole / t_crop)
        diff = max(diff, float((whole - crop).abs().max()))
        print(f"whole {t_whole:.3f} s   crop-first {t_crop:.3f} s   speed-up {t_whole / t_crop:.1f}x")
    print(f"{args.frames} frames of {args.height}x{args.width}: crop-first is {min(ratios):.1f}-{max(ratios):.1f}x "
          f"faster; largest pixel difference {diff:g} (0-255 scale)")


if __name__ == "__main__":
    main()
