"""Before/after as WORK: CPU seconds of the same workloads on an older checkout and on this one, alternated.

Wall-clock ratios of short runs swing by tens of percent on a shared 2-core machine; CPU seconds of a process with
ONE math thread (so that OpenMP spin-waits under load are not counted) measure the work each tree does. Workloads
(files written once into ``--workdir``, a published-format X-CLIP-B/32-8f with random weights, 400 labels):

* ``zero``: the zero-shot pipeline on 8 files x 400 labels, batch 4, label cache emptied first;
* ``search``: ``search_videos`` per query over 200,000 random vectors (20 queries, median);
* ``embed``: ``run_embedding`` of the 8 files, no workers (whole-video rows);
* ``items``: embed's decode + processing alone (the loader's items, no model).

    python benchmarks/bench_before_after_work.py --old ../old [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NEW = os.path.dirname(HERE)
JOBS = ("zero", "search", "embed", "items")


def _imports(tree: str):
    """The module paths of this tree (the restructuring moved them)."""
    old = os.path.exists(os.path.join(tree, "xclip_hf", "search.py"))
    return {"search": "xclip_hf.search" if old else "xclip_hf.corpus.search",
            "embed": "xclip_hf.embed" if old else "xclip_hf.corpus.embed",
            "loader": "xclip_hf.embedding.loader" if old else "xclip_hf.corpus.loader"}


def child(job: str, tree: str, work: str) -> dict:
    """One measurement in this fresh process (PYTHONPATH = tree)."""
    import importlib
    import resource
    import shutil
    import tempfile

    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, os.path.join(tree, "benchmarks"))
    from xclip_hf import XClipModel, XClipProcessor

    paths = _imports(tree)
    ckpt = os.path.join(work, "ckpt")
    videos = sorted(os.path.join(work, f) for f in os.listdir(work) if f.endswith(".mp4"))
    labels = json.load(open(os.path.join(work, "labels.json")))

    def cpu():
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    if job == "zero":
        from transformers import pipeline

        pipe = pipeline("zero-shot-video-classification", model=ckpt, device="cpu")
        pipe(videos[:1], candidate_labels=labels[:2])
        pipe.clear_label_cache()
        start = cpu()
        pipe(videos, candidate_labels=labels, batch_size=4)
        return {"cpu_s": cpu() - start}
    model = XClipModel.from_pretrained(ckpt).eval()
    processor = XClipProcessor.from_pretrained(ckpt)
    if job == "search":
        from bench_embed import random_embedding_dataset

        search = importlib.import_module(paths["search"])
        dataset, _ = random_embedding_dataset(200_000, model.config.projection_dim)
        index = search.VideoIndex.from_dataset(dataset)
        search.search_videos(dataset, "warm up", model, processor=processor, top_k=10, index=index)
        times = []
        for k in range(20):
            start = cpu()
            search.search_videos(dataset, f"query number {k} about a person surfing", model, processor=processor,
                                 top_k=10, index=index)
            times.append(cpu() - start)
        return {"cpu_s": float(np.median(times))}
    if job == "embed":
        embed = importlib.import_module(paths["embed"])
        out = tempfile.mkdtemp()
        start = cpu()
        embed.run_embedding(videos, os.path.join(out, "o"), model, processor=processor, num_workers=0, batch_size=8,
                            progress=False)
        spent = cpu() - start
        shutil.rmtree(out)
        return {"cpu_s": spent}
    loader = importlib.import_module(paths["loader"])
    if hasattr(loader, "window_rows"):  # embed's rows read through pipelines.video_chunks
        from functools import partial

        from xclip_hf.pipelines.video_chunks import VideoChunks

        items = VideoChunks(videos * 3, partial(loader.window_rows, processor=processor.video_processor,
                                                plan=loader.WindowPlan(8)))
    else:
        items = loader.VideoWindowItems(videos * 3, processor.video_processor, loader.WindowPlan(8))
    start = cpu()
    count = sum(1 for _ in items)
    return {"cpu_s": cpu() - start, "items": count}


def prepare(work: str) -> None:
    """The files both trees read: 8 h264 files, a published B/32-8f checkpoint, 400 labels."""
    if os.path.isfile(os.path.join(work, "labels.json")):
        return
    sys.path.insert(0, HERE)
    sys.path.insert(0, NEW)
    from bench_zero_shot import make_labels, save_published_checkpoint, write_videos

    os.makedirs(work, exist_ok=True)
    labels = make_labels(400)
    write_videos(work, 8, 10.0, 240, 320)
    save_published_checkpoint(os.path.join(work, "ckpt"), labels, False)
    with open(os.path.join(work, "labels.json"), "w") as f:
        json.dump(labels, f)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="checkout of the revision to compare with")
    parser.add_argument("--new", default=NEW)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=list(JOBS), choices=JOBS)
    parser.add_argument("--workdir", default="/tmp/bench_before_after_work")
    parser.add_argument("--child", nargs=2, metavar=("JOB", "TREE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.workdir)))
        return 0
    prepare(args.workdir)
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    results = {side: {job: [] for job in args.only} for side in trees}
    for r in range(args.rounds):
        for job in args.only:
            for side in (["old", "new"] if r % 2 == 0 else ["new", "old"]):
                env = {**os.environ, "PYTHONPATH": trees[side], "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
                cmd = [sys.executable, os.path.abspath(__file__), "--old", args.old, "--workdir", args.workdir,
                       "--child", job, trees[side]]
                done = subprocess.run(cmd, env=env, cwd=trees[side], capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{job} on {side} failed:\n{done.stderr[-3000:]}")
                value = json.loads(done.stdout.strip().splitlines()[-1])["cpu_s"]
                results[side][job].append(value)
                print(f"round {r + 1} {job:6s} {side}: {value:.3f} CPU s  [load {os.getloadavg()[0]:.2f}]", flush=True)
    print(f"\n{'workload':8s} | {'old CPU s':>13s} | {'new CPU s':>13s} | new/old per round (lower: less work)")
    for job in args.only:
        old, new = results["old"][job], results["new"][job]
        ratios = [n / o for n, o in zip(new, old)]
        print(f"{job:8s} | {min(old):6.3f}-{max(old):6.3f} | {min(new):6.3f}-{max(new):6.3f} | "
              f"{min(ratios):.2f}-{max(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
