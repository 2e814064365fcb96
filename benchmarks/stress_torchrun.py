"""Stress test: the public Python API under `torchrun --nproc_per_node 2`, many launches, both cores busy.

Each launch runs a user's script that calls only `evaluate_closed_set`, `evaluate_zero_shot` and `embed_videos`
(tiny model, a few short videos, a corrupt and an empty file) and does nothing about the process group. A launch fails when a rank exits
non-zero: a finished rank aborted at interpreter exit ("terminate called without an active exception", SIGABRT)
is counted separately. Two busy-loop processes keep both cores loaded while the launches run (`--no-busy` to skip).

    python benchmarks/stress_torchrun.py --runs 30                       # this checkout
    python benchmarks/stress_torchrun.py --runs 30 --tree ../old         # another checkout (before/after)
    python benchmarks/stress_torchrun.py --runs 30 --minimal             # the mechanism, both ways alternated

`--minimal` runs a script of torch and accelerate alone that ends right after collectives, alternately with the
group started by bare `PartialState` (nothing ends it) and by `xclip_hf.jobs.job_state` (ended at exit), and counts
the aborts of each: the same failure without xclip_hf's evaluation code around it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = ["moving left", "moving right", "growing", "shrinking"]
ABORT_MARKERS = ("terminate called", "SIGABRT", "Signal 6", "exitcode  : -6")

USER_SCRIPT = """
import json, os, sys
from xclip_hf import embed_videos
from xclip_hf.evaluation.closed_set import evaluate_closed_set
from xclip_hf.evaluation.zero_shot import evaluate_zero_shot

a = json.loads(sys.argv[1])
closed = evaluate_closed_set(a["model"], a["data"], a["labels"], output_dir=a["out"] + "/closed", batch_size=2,
                             progress=False)
zero = evaluate_zero_shot(a["model"], [a["data"]], a["labels"], output_dir=a["out"] + "/zero", batch_size=2,
                          progress=False)
rows = embed_videos(a["videos"], a["out"] + "/embed", a["model"], batch_size=2, progress=False)
try:  # last: every process stops at a bad file and raises the first one's error (a collective, then the exit)
    evaluate_closed_set(a["model"], a["data"], a["labels"], on_bad_video="raise", progress=False)
except ValueError:
    pass
if os.environ.get("RANK") == "0":
    print(json.dumps({"top1": closed["results"]["summary"].get("top1"), "rows": len(rows)}))
"""


MINIMAL_SCRIPT = """
import datetime, sys
import torch
from accelerate import PartialState
from accelerate.utils import gather_object

if sys.argv[1] == "job_state":
    from xclip_hf.jobs import job_state
    state = job_state("cpu")
else:
    state = PartialState(cpu=True, timeout=datetime.timedelta(hours=1))
for _ in range(5):
    gather_object([{"rank": state.process_index}])
    state.wait_for_everyone()
torch.distributed.all_reduce(torch.ones(1000))
"""


def make_fixture(root: str, num_videos: int) -> dict:
    """A tiny X-CLIP checkpoint with its processor, `num_videos` short h264 files and two bad ones (corrupt, empty),
    an annotation list and labels."""
    import numpy as np
    import torch

    from xclip_hf import XClipConfig, XClipModel
    from xclip_hf.data.synthetic import render_video
    from xclip_hf.data.tokenizer import build_clip_tokenizer
    from xclip_hf.data.video_writer import write_video
    from xclip_hf.models.processing_xclip import XClipProcessor
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer(LABELS + ["a video of a shape"], vocab_size=600)
    config = XClipConfig.from_variant("xclip-tiny", num_frames=4, vocab_size=len(tokenizer))
    model_dir = os.path.join(root, "model")
    XClipModel(config).eval().save_pretrained(model_dir)
    video_processor = XClipVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                          num_frames=4)
    XClipProcessor(video_processor=video_processor, tokenizer=tokenizer).save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    videos, lines = [], []
    for i in range(num_videos):
        label = i % len(LABELS)
        path = os.path.join(root, f"v{i}.mp4")
        write_video(path, render_video(LABELS[label], rng, size=32, num_frames=12))
        videos.append(path)
        lines.append(f"{path} {label}")
    for name, content in (("corrupt.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000)), ("empty.mp4", b"")):
        path = os.path.join(root, name)  # bad files among the good ones, as users' lists have them
        with open(path, "wb") as f:
            f.write(content)
        videos.insert(1, path)
        lines.insert(1, f"{path} 0")
    data = os.path.join(root, "val.txt")
    with open(data, "w") as f:
        f.write("\n".join(lines) + "\n")
    labels = os.path.join(root, "labels.csv")
    with open(labels, "w") as f:
        f.write("id,name\n" + "".join(f"{k},{name}\n" for k, name in enumerate(LABELS)))
    return {"model": model_dir, "data": data, "labels": labels, "videos": videos}


def _busy(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def launch(script: str, arg: str, env: dict, timeout: float) -> tuple[int, str]:
    """One `torchrun --standalone --nproc_per_node 2` of a script with one argument: (exit status, stderr)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, arg]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        return 124, f"timed out after {timeout:g} s: {(err.stderr or b'')[-2000:]!r}"
    return run.returncode, run.stderr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tree", default=os.path.dirname(HERE), help="checkout whose xclip_hf is imported")
    parser.add_argument("--num-videos", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per launch")
    parser.add_argument("--no-busy", action="store_true", help="do not load both cores while the launches run")
    parser.add_argument("--keep-log", default=None, help="write each failed launch's stderr tail to this file")
    parser.add_argument("--minimal", action="store_true",
                        help="torch + accelerate alone, bare PartialState vs jobs.job_state alternated")
    args = parser.parse_args(argv)

    tree = os.path.abspath(args.tree)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sys.path.insert(0, tree)
    work = tempfile.mkdtemp(prefix="stress_torchrun_")
    script = os.path.join(work, "user_script.py")
    if args.minimal:
        sides = ["PartialState", "job_state"]
        arguments = {side: side for side in sides}
        with open(script, "w") as f:
            f.write(MINIMAL_SCRIPT)
    else:
        sides = ["api"]
        fixture = make_fixture(work, args.num_videos)
        arguments = {"api": None}
        with open(script, "w") as f:
            f.write(USER_SCRIPT)

    busy = []
    if not args.no_busy:
        stop_at = time.time() + args.runs * args.timeout
        busy = [multiprocessing.Process(target=_busy, args=(stop_at,), daemon=True) for _ in range(2)]
        for p in busy:
            p.start()
    counts = {side: {"ok": 0, "abort": 0, "other": 0} for side in sides}
    seconds = []
    try:
        for i in range(args.runs):
            for side in sides:
                arg = arguments[side] or json.dumps(dict(fixture, out=os.path.join(work, f"run{i}")))
                start = time.perf_counter()
                status, stderr = launch(script, arg, env, args.timeout)
                seconds.append(time.perf_counter() - start)
                kind = "ok" if status == 0 else ("abort" if any(m in stderr for m in ABORT_MARKERS) else "other")
                counts[side][kind] += 1
                print(f"launch {i + 1}/{args.runs} {side}: exit {status} ({kind}, {seconds[-1]:.1f} s)", flush=True)
                if kind != "ok" and args.keep_log:
                    with open(args.keep_log, "a") as log:
                        log.write(f"=== launch {i + 1} {side}: exit {status}\n{stderr[-4000:]}\n")
    finally:
        for p in busy:
            p.terminate()
    load = os.getloadavg()[0]
    for side in sides:
        c = counts[side]
        print(f"tree {tree} [{side}]: {args.runs} launches, {c['ok']} ok, {c['abort']} aborted at exit, "
              f"{c['other']} other failures")
    print(f"{min(seconds):.1f}-{max(seconds):.1f} s per launch; load {load:.1f} "
          f"({'both cores busy' if busy else 'no busy loop'})")
    return 0 if all(counts[side]["ok"] == args.runs for side in sides if side != "PartialState") else 1

if __name__ == "__main__":
    sys.exit(main())
