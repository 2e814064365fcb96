#!/usr/bin/env python
"""Run the offline demo (examples/demo.py) for several seeds and print each figure as mean ± range.

    python examples/demo_seeds.py --seeds 0 1 2                 # three full demos, one after the other
    python examples/demo_seeds.py --seeds 0 1 2 --parallel 3    # at the same time (needs the cores)
    python examples/demo_seeds.py --seeds 0 1 2 --aggregate     # only summarise demo_seeds/seed_*/results.json

Each seed runs in its own folder `OUTPUT_DIR/seed_S` (a seed's results.json is the same on every run); the
summary (top-1 and top-1 per time-reversed pair of every model: mean, min, max over the seeds) is printed and
saved to `OUTPUT_DIR/seeds.json`. Extra arguments after `--` go to every demo run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def summarise(results: list[dict]) -> dict:
    """{figure: {model: {mean, min, max, values}}} for top-1 and top-1 of every pair, over the seeds' results."""
    figures = {"top-1": [r["top1"] for r in results]}
    for pair in results[0]["pair_top1"][next(iter(results[0]["pair_top1"]))]:
        figures[pair] = [{m: v[pair] for m, v in r["pair_top1"].items()} for r in results]
    summary = {}
    for figure, per_seed in figures.items():
        summary[figure] = {}
        for model in per_seed[0]:
            values = [d[model] for d in per_seed]
            summary[figure][model] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
                                      "values": values}
    return summary


def format_summary(summary: dict, seeds: list[int]) -> str:
    """One line per figure: `model mean% (min-max%)` for every model."""
    lines = [f"over seeds {', '.join(map(str, seeds))}: mean (min - max)"]
    for figure, models in summary.items():
        cells = [f"{m} {s['mean']:.1%} ({s['min']:.1%} - {s['max']:.1%})" for m, s in models.items()]
        lines.append(f"  {figure:<28}" + "   ".join(cells))
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output_dir", default="demo_seeds")
    parser.add_argument("--parallel", type=int, default=1, help="demo runs at the same time")
    parser.add_argument("--aggregate", action="store_true", help="only summarise existing results")
    args = parser.parse_args(argv)
    folders = {seed: os.path.join(args.output_dir, f"seed_{seed}") for seed in args.seeds}
    if not args.aggregate:
        pending = list(folders.items())
        while pending:
            batch, pending = pending[: args.parallel], pending[args.parallel:]
            procs = []
            for seed, folder in batch:
                os.makedirs(folder, exist_ok=True)
                cmd = [sys.executable, os.path.join(HERE, "demo.py"), "--seed", str(seed), "--output_dir", folder, *extra]
                print(" ".join(cmd), flush=True)
                procs.append((seed, subprocess.Popen(cmd, stdout=open(os.path.join(folder, "demo.log"), "w"),
                                                     stderr=subprocess.STDOUT)))
            for seed, proc in procs:
                if proc.wait() != 0:
                    raise SystemExit(f"demo with --seed {seed} failed: see {os.path.join(folders[seed], 'demo.log')}")
    missing = [f for f in folders.values() if not os.path.isfile(os.path.join(f, "results.json"))]
    if missing:
        raise SystemExit(f"no results.json in {missing}: run without --aggregate first")
    results = [json.load(open(os.path.join(folder, "results.json"))) for folder in folders.values()]
    summary = summarise(results)
    print(format_summary(summary, args.seeds))
    with open(os.path.join(args.output_dir, "seeds.json"), "w") as f:
        json.dump({"seeds": args.seeds, "summary": summary}, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
