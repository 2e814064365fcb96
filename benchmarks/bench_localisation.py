"""Temporal localisation of untrimmed videos: the pipeline's three aggregations on the demo's videos and on held-out
ones, with the bounds the window scores allow.

Needs the demo's trained models: ``python examples/demo.py --seed S --output_dir DIR_S`` for each seed (DIR_S/xclip).
For each seed the script scores, through the pipeline (2 s windows every 0.5 s, every label per window):

* test: the demo's own untrimmed video (eight 3 s segments; rebuilt exactly as `examples/demo.py` writes it);
* held-out: four other untrimmed videos per model (other generator seeds and orders; two with 3 s segments, two
  with 4 s), the videos the aggregation settings were chosen on, so the test column is not a fit.

and prints the frame-level accuracy (`evaluation.localisation.frame_accuracy`) of ``aggregate="segments"`` (window
top labels merged), ``"frames"`` (per-frame averages) and ``"segmentation"`` (`pipelines/segments.py`), and the
bounds: the accuracy with the TRUE boundaries given and each segment labelled from the windows wholly inside it,
the top-1 accuracy of those inside windows, and the share of windows across a boundary whose top label is one of
the two actions they see.

    python benchmarks/bench_localisation.py --demo-dirs out0 out1 out2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

METHODS = ("segments", "frames", "segmentation")


def demo_video(path: str, class_names: list[str], seed: int) -> list[dict]:
    """The demo's untrimmed video for `seed` (the order and generator seed of `examples/demo.py`'s timeline)."""
    from xclip_hf.data.synthetic import write_long_video

    order = [str(c) for c in np.random.default_rng(seed).permutation(class_names)]
    return write_long_video(path, order + order[:2], segment_s=3.0, fps=12, size=32, seed=seed + 1)


def held_out_videos(directory: str, class_names: list[str], seed: int, count: int = 4) -> list[tuple[str, list]]:
    from xclip_hf.data.synthetic import write_long_video

    out = []
    for j in range(count):
        generator = 1000 + 10 * seed + j
        rng = np.random.default_rng(generator)
        order = [str(c) for c in rng.permutation(class_names)] + [str(c) for c in rng.permutation(class_names)][:2]
        path = os.path.join(directory, f"heldout_seed{seed}_{j}.mp4")
        truth = write_long_video(path, order, segment_s=3.0 if j < count // 2 else 4.0, fps=12, size=32,
                                 seed=generator)
        out.append((path, truth))
    return out


def inside(spans, segment):
    return (spans[:, 0] >= segment["start_s"] - 1e-9) & (spans[:, 1] <= segment["end_s"] + 1e-9)


def bounds(windows, truth, class_names) -> tuple[list[dict], float, float]:
    """(true boundaries labelled from their inside windows, inside-window top-1, share of straddlers naming one of
    their two actions)."""
    from xclip_hf.pipelines.segments import window_matrix

    spans, names, scores = window_matrix(windows, class_names)
    labelled, right, total = [], 0, 0
    for segment in truth:
        held = inside(spans, segment)
        labelled.append({**segment, "label": names[int(np.log(scores[held] + 1e-6).sum(0).argmax())]})
        right += sum(names[k] == segment["label"] for k in scores[held].argmax(1))
        total += int(held.sum())
    named, straddlers = 0, 0
    for span, row in zip(spans, scores):
        seen = {s["label"] for s in truth if s["start_s"] < span[1] and s["end_s"] > span[0]}
        if len(seen) > 1:
            straddlers += 1
            named += names[int(row.argmax())] in seen
    return labelled, right / max(total, 1), named / max(straddlers, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dirs", nargs="+", required=True, help="output folders of examples/demo.py")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="the --seed of each folder")
    parser.add_argument("--stride", type=float, default=0.5)
    args = parser.parse_args(argv)
    if len(args.demo_dirs) != len(args.seeds):
        parser.error("give one --seeds value per --demo-dirs folder")

    import torch
    from transformers import pipeline

    from demo import DEMO_CLASSES
    from xclip_hf.evaluation.localisation import frame_accuracy
    from xclip_hf.models.loading import load_model_and_processor
    from xclip_hf.pipelines.segments import aggregate_windows
    from xclip_hf.video.reader import VideoFile

    torch.set_num_threads(1)
    table = {key: {m: [] for m in (*METHODS, "true boundaries")} for key in ("test", "held-out")}
    inside_top1 = {"test": [], "held-out": []}
    named = {"test": [], "held-out": []}
    with tempfile.TemporaryDirectory(prefix="bench_localisation_") as tmp:
        for directory, seed in zip(args.demo_dirs, args.seeds):
            loaded = load_model_and_processor(os.path.join(directory, "xclip"))
            classify = pipeline("zero-shot-video-classification", model=loaded.model, processor=loaded.processor)
            test_path = os.path.join(tmp, f"demo_seed{seed}.mp4")
            videos = {"test": [(test_path, demo_video(test_path, DEMO_CLASSES, seed))],
                      "held-out": held_out_videos(tmp, DEMO_CLASSES, seed)}
            for key, items in videos.items():
                for path, truth in items:
                    windows = classify(path, candidate_labels=DEMO_CLASSES, chunk_length_s=2.0,
                                       stride_length_s=args.stride, return_timestamps=True, batch_size=16)
                    with VideoFile(path) as video:
                        times, end, fps = video.frame_times, video.duration, video.fps
                    for method in METHODS:
                        segments = aggregate_windows(windows, method, end_s=end, frame_times=times,
                                                     labels=DEMO_CLASSES)
                        table[key][method].append(frame_accuracy(segments, truth, fps))
                    labelled, top1, share = bounds(windows, truth, DEMO_CLASSES)
                    table[key]["true boundaries"].append(frame_accuracy(labelled, truth, fps))
                    inside_top1[key].append(top1)
                    named[key].append(share)
            print(f"seed {seed}: test " + ", ".join(f"{m} {100 * table['test'][m][-1]:.1f}%" for m in METHODS),
                  flush=True)

    seeds = ", ".join(map(str, args.seeds))
    print(f"\nframe-level accuracy (%), 2 s windows every {args.stride:g} s; test = the demo's video per seed "
          f"({seeds}); held-out = {len(table['held-out']['segments'])} other videos (mean, min)")
    print(f"{'aggregate':>22} | {'test per seed':>22} | held-out mean (min)")
    for method in (*METHODS, "true boundaries"):
        test = " / ".join(f"{100 * a:.1f}" for a in table["test"][method])
        held = table["held-out"][method]
        print(f"{method:>22} | {test:>22} | {100 * np.mean(held):.1f} ({100 * min(held):.1f})")
    for key in ("test", "held-out"):
        print(f"{key}: windows wholly inside one segment, top-1 {100 * np.mean(inside_top1[key]):.1f}%; windows "
              f"across a boundary whose top label is one of their two actions: {100 * np.mean(named[key]):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
