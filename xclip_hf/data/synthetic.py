"""Synthetic videos whose classes can only be told apart by temporal order (offline demo and tests).

Classes come in time-reversed pairs (moving left / right, growing / shrinking, ...), written as mp4 files with
X-CLIP annotation files: ``python -m xclip_hf.data.synthetic OUT_DIR --num-videos-per-class 12 --seed 0``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from .video_writer import write_video

__all__ = ["SYNTHETIC_CLASSES", "SyntheticDataset", "render_video", "generate_synthetic_dataset", "main"]

# class name -> (motion kind, direction); each kind has two directions that are time reversals of each other
SYNTHETIC_CLASSES = {
    "moving left": ("move_x", -1),
    "moving right": ("move_x", +1),
    "moving up": ("move_y", -1),
    "moving down": ("move_y", +1),
    "growing": ("scale", +1),
    "shrinking": ("scale", -1),
    "appearing": ("presence", +1),
    "disappearing": ("presence", -1),
    "rotating clockwise": ("rotate", +1),
    "rotating counterclockwise": ("rotate", -1),
}


@dataclass
class SyntheticDataset:
    """Paths of a generated dataset (X-CLIP annotation format)."""

    root: str
    labels_file: str
    train_file: str
    val_file: str
    test_file: str
    class_names: list


def _random_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A background and an object colour far enough apart to stay visible after noise and compression."""
    while True:
        background, foreground = rng.integers(0, 256, size=(2, 3))
        if np.abs(background - foreground).sum() >= 200:
            return background.astype(np.float32), foreground.astype(np.float32)


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """Boolean mask of a filled circle or square of the given half-size."""
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    return (np.abs(xx - cx) <= radius) & (np.abs(yy - cy) <= radius)


def _hand_mask(xx, yy, cx, cy, length, angle, width) -> np.ndarray:
    """A clock hand from the centre at `angle` (radians, clockwise on screen) with a knob at its tip."""
    tx, ty = cx + length * math.cos(angle), cy + length * math.sin(angle)
    dx, dy = tx - cx, ty - cy
    t = np.clip(((xx - cx) * dx + (yy - cy) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    dist2 = (xx - cx - t * dx) ** 2 + (yy - cy - t * dy) ** 2
    return (dist2 <= (width / 2) ** 2) | ((xx - tx) ** 2 + (yy - ty) ** 2 <= width**2)


def render_video(class_name: str, rng: np.random.Generator, size: int = 64, num_frames: int = 32) -> np.ndarray:
    """Frames uint8 (T, size, size, 3) of one video of `class_name` with random colours, sizes and noise."""
    if class_name not in SYNTHETIC_CLASSES:
        raise ValueError(f"render_video: unknown class {class_name!r}; known: {sorted(SYNTHETIC_CLASSES)}")
    if size < 16 or num_frames < 2:
        raise ValueError(f"render_video: need size >= 16 and num_frames >= 2, got size={size}, num_frames={num_frames}")
    kind, direction = SYNTHETIC_CLASSES[class_name]
    background, foreground = _random_colors(rng)
    shape = str(rng.choice(["circle", "square"]))
    noise = rng.uniform(0.0, 12.0)
    radius = rng.uniform(0.08, 0.15) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    progress = np.linspace(0.0, 1.0, num_frames)
    if direction < 0:  # the reverse class is the same motion played backwards
        progress = progress[::-1]

    if kind in ("move_x", "move_y"):
        travel = min(rng.uniform(0.45, 0.7) * size, size - 2 * radius)
        start = rng.uniform(radius, size - radius - travel)
        across = rng.uniform(radius, size - radius)
        centres = [(start + p * travel, across) if kind == "move_x" else (across, start + p * travel) for p in progress]
        masks = [_shape_mask(shape, xx, yy, cx, cy, radius) for cx, cy in centres]
    elif kind == "scale":
        small, large = rng.uniform(0.04, 0.08) * size, rng.uniform(0.22, 0.3) * size
        cx, cy = rng.uniform(0.35, 0.65, size=2) * size
        masks = [_shape_mask(shape, xx, yy, cx, cy, small + p * (large - small)) for p in progress]
    elif kind == "presence":
        switch = rng.uniform(0.3, 0.7)
        cx, cy = rng.uniform(radius, size - radius, size=2)
        masks = [_shape_mask(shape, xx, yy, cx, cy, radius) & (p >= switch) for p in progress]
    else:  # rotate
        start, sweep = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 1.0) * math.pi
        length, width = rng.uniform(0.3, 0.4) * size, rng.uniform(0.05, 0.08) * size
        masks = [_hand_mask(xx, yy, size / 2, size / 2, length, start + p * sweep, width) for p in progress]

    frames = np.empty((num_frames, size, size, 3), dtype=np.float32)
    frames[:] = background
    for frame, mask in zip(frames, masks):
        frame[mask] = foreground
    frames += rng.normal(0.0, noise, size=frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).round().astype(np.uint8)


def _split_counts(total: int, fractions: Sequence[float]) -> list[int]:
    """Videos per split for one class (fractions are relative weights): every split with weight > 0 gets one or more."""
    fractions = [f / sum(fractions) for f in fractions]
    if total < sum(1 for f in fractions if f > 0):
        raise ValueError(f"num_videos_per_class={total} is too small for splits {tuple(fractions)}: each split needs >= 1")
    counts = [max(1, int(round(total * f))) if f > 0 else 0 for f in fractions]
    counts[0] = total - sum(counts[1:])
    if counts[0] < 1:
        raise ValueError(f"num_videos_per_class={total} leaves no training video with splits {tuple(fractions)}")
    return counts


def _reversed_partners(classes: Sequence[str]) -> dict:
    """{forward class: backward class} for every time-reversed pair with both classes in `classes`."""
    by_kind = {}
    for name in classes:
        kind, direction = SYNTHETIC_CLASSES[name]
        by_kind.setdefault(kind, {})[direction] = name
    return {d[+1]: d[-1] for d in by_kind.values() if len(d) == 2}


def generate_synthetic_dataset(
    out_dir,
    num_videos_per_class: int = 12,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    size: int = 64,
    min_frames: int = 16,
    max_frames: int = 48,
    splits: Sequence[float] = (0.6, 0.2, 0.2),
    fps: int = 12,
    reversed_test_pairs: bool = False,
) -> SyntheticDataset:
    """Write mp4 videos + X-CLIP annotation files (train/val/test.txt, labels.csv) for temporal-order classes.

    `reversed_test_pairs`: the backward class's test videos are the forward class's played backwards (lossless, a
    frame count that sparse sampling reads alike both ways), so an order-blind model cannot exceed 50% on a pair.
    """
    classes = list(SYNTHETIC_CLASSES) if classes is None else list(classes)
    unknown = [c for c in classes if c not in SYNTHETIC_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"generate_synthetic_dataset: classes must be distinct names from {sorted(SYNTHETIC_CLASSES)}, got {classes}")
    if not 2 <= min_frames <= max_frames:
        raise ValueError(f"generate_synthetic_dataset: need 2 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    if len(splits) != 3 or any(f < 0 for f in splits) or splits[0] <= 0:
        raise ValueError(f"generate_synthetic_dataset: splits must be 3 non-negative weights (train, val, test) with train > 0, got {splits}")
    counts = _split_counts(num_videos_per_class, splits)
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    lines = {"train": [], "val": [], "test": []}
    partner = _reversed_partners(classes) if reversed_test_pairs else {}
    test_frames = {}  # (forward class, index) -> frames, for the reversed partner's test videos
    jobs = [(label, name, i) for label, name in enumerate(classes) for i in range(num_videos_per_class)]
    jobs.sort(key=lambda job: job[1] in partner.values())  # forward classes first (stable: else class order)
    for label, name, i in tqdm(jobs, desc="synthetic videos", unit="video"):
        split = "train" if i < counts[0] else "val" if i < counts[0] + counts[1] else "test"
        pair_test = split == "test" and (name in partner or name in partner.values())
        if pair_test and name in partner.values():
            forward = next(k for k, v in partner.items() if v == name)
            frames = test_frames.pop((forward, i))[::-1]
        else:
            num_frames = int(rng.integers(min_frames, max_frames + 1))
            while pair_test and num_frames % 16 == 0 and min_frames < max_frames:
                num_frames = int(rng.integers(min_frames, max_frames + 1))
            frames = render_video(name, rng, size=size, num_frames=num_frames)
            if pair_test:
                test_frames[(name, i)] = frames
        relative = f"videos/{name.replace(' ', '_')}/{split}_{i:04d}.mp4"
        os.makedirs(os.path.dirname(os.path.join(out_dir, relative)), exist_ok=True)
        write_video(os.path.join(out_dir, relative), np.ascontiguousarray(frames), fps=fps, lossless=pair_test)
        lines[split].append((label, i, f"{relative} {label}"))
    lines = {split: [row for _, _, row in sorted(rows)] for split, rows in lines.items()}
    paths = {}
    for split, rows in lines.items():
        paths[split] = os.path.join(out_dir, f"{split}.txt")
        with open(paths[split], "w", encoding="utf-8") as f:
            f.write("".join(row + "\n" for row in rows))
    labels_file = os.path.join(out_dir, "labels.csv")
    with open(labels_file, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "name"])
        writer.writerows(enumerate(classes))
    return SyntheticDataset(
        root=os.path.abspath(out_dir), labels_file=labels_file, train_file=paths["train"], val_file=paths["val"],
        test_file=paths["test"], class_names=classes,
    )


def main(argv=None) -> SyntheticDataset:
    """Command line: `python -m xclip_hf.data.synthetic OUT_DIR [options]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--num-videos-per-class", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", nargs="+", default=None, help=f"subset of: {', '.join(SYNTHETIC_CLASSES)}")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--min-frames", type=int, default=16)
    parser.add_argument("--max-frames", type=int, default=48)
    parser.add_argument("--splits", type=float, nargs=3, default=(0.6, 0.2, 0.2), metavar=("TRAIN", "VAL", "TEST"))
    args = parser.parse_args(argv)
    data = generate_synthetic_dataset(
        args.out_dir, args.num_videos_per_class, args.seed, args.classes, args.size, args.min_frames,
        args.max_frames, args.splits,
    )
    print(f"wrote {len(data.class_names)} classes to {data.root}: {data.train_file}, {data.val_file}, {data.test_file}, {data.labels_file}")
    return data


if __name__ == "__main__":
    main()


def write_long_video(path, classes: Sequence[str], segment_s: float = 3.0, fps: int = 12, size: int = 32,
                     seed: int = 0) -> list[dict]:
    """An untrimmed video of one `segment_s` segment per class of `classes`; returns its ground-truth segments."""
    classes = list(classes)
    unknown = sorted({c for c in classes if c not in SYNTHETIC_CLASSES})
    if not classes or unknown:
        raise ValueError(f"write_long_video: classes must be a non-empty sequence of names from "
                         f"{sorted(SYNTHETIC_CLASSES)}; unknown: {unknown}")
    frames_per_segment = int(round(segment_s * fps))
    if frames_per_segment < 2:
        raise ValueError(f"write_long_video: segment_s={segment_s} at fps={fps} gives fewer than 2 frames per segment")
    rng = np.random.default_rng(seed)
    segments = [render_video(name, rng, size=size, num_frames=frames_per_segment) for name in classes]
    write_video(path, np.concatenate(segments), fps=fps)
    step = frames_per_segment / fps
    return [{"start_s": k * step, "end_s": (k + 1) * step, "label": name} for k, name in enumerate(classes)]
