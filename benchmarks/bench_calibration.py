"""Open-set rejection on the demo's trained X-CLIP (`examples/demo.py`: 6 synthetic classes of 32x32 videos), one
class held out as "unknown": empirical coverage of the known classes vs 1 - eps, and the share of unknown videos
rejected, for eps in {0.05, 0.1, 0.2}.

For each held-out class (6) the 5 others are the candidate labels; every video of the held-out list (data/test.txt,
132 videos, 22 per class) is scored once through the pipeline's `score` (`evaluation.runner.score_videos`, 1 view).
Then, per random split (`--splits`, seeds 0..): the 110 known videos are split in half at random, calibration
(`fit_calibration`, split conformal) on one half, test on the other half + the 22 unknown videos. Reported, mean and
[min, max] over the 6 x splits runs:

* open set: the fitted score threshold 1 - q, coverage (true label in the prediction set) of the known test videos,
  known videos answered "unknown", unknown videos rejected ("unknown": empty set), mean prediction-set size of the
  known test videos;
* multi-label (per-label, label-conditional thresholds): the mean over labels of the per-label recall (true label
  on), unknown videos with no label on; "refused" where a label has too few calibration videos for eps.

`--calibration train` calibrates on data/train.txt instead (the training videos: not exchangeable with held-out
ones, so no guarantee) and tests on all of data/test.txt, one run per held-out class. The first run's answers are
checked against the pipeline called with the written calibration file (`calibration=`).

    python benchmarks/bench_calibration.py                       # held-out calibration, 20 splits
    python benchmarks/bench_calibration.py --calibration train   # calibrate on the training list
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

EPS = (0.05, 0.1, 0.2)


def score_lists(pipe, lists: dict, class_names: list[str], held_out: int) -> dict:
    """{list name: (scores (N, 5) over the known labels, class ids over all 6)} for one held-out class."""
    from xclip_hf.evaluation.runner import score_videos

    known = [name for k, name in enumerate(class_names) if k != held_out]
    out = {}
    for name, (videos, refs) in lists.items():
        scored = score_videos(pipe, videos, known, batch_size=16, progress=False)
        if scored.bad_videos:
            raise RuntimeError(f"{name}: unreadable videos {scored.bad_videos[:3]}")
        out[name] = (scored.scores, np.asarray(refs))
    return out


def known_ids(refs: np.ndarray, held_out: int) -> np.ndarray:
    """Class ids over all 6 -> ids over the 5 known labels (the held-out class is -1)."""
    return np.where(refs == held_out, -1, refs - (refs > held_out))


def measure(fit: dict, known_labels, test_scores, test_refs, unknown_scores) -> dict:
    """The figures of one run: coverage, known answered unknown, unknown rejected, set size; per-label figures."""
    from xclip_hf.pipelines.calibration import clears

    rows = np.arange(len(test_refs))
    q = fit["threshold"]["nonconformity"]
    inside = clears(torch.from_numpy(test_scores), q).numpy()
    out = {"threshold": fit["threshold"]["score"], "coverage": inside[rows, test_refs].mean(),
           "known_unknown": (~inside.any(1)).mean(), "set_size": inside.sum(1).mean(),
           "rejected": (~clears(torch.from_numpy(unknown_scores), q).numpy().any(1)).mean()}
    quantiles = [fit["label_thresholds"][label]["nonconformity"] for label in known_labels]
    if any(q is None for q in quantiles):
        out.update(label_recall=None, label_rejected=None)
        return out
    on = clears(torch.from_numpy(test_scores), quantiles).numpy()
    recall = [on[test_refs == k, k].mean() for k in range(len(known_labels))]
    out.update(label_recall=float(np.mean(recall)),
               label_rejected=(~clears(torch.from_numpy(unknown_scores), quantiles).numpy().any(1)).mean())
    return out


def check_against_pipeline(pipe, fit, known_labels, videos, expected_unknown) -> None:
    """The pipeline called with the written calibration answers "unknown" exactly where the run says so."""
    from xclip_hf.evaluation.calibration import calibration_record, write_calibration

    with tempfile.TemporaryDirectory() as tmp:
        path = write_calibration(os.path.join(tmp, "cal.json"), calibration_record(pipe, fit, known_labels))
        answers = pipe(videos, candidate_labels=known_labels, calibration=path, batch_size=16)
    got = np.asarray([a["label"] == "unknown" for a in answers])
    if not (got == expected_unknown).all():
        raise AssertionError(f"the pipeline's answers differ from the benchmark's on "
                             f"{int((got != expected_unknown).sum())} videos")


def runs(pipe, lists, class_names, source: str, splits: int):
    """Yield (eps, figures) of every run: each held-out class, each split (held-out calibration) or once (train)."""
    from xclip_hf.evaluation.calibration import fit_calibration

    checked = False
    for held_out in range(len(class_names)):
        known_labels = [name for k, name in enumerate(class_names) if k != held_out]
        scored = score_lists(pipe, {k: v for k, v in lists.items() if k in ("test", source)}, class_names, held_out)
        scores, refs = scored["test"]
        ids = known_ids(refs, held_out)
        unknown = scores[ids < 0]
        known = np.flatnonzero(ids >= 0)
        plans = []
        if source == "test":
            for seed in range(splits):
                order = np.random.default_rng(seed).permutation(known)
                half = len(order) // 2
                plans.append((scores[order[:half]], ids[order[:half]], scores[order[half:]], ids[order[half:]]))
        else:
            cal_scores, cal_refs = scored[source]
            cal_ids = known_ids(cal_refs, held_out)
            plans.append((cal_scores[cal_ids >= 0], cal_ids[cal_ids >= 0], scores[known], ids[known]))
        for cal_scores, cal_ids, test_scores, test_ids in plans:
            for eps in EPS:
                fit = fit_calibration(cal_scores, cal_ids, known_labels, eps)
                figures = measure(fit, known_labels, test_scores, test_ids, unknown)
                if not checked:  # the first run through the pipeline itself
                    videos = [lists["test"][0][i] for i in np.flatnonzero(ids < 0)]
                    expected = ~(1 - unknown.astype(np.float64) <= fit["threshold"]["nonconformity"]).any(1)
                    check_against_pipeline(pipe, fit, known_labels, videos, expected)
                    checked = True
                yield eps, figures, len(cal_ids)


def _cell(values, percent: bool = True) -> str:
    """mean [min, max] over the runs (percent or plain), over those not refused (how many were, if any)."""
    kept = [v for v in values if v is not None]
    refused = f"refused in {len(values) - len(kept)} of {len(values)} runs" if len(kept) < len(values) else ""
    if not kept:
        return refused
    scale = 100 if percent else 1
    mean, low, high = np.mean(kept) * scale, np.min(kept) * scale, np.max(kept) * scale
    text = f"{mean:.1f} [{low:.1f}, {high:.1f}]" if percent else f"{mean:.2f} [{low:.2f}, {high:.2f}]"
    return text + (f" ({refused})" if refused else "")


def table(results: dict) -> str:
    """The markdown table: one row per eps."""
    lines = ["| eps | 1 - eps | score threshold | coverage, known (%) | known answered unknown (%) | "
             "unknown rejected (%) | set size | per-label recall (%) | unknown, no label on (%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for eps, rows in results.items():
        get = lambda key: [r[key] for r in rows]  # noqa: E731
        lines.append(f"| {eps} | {100 * (1 - eps):.0f} | {_cell(get('threshold'), percent=False)} | "
                     f"{_cell(get('coverage'))} | {_cell(get('known_unknown'))} | "
                     f"{_cell(get('rejected'))} | {_cell(get('set_size'), percent=False)} | "
                     f"{_cell(get('label_recall'))} | {_cell(get('label_rejected'))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", default="/work/demo_shared", help="the demo's output folder (xclip/, data/)")
    parser.add_argument("--calibration", choices=["test", "train"], default="test",
                        help="test: half of the held-out known videos (default); train: data/train.txt")
    parser.add_argument("--splits", type=int, default=20, help="random calibration/test splits per held-out class")
    args = parser.parse_args(argv)
    from xclip_hf.evaluation.closed_set import read_annotations
    from xclip_hf.evaluation.labels import resolve_labels
    from xclip_hf.evaluation.runner import build_pipeline

    data = os.path.join(args.demo, "data")
    class_names, _ = resolve_labels(os.path.join(data, "labels.csv"))
    lists = {"test": read_annotations(os.path.join(data, "test.txt"), class_names)}
    if args.calibration == "train":
        lists["train"] = read_annotations(os.path.join(data, "train.txt"), class_names)
    pipe = build_pipeline(os.path.join(args.demo, "xclip"), device="cpu")
    start = time.perf_counter()
    results, sizes = {eps: [] for eps in EPS}, set()
    for eps, figures, n in runs(pipe, lists, class_names, args.calibration, args.splits):
        results[eps].append(figures)
        sizes.add(n)
    source = (f"half of the held-out known videos, {args.splits} random splits" if args.calibration == "test" else
              "data/train.txt (known classes)")
    print(f"demo X-CLIP, {len(class_names)} classes, each held out in turn; calibration: {source}"
          f" (n = {min(sizes)}-{max(sizes)}); {len(results[EPS[0]])} runs per eps; mean [min, max] over runs; "
          f"{time.perf_counter() - start:.0f} s")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
