"""Closed-set 4x3-view evaluation throughput: `xclip-hf evaluate closed-set` vs `run_video_classification.py --do_eval`.

Setup (everything written by this script, offline): 32 h264 .mp4 files (10 s, 30 fps, 640x360), an X-CLIP
`path label` annotation file over the 400 Kinetics-400 class names (the shipped list) and its `id,name` csv,
X-CLIP-B/32 with 8 frames and RANDOM weights saved once in the published format (as bench_zero_shot.py), which
both sides load.

* evaluate: `xclip-hf evaluate closed-set --num-temporal-clips 4 --num-spatial-crops 3 --batch-size 4
  --num-workers W` (the zero-shot pipeline: label features encoded once, one temporal view x 3 crops per chunk,
  4 chunks = one video's 12 views per forward, W DataLoader workers decode while the model runs).
* trainer: `examples/run_video_classification.py --do_eval --num_temporal_clips 4 --num_spatial_crops 3`
  (`XClipTrainer.evaluate`: the Trainer's default eval batch of 8 videos x 12 views, class texts encoded every
  batch), with its own `--dataloader_num_workers` 0 (its default) and, as a third side, W.

Each side is one command run in a child process of this script (the same code a user runs: `xclip_hf.cli.main`,
the example's `main`), one after the other, in swapped order every round (`--rounds`) so that load from other
processes hits them alike. The child wraps the reader from outside the package to count, per file, the container
opens (`av.open`), the read passes (`VideoFile.get_frames` / `iter_frames` calls) and the frames decoded, in the
child and its DataLoader workers; and times the evaluation loop (`score_videos` / `Trainer.evaluate`, the model
already loaded) beside the whole command. Prints videos/s per side and round, ranges, ratios, the decode counts
and the top-1/top-5 of both sides (the same model, views and weights: they must agree).

Then the bound (`--no-bound` skips it, `--bound-only` runs nothing else): per video, the model alone on its 12
views (both cores, text features cached), the decode + preprocessing of its 4x3 views alone (one core, as a worker
does), the 400-label text pass, and the trainer's shape (the views of 8 videos in one 96-clip forward). A perfect
overlap makes the evaluate side cost `model` per video and a serial loop `model + decode`; the trainer also pays a
text pass per eval batch of 8 videos and its batch shape.

    python benchmarks/bench_evaluate.py               # the full benchmark (55 min on 2 loaded CPU cores)
    python benchmarks/bench_evaluate.py --num-videos 8 --bound-only   # only the bound (about 6 min)
    python benchmarks/bench_evaluate.py --quick       # tiny model, 4 short small videos, 40 labels: a smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

VIEWS = (4, 3)  # the paper's fully supervised views: temporal clips x spatial crops
EXAMPLE = os.path.join(ROOT, "examples", "run_video_classification.py")


# ------------------------------------------------------------------------------- setup (parent)
def write_evalset(workdir: str, args) -> dict:
    """Videos, annotation file, labels csv and the published-format random checkpoint under `workdir`."""
    import numpy as np

    from bench_zero_shot import save_published_checkpoint, write_videos
    from xclip_hf.evaluation.labels import resolve_labels

    names = resolve_labels("kinetics400")[0][:args.num_labels]
    video_dir = os.path.join(workdir, "videos")
    os.makedirs(video_dir)
    height, width = args.size
    paths = write_videos(video_dir, args.num_videos, args.seconds, height, width)
    references = np.random.default_rng(0).integers(0, len(names), size=len(paths))
    annotation = os.path.join(workdir, "val.txt")
    with open(annotation, "w", encoding="utf-8") as f:
        f.writelines(f"videos/{os.path.basename(p)} {int(r)}\n" for p, r in zip(paths, references))
    labels = os.path.join(workdir, "labels.csv")
    with open(labels, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "name"])
        out.writerows(enumerate(names))
    model = os.path.join(workdir, "xclip-b32-8f-random")
    save_published_checkpoint(model, names, args.quick)
    return {"videos": paths, "annotation": annotation, "labels": labels, "model": model, "names": names}


def side_commands(data: dict, args, out: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (entry point, argv) of every side."""
    t, s = VIEWS
    ours = ["evaluate", "closed-set", "--model", data["model"], "--data", data["annotation"], "--labels",
            data["labels"], "--output", out, "--num-temporal-clips", str(t), "--num-spatial-crops", str(s),
            "--batch-size", str(args.batch_size), "--num-workers", str(args.workers), "--no-progress"]
    trainer = ["--model_name_or_path", data["model"], "--validation_file", data["annotation"], "--labels_file",
               data["labels"], "--output_dir", out, "--do_eval", "--num_temporal_clips", str(t),
               "--num_spatial_crops", str(s), "--report_to", "none", "--disable_tqdm", "true"]
    sides = {f"evaluate w{args.workers}": ("cli", ours), "trainer w0": ("example", trainer)}
    if args.workers:
        sides[f"trainer w{args.workers}"] = ("example", trainer + ["--dataloader_num_workers", str(args.workers)])
    return sides


# ------------------------------------------------------------------------------- one side (child process)
def install_counters(log_path: str) -> None:
    """Count container opens, read passes and decoded frames per file (this process and its forked workers):
    one appended line per event, so workers' counts survive them."""
    import av

    from xclip_hf.video import reader

    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(event: str, path) -> None:
        os.write(fd, f"{event}\t{os.fspath(path)}\n".encode())

    real_open = av.open

    def counting_open(file, *a, **k):
        log("open", file)
        return real_open(file, *a, **k)

    av.open = counting_open
    for name in ("get_frames", "iter_frames"):
        real = getattr(reader.VideoFile, name)

        def counting(self, *a, _real=real, **k):
            log("pass", self.path)
            return _real(self, *a, **k)

        setattr(reader.VideoFile, name, counting)
    real_decode = reader._PyAVBackend._decode_from

    def counting_decode(self, *a, **k):
        inner = real_decode(self, *a, **k)
        try:
            for item in inner:
                log("frame", self.path)
                yield item
        finally:
            inner.close()  # its own clean-up (the decoder's skip setting) at once

    reader._PyAVBackend._decode_from = counting_decode


def install_timer(entry: str, spent: dict) -> None:
    """Time the evaluation loop (the model already loaded) and keep its figures."""
    if entry == "cli":
        from xclip_hf.evaluation import closed_set as target

        name = "score_videos"
    else:
        from transformers import trainer as module

        target, name = module.Trainer, "evaluate"
    real = getattr(target, name)

    def timed(*a, **k):
        start = time.perf_counter()
        result = real(*a, **k)
        spent["eval_s"] = spent.get("eval_s", 0.0) + time.perf_counter() - start
        if isinstance(result, dict):
            spent["metrics"] = {key[5:]: v for key, v in result.items() if key in ("eval_top1", "eval_top5")}
        return result

    setattr(target, name, timed)


def run_child(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    install_counters(spec["counts"])
    spent: dict = {}
    install_timer(spec["entry"], spent)
    start = time.perf_counter()
    if spec["entry"] == "cli":
        from xclip_hf.cli import main

        status = main(spec["argv"])
        with open(os.path.join(spec["output"], "report.json"), encoding="utf-8") as f:
            summary = json.load(f)["results"]["summary"]
        spent["metrics"] = {"top1": summary["top1"], "top5": summary["top5"]}
    else:
        import runpy

        sys.argv = [EXAMPLE, *spec["argv"]]  # `python examples/run_video_classification.py ...`
        runpy.run_path(EXAMPLE, run_name="__main__")
        status = 0
    spent["command_s"] = time.perf_counter() - start
    with open(spec["result"], "w", encoding="utf-8") as f:
        json.dump(spent, f)
    return status


def run_side(name: str, entry: str, argv: list[str], workdir: str, tag: str) -> dict:
    """Run one side in a child process; its timings, metrics and per-file decode counts."""
    spec = {"entry": entry, "argv": argv, "output": argv[argv.index("--output" if entry == "cli" else "--output_dir") + 1],
            "counts": os.path.join(workdir, f"counts_{tag}.tsv"), "result": os.path.join(workdir, f"result_{tag}.json")}
    spec_path = os.path.join(workdir, f"spec_{tag}.json")
    with open(spec_path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", spec_path], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    with open(spec["result"], encoding="utf-8") as f:
        result = json.load(f)
    counts: dict[str, Counter] = {}
    with open(spec["counts"], encoding="utf-8") as f:
        for line in f:
            event, path = line.rstrip("\n").split("\t")
            counts.setdefault(event, Counter())[os.path.realpath(path)] += 1
    result["counts"] = counts
    return result


def per_file(counts: dict, event: str, videos: list[str]) -> str:
    """min-max of an event's count over the videos (every video listed, 0 for those never seen)."""
    seen = counts.get(event, Counter())
    values = [seen.get(os.path.realpath(v), 0) for v in videos]
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


# ------------------------------------------------------------------------------- the bound (parent, in-process)
def measure_bound(data: dict, args, repeats: int = 2) -> dict:
    """Per video: the model alone on its 4x3 views (text features cached), the same views of all sampled videos in
    one forward (the trainer's eval batch of 8 videos = 96 clips), and decode + preprocessing alone."""
    import torch

    from xclip_hf.evaluation.runner import build_pipeline
    from xclip_hf.models.text_features import build_label_set
    from xclip_hf.models.video_windows import VideoWindowStream

    pipe = build_pipeline(data["model"])
    label_set = build_label_set(data["names"], "{}", tokenizer=pipe.tokenizer)
    text_s = []
    for _ in range(repeats):
        pipe.clear_label_cache()
        start = time.perf_counter()
        text = pipe.text_features(label_set)
        text_s.append(time.perf_counter() - start)
    num_frames = pipe.model.config.vision_config.num_frames
    sample = data["videos"][:min(len(data["videos"]), args.bound_videos)]

    def views(path):
        with VideoWindowStream(path, pipe.video_processor, num_frames=num_frames, num_temporal_clips=VIEWS[0],
                               num_spatial_crops=VIEWS[1]) as stream:
            return torch.cat([pixels for _, pixels in stream])

    threads = torch.get_num_threads()
    decode_s, model_s, batched_s = [], [], []
    with torch.no_grad():
        pipe.video_forward(pixel_values=views(sample[0]), text_embeds=text)  # warm-up
        for _ in range(repeats):
            torch.set_num_threads(1)  # as a DataLoader worker
            start = time.perf_counter()
            clips = [views(path) for path in sample]
            decode_s.append((time.perf_counter() - start) / len(sample))
            torch.set_num_threads(threads)
            start = time.perf_counter()
            for pixel_values in clips:
                pipe.video_forward(pixel_values=pixel_values, text_embeds=text)
            model_s.append((time.perf_counter() - start) / len(sample))
            start = time.perf_counter()  # the trainer's shape: all of the sample's videos in one forward
            pipe.video_forward(pixel_values=torch.cat(clips), text_embeds=text)
            batched_s.append((time.perf_counter() - start) / len(sample))
    return {"text_s": text_s, "decode_s": decode_s, "model_s": model_s, "batched_s": batched_s, "threads": threads,
            "videos": len(sample)}


def span(values, fmt="{:.3f}") -> str:
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--num-videos", type=int, default=32)
    parser.add_argument("--num-labels", type=int, default=400, help="the first N Kinetics-400 class names")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every side (order swapped every round)")
    parser.add_argument("--batch-size", type=int, default=4, help="evaluate's --batch-size (temporal views per forward)")
    parser.add_argument("--workers", type=int, default=2, help="evaluate's --num-workers (and the trainer's third side)")
    parser.add_argument("--bound-videos", type=int, default=8,
                        help="videos timed for the bound (8 = the trainer's default eval batch)")
    parser.add_argument("--bound-only", action="store_true", help="only the bound, no side runs")
    parser.add_argument("--no-bound", action="store_true", help="skip the model-alone / decode-alone bound")
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 short 160x90 videos, 40 labels (smoke test)")
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.child)
    args.size = (360, 640)
    if args.quick:
        args.num_videos, args.num_labels, args.seconds, args.rounds, args.size = 4, 40, 1.0, 1, (90, 160)
        args.bound_videos = 2

    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        start = time.perf_counter()
        data = write_evalset(tmp, args)
        n = len(data["videos"])
        print(f"setup: {n} videos ({args.seconds:g} s, {args.size[1]}x{args.size[0]}, h264), {len(data['names'])} "
              f"Kinetics-400 labels, {'tiny' if args.quick else 'X-CLIP-B/32-8f'} random weights, views "
              f"{VIEWS[0]}x{VIEWS[1]}  [{time.perf_counter() - start:.0f} s]; load now {os.getloadavg()[0]:.2f}",
              flush=True)
        names = list(side_commands(data, args, tmp))
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for r in range(0 if args.bound_only else args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                out = os.path.join(tmp, f"out_{r}_{len(runs[name])}_{names.index(name)}")
                entry, argv = side_commands(data, args, out)[name]
                result = run_side(name, entry, argv, tmp, f"{r}_{names.index(name)}")
                runs[name].append(result)
                c = result["counts"]
                print(f"round {r + 1} {name:>12}: {n / result['eval_s']:.3f} videos/s (evaluation {result['eval_s']:.1f} s,"
                      f" command {result['command_s']:.1f} s); per file: opens {per_file(c, 'open', data['videos'])},"
                      f" read passes {per_file(c, 'pass', data['videos'])}, frames decoded "
                      f"{per_file(c, 'frame', data['videos'])}; metrics {result.get('metrics')}; "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)

        if not args.bound_only:
            base = names[1]
            print(f"\n{'':>14} | {'videos/s (range)':>18} | {'mean':>7} | {'vs ' + base:>14} | per-round ratio")
            mean_rate = {m: n * len(runs[m]) / sum(x["eval_s"] for x in runs[m]) for m in names}
            for m in names:
                rates = [n / x["eval_s"] for x in runs[m]]
                ratios = [b["eval_s"] / x["eval_s"] for x, b in zip(runs[m], runs[base])]
                print(f"{m:>14} | {span(rates):>18} | {mean_rate[m]:7.3f} | {mean_rate[m] / mean_rate[base]:13.2f}x |"
                      f" {span(ratios, '{:.2f}')}x")
        if not args.no_bound:
            bound = measure_bound(data, args)
            model, decode, text = min(bound["model_s"]), min(bound["decode_s"]), min(bound["text_s"])
            passes = -(-n // 8)  # the trainer encodes the class texts once per eval batch of 8
            serial = model + decode + text * passes / n
            print(f"\nbound ({bound['videos']} videos, {bound['threads']} threads, best of 2): model alone "
                  f"{span(bound['model_s'])} s/video, decode+preprocess of 4x3 views alone (1 thread) "
                  f"{span(bound['decode_s'])} s/video, {len(data['names'])}-label text pass {span(bound['text_s'])} s")
            print(f"  serial loop (model + decode + text/8 videos) {serial:.3f} s/video = {1 / serial:.3f} videos/s; "
                  f"perfect overlap (model alone) {1 / model:.3f} videos/s: at most {serial / model:.2f}x over a "
                  f"serial loop of the same model")
            batched = min(bound["batched_s"])
            print(f"  the trainer's batch shape ({bound['videos']} videos x 12 clips in one forward) "
                  f"{span(bound['batched_s'])} s/video: {batched / model:.2f}x the per-video forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
