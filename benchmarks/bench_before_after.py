"""Before/after: the same benchmarks on an older checkout and on this one, alternated in one run.

Each tree runs its own copy of a benchmark script (they differ only in import paths) with ``PYTHONPATH`` set to
that tree, in fresh processes; the two trees alternate (old, new, new, old, ... the order swaps every round) so that
load from other processes hits them alike, and both read the same written files (``--workdir``). The figures each
script already prints are collected per tree, and the table shows each side's range over rounds and the new/old
ratio per round (range): a ratio near 1.0 is "within noise", above is faster.

* long videos (``bench_long_video.py --minutes 1 5 --repeats 1``): windowed pipeline windows/s and peak RSS per
  length; the new tree also runs with ``--num-workers 2`` (windows decoded in DataLoader workers beside the model):
  the ratio workers-2 / workers-0 is the decode/model overlap;
* zero-shot (``bench_zero_shot.py --rounds 1 --no-bf16``): our pipeline's videos/s and its ratio to the
  transformers recipe measured in the same process (a control that cancels load);
* embed (``bench_embed.py --rounds 1``): embed --num-workers 2 videos/s, pipeline loop videos/s, search latency.

    git worktree add --detach ../old 73c1539        # the revision to compare with
    python benchmarks/bench_before_after.py --old ../old [--rounds 2] [--only long zero embed]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NEW = os.path.dirname(HERE)

FLOAT = r"([0-9]+(?:\.[0-9]+)?)"


def run_script(tree: str, script: str, args: list[str]) -> str:
    """Run ``tree/benchmarks/script`` with that tree's package first on the path; return its stdout."""
    env = {**os.environ, "PYTHONPATH": tree, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, os.path.join(tree, "benchmarks", script), *args]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} (in {tree}) failed with exit {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def parse_long(out: str) -> dict[str, float]:
    figures = {}
    pattern = rf"repeat \d+ {FLOAT} min windowed\s*: \d+ windows in {FLOAT} s = {FLOAT} windows/s, peak RSS {FLOAT} MB"
    for minutes, _, wps, rss in re.findall(pattern, out):
        figures[f"long {float(minutes):g} min windowed windows/s"] = float(wps)
        figures[f"long {float(minutes):g} min windowed peak RSS MB"] = float(rss)
    return figures


def parse_zero(out: str) -> dict[str, float]:
    rates = re.search(rf"videos/s \|\s*{FLOAT} \|\s*{FLOAT}", out)
    ratio = re.search(rf"vs transformers \|\s*{FLOAT}x \|\s*{FLOAT}x", out)
    return {"zero-shot ours fp32 videos/s": float(rates.group(2)),
            "zero-shot transformers recipe videos/s": float(rates.group(1)),
            "zero-shot ours / transformers (control)": float(ratio.group(2))}


def parse_embed(out: str) -> dict[str, float]:
    rates = re.search(rf"embed --num-workers \d+: {FLOAT} videos/s, pipeline loop: {FLOAT} videos/s", out)
    recall = re.search(rf"search recall per query .*?median {FLOAT} ms", out)
    full = re.search(rf"search_videos per query .*?median {FLOAT} ms", out)
    figures = {"embed videos/s": float(rates.group(1)), "embed: pipeline loop videos/s": float(rates.group(2)),
               "search recall ms (median)": float(recall.group(1))}
    if full:
        figures["search_videos ms (median)"] = float(full.group(1))
    return figures


LOWER_IS_BETTER = ("MB", "ms", "ms (median)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="checkout of the revision to compare with")
    parser.add_argument("--new", default=NEW, help="checkout to measure (default: this one)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=["long", "zero", "embed"], choices=["long", "zero", "embed"])
    parser.add_argument("--minutes", nargs="+", default=["1", "5"])
    parser.add_argument("--workdir", default=None, help="keep the long videos here (default: a temp dir)")
    args = parser.parse_args(argv)
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    for name, tree in trees.items():
        rev = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        print(f"{name}: {tree} at {rev.stdout.strip() or '?'}", flush=True)
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="before_after_") as tmp:
        work = args.workdir or tmp
        jobs = {
            "long": ("bench_long_video.py", ["--minutes", *args.minutes, "--repeats", "1", "--workdir", work],
                     parse_long),
            "zero": ("bench_zero_shot.py", ["--rounds", "1", "--no-bf16"], parse_zero),
            "embed": ("bench_embed.py", ["--rounds", "1"], parse_embed),
        }
        results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}, "new, 2 workers": {}}
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for job in args.only:
                script, script_args, parse = jobs[job]
                runs = [(side, trees[side], script_args) for side in order]
                if job == "long":
                    runs.append(("new, 2 workers", trees["new"], [*script_args, "--num-workers", "2"]))
                for side, tree, extra in runs:
                    start = time.perf_counter()
                    figures = parse(run_script(tree, script, extra))
                    for key, value in figures.items():
                        results[side].setdefault(key, []).append(value)
                    print(f"round {r + 1} {job} {side}: " + ", ".join(f"{k} {v:g}" for k, v in figures.items())
                          + f"  [{time.perf_counter() - start:.0f} s, load {os.getloadavg()[0]:.2f}]", flush=True)

    def span(xs):
        return f"{min(xs):.3g}-{max(xs):.3g}" if len(xs) > 1 else f"{xs[0]:.3g}"

    print(f"\n{'figure':48s} | {'old':>13s} | {'new':>13s} | new/old per round")
    for key, old in results["old"].items():
        new = results["new"].get(key, [])
        ratios = [n / o for n, o in zip(new, old)]
        better = "lower is better" if key.endswith(LOWER_IS_BETTER) else "higher is better"
        print(f"{key:48s} | {span(old):>13s} | {span(new):>13s} | {span(ratios)}x ({better})")
    for key, two in results["new, 2 workers"].items():
        if key.endswith("windows/s"):
            ratios = [t / z for t, z in zip(two, results["new"][key])]
            print(f"{key + ', 2 workers':48s} | {'':>13s} | {span(two):>13s} | "
                  f"workers 2 / workers 0 = {span(ratios)}x (decode/model overlap)")
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
