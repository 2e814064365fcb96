"""Hubness correction of text->video search: R@1/5/10 with `search --hubness none|qbnorm|dual-softmax`.

Data (synthetic, seeded): the corpus is a clustered Gaussian mixture of unit vectors (the index tests' mixture:
`--centres` unit centres in 16 groups, each cluster spread along its own 8 random directions, a little isotropic
noise, random norms), written as an `embed` output folder (float16 rows, merged by the shard store). Queries are the
text->video setting of retrieval benchmarks: one query per paired video (distinct videos, none of them a hub),
the paired video's unit vector plus isotropic Gaussian noise (norm about `--noise`); the query's correct answer is
its paired video. Two corpora:
    plain:  the mixture as is; the queries carry no shift (no planted hubs);
    hubs:   `--hubs` rows of the corpus replaced by near-duplicates of one "generic" direction g (g plus noise of norm
            0.3: think of a logo intro uploaded many times), and every query shifted by `--shift` x g (the text side's
            offset from the videos, as a modality gap): the generic videos are near many queries (hubs) and, being
            near-duplicates, near many corpus videos, which is what a bank made of the corpus can see;
    query-side hubs: `--hubs` rows of the corpus moved by 0.8 g (then normalised; not near each other) and every
            query shifted by 0.8 g: hubs made by the query side only.
Search: `corpus.search.search_vectors` (the exact torch index and the hubness branch of `search_videos`, no text
encoder) with top_k=10. QB-Norm uses the corpus as its query bank (all rows up to `--bank-size`, beta 20, k 1); the
dual softmax normalises over all queries at once (one-to-one queries, its favourable case). Times: wall seconds for
all queries, the QB-Norm bank computed on the first call (then stored in the output's `_qbnorm`, reused on the next).

    python benchmarks/bench_hubness.py                      # 5,000 videos, 1,000 queries, width 64
    python benchmarks/bench_hubness.py --videos 20000 --queries 2000 --width 128
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

METHODS = ("none", "qbnorm", "dual-softmax")


def mixture(n: int, width: int, centres: int, seed: int) -> np.ndarray:
    """(n, width) float64 draws of a clustered mixture: centres in 16 groups, 8 spread directions per cluster."""
    setup = np.random.default_rng(seed)
    groups = setup.standard_normal((16, width))
    centre = setup.standard_normal((centres, width)) + 2.0 * groups[np.arange(centres) % 16]
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    bases = setup.standard_normal((centres, 8, width)) / np.sqrt(width)
    k = setup.integers(0, centres, n)
    spread = setup.standard_normal((n, 8)) * (0.5 / np.sqrt(np.arange(1, 9)))
    noise = 0.05 / np.sqrt(width) * setup.standard_normal((n, width))
    x = centre[k] + np.einsum("nr,nrp->np", spread, bases[k]) + noise
    return x * setup.uniform(0.5, 2.0, (n, 1))


CORPORA = ("plain", "planted hubs", "query-side hubs")


def corpus_and_queries(args, corpus: str):
    """(corpus vectors (N, W), hub rows, queries (Q, W), paired rows (Q,)) of one of `CORPORA`."""
    rng = np.random.default_rng([args.seed, 1])
    videos = mixture(args.videos, args.width, args.centres, args.seed)
    videos /= np.linalg.norm(videos, axis=1, keepdims=True)
    generic = rng.standard_normal(args.width)
    generic /= np.linalg.norm(generic)
    hubs = rng.choice(args.videos, args.hubs, replace=False) if corpus != "plain" else np.zeros(0, np.int64)
    if corpus == "planted hubs":
        videos[hubs] = generic + 0.3 * rng.standard_normal((len(hubs), args.width)) / np.sqrt(args.width)
    elif corpus == "query-side hubs":
        videos[hubs] += 0.8 * generic
        videos[hubs] /= np.linalg.norm(videos[hubs], axis=1, keepdims=True)
    paired = rng.choice(np.setdiff1d(np.arange(args.videos), hubs), args.queries, replace=False)
    unit = videos[paired] / np.linalg.norm(videos[paired], axis=1, keepdims=True)
    queries = unit + args.noise * rng.standard_normal((args.queries, args.width)) / np.sqrt(args.width)
    if corpus != "plain":
        queries += (args.shift if corpus == "planted hubs" else 0.8) * generic
    return videos, hubs, queries, paired


def write_output(directory: str, vectors: np.ndarray) -> None:
    """An `embed` output of ``vectors`` (one float16 row per synthetic video), committed and merged."""
    from xclip_hf.jobs.store import ShardStore, row_features

    features = row_features(vectors.shape[1], "float16", False, False)
    store = ShardStore(directory)
    store.write_config({"projection_dim": vectors.shape[1], "save_dtype": "float16",
                        "model_fingerprint": "sha256:" + "b" * 64, "model_source": "synthetic"})
    for begin in range(0, len(vectors), 10_000):
        rows = range(begin, min(begin + 10_000, len(vectors)))
        paths = [f"/corpus/v{i:07d}.mp4" for i in rows]
        store.commit({"path": paths, "start_s": [0.0] * len(paths), "end_s": [1.0] * len(paths),
                      "video_embeds": [vectors[i].astype(np.float16) for i in rows], "error": [None] * len(paths)},
                     paths, features)
    store.merge(features, progress=False)


def recall_row(hits, paired, hubs) -> dict:
    """R@1/5/10 (%) of the paired rows in the hits, and the share of queries whose top-1 is a hub."""
    found = [list(ids) for ids, _ in hits]
    rank = np.array([f.index(p) + 1 if p in f else 10 ** 9 for f, p in zip(found, paired)])
    hub_top = np.mean([bool(len(f)) and f[0] in set(hubs.tolist()) for f in found]) if len(hubs) else 0.0
    return {**{f"R@{k}": 100.0 * np.mean(rank <= k) for k in (1, 5, 10)}, "hub_top1": 100.0 * hub_top}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=5000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--centres", type=int, default=100)
    p.add_argument("--hubs", type=int, default=150, help="planted near-duplicate generic videos")
    p.add_argument("--shift", type=float, default=1.0, help="queries' offset along the generic direction")
    p.add_argument("--noise", type=float, default=1.0, help="queries' noise (norm, relative to a unit vector)")
    p.add_argument("--bank-size", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from xclip_hf.corpus.search import search_vectors

    print(f"{args.videos} videos x {args.width}, {args.queries} queries (noise {args.noise}), {args.centres} "
          f"clusters; hubs corpus: {args.hubs} generic near-duplicates, query shift {args.shift}; QB-Norm bank "
          f"{min(args.bank_size, args.videos)} corpus videos, beta 20")
    print("| corpus | hubness | R@1 | R@5 | R@10 | top-1 is a hub | seconds (all queries) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n, corpus in enumerate(CORPORA):
            videos, hubs, queries, paired = corpus_and_queries(args, corpus)
            out = os.path.join(tmp, f"corpus{n}")
            write_output(out, videos)
            for method in METHODS:
                runs = 2 if method == "qbnorm" else 1  # the second run reads the stored bank
                for run in range(runs):
                    start = time.perf_counter()
                    hits = search_vectors(out, queries, top_k=10, hubness=method, bank_size=args.bank_size)
                    seconds = time.perf_counter() - start
                    if run == runs - 1:
                        r = recall_row(hits, paired, hubs)
                        timing = f"{seconds:.1f}" if runs == 1 else f"{first:.1f} (bank stored: {seconds:.1f})"
                        print(f"| {corpus} | {method} | {r['R@1']:.1f} | "
                              f"{r['R@5']:.1f} | {r['R@10']:.1f} | {r['hub_top1']:.1f}% | {timing} |", flush=True)
                    first = seconds


if __name__ == "__main__":
    main()
