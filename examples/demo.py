#!/usr/bin/env python
"""Offline demo: X-CLIP vs the paper's CLIP-Mean baseline on videos that only temporal order tells apart.

    python examples/demo.py                  # about 6 minutes on 2 quiet CPU cores (344 s measured), no network
    python examples/demo.py --seed 1         # same seed -> the same results.json, byte for byte

1. writes synthetic mp4 videos of 6 classes in 3 time-reversed pairs (moving left / right, growing /
   shrinking, appearing / disappearing) with `xclip_hf.data.synthetic`, and builds a CLIP-style BPE tokenizer
   on the class names (no tokenizer can be downloaded);
2. fine-tunes a small X-CLIP with `examples/run_video_classification.py`, then the same model with
   cross-frame attention and MIT switched off by config: the paper's CLIP-Mean baseline (Sec. 4.5, Tab. 6),
   which averages per-frame features and so cannot see the order of the frames;
3. evaluates each model on the held-out videos with `xclip_hf.evaluation` (the code of `xclip-hf evaluate
   closed-set`, through `pipeline("zero-shot-video-classification")`), prints top-1 and a per-class table, and
   saves a PNG with the training losses and the confusion matrices.

The held-out videos of each pair are exact time reverses of each other (same frames, backwards, lossless), so a
model blind to frame order gives both videos of a test pair the same answer: at most 50 % on every pair.
Reproducible: the videos are written byte for byte the same for a seed, and training runs with
`--full_determinism --seed S --data_seed S`, so one seed gives the same `results.json` on every run.

No CLIP weights are available offline, so both models start from random weights (`--model_variant`) with the
text encoder frozen: the class names' random text features serve as fixed class prototypes that the video
side and the video-specific prompt generator learn to match (paper Tab. 7: frozen text branch). Horizontal
flips are off: they would turn "moving left" into "moving right". The vision position embeddings start from a
fixed 2-D sin-cos pattern (`--position_init sincos`, i.e. the model's `vision_config.position_embedding_init`):
with CLIP's small random init the tiny ViT sees a bag of patches and never tells "moving left" from "moving right".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO_CLASSES = ["moving left", "moving right", "growing", "shrinking", "appearing", "disappearing"]
# The baseline of paper Sec. 4.5 / Tab. 6: per-frame CLIP features averaged over time.
CLIP_MEAN_OVERRIDES = "use_cross_frame_attention=false,use_mit=false"
# A small X-CLIP: the "xclip-tiny" variant with a 64-d joint space and MIT (16-d is too narrow to learn order).
MODEL_OVERRIDES = "projection_dim=64,vision_config.mit_hidden_size=64,vision_config.mit_intermediate_size=128"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--num_videos_per_class", type=int, default=150)
    parser.add_argument("--max_steps", type=int, default=3000, help="training steps of each model")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train(name: str, args, data, tokenizer_dir: str, overrides: str) -> str:
    """Run the example script (a separate process, as a user would) and return its output directory."""
    out = os.path.join(args.output_dir, name)
    cmd = [
        sys.executable, os.path.join(HERE, "run_video_classification.py"),
        "--model_variant", "xclip-tiny", "--config_overrides", overrides, "--tokenizer_name", tokenizer_dir,
        "--train_file", data.train_file, "--validation_file", data.val_file, "--labels_file", data.labels_file,
        "--output_dir", out, "--do_train", "--do_eval", "--max_steps", str(args.max_steps),
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", "32",
        "--learning_rate", str(args.learning_rate), "--new_lr_scale", "1", "--warmup_steps", "0.05",
        "--freeze_text_encoder", "--flip_prob", "0", "--dataloader_num_workers", "2",
        "--position_init", "sincos",  # from scratch the tiny ViT otherwise sees a bag of patches: no left/right
        "--logging_steps", "20", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "--seed", str(args.seed),
        "--data_seed", str(args.seed), "--full_determinism",  # same seed -> same model, same results.json
    ]
    print(f"\n[{name}] " + " ".join(cmd), flush=True)
    # one intra-op thread in the trainer: the two data-loading workers use the other core
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(cmd, check=True, env=env)
    return out


def classify(model_dir: str, videos: list[str], class_names: list[str]) -> np.ndarray:
    """Top-1 class ids of `videos` through the evaluation code (`xclip_hf.evaluation`: the zero-shot pipeline)."""
    from xclip_hf.evaluation import build_pipeline, score_videos

    scored = score_videos(build_pipeline(model_dir), videos, class_names, batch_size=16, on_bad_video="raise",
                          progress=False)
    return scored.scores.argmax(1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class (the evaluation code's matrix)."""
    from xclip_hf.evaluation.metrics import confusion_matrix as matrix

    return matrix(predictions, labels, num_classes)


def per_class_table(matrices: dict, class_names: list[str]) -> str:
    """Per-class top-1 of every model, one row per class."""
    width = max(len(n) for n in class_names)
    lines = [f"{'class':<{width}}  " + "  ".join(f"{m:>9}" for m in matrices)]
    for i, name in enumerate(class_names):
        cells = [f"{m[i, i] / max(m[i].sum(), 1):>9.0%}" for m in matrices.values()]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def pair_accuracy(matrix: np.ndarray, class_names: list[str]) -> dict:
    """Top-1 on the held-out videos of each time-reversed pair (consecutive classes), e.g. 'moving left/right'."""
    pairs = {}
    for i in range(0, len(class_names) - 1, 2):
        rows = matrix[i : i + 2]
        pairs[f"{class_names[i]} / {class_names[i + 1]}"] = float((rows[0, i] + rows[1, i + 1]) / max(rows.sum(), 1))
    return pairs


def save_figure(path: str, runs: dict, matrices: dict, class_names: list[str]) -> None:
    """Training-loss curves of all models and one confusion matrix per model, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(matrices), figsize=(5 + 4.5 * len(matrices), 4.2))
    for name, out in runs.items():
        history = json.load(open(os.path.join(out, "trainer_state.json")))["log_history"]
        steps = [h["step"] for h in history if "loss" in h]
        axes[0].plot(steps, [h["loss"] for h in history if "loss" in h], label=name)
    axes[0].set(title="training loss", xlabel="step", ylabel="cross-entropy")
    axes[0].legend()
    for ax, (name, matrix) in zip(axes[1:], matrices.items()):
        ax.imshow(matrix, cmap="Blues")
        accuracy = np.trace(matrix) / matrix.sum()
        ax.set(title=f"{name}: top-1 {accuracy:.1%}", xlabel="predicted", ylabel="true",
               xticks=range(len(class_names)), yticks=range(len(class_names)))
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def timeline_demo(model_dir: str, class_names: list[str], output_dir: str, figure: str, seed: int = 0) -> dict:
    """Untrimmed video: segments of known classes in a known order, classified in 2 s windows every 0.5 s by the
    trained X-CLIP (`chunk_length_s`), merged into segments, printed next to the truth with a frame-level accuracy;
    the timeline is appended below the demo's PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from transformers import AutoModel, pipeline
    from transformers.utils import logging as hf_logging

    from xclip_hf import XClipProcessor
    from xclip_hf.data.synthetic import write_long_video
    from xclip_hf.pipelines.timeline import plot_timeline
    from xclip_hf.evaluation.localisation import frame_accuracy
    from xclip_hf.pipelines.segments import AGGREGATIONS, aggregate_windows
    from xclip_hf.video.reader import VideoFile

    fps = 12
    order = [str(c) for c in np.random.default_rng(seed).permutation(class_names)]
    path = os.path.join(output_dir, "long_video.mp4")
    truth = write_long_video(path, order + order[:2], segment_s=3.0, fps=fps, size=32, seed=seed + 1)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    model = AutoModel.from_pretrained(model_dir)
    hf_logging.set_verbosity(verbosity)
    classifier = pipeline("zero-shot-video-classification", model=model,
                          processor=XClipProcessor.from_pretrained(model_dir))
    windows = classifier(path, candidate_labels=class_names, chunk_length_s=2.0, stride_length_s=0.5,
                         return_timestamps=True, batch_size=16)
    with VideoFile(path) as video:
        frame_times, end_s = video.frame_times, video.duration
    # the windows -> segments of each of the pipeline's aggregations; the demo shows "segmentation"
    by_aggregate = {how: aggregate_windows(windows, how, end_s=end_s, frame_times=frame_times, labels=class_names)
                    for how in AGGREGATIONS}
    segments = by_aggregate["segmentation"]
    accuracies = {how: frame_accuracy(segs, truth, fps) for how, segs in by_aggregate.items()}
    accuracy = accuracies["segmentation"]
    print(f"\n[timeline] {path}: {len(truth)} segments of 3 s, {len(windows)} windows of 2 s every 0.5 s")
    print(f"  {'truth':<32}  predicted segments")
    for k in range(max(len(truth), len(segments))):
        left = f"{truth[k]['start_s']:5.1f}-{truth[k]['end_s']:5.1f} s {truth[k]['label']}" if k < len(truth) else ""
        right = (f"{segments[k]['start_s']:5.1f}-{segments[k]['end_s']:5.1f} s {segments[k]['label']} "
                 f"({segments[k]['score']:.2f})") if k < len(segments) else ""
        print(f"  {left:<32}  {right}")
    print(f"  frame-level accuracy: {accuracy:.1%} (chance {1 / len(class_names):.1%}); by aggregate: "
          + ", ".join(f"{how} {acc:.1%}" for how, acc in accuracies.items()))

    image = plt.imread(figure)
    height, width = image.shape[:2]
    fig = plt.figure(figsize=(width / 120, height / 120 + 3.6))
    top = fig.add_axes([0, 3.6 / (height / 120 + 3.6), 1, 1 - 3.6 / (height / 120 + 3.6)])
    top.imshow(image)
    top.axis("off")
    ax = fig.add_axes([0.1, 0.07, 0.7, 2.9 / (height / 120 + 3.6) - 0.06])
    plot_timeline(ax, windows, f"X-CLIP on an untrimmed video: {len(truth)} segments, frame-level accuracy "
                               f"{accuracy:.1%}\nlabel probability per 2 s window (hop 0.5 s)", truth=truth,
                  segments=segments)
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    return {"video": path, "truth": truth, "segments": segments, "frame_accuracy": accuracy,
            "frame_accuracy_by_aggregate": accuracies, "windows": windows}


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.time()
    from xclip_hf.data.synthetic import generate_synthetic_dataset
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    os.makedirs(args.output_dir, exist_ok=True)
    data = generate_synthetic_dataset(
        os.path.join(args.output_dir, "data"), args.num_videos_per_class, seed=args.seed, classes=DEMO_CLASSES,
        size=32, min_frames=16, max_frames=32, splits=(0.8, 0.05, 0.15), reversed_test_pairs=True,
    )
    tokenizer_dir = os.path.join(args.output_dir, "tokenizer")
    build_clip_tokenizer(DEMO_CLASSES, save_directory=tokenizer_dir)

    runs = {"X-CLIP": train("xclip", args, data, tokenizer_dir, MODEL_OVERRIDES),
            "CLIP-Mean": train("clip_mean", args, data, tokenizer_dir, f"{MODEL_OVERRIDES},{CLIP_MEAN_OVERRIDES}")}

    from xclip_hf.evaluation import evaluate_closed_set

    matrices = {}
    for name, out in runs.items():  # the held-out accuracy comes from the evaluation code (xclip-hf evaluate)
        print(f"\n[{name}] evaluating the held-out videos (xclip_hf.evaluation, closed-set, 1 view)", flush=True)
        report = evaluate_closed_set(out, data.test_file, data.labels_file, video_root=data.root, batch_size=16,
                                     on_bad_video="raise", progress=False)
        matrices[name] = np.array(report["results"]["confusion_matrix"])
    videos = report["results"]["predictions"]

    top1 = {name: float(np.trace(m) / m.sum()) for name, m in matrices.items()}
    print("\nper-class top-1 on held-out videos")
    print(per_class_table(matrices, data.class_names))
    pairs = {name: pair_accuracy(m, data.class_names) for name, m in matrices.items()}
    print("\ntop-1 per time-reversed pair")
    for pair in pairs["X-CLIP"]:
        print(f"  {pair:<28}" + "  ".join(f"{name} {acc[pair]:.1%}" for name, acc in pairs.items()))
    print("\n" + "   ".join(f"{name} top-1: {acc:.1%}" for name, acc in top1.items()))
    print("(chance: {:.1%}; the held-out videos of each pair are exact time reverses of each other, so a model blind "
          "to frame order gives both the same answer and cannot exceed 50% on any pair)".format(1 / len(data.class_names)))
    figure = os.path.join(args.output_dir, "demo.png")
    save_figure(figure, runs, matrices, data.class_names)
    # results.json holds only what the seed determines (no timings, no absolute paths): same seed, same file
    summary = {"seed": args.seed, "top1": top1, "pair_top1": pairs,
               "confusion_matrices": {k: v.tolist() for k, v in matrices.items()},
               "class_names": data.class_names, "num_test_videos": len(videos)}
    summary["timeline"] = timeline_demo(runs["X-CLIP"], data.class_names, args.output_dir, figure, args.seed)
    summary["timeline"]["video"] = os.path.relpath(summary["timeline"]["video"], args.output_dir)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"saved {figure} and {os.path.join(args.output_dir, 'results.json')} ({time.time() - start:.0f} s in all)")
    return summary


if __name__ == "__main__":
    main()
