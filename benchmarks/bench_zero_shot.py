"""Zero-shot video classification throughput: our pipeline vs the recipe a user writes with transformers today.

Setup (everything written by this script, offline): 16 real h264 .mp4 files (Kinetics-like: 10 s, 30 fps,
320x240), 400 candidate labels, X-CLIP-B/32 with 8 frames and RANDOM weights, saved once in the published format
(transformers' `XCLIPModel.save_pretrained` + `XCLIPProcessor`) so that both sides load the very same weights.

* transformers (baseline): `XCLIPProcessor` + `XCLIPModel`, one call per video with all 400 labels, frames decoded
  with PyAV as in transformers' X-CLIP documentation (decode forward from the start, keep the sampled indices;
  `sample_frame_indices(clip_len=8, frame_sample_rate, seg_len)` with the rate chosen so that the 8 frames span
  the video, i.e. the same sparse coverage our pipeline samples).
* ours (`--columns`, see `COLUMNS`): `pipeline("zero-shot-video-classification")` on the list of files, exact
  decoding (the default) in every column: torch fp32 and bf16, torch with token merging (`fp32-tome`, ratio
  `--tome-ratio`), and the folders of our export API (exported once per run: `export_onnx`, then `quantize_export`
  for dynamic int8 and `quantize_static_export` for static int8 calibrated on the benchmark's own videos; `-tome`:
  the same from a model whose config merges tokens) run by ONNX Runtime (`ort-*`) or OpenVINO (`ov-*`).

The sides alternate chunk by chunk (`--batch-size` videos) within each of `--rounds` rounds, so that load from other
processes hits them alike; each round starts with our label cache empty, so every round pays one text-encoder pass
over the 400 labels (as one call on the 16 files would). Prints videos/s of each side over all rounds, the ratios,
and the median of the per-round ratios; then, from stage timers around the same timed calls (`stage_timers.py`),
where each column's time goes (decode, video preprocessing, text encoding, video tower + head, the rest) and the
bound: the ratio to the recipe each column would reach if its model cost (text and video) went to zero.

    python benchmarks/bench_zero_shot.py                 # every column (long on 2 cores: exports, 12 columns)
    python benchmarks/bench_zero_shot.py --keep DIR      # videos, model and exports kept in DIR, reused next time
    python benchmarks/bench_zero_shot.py --columns fp32,bf16,ort-int8,ov-int8s   # a few columns
    python benchmarks/bench_zero_shot.py --quick         # tiny model, 4 videos, 40 labels: a smoke test
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
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
from stage_timers import COARSE_STAGES, StageClock, coarse_stages  # noqa: E402

ENGINES = {"ort": "onnxruntime", "ov": "openvino"}
EXPORTS = ("fp32", "int8", "int8s")  # float32 graphs, dynamic int8 (`quantize_export`), static int8 (calibrated)
TORCH_COLUMNS = ("fp32", "bf16", "fp32-tome", "bf16-tome")
# every column of ours: torch, then ENGINE-EXPORT[-tome] (the export of a model whose config merges tokens)
COLUMNS = TORCH_COLUMNS + tuple(f"{e}-{x}{t}" for t in ("", "-tome") for x in EXPORTS for e in ENGINES)
DEFAULT_COLUMNS = ("fp32", "bf16", "fp32-tome", "ort-fp32", "ov-fp32", "ort-int8", "ov-int8", "ort-int8s",
                   "ov-int8s", "ort-int8-tome", "ov-int8s-tome")
GOAL = 15.0  # the issue's end-to-end goal vs the recipe

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
    """XCLIPProcessor + XCLIPModel called once per video with every label; seconds per stage in `seconds`."""

    def __init__(self, directory: str, num_frames: int):
        from transformers import XCLIPModel, XCLIPProcessor

        self.processor = XCLIPProcessor.from_pretrained(directory)
        self.model = XCLIPModel.from_pretrained(directory).eval()
        self.num_frames = num_frames
        self.rng = np.random.default_rng(0)
        self.seconds = collections.Counter()
        self._text_start = None
        self.model.text_model.register_forward_pre_hook(self._text_begins)
        self.model.text_model.register_forward_hook(self._text_ends)

    def _text_begins(self, module, args):
        """Forward pre-hook of the text model: its start time."""
        self._text_start = time.perf_counter()

    def _text_ends(self, module, args, output):
        """Forward hook of the text model: its seconds into `seconds["text"]`."""
        self.seconds["text"] += time.perf_counter() - self._text_start

    def __call__(self, paths: list[str], labels: list[str]) -> np.ndarray:
        import av

        probs, clock = [], self.seconds
        for path in paths:
            start = time.perf_counter()
            with av.open(path) as container:
                seg_len = container.streams.video[0].frames
                rate = max(1, (seg_len - 1) // self.num_frames)
                indices = sample_frame_indices(self.num_frames, rate, seg_len, self.rng)
                video = read_video_pyav(container, indices)
            clock["decode"] += time.perf_counter() - start
            start = time.perf_counter()
            inputs = self.processor(text=labels, videos=list(video), return_tensors="pt", padding=True)
            clock["preprocess"] += time.perf_counter() - start  # the video processor and tokenizing the labels
            start = time.perf_counter()
            with torch.no_grad():
                outputs = self.model(**inputs)
            clock["model"] += time.perf_counter() - start
            probs.append(outputs.logits_per_video.softmax(dim=1)[0].numpy())
        return np.stack(probs)

    def timed(self, paths: list[str], labels: list[str]) -> dict:
        """One call: seconds per `COARSE_STAGES` entry (their sum is the call's wall time)."""
        self.seconds.clear()
        start = time.perf_counter()
        self(paths, labels)
        total = time.perf_counter() - start
        s = self.seconds
        return coarse_stages(s["decode"], s["preprocess"], s["text"], s["model"], total)

    def reset(self):
        """Nothing is kept between calls."""


# ------------------------------------------------------------------------------- ours
class OurPipeline:
    """`pipeline("zero-shot-video-classification", **options)` over the files; its label cache emptied per round."""

    def __init__(self, directory: str, batch_size: int, **options):
        from transformers import pipeline

        import xclip_hf  # noqa: F401  (registers the task)

        self.pipe = pipeline("zero-shot-video-classification", model=directory, **options)
        self.batch_size = batch_size

    def timed(self, paths: list[str], labels: list[str]) -> dict:
        """One call under the stage timers: seconds per `COARSE_STAGES` entry (their sum is the call's wall time)."""
        clock = StageClock()
        with clock.wrapped(self.pipe):
            start = time.perf_counter()
            self(paths, labels)
            total = time.perf_counter() - start
        return clock.coarse(total)

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


# ------------------------------------------------------------------------------- columns, exports, tables
def parse_columns(text: str) -> list[str]:
    """The comma-separated column names of `--columns`, checked against `COLUMNS` (ValueError naming a bad one)."""
    columns = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or not columns:
        raise ValueError(f"--columns: unknown column(s) {unknown or text!r}; choose from {', '.join(COLUMNS)}")
    return list(dict.fromkeys(columns))


def export_of(column: str) -> tuple[str, bool] | None:
    """(export kind in `EXPORTS`, token merging) of an exported column; None for a torch column."""
    if column in TORCH_COLUMNS:
        return None
    _, kind, *tome = column.split("-")
    return kind, bool(tome)


def export_folders(model_dir: str, root: str, columns: list[str], calibration: list[str], tome_ratio: float) -> dict:
    """(kind, tome) -> the export folder each column needs, made once by our export API (or reused from `--keep`)."""
    from xclip_hf.deploy import export_onnx, is_export_dir, quantize_export, quantize_static_export
    from xclip_hf.models.loading import load_model_and_processor

    needed = {export_of(c) for c in columns} - {None}
    folders = {key: os.path.join(root, key[0] + ("-tome" if key[1] else "")) for key in needed | {("fp32", t)
               for _, t in needed}}
    kept = {key for key, folder in folders.items() if is_export_dir(folder)}
    for kind, tome in kept:  # a kept folder must hold the ratio asked for
        with open(os.path.join(folders[kind, tome], "config.json")) as f:
            ratio = json.load(f)["vision_config"].get("token_merging_ratio") or 0.0
        if ratio != (tome_ratio if tome else 0.0):
            raise ValueError(f"--keep: {folders[kind, tome]!r} was exported with token_merging_ratio {ratio}, not "
                             f"{tome_ratio if tome else 0.0}: use another --keep folder")
    if kept:
        print(f"reused exports of an earlier run: {', '.join(sorted(os.path.basename(folders[k]) for k in kept))}")
    needed -= kept
    for tome in sorted({t for _, t in needed}):
        start = time.perf_counter()
        fp32 = os.path.join(root, "fp32-tome" if tome else "fp32")
        if ("fp32", tome) not in kept:
            if tome:  # a model whose config merges tokens: its video graph is traced with the ratio (eager attention)
                net, processor = load_model_and_processor(model_dir, need_text=True, runtime="torch")
                net.config.vision_config.token_merging_ratio = tome_ratio
                export_onnx(net, fp32, processor=processor)
            else:
                export_onnx(model_dir, fp32)
            print(f"export {'fp32-tome' if tome else 'fp32'}: {time.perf_counter() - start:.0f} s", flush=True)
        suffix = "-tome" if tome else ""
        if ("int8", tome) in needed:
            start = time.perf_counter()
            quantize_export(fp32, folders["int8", tome])
            print(f"quantise int8{suffix} (dynamic): {time.perf_counter() - start:.0f} s", flush=True)
        if ("int8s", tome) in needed:
            start = time.perf_counter()
            quantize_static_export(fp32, folders["int8s", tome], calibration, calibration_size=len(calibration))
            print(f"quantise int8s{suffix} (static, calibrated on {len(calibration)} of the benchmark's videos): "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return folders


def build_side(column: str, model_dir: str, folders: dict, batch_size: int, tome_ratio: float) -> OurPipeline:
    """Our pipeline for one column: the torch model (dtype, token merging) or an export on its engine."""
    exported = export_of(column)
    if exported is None:
        dtype = torch.bfloat16 if column.startswith("bf16") else torch.float32
        ratio = {"token_merging_ratio": tome_ratio} if column.endswith("-tome") else {}
        return OurPipeline(model_dir, batch_size, device="cpu", dtype=dtype, **ratio)
    return OurPipeline(folders[exported], batch_size, runtime=ENGINES[column.split("-")[0]])


def ratio_bounds(stages: dict, videos: int, baseline: str = "transformers") -> dict:
    """Column -> (ratio to `baseline`, decode + preprocess s/video, bound with model cost 0, same with rest kept)."""
    base = sum(stages[baseline].values()) / videos
    out = {}
    for name, spent in stages.items():
        floor = (spent["decode"] + spent["preprocess"]) / videos
        total = sum(spent.values()) / videos
        out[name] = (base / total, floor, base / floor if floor else float("inf"),
                     base / (floor + spent["rest"] / videos) if floor + spent["rest"] else float("inf"))
    return out


def print_breakdown(stages: dict, videos: int, rounds: int) -> None:
    """The per-stage table: seconds over the run and the fraction of each column's time."""
    print(f"\nwhere the time goes: seconds over {rounds} round(s) of {videos} videos (fraction of the column's time); "
          "decode = open + seek + decode + YUV->RGB, preprocess = video processor (transformers: + tokenizing the "
          "labels per video), text = encoding the labels (ours: once per round), video = video tower + head")
    print("| column | total s | " + " | ".join(COARSE_STAGES) + " |\n|" + "---|" * (2 + len(COARSE_STAGES)))
    for name, spent in stages.items():
        total = sum(spent.values())
        cells = " | ".join(f"{spent[k]:.2f} ({100 * spent[k] / total:.0f}%)" for k in COARSE_STAGES)
        print(f"| {name} | {total:.2f} | {cells} |")


def print_bounds(stages: dict, videos: int) -> None:
    """The bound table and whether the goal is reachable with exact decoding on these cores."""
    bounds = ratio_bounds(stages, videos)
    print("\nthe bound: the ratio to the recipe if the model cost (text + video) went to zero, exact decoding")
    print("| column | measured vs transformers | decode + preprocess s/video | bound (model -> 0) | "
          "bound, rest kept |\n|---|---|---|---|---|")
    for name, (measured, floor, bound, with_rest) in bounds.items():
        if name != "transformers":
            print(f"| {name} | {measured:.2f}x | {floor:.3f} | {bound:.1f}x | {with_rest:.1f}x |")
    best = max((b for n, b in bounds.items() if n != "transformers"), key=lambda b: b[2], default=None)
    if best is not None:
        verdict = "reachable in principle" if best[2] >= GOAL else "out of reach"
        print(f"{GOAL:g}x goal, exact decoding, {os.cpu_count()} CPUs: {verdict} (best bound {best[2]:.1f}x; "
              f"best measured {max(b[0] for n, b in bounds.items() if n != 'transformers'):.2f}x)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=16)
    parser.add_argument("--num-labels", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all videos (all rounds count)")
    parser.add_argument("--batch-size", type=int, default=4, help="videos per forward in our pipeline (= chunk)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    parser.add_argument("--columns", default=",".join(DEFAULT_COLUMNS),
                        help=f"our columns, comma-separated, of: {', '.join(COLUMNS)} (default: %(default)s)")
    parser.add_argument("--no-bf16", action="store_true", help="drop the bf16 columns")
    parser.add_argument("--tome-ratio", type=float, default=0.2, help="token_merging_ratio of the -tome columns")
    parser.add_argument("--calibration-size", type=int, default=16,
                        help="of the benchmark's videos, how many calibrate the static int8 exports")
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 short videos, 40 labels (smoke test)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--keep", default=None, help="write videos, model and exports here (default: a temp folder); "
                        "those of an earlier run with the same settings are reused")
    args = parser.parse_args(argv)
    try:
        columns = parse_columns(args.columns)
    except ValueError as err:
        parser.error(str(err))
    if args.no_bf16:
        columns = [c for c in columns if not c.startswith("bf16")]
    if args.quick:
        args.num_videos, args.num_labels, args.seconds, args.rounds = 4, 40, 1.0, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    labels = make_labels(args.num_labels)
    with tempfile.TemporaryDirectory(prefix="bench_zero_shot_") as tmp:
        tmp = args.keep or tmp
        os.makedirs(tmp, exist_ok=True)
        t0 = time.perf_counter()
        videos = [os.path.join(tmp, f"video_{i:02d}.mp4") for i in range(args.num_videos)]
        if not all(os.path.isfile(v) for v in videos):
            videos = write_videos(tmp, args.num_videos, args.seconds, 240, 320)
        model_dir = os.path.join(tmp, "xclip-b32-8f-random")
        if not os.path.isfile(os.path.join(model_dir, "config.json")):
            save_published_checkpoint(model_dir, labels, args.quick)
        print(f"setup: {len(videos)} videos ({args.seconds:g} s, 320x240, h264), {len(labels)} labels, "
              f"{'tiny' if args.quick else 'X-CLIP-B/32-8f'} random weights, columns {','.join(columns)}, "
              f"load {os.getloadavg()[0]:.1f}  [{time.perf_counter() - t0:.0f} s]", flush=True)
        folders = export_folders(model_dir, os.path.join(tmp, "exports"), columns,
                                 videos[:max(1, args.calibration_size)], args.tome_ratio)

        sides = {"transformers": TransformersRecipe(model_dir, num_frames=8)}
        for column in columns:
            sides[column] = build_side(column, model_dir, folders, args.batch_size, args.tome_ratio)
        chunk = max(1, args.batch_size)
        # warm-up (first-call allocations, lazy imports, the engines' shape specialisation), untimed
        for name, run in sides.items():
            run(videos[:1] if name == "transformers" else videos[:chunk], labels)
        # Fine-grained alternation (chunk by chunk) so that load from other processes hits every side alike.
        # Each round starts cold (our label cache emptied): per round, ours pays one text-encoder pass.
        totals = {name: [] for name in sides}
        stages = {name: collections.Counter() for name in sides}
        for r in range(args.rounds):
            spent = dict.fromkeys(sides, 0.0)
            for run in sides.values():
                run.reset()
            for start in range(0, len(videos), chunk):
                paths = videos[start:start + chunk]
                for name, run in sides.items():
                    parts = run.timed(paths, labels)
                    spent[name] += sum(parts.values())
                    stages[name].update(parts)
            for name in sides:
                totals[name].append(spent[name])
            print(f"round {r + 1} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
                f"{n} {len(videos) / t:.3f}" for n, t in spent.items()) + " videos/s", flush=True)

        names = list(sides)
        rate = {n: len(videos) * args.rounds / sum(totals[n]) for n in names}
        per_round = {n: [b / a for a, b in zip(totals[n], totals["transformers"])] for n in names}
        print(f"\n{len(videos)} videos x {len(labels)} labels, {args.rounds} round(s), load {os.getloadavg()[0]:.1f}")
        print("| column | videos/s | vs transformers | median round |\n|---|---|---|---|")
        for n in names:
            print(f"| {n} | {rate[n]:.3f} | {rate[n] / rate['transformers']:.2f}x | {np.median(per_round[n]):.2f}x |")
        print_breakdown(stages, len(videos), args.rounds)
        print_bounds(stages, len(videos) * args.rounds)
        # sanity: on the SAME decoded frames both sides must agree (they differ only in resize: torch vs PIL)
        import av

        with av.open(videos[0]) as container:
            seg_len = container.streams.video[0].frames
            frames = read_video_pyav(container, np.linspace(0, seg_len - 1, 8).astype(np.int64))
        base = sides["transformers"]
        inputs = base.processor(text=labels, videos=list(frames), return_tensors="pt", padding=True)
        with torch.no_grad():
            expected = base.model(**inputs).logits_per_video.softmax(dim=1)[0].numpy()
        print()
        for n in names[1:]:
            got = {d["label"]: d["score"] for d in sides[n].pipe(frames, candidate_labels=labels)}
            diff = np.abs(np.array([got[label] for label in labels]) - expected).max()
            print(f"same frames, {n} vs transformers: max |p - p_ref| = {diff:.2e} over {len(labels)} labels "
                  f"(uniform would be {1 / len(labels):.1e})")
        print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
