"""Zero-shot video classification throughput: our pipeline vs the recipe a user writes with transformers today.

Setup (everything written by this script, offline): 16 real h264 .mp4 files (Kinetics-like: 10 s, 30 fps,
320x240), 400 candidate labels, X-CLIP-B/32 with 8 frames and RANDOM weights, saved once in the published format
(transformers' `XCLIPModel.save_pretrained` + `XCLIPProcessor`) so that both sides load the very same weights.

* transformers (baseline): `XCLIPProcessor` + `XCLIPModel`, one call per video with all 400 labels, frames decoded
  with PyAV as in transformers' X-CLIP documentation (decode forward from the start, keep the sampled indices;
  `sample_frame_indices(clip_len=8, frame_sample_rate, seg_len)` with the rate chosen so that the 8 frames span
  the video, i.e. the same sparse coverage our pipeline samples).
* ours: `pipeline("zero-shot-video-classification", model=<the same directory>)` on the list of files (fp32), and
  the same in bfloat16 (`dtype=torch.bfloat16`) as a third column.

The sides alternate chunk by chunk (`--batch-size` videos) within each of `--rounds` rounds, so that load from other
processes hits them alike; each round starts with our label cache empty, so every round pays one text-encoder pass
over the 400 labels (as one call on the 16 files would). Prints videos/s of each side over all rounds, the ratios,
and the median of the per-round ratios.

    python benchmarks/bench_zero_shot.py                 # the full benchmark (a few minutes on 2 CPU cores)
    python benchmarks/bench_zero_shot.py --quick         # tiny model, 4 videos, 40 labels: a smoke test
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

_VERBS = ["playing", "riding", "cooking", "cleaning", "throwing", "catching", "carrying", "painting", "washing",
          "repairing", "folding", "cutting", "climbing", "pushing", "pulling", "kicking", "juggling", "building",
          "opening", "lifting"]
_OBJECTS = ["a guitar", "a bicycle", "pasta", "the windows", "a frisbee", "a ball", "a box", "a fence", "the dishes",
            "a car engine", "laundry", "wood", "a ladder", "a shopping cart", "a rope", "a football", "oranges",
            "a sandcastle", "a door", "weights"]


def make_labels(num_labels: int) -> list[str]:
    """`num_labels` distinct Kinetics-like action names ("verb object", some with a place)."""
    places = ["", " outdoors", " in the kitchen", " at the beach"]
    combos = (f"{v} {o}{p}" for p, v, o in itertools.product(places, _VERBS, _OBJECTS))
    labels = list(itertools.islice(combos, num_labels))
    if len(labels) < num_labels:
        raise ValueError(f"at most {len(_VERBS) * len(_OBJECTS) * len(places)} labels can be generated")
    return labels


def write_videos(directory: str, count: int, seconds: float, height: int, width: int, fps: int = 30) -> list[str]:
    """Write `count` h264 .mp4 files of moving gradients and blobs; returns the paths."""
    from xclip_hf.data.video_writer import write_video

    num_frames = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        colour = rng.uniform(40, 215, size=3).astype(np.float32)
        frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
        for t in range(num_frames):
            cx = (0.5 + 0.4 * np.sin(0.05 * t + i)) * width
            cy = (0.5 + 0.4 * np.cos(0.03 * t + 2 * i)) * height
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (20 + 3 * i) ** 2))[..., None]
            grad = (xx / width)[..., None] * 60
            frames[t] = np.clip(colour * (1 - blob) + (255 - colour) * blob + grad, 0, 255).astype(np.uint8)
        paths.append(write_video(os.path.join(directory, f"video_{i:02d}.mp4"), frames, fps=fps))
    return paths


def save_published_checkpoint(directory: str, labels: list[str], quick: bool) -> None:
    """Random-weight X-CLIP-B/32-8f (or a tiny model) saved in the published format with its processor."""
    from transformers import VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    from xclip_hf.data.tokenizer import build_clip_tokenizer

    tokenizer = build_clip_tokenizer(labels, vocab_size=2048)
    torch.manual_seed(0)
    if quick:
        config = XCLIPConfig(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               image_size=32, patch_size=8, num_frames=8, mit_hidden_size=16,
                               mit_intermediate_size=32, mit_num_attention_heads=2),
            projection_dim=16, prompt_num_attention_heads=2)
        size = 32
    else:  # transformers' XCLIPConfig defaults are X-CLIP-B/32 with 8 frames
        config = XCLIPConfig(text_config=dict(vocab_size=len(tokenizer)), vision_config=dict(num_frames=8))
        size = 224
    XCLIPModel(config).eval().save_pretrained(directory)
    image_processor = VideoMAEImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    image_processor.save_pretrained(directory)  # preprocessor_config.json, as in the microsoft/xclip-* repos


# ------------------------------------------------------------------------------- the transformers recipe (baseline)
def read_video_pyav(container, indices) -> np.ndarray:
    """Decode forward from the first frame and keep the frames at `indices` (transformers' X-CLIP docs recipe)."""
    wanted, frames = set(int(i) for i in indices), []
    container.seek(0)
    for i, frame in enumerate(container.decode(video=0)):
        if i > max(wanted):
            break
        if i in wanted:
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def sample_frame_indices(clip_len: int, frame_sample_rate: int, seg_len: int, rng) -> np.ndarray:
    """`clip_len` indices `frame_sample_rate` apart at a random position (transformers' X-CLIP docs recipe)."""
    converted_len = int(clip_len * frame_sample_rate)
    end_idx = rng.integers(converted_len, seg_len)
    start_idx = end_idx - converted_len
    indices = np.linspace(start_idx, end_idx, num=clip_len)
    return np.clip(indices, start_idx, end_idx - 1).astype(np.int64)


class TransformersRecipe:
    """XCLIPProcessor + XCLIPModel called once per video with every label."""

    def __init__(self, directory: str, num_frames: int):
        from transformers import XCLIPModel, XCLIPProcessor

        self.processor = XCLIPProcessor.from_pretrained(directory)
        self.model = XCLIPModel.from_pretrained(directory).eval()
        self.num_frames = num_frames
        self.rng = np.random.default_rng(0)

    def __call__(self, paths: list[str], labels: list[str]) -> np.ndarray:
        import av

        probs = []
        for path in paths:
            with av.open(path) as container:
                seg_len = container.streams.video[0].frames
                rate = max(1, (seg_len - 1) // self.num_frames)
                indices = sample_frame_indices(self.num_frames, rate, seg_len, self.rng)
                video = read_video_pyav(container, indices)
            inputs = self.processor(text=labels, videos=list(video), return_tensors="pt", padding=True)
            with torch.no_grad():
                outputs = self.model(**inputs)
            probs.append(outputs.logits_per_video.softmax(dim=1)[0].numpy())
        return np.stack(probs)

    def reset(self):
        """Nothing is kept between calls."""


# ------------------------------------------------------------------------------- ours
class OurPipeline:
    """`pipeline("zero-shot-video-classification")` over the list of files; the label cache is emptied per round."""

    def __init__(self, directory: str, dtype, batch_size: int):
        from transformers import pipeline

        import xclip_hf  # noqa: F401  (registers the task)

        self.pipe = pipeline("zero-shot-video-classification", model=directory, device="cpu", dtype=dtype)
        self.batch_size = batch_size

    def reset(self):
        """Start a round cold: the next call encodes the labels again."""
        self.pipe.clear_label_cache()

    def __call__(self, paths: list[str], labels: list[str]) -> np.ndarray:
        outputs = self.pipe(paths, candidate_labels=labels, batch_size=self.batch_size)
        order = {label: i for i, label in enumerate(labels)}
        probs = np.zeros((len(paths), len(labels)), dtype=np.float32)
        for row, out in enumerate(outputs):
            for item in out:
                probs[row, order[item["label"]]] = item["score"]
        return probs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=16)
    parser.add_argument("--num-labels", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all videos (all rounds count)")
    parser.add_argument("--batch-size", type=int, default=4, help="videos per forward in our pipeline (= chunk)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bfloat16 column")
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 short videos, 40 labels (smoke test)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_videos, args.num_labels, args.seconds, args.rounds = 4, 40, 1.0, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    labels = make_labels(args.num_labels)
    with tempfile.TemporaryDirectory(prefix="bench_zero_shot_") as tmp:
        t0 = time.perf_counter()
        videos = write_videos(tmp, args.num_videos, args.seconds, 240, 320)
        model_dir = os.path.join(tmp, "xclip-b32-8f-random")
        save_published_checkpoint(model_dir, labels, args.quick)
        print(f"setup: {len(videos)} videos ({args.seconds:g} s, 320x240, h264), {len(labels)} labels, "
              f"{'tiny' if args.quick else 'X-CLIP-B/32-8f'} random weights  [{time.perf_counter() - t0:.0f} s]")

        sides = {"transformers": TransformersRecipe(model_dir, num_frames=8),
                 "ours fp32": OurPipeline(model_dir, torch.float32, args.batch_size)}
        if not args.no_bf16:
            sides["ours bf16"] = OurPipeline(model_dir, torch.bfloat16, args.batch_size)
        # Fine-grained alternation (chunk by chunk) so that load from other processes hits every side alike.
        # Each round starts cold (our label cache emptied): per round, ours pays one text-encoder pass.
        for run in sides.values():  # warm-up (first-call allocations, lazy imports), untimed
            run(videos[:1], labels[:2])
        chunk = max(1, args.batch_size)
        totals = {name: [] for name in sides}
        for r in range(args.rounds):
            spent = dict.fromkeys(sides, 0.0)
            for run in sides.values():
                run.reset()
            for start in range(0, len(videos), chunk):
                paths = videos[start:start + chunk]
                for name, run in sides.items():
                    begin = time.perf_counter()
                    run(paths, labels)
                    spent[name] += time.perf_counter() - begin
            for name in sides:
                totals[name].append(spent[name])
            print(f"round {r + 1}: " + ", ".join(
                f"{n} {len(videos) / t:.3f} videos/s" for n, t in spent.items()))

        names = list(sides)
        rate = {n: len(videos) * args.rounds / sum(totals[n]) for n in names}
        per_round = {n: [b / a for a, b in zip(totals[n], totals["transformers"])] for n in names}
        print("\n" + " | ".join(f"{n:>15}" for n in ["", *names]))
        print(" | ".join(f"{v:>15}" for v in ["videos/s", *(f"{rate[n]:.3f}" for n in names)]))
        print(" | ".join(f"{v:>15}" for v in ["vs transformers", *(f"{rate[n] / rate['transformers']:.2f}x" for n in names)]))
        print(" | ".join(f"{v:>15}" for v in ["median round", *(f"{np.median(per_round[n]):.2f}x" for n in names)]))
        # sanity: on the SAME decoded frames both sides must agree (they differ only in resize: torch vs PIL)
        import av

        with av.open(videos[0]) as container:
            seg_len = container.streams.video[0].frames
            frames = read_video_pyav(container, np.linspace(0, seg_len - 1, 8).astype(np.int64))
        base = sides["transformers"]
        inputs = base.processor(text=labels, videos=list(frames), return_tensors="pt", padding=True)
        with torch.no_grad():
            expected = base.model(**inputs).logits_per_video.softmax(dim=1)[0].numpy()
        for n in names[1:]:
            got = {d["label"]: d["score"] for d in sides[n].pipe(frames, candidate_labels=labels)}
            diff = np.abs(np.array([got[label] for label in labels]) - expected).max()
            print(f"same frames, {n} vs transformers: max |p - p_ref| = {diff:.2e} over {len(labels)} labels "
                  f"(uniform would be {1 / len(labels):.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
