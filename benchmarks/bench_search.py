"""Search past RAM: the FAISS index kinds of `xclip-hf index` on synthetic CLUSTERED float16 x 512 vectors.

Data: a Gaussian mixture (4,096 unit centres in 64 groups; each cluster spread along its own 24 random directions
with decaying scales, plus a little isotropic noise; random norms): neighbours are meaningful (median cosine of a
query's 1st / 10th / 100th neighbour about 0.79 / 0.60 / 0.50 at 100k), unlike uniform noise. The vectors are
generated chunk-wise into a memmap (so 10M fits) and written as an `embed` output folder (the merged `datasets`
layout: Arrow files of 500,000 rows, a job config with a model fingerprint). Queries are fresh draws of the same
mixture; the ground truth is an exact float32 scan of the memmap.

Per size and index kind, in child processes (so that one kind's memory does not count against the next):
    build: `build_index(OUT, kind, memory_gb)` wall time, peak anonymous RSS above the process's start (sampled
           every 20 ms: the memory the build needs; the memory-mapped vectors it reads are page cache), disk;
    search: `open_index(OUT)` then one query per call (`DiskVideoIndex.search`, k=10: FAISS candidates re-ranked
           by exact cosine from the memory-mapped vectors): recall@10 vs exact, median and p99 latency, anonymous
           and file-backed RSS after the queries.
Kind "exact" is the default path without an index (`VideoIndex`: every vector in RAM, float16).

    python benchmarks/bench_search.py --sizes 100000 1000000            # 1M: about half an hour on 2 loaded cores
    python benchmarks/bench_search.py --sizes 10000000 --kinds ivfpq    # 10M: 20 GB of disk (memmap + output)
    python benchmarks/bench_search.py --sizes 20000 --queries 50        # a smoke test

FAISS's OpenMP threads spin while they wait: on a machine shared with other work that costs up to 20x, so this
script sets OMP_WAIT_POLICY=PASSIVE (unless set) before anything loads OpenMP.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

WIDTH, CENTRES, GROUPS, INTRINSIC = 512, 4096, 64, 24
CHUNK = 100_000  # vectors generated at once
FILE_ROWS, BATCH_ROWS = 500_000, 1_000  # rows per Arrow file and per record batch (as `save_to_disk` writes)


# ------------------------------------------------------------------------------------------------ the data
class Mixture:
    """The fixed clustered mixture (seeded): ``draw(n, start)`` gives float16 (n, 512) vectors, chunk ``start``."""

    def __init__(self, seed: int = 0, spread: float = 0.5, noise: float = 0.05, group_weight: float = 2.0):
        rng = np.random.default_rng(seed)
        groups = rng.standard_normal((GROUPS, WIDTH), dtype=np.float32)
        centres = rng.standard_normal((CENTRES, WIDTH), dtype=np.float32)
        centres += group_weight * groups[np.arange(CENTRES) % GROUPS]
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.bases = (rng.standard_normal((CENTRES, INTRINSIC, WIDTH), dtype=np.float32) / np.sqrt(WIDTH)
                      ).astype(np.float16)
        self.scales = (spread / np.sqrt(np.arange(1, INTRINSIC + 1))).astype(np.float32)
        self.seed, self.noise = seed, noise

    def draw(self, n: int, start: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        k = rng.integers(0, CENTRES, n)
        x = self.centres[k] + (self.noise / np.sqrt(WIDTH)) * rng.standard_normal((n, WIDTH), dtype=np.float32)
        z = rng.standard_normal((n, INTRINSIC), dtype=np.float32) * self.scales
        order = np.argsort(k, kind="stable")
        bounds = np.searchsorted(k[order], np.arange(CENTRES + 1))
        for c in np.flatnonzero(np.diff(bounds)):
            rows = order[bounds[c]:bounds[c + 1]]
            x[rows] += z[rows] @ self.bases[c].astype(np.float32)
        x *= rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)
        return x.astype(np.float16)


def generate(path: str, n: int, mixture: Mixture) -> np.memmap:
    """n vectors into a float16 memmap at ``path``, CHUNK at a time (reused if it exists)."""
    if os.path.isfile(path) and os.path.getsize(path) == n * WIDTH * 2:
        return np.memmap(path, dtype=np.float16, mode="r", shape=(n, WIDTH))
    out = np.memmap(path + ".tmp", dtype=np.float16, mode="w+", shape=(n, WIDTH))
    for start in range(0, n, CHUNK):
        out[start:start + CHUNK] = mixture.draw(min(CHUNK, n - start), start)
    out.flush()
    del out
    os.replace(path + ".tmp", path)
    return np.memmap(path, dtype=np.float16, mode="r", shape=(n, WIDTH))


def write_output(directory: str, vectors: np.ndarray) -> None:
    """An embed output folder holding ``vectors`` (the merged dataset's layout, written chunk-wise with Arrow)."""
    import pyarrow as pa
    from datasets import DatasetInfo

    from xclip_hf.jobs.store import ShardStore, row_features

    if os.path.isfile(os.path.join(directory, "state.json")):
        return
    os.makedirs(directory, exist_ok=True)
    features = row_features(WIDTH, "float16", False, False)
    schema = features.arrow_schema
    n, files = len(vectors), []
    for f, begin in enumerate(range(0, n, FILE_ROWS)):
        name = f"data-{f:05d}-of-{(n + FILE_ROWS - 1) // FILE_ROWS:05d}.arrow"
        with pa.OSFile(os.path.join(directory, name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for start in range(begin, min(begin + FILE_ROWS, n), BATCH_ROWS):
                stop = min(start + BATCH_ROWS, begin + FILE_ROWS, n)
                values = pa.array(np.asarray(vectors[start:stop]).reshape(-1))
                offsets = pa.array(np.arange(0, (stop - start) * WIDTH + 1, WIDTH, dtype=np.int32))
                columns = [pa.array([f"/synthetic/v{i:09d}.mp4" for i in range(start, stop)]),
                           pa.array(np.zeros(stop - start)), pa.array(np.ones(stop - start)),
                           pa.ListArray.from_arrays(offsets, values), pa.nulls(stop - start, pa.string())]
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
        files.append({"filename": name})
    DatasetInfo(features=features).write_to_directory(directory)
    with open(os.path.join(directory, "state.json"), "w", encoding="utf-8") as f:
        json.dump({"_data_files": files, "_fingerprint": uuid.uuid4().hex[:16], "_format_columns": None,
                   "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": None}, f)
    ShardStore(directory).write_config({"projection_dim": WIDTH, "save_dtype": "float16",
                                        "model_fingerprint": "sha256:" + "b" * 64, "model_source": "synthetic"})


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Row ids of the k largest cosines per query: an exact float32 scan of the memmap, chunk by chunk."""
    q = queries.astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for start in range(0, len(vectors), 4 * CHUNK):
        block = np.asarray(vectors[start:start + 4 * CHUNK], dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        s = np.concatenate([best_s, q @ block.T], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(block)), (len(q), len(block)))], 1)
        top = np.argpartition(-s, k, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return np.take_along_axis(best_i, np.argsort(-best_s, axis=1), 1)


# ------------------------------------------------------------------------------------------------ measuring
def _status(field: str) -> int:
    """A /proc/self/status field in bytes (RssAnon, RssFile, VmRSS)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakAnon:
    """The peak anonymous RSS while inside (sampled every 20 ms)."""

    def __enter__(self):
        self.peak, self._stop = _status("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _status("RssAnon"))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("RssAnon"))


def _disk(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def child_build(output: str, kind: str, memory_gb: float) -> dict:
    """Build one kind; wall time, peak anonymous RSS above the start, disk, the manifest's choices."""
    import datasets  # noqa: F401  (the libraries the build loads: not counted as its memory)
    import faiss  # noqa: F401
    import tqdm.auto  # noqa: F401

    from xclip_hf.corpus.index import INDEX_DIR, build_index

    start_anon = _status("RssAnon")
    with PeakAnon() as peak:
        began = time.perf_counter()
        try:
            manifest = build_index(output, kind=kind, memory_gb=memory_gb, progress=False)
        except ValueError as err:
            return {"refused": str(err)}
        build_s = time.perf_counter() - began
    return {"build_s": build_s, "build_peak_anon_mib": (peak.peak - start_anon) / 2 ** 20,
            "disk_mib": _disk(os.path.join(output, INDEX_DIR)) / 2 ** 20, "factory": manifest["factory"],
            "search_parameters": manifest["search_parameters"], "measured": manifest["measured"],
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_search(output: str, kind: str, queries_path: str, truth_path: str) -> dict:
    """Open the index (or load every vector for "exact") and time one query per call."""
    import datasets  # noqa: F401  (loaded by open_index: not counted as the index's memory)
    import faiss  # noqa: F401
    import torch

    from xclip_hf.corpus.index import open_index
    from xclip_hf.corpus.search import VideoIndex

    queries = torch.from_numpy(np.load(queries_path).astype(np.float32))
    truth = np.load(truth_path)
    start_anon = _status("RssAnon")
    began = time.perf_counter()
    index = VideoIndex.from_dataset(output) if kind == "exact" else open_index(output)
    open_s = time.perf_counter() - began
    for q in queries[:5]:  # warm-up: first page faults
        index.search(q[None], 10)
    times, found = [], []
    for q in queries:
        began = time.perf_counter()
        _, rows = index.search(q[None], 10)
        times.append(time.perf_counter() - began)
        found.append(rows[0])
    recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))
    return {"open_s": open_s, "recall_at_10": recall, "median_ms": 1e3 * float(np.median(times)),
            "p99_ms": 1e3 * float(np.percentile(times, 99)), "search_anon_mib": (_status("RssAnon") - start_anon) / 2 ** 20,
            "search_file_mib": _status("RssFile") / 2 ** 20}


def _child(args_list: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=os.path.join(HERE, ".") + os.pathsep +
               os.path.join(HERE, "..") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), *args_list], env=env, capture_output=True,
                          text=True)
    if done.returncode:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ main
def run_size(n: int, args, mixture: Mixture) -> list[dict]:
    workdir = args.workdir
    began = time.perf_counter()
    vectors = generate(os.path.join(workdir, f"vectors-{n}.f16"), n, mixture)
    output = os.path.join(workdir, f"output-{n}")
    write_output(output, vectors)
    queries = mixture.draw(args.queries, start=10 ** 9)
    truth = exact_top(vectors, queries)
    q_path, t_path = os.path.join(workdir, f"queries-{n}.npy"), os.path.join(workdir, f"truth-{n}.npy")
    np.save(q_path, queries)
    np.save(t_path, truth)
    print(f"# {n} vectors: data, output and exact truth in {time.perf_counter() - began:.0f} s "
          f"(output {_disk(output) / 2 ** 30:.2f} GiB)", file=sys.stderr, flush=True)
    rows = []
    for kind in args.kinds:
        row = {"vectors": n, "kind": kind}
        if kind == "exact":
            if n > args.exact_max:
                continue
        else:
            row.update(_child(["--child-build", output, kind, str(args.memory_gb)], args.threads))
        if "refused" not in row and "failed" not in row:
            row.update(_child(["--child-search", output, kind, q_path, t_path], args.threads))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)
        os.remove(os.path.join(workdir, f"vectors-{n}.f16"))
    return rows


def table(rows: list[dict]) -> str:
    """The markdown table of the rows."""
    lines = ["| vectors | kind | factory, search parameter | build s | build peak RAM MiB | disk MiB | recall@10 | "
             "median ms | p99 ms | search RAM MiB (anon + mapped) |", "|" + "---|" * 10]
    for r in rows:
        if "refused" in r or "failed" in r:
            lines.append(f"| {r['vectors']:,} | {r['kind']} | {r.get('refused', r.get('failed'))[:120]} |" + " |" * 7)
            continue
        build = (f"{r['build_s']:.1f} | {r['build_peak_anon_mib']:.0f} | {r['disk_mib']:.0f}" if "build_s" in r
                 else f"(load {r['open_s']:.1f}) | - | -")
        factory = f"{r.get('factory', 'in RAM, float16')}{', ' + r['search_parameters'] if r.get('search_parameters') else ''}"
        lines.append(f"| {r['vectors']:,} | {r['kind']} | {factory} | {build} | {r['recall_at_10']:.3f} | "
                     f"{r['median_ms']:.2f} | {r['p99_ms']:.2f} | {r['search_anon_mib']:.0f} + {r['search_file_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--kinds", nargs="+", default=["exact", "flat", "ivfpq", "hnsw"],
                   choices=["exact", "flat", "ivfpq", "hnsw", "auto"])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--memory-gb", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exact-max", type=int, default=2_000_000, help="largest size the in-RAM exact row runs at")
    p.add_argument("--workdir", default=None, help="where the data goes (default: a temporary folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the generated data (reused by a next run)")
    p.add_argument("--child-build", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--child-search", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_build:
        output, kind, memory_gb = args.child_build
        print(json.dumps(child_build(output, kind, float(memory_gb))))
        return 0
    if args.child_search:
        print(json.dumps(child_search(*args.child_search)))
        return 0
    temporary = args.workdir is None
    args.workdir = args.workdir or os.path.join(os.getcwd(), f".bench-search-{uuid.uuid4().hex[:6]}")
    os.makedirs(args.workdir, exist_ok=True)
    load = os.getloadavg()
    print(f"# {os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start; "
          f"{args.threads} thread(s), memory budget {args.memory_gb} GiB, {args.queries} queries", flush=True)
    rows = []
    try:
        mixture = Mixture()
        for n in args.sizes:
            rows += run_size(n, args, mixture)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    load = os.getloadavg()
    print(table(rows))
    print(f"# load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
