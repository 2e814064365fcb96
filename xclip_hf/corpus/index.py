"""A FAISS index of an `embed` output's ``video_embeds`` that never holds the collection as float vectors.

`build_index(output_dir, kind, memory_gb)` reads the vectors straight from the output's memory-mapped Arrow files
(`StoredVectors`), a block at a time. It draws a sample and measures on it what each index kind costs per vector
(a small build of each, its serialised size) and what an exact scan costs per query, then picks, for the corpus
size and the memory budget, the kind and its parameters (``kind="auto"``: ``flat``, an exact scan, while a query
stays within `LATENCY_TARGET_S`, else ``ivfpq``, IVF with 4-bit fast-scan PQ codes as large as the budget holds;
``hnsw`` on request). It trains on the sample, adds every block, and tunes the search parameter (``nprobe`` /
``efSearch``) until recall@10 after exact re-ranking reaches the target on queries near the collection (rows moved
by noise; their exact neighbours are found during the same pass over the blocks). The
result is ``DIR/_faiss_index/``: ``index.faiss``, ``row_ids.npy`` (FAISS id -> dataset row) and ``manifest.json``
(kind, factory string, parameters, counts, the output's model fingerprint and the shards it was built from).

`DiskVideoIndex` answers queries with FAISS candidates re-ranked by exact cosine from the stored vectors (only the
candidate rows are read). It refuses an index built from another model's embeddings, and an index whose output
was embedded again after it was built (the folder and the counts named).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

__all__ = ["build_index", "open_index", "find_index", "DiskVideoIndex", "StoredVectors", "IndexPlan", "plan_index",
           "IndexMismatchError", "StaleIndexError", "KINDS", "INDEX_DIR"]

logger = logging.getLogger(__name__)

INDEX_DIR = "_faiss_index"  # inside the embed output
INDEX_FILE, ROW_IDS, MANIFEST, STAGED = "index.faiss", "row_ids.npy", "manifest.json", "staged.npy"
FORMAT = "xclip-hf-faiss-index-v1"
KINDS = ("auto", "flat", "ivfpq", "hnsw")
LATENCY_TARGET_S = 0.02  # auto: the exact scan while a query over it is projected to take at most this
RECALL_TARGET = 0.95  # recall@10 after exact re-ranking that search should reach
CANDIDATES_PER_RESULT, MIN_CANDIDATES = 10, 100  # FAISS candidates re-ranked per query: max(10 k, 100)
BLOCK_ROWS = 65_536  # vectors read, normalised and added at once
INDEX_SHARE = 0.8  # of the memory budget, for the index itself (the rest: the training sample, one block)
SAMPLE_SHARE = 0.15  # of the memory budget, at most, for the training sample (float32)
MIN_SAMPLE, MEASURE_ROWS, TUNING_QUERIES = 20_000, 2_048, 100
MIN_IVF_ROWS = 1_000  # fewer vectors than this: no IVF (its lists would be near empty)
HNSW_FACTORY, FLAT_FACTORY = "HNSW32,SQ8", "SQfp16"


class IndexMismatchError(ValueError):
    """The index was built from another model's embeddings than the output (or the model) it is used with."""


class StaleIndexError(ValueError):
    """The output was embedded again after its index was built: the index's rows are not the dataset's."""


def _faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("a FAISS index needs the faiss package: pip install faiss-cpu") from err
    return faiss


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows as contiguous float32 of unit length (cosine = inner product)."""
    out = np.array(vectors, dtype=np.float32, order="C", copy=True)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


# ------------------------------------------------------------------------------------------ the stored vectors
def load_output(output_dir):
    """The merged dataset of an embed output directory (memory-mapped), checked to be one."""
    from datasets import load_from_disk

    path = os.fspath(output_dir)
    if not os.path.isdir(path):
        raise ValueError(f"embed output {path!r} does not exist (write one with `xclip-hf embed`)")
    try:
        dataset = load_from_disk(path)
    except Exception as err:
        raise ValueError(f"{path!r} is not a dataset written by `xclip-hf embed` ({type(err).__name__}: {err})") from err
    if "video_embeds" not in getattr(dataset, "column_names", ()):
        raise ValueError(f"{path!r} has no video_embeds column: it was not written by `xclip-hf embed`")
    return dataset


class StoredVectors:
    """The ``video_embeds`` of an embed output read from its memory-mapped Arrow files without copying them:
    blocks of the valid rows (a build), a sample, or given rows (re-ranking). Error rows (null) are left out."""

    def __init__(self, dataset, where: str = "the embed output"):
        if getattr(dataset, "_indices", None) is not None:
            raise ValueError(f"{where} is a select/filter view of a dataset: index the saved output folder itself")
        self.where = where
        self._chunks, self._offsets, self._values, starts, valid = [], [], [], [0], [0]
        for chunk in dataset.data.column("video_embeds").chunks:
            self._chunks.append(chunk)
            self._offsets.append(chunk.offsets.to_numpy())  # absolute positions in .values (a slice honoured)
            self._values.append(chunk.values.to_numpy(zero_copy_only=False))  # a view of the mapped file
            starts.append(starts[-1] + len(chunk))
            valid.append(valid[-1] + len(chunk) - chunk.null_count)
        self._starts, self._valid_before = np.asarray(starts, np.int64), np.asarray(valid, np.int64)
        self.rows, self.count = int(self._starts[-1]), int(self._valid_before[-1])
        self.width = self._first_width()

    def _first_width(self) -> int:
        for chunk, offsets in zip(self._chunks, self._offsets):
            valid = np.flatnonzero(np.asarray(chunk.is_valid()))
            if len(valid):
                return int(offsets[valid[0] + 1] - offsets[valid[0]])
        return 0

    def _valid(self, c: int) -> np.ndarray:
        """Local positions of the valid rows of chunk ``c``, their widths checked."""
        valid = np.flatnonzero(np.asarray(self._chunks[c].is_valid()))
        lengths = np.diff(self._offsets[c])[valid]
        if len(valid) and (lengths != self.width).any():
            bad = int(valid[np.flatnonzero(lengths != self.width)[0]])
            raise ValueError(f"row {int(self._starts[c]) + bad} of {self.where} has a video_embeds of width "
                             f"{int(np.diff(self._offsets[c])[bad])}, the others {self.width}: it was not written by "
                             "one `xclip-hf embed` job")
        return valid

    def _rows_of_chunk(self, c: int, local: np.ndarray) -> np.ndarray:
        begin = self._offsets[c][local]
        return self._values[c][begin[:, None] + np.arange(self.width)]

    def blocks(self, rows: int = BLOCK_ROWS):
        """(dataset row ids, unit float32 vectors) of the valid rows, about ``rows`` at a time, in row order."""
        ids, parts, held = [], [], 0
        for c in range(len(self._chunks)):
            valid = self._valid(c)
            if len(valid):
                parts.append(self._rows_of_chunk(c, valid))
                ids.append(valid + self._starts[c])
                held += len(valid)
            if held >= rows or (c == len(self._chunks) - 1 and held):
                yield np.concatenate(ids), _normalised(np.concatenate(parts))
                ids, parts, held = [], [], 0

    def sample(self, count: int, rng) -> np.ndarray:
        """Dataset row ids of ``count`` valid rows drawn without replacement (sorted)."""
        ranks = np.sort(rng.choice(self.count, size=min(count, self.count), replace=False))
        chunk = np.searchsorted(self._valid_before, ranks, side="right") - 1
        out = np.empty(len(ranks), np.int64)
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            out[sel] = self._valid(c)[ranks[sel] - self._valid_before[c]] + self._starts[c]
        return out

    def gather(self, rows) -> np.ndarray:
        """The stored vectors (float32, as stored: not normalised) of dataset rows ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.width), np.float32)
        chunk = np.searchsorted(self._starts, rows, side="right") - 1
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            out[sel] = self._rows_of_chunk(c, rows[sel] - self._starts[c])
        return out


# ------------------------------------------------------------------------------------------ choosing the kind
@dataclass
class IndexPlan:
    """What `build_index` builds: the kind, its FAISS factory string and parameters, and its measured costs."""

    kind: str
    factory: str
    parameters: dict = field(default_factory=dict)
    bytes_per_vector: float = 0.0  # measured on the sample (serialised size added per vector)
    fixed_bytes: float = 0.0  # the part that does not grow with the vectors (IVF centroids)
    scan_s_per_vector: float | None = None  # measured for the exact scan (flat)

    def index_bytes(self, vectors: int) -> float:
        """The index's projected size for ``vectors`` vectors."""
        return self.fixed_bytes + self.bytes_per_vector * vectors


@contextlib.contextmanager
def _one_thread():
    """FAISS on one thread inside (small measurements: OpenMP threads only wait on each other there)."""
    faiss = _faiss()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def _marginal_bytes(factory: str, sample: np.ndarray) -> float:
    """Bytes a FAISS ``factory`` index grows by per added vector, measured: its serialised size after adding the
    second half of ``sample`` minus after the first half, over the second half's rows."""
    faiss = _faiss()
    with _one_thread():
        index = faiss.index_factory(sample.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        half = len(sample) // 2
        index.add(sample[:half])
        before = faiss.serialize_index(index).size
        index.add(sample[half:])
        return (faiss.serialize_index(index).size - before) / max(1, len(sample) - half)


def _scan_seconds_per_vector(sample: np.ndarray, queries: int = 16) -> float:
    """Seconds an exact scan (the flat kind) takes per stored vector and query, measured on the sample."""
    faiss = _faiss()
    index = faiss.index_factory(sample.shape[1], FLAT_FACTORY, faiss.METRIC_INNER_PRODUCT)
    index.add(sample)
    times = []
    for q in sample[:queries]:
        start = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 25)) / len(sample)  # a low quantile: other processes only ever add time


def _nlist(vectors: int) -> int:
    """IVF lists: a power of two near sqrt(vectors), at least 39 training vectors each (FAISS's minimum)."""
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(vectors))))
    return int(max(1, min(nlist, 65_536, 2 ** int(math.log2(max(1, vectors // 39))))))


def _ivf_factory(nlist: int, m: int) -> str:
    quantizer = f"IVF{nlist}_HNSW32" if nlist >= 16_384 else f"IVF{nlist}"  # large nlist: an HNSW coarse quantizer
    return f"{quantizer},PQ{m}x4fs"


def _size(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:.2f} GiB" if nbytes >= 2 ** 30 else f"{nbytes / 2 ** 20:.1f} MiB"


def plan_index(vectors: int, kind: str, memory_bytes: float, sample: np.ndarray,
               where: str = "the embed output") -> IndexPlan:
    """The kind and parameters for ``vectors`` unit vectors within ``memory_bytes``, from costs measured on
    ``sample`` (unit float32 rows): see the module docstring for the rule. Raises ValueError if nothing fits."""
    width, small = sample.shape[1], sample[:MEASURE_ROWS]
    budget = INDEX_SHARE * memory_bytes

    def refuse(plan, also=""):
        raise ValueError(f"the {vectors} vectors of {where} in an index of kind {plan.kind} ({plan.factory}) need "
                         f"about {_size(plan.index_bytes(vectors))} (measured {plan.bytes_per_vector:.0f} bytes per "
                         f"vector), over {INDEX_SHARE:.0%} of the memory budget of {_size(memory_bytes)}: raise "
                         f"memory_gb (--memory-gb){also}")

    if kind in ("auto", "flat"):
        flat = IndexPlan("flat", FLAT_FACTORY, {}, _marginal_bytes(FLAT_FACTORY, small),
                         scan_s_per_vector=_scan_seconds_per_vector(sample))
        fits = flat.index_bytes(vectors) <= budget
        if kind == "flat":
            return flat if fits else refuse(flat, " or choose kind='ivfpq'")
        if fits and flat.scan_s_per_vector * vectors <= LATENCY_TARGET_S:
            return flat
    if kind == "hnsw":
        hnsw = IndexPlan("hnsw", HNSW_FACTORY, {"M": 32, "storage": "SQ8"},
                         _marginal_bytes(HNSW_FACTORY, small[:MEASURE_ROWS // 2]))
        return hnsw if hnsw.index_bytes(vectors) <= budget else refuse(hnsw, " or choose kind='ivfpq'")
    if vectors < MIN_IVF_ROWS:
        raise ValueError(f"an ivfpq index needs at least {MIN_IVF_ROWS} vectors, {where} has {vectors}: "
                         "choose kind='flat' (or 'auto')")
    nlist = _nlist(vectors)
    plan = None
    for sub_width in (4, 8, 16):  # PQ codes of width / 4, / 8, / 16 half-bytes: the largest that fits
        m = width // sub_width
        if m < 2 or width % sub_width:
            continue
        proxy = _ivf_factory(min(8, nlist), m)  # bytes per vector do not depend on nlist
        plan = IndexPlan("ivfpq", _ivf_factory(nlist, m), {"nlist": nlist, "pq_m": m, "pq_bits": 4},
                         _marginal_bytes(proxy, small), fixed_bytes=4.0 * nlist * width)
        if plan.index_bytes(vectors) <= budget:
            return plan
    if plan is None:
        raise ValueError(f"the vectors of {where} (width {width}) cannot be split into PQ sub-vectors: choose "
                         "kind='flat'")
    return refuse(plan)


# ------------------------------------------------------------------------------------------ building
def _check_build_args(kind, memory_gb, recall_target) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(memory_gb, bool) or not isinstance(memory_gb, (int, float)) or not math.isfinite(memory_gb) \
            or memory_gb <= 0:
        raise ValueError(f"memory_gb must be a positive number of GiB, got {memory_gb!r}")
    if isinstance(recall_target, bool) or not isinstance(recall_target, (int, float)) or not 0 < recall_target <= 1:
        raise ValueError(f"recall_target must be in (0, 1], got {recall_target!r}")


def _tuning_queries(rows: np.ndarray, sample: np.ndarray, rng) -> np.ndarray:
    """Queries near the collection but not on it: unit ``rows`` moved by isotropic noise as long as the median
    distance from them to their nearest neighbour in ``sample`` (new queries are as hard for an index as these or
    easier, measured on clustered data; a row itself is easier, HNSW most of all)."""
    sample = sample[:MIN_SAMPLE]
    scores = rows @ sample.T
    scores[scores > 1 - 1e-6] = -1.0  # the row itself, if the sample holds it
    nearest = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * scores.max(axis=1))) if sample.size else np.zeros(len(rows))
    noise = rng.standard_normal(rows.shape).astype(np.float32) / math.sqrt(rows.shape[1])
    return _normalised(rows + float(np.median(nearest)) * noise)


class _TruthTracker:
    """Exact top-k rows of some queries over every block added (the tuning's ground truth, no extra pass)."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), 0), -np.inf, np.float32)
        self.ids = np.zeros((len(queries), 0), np.int64)

    def update(self, ids: np.ndarray, block: np.ndarray) -> None:
        scores = np.concatenate([self.scores, self.queries @ block.T], axis=1)
        rows = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.queries), len(ids)))], axis=1)
        keep = min(self.k, scores.shape[1])
        top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        self.scores, self.ids = np.take_along_axis(scores, top, 1), np.take_along_axis(rows, top, 1)

    def truth(self) -> list[set]:
        """Per query its k nearest rows."""
        return [set(row.tolist()) for row in self.ids]


def _search_choices(plan: IndexPlan) -> list[str]:
    """The search parameter values the tuning tries, cheapest first."""
    if plan.kind == "ivfpq":
        return [f"nprobe={2 ** i}" for i in range(int(math.log2(plan.parameters["nlist"])) + 1)]
    if plan.kind == "hnsw":
        return [f"efSearch={2 ** i}" for i in range(4, 12)]
    return [""]


def _tune(index, plan, vectors, row_ids, queries, truth, recall_target, k: int = 10):
    """The cheapest search parameter whose recall@k after exact re-ranking reaches the target on the tuning queries
    (else the most thorough one, with a warning): (parameter string, measured recall)."""
    faiss = _faiss()
    space = faiss.ParameterSpace()
    recall, choice = 0.0, ""
    for choice in _search_choices(plan):
        if choice:
            space.set_index_parameters(index, choice)
        _, found = _rerank(index, row_ids, vectors, queries, k)
        recall = float(np.mean([len(set(row.tolist()) & want) / max(1, len(want)) for row, want in zip(found, truth)]))
        if recall >= recall_target:
            return choice, recall
    logger.warning(f"the {plan.kind} index reaches recall@{k} {recall:.3f} at most ({choice}) on its tuning queries, "
                   f"under the target {recall_target}")
    return choice, recall


def output_state(output_dir: str, dataset) -> dict:
    """What the index must match: the committed shards, the merged dataset's rows and fingerprint, the model."""
    from ..jobs.store import ShardStore, read_job_config

    config = read_job_config(output_dir) or {}
    state_path = os.path.join(output_dir, "state.json")
    fingerprint = None
    if os.path.isfile(state_path):
        with open(state_path, encoding="utf-8") as f:
            fingerprint = json.load(f).get("_fingerprint")
    return {"shards": ShardStore(output_dir).committed_shards(), "rows": len(dataset),
            "dataset_fingerprint": fingerprint, "model_fingerprint": config.get("model_fingerprint"),
            "model_source": config.get("model_source", config.get("model"))}


def build_index(output_dir, kind: str = "auto", memory_gb: float = 4.0, *, recall_target: float = RECALL_TARGET,
                seed: int = 0, progress: bool = True) -> dict:
    """Build the FAISS index of an embed output into ``DIR/_faiss_index`` (replacing an earlier one); returns its
    manifest. ``kind``: ``"auto"``, ``"flat"``, ``"ivfpq"`` or ``"hnsw"``; ``memory_gb``: the RAM the index may take
    (see `plan_index`). The output is locked against `embed` runs while it is read."""
    from tqdm.auto import tqdm

    from ..jobs.lock import JobLock
    from ..version import package_version

    _check_build_args(kind, memory_gb, recall_target)
    output_dir = os.fspath(output_dir)
    dataset = load_output(output_dir)
    faiss = _faiss()
    lock = JobLock.acquire(output_dir)
    try:
        state = output_state(output_dir, dataset)
        vectors = StoredVectors(dataset, f"embed output {output_dir!r}")
        if vectors.count == 0:
            raise ValueError(f"embed output {output_dir!r} holds no vectors (every row is an error row)")
        rng = np.random.default_rng(seed)
        memory_bytes = float(memory_gb) * 2 ** 30
        width, count = vectors.width, vectors.count
        nlist = _nlist(count)
        sample_rows = max(MIN_SAMPLE, 39 * nlist)
        sample_rows = min(count, max(MEASURE_ROWS, min(sample_rows, int(SAMPLE_SHARE * memory_bytes / (4 * width)))))
        tuning = min(TUNING_QUERIES, max(1, count // 10))
        drawn = vectors.sample(sample_rows + tuning, rng)
        rng.shuffle(drawn)
        query_rows, train_rows = np.sort(drawn[:tuning]), np.sort(drawn[tuning:])
        if len(train_rows) == 0:
            train_rows = query_rows
        sample = _normalised(vectors.gather(rng.permutation(train_rows)))
        queries = _tuning_queries(_normalised(vectors.gather(query_rows)), sample, rng)
        plan = plan_index(count, kind, memory_bytes, sample, vectors.where)

        started = time.perf_counter()
        index = faiss.index_factory(width, plan.factory, faiss.METRIC_INNER_PRODUCT)
        index.train(sample)
        train_s = time.perf_counter() - started
        del sample
        tracker = _TruthTracker(queries, 10)
        for name in os.listdir(output_dir):  # left by a killed build (builds hold the output's lock)
            if name.startswith((f".tmp{INDEX_DIR}-", f"{INDEX_DIR}.old-")):
                shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
        tmp = os.path.join(output_dir, f".tmp{INDEX_DIR}-{uuid.uuid4().hex[:8]}")
        os.makedirs(tmp)
        try:
            row_ids = np.lib.format.open_memmap(os.path.join(tmp, ROW_IDS), mode="w+", dtype=np.int64,
                                                shape=(count,))
            # HNSW builds a worse graph from batches (measured, 300k clustered vectors: recall@10 0.945 added at
            # once, 0.917 in 2 batches, 0.887 in 5): its unit vectors are staged in a float32 file (paged by the
            # OS, not held) and added in one call
            staged = np.lib.format.open_memmap(os.path.join(tmp, STAGED), mode="w+", dtype=np.float32,
                                               shape=(count, width)) if plan.kind == "hnsw" else None
            added = 0
            with tqdm(total=count, unit="vector", desc=f"indexing ({plan.kind})", disable=not progress or None,
                      unit_scale=True) as bar:
                for ids, block in vectors.blocks():
                    if staged is None:
                        index.add(block)
                    else:
                        staged[added:added + len(ids)] = block
                    row_ids[added:added + len(ids)] = ids
                    added += len(ids)
                    tracker.update(ids, block)
                    bar.update(len(ids))
            if staged is not None:
                if progress:
                    tqdm.write(f"building the HNSW graph of {count} vectors", file=sys.stderr)
                staged.flush()
                index.add(staged)
                del staged
                os.remove(os.path.join(tmp, STAGED))
            add_s = time.perf_counter() - started - train_s
            search_parameters, recall = _tune(index, plan, vectors, row_ids, queries, tracker.truth(),
                                              recall_target)
            row_ids.flush()
            del row_ids
            faiss.write_index(index, os.path.join(tmp, INDEX_FILE))
            manifest = {
                "format": FORMAT, "kind": plan.kind, "factory": plan.factory, "parameters": plan.parameters,
                "metric": "inner product of L2-normalised vectors (cosine)", "search_parameters": search_parameters,
                "candidates": {"per_result": CANDIDATES_PER_RESULT, "minimum": MIN_CANDIDATES},
                "vectors": count, "width": width, **state, "memory_gb": float(memory_gb),
                "measured": {"bytes_per_vector": round(plan.bytes_per_vector, 2),
                             "index_bytes": os.path.getsize(os.path.join(tmp, INDEX_FILE)),
                             "scan_s_per_vector": plan.scan_s_per_vector, "sample": len(train_rows),
                             "train_s": round(train_s, 3), "add_s": round(add_s, 3),
                             "tuned_recall_at_10": round(recall, 4), "recall_target": recall_target,
                             "tuning_queries": len(query_rows)},
                "code_version": package_version(),
            }
            with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2)
            replace_dir(tmp, os.path.join(output_dir, INDEX_DIR))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return manifest
    finally:
        lock.release()


def replace_dir(new: str, target: str) -> None:
    """Move the folder ``new`` to ``target``, replacing an earlier one (renames only)."""
    old = None
    if os.path.exists(target):
        old = f"{target}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    os.rename(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------ searching
def _candidates(k: int, total: int) -> int:
    return min(total, max(CANDIDATES_PER_RESULT * k, MIN_CANDIDATES, k))


def _rerank(index, row_ids, vectors: StoredVectors, queries: np.ndarray, k: int, candidates: int | None = None):
    """FAISS candidates of unit ``queries`` (default `_candidates`) re-ranked by exact cosine from the stored
    vectors: (scores, rows), the k best per query (fewer where FAISS found fewer: the shortest list sets the
    width)."""
    _, positions = index.search(queries, max(k, candidates or _candidates(k, len(row_ids))))
    found = positions >= 0
    rows = np.where(found, np.asarray(row_ids)[np.where(found, positions, 0)], -1)
    unique, inverse = np.unique(rows[found], return_inverse=True)
    stored = vectors.gather(unique)
    stored /= np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
    scores = np.full(rows.shape, -np.inf, np.float32)
    scores[found] = np.einsum("cp,cp->c", stored[inverse], np.repeat(queries, found.sum(axis=1), axis=0))
    keep = int(min(k, found.sum(axis=1).min()))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


class DiskVideoIndex:
    """Cosine search through the FAISS index `build_index` wrote: candidates from FAISS, re-ranked by exact cosine
    from the stored vectors (memory-mapped; only the candidates are read). Same ``search`` interface as
    `search.VideoIndex`."""

    def __init__(self, directory: str, dataset, manifest: dict, index, row_ids: np.ndarray, vectors: StoredVectors):
        self.directory, self.dataset, self.manifest = directory, dataset, manifest
        self.index, self.row_ids, self.vectors = index, row_ids, vectors

    @property
    def width(self) -> int:
        return int(self.manifest["width"]) if len(self) else 0

    def __len__(self):
        return len(self.row_ids)

    def search(self, queries, k: int):
        """Cosine similarity of queries (Q, P) to the rows: the k best per query as (scores (Q, k'), row ids (Q, k'))."""
        import torch

        queries = queries.reshape(-1, queries.shape[-1]).float()
        if queries.shape[-1] != self.width:
            raise ValueError(f"query features have width {queries.shape[-1]}, the index {self.directory!r} holds "
                             f"vectors of width {self.width}: search with the model that wrote the embeddings")
        k = min(int(k), len(self))
        if k == 0:
            return torch.zeros(len(queries), 0), np.zeros((len(queries), 0), dtype=np.int64)
        unit = _normalised(queries.cpu().numpy())
        if _candidates(k, len(self)) >= len(self):  # every row asked for: score them all exactly
            scores, rows = self._exact(unit, k)
        else:
            scores, rows = _rerank(self.index, self.row_ids, self.vectors, unit, k)
        return torch.from_numpy(np.ascontiguousarray(scores)), rows

    def _exact(self, unit: np.ndarray, k: int):
        ids, scores = [], []
        for block_ids, block in self.vectors.blocks():
            ids.append(block_ids)
            scores.append(unit @ block.T)
        ids, scores = np.concatenate(ids), np.concatenate(scores, axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), ids[order]


def _check_fresh(directory: str, manifest: dict, state: dict) -> None:
    """`StaleIndexError` if the output's merged rows changed since the index was built; a warning if only new
    shards (not merged yet) were committed."""
    built, now = manifest.get("shards", []), state["shards"]
    counts = (f"it was built from {len(built)} shard(s) and {manifest.get('rows')} row(s); the output now has "
              f"{len(now)} shard(s) ({len(set(now) - set(built))} new) and {state['rows']} row(s)")
    merged_same = (state["rows"] == manifest.get("rows")
                   and state["dataset_fingerprint"] == manifest.get("dataset_fingerprint"))
    if built == now and state["rows"] == manifest.get("rows"):
        return
    if built != now and merged_same:
        logger.warning(f"the FAISS index of {directory!r} is older than some shards of the output ({counts}); they "
                       "are not merged into its dataset yet, so the index still matches the rows searched. Rebuild it "
                       f"with `xclip-hf index {directory}` once `xclip-hf embed` has finished")
        return
    raise StaleIndexError(f"the FAISS index of {directory!r} is out of date: {counts}. Rebuild it with "
                          f"`xclip-hf index {directory}` (or delete {os.path.join(directory, INDEX_DIR)!r} to search "
                          "without it)")


def open_index(output_dir, model_fingerprint: str | None = None, dataset=None) -> DiskVideoIndex:
    """The index `build_index` wrote in an embed output, checked: built from this output's model (and, given
    ``model_fingerprint``, from that model's embeddings: `IndexMismatchError` otherwise) and not out of date
    (`StaleIndexError`)."""
    from ..jobs.identity import short

    output_dir = os.fspath(output_dir)
    folder = os.path.join(output_dir, INDEX_DIR)
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise ValueError(f"embed output {output_dir!r} has no FAISS index (build one with `xclip-hf index {output_dir}`)")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a manifest of `xclip-hf index` ({FORMAT}): rebuild the index")
    dataset = load_output(output_dir) if dataset is None else dataset
    state = output_state(output_dir, dataset)
    built_with = manifest.get("model_fingerprint")
    for name, fingerprint in (("the output's own", state["model_fingerprint"]), ("the search model's", model_fingerprint)):
        if fingerprint is not None and built_with is not None and fingerprint != built_with:
            raise IndexMismatchError(
                f"the FAISS index in {folder!r} was built from another model's embeddings (fingerprint "
                f"{short(built_with)}) than {name} ({short(fingerprint)}): its vectors are not comparable. Rebuild it "
                f"with `xclip-hf index {output_dir}`")
    _check_fresh(output_dir, manifest, state)
    faiss = _faiss()
    # memory-mapped where FAISS can and it costs no search time: flat codes (FAISS reads the fast-scan IVF lists
    # into RAM whatever the flag); an HNSW graph over mapped codes searched 50x slower (measured at 1M, warm page
    # cache), so HNSW is read into RAM
    flags = {"ivfpq": faiss.IO_FLAG_MMAP, "flat": faiss.IO_FLAG_MMAP_IFC}.get(manifest["kind"], 0)
    index = faiss.read_index(os.path.join(folder, INDEX_FILE), flags)
    if manifest.get("search_parameters"):
        faiss.ParameterSpace().set_index_parameters(index, manifest["search_parameters"])
    row_ids = np.load(os.path.join(folder, ROW_IDS), mmap_mode="r")
    if len(row_ids) != index.ntotal or len(row_ids) != manifest.get("vectors"):
        raise ValueError(f"the FAISS index in {folder!r} is damaged: {index.ntotal} vectors in {INDEX_FILE}, "
                         f"{len(row_ids)} row ids, {manifest.get('vectors')} in the manifest; rebuild it")
    vectors = StoredVectors(dataset, f"embed output {output_dir!r}")
    return DiskVideoIndex(output_dir, dataset, manifest, index, row_ids, vectors)


def find_index(dataset) -> DiskVideoIndex | None:
    """The index of an embed output (its directory, or the dataset loaded from it) if `build_index` wrote one,
    else None (a select/filter view of the dataset: None, its rows are not the index's)."""
    if isinstance(dataset, (str, os.PathLike)):
        directory, loaded = os.fspath(dataset), None
    else:
        files = getattr(dataset, "cache_files", None) or []
        if not files or getattr(dataset, "_indices", None) is not None:
            return None
        directory, loaded = os.path.dirname(files[0]["filename"]), dataset
    if not os.path.isfile(os.path.join(directory, INDEX_DIR, MANIFEST)):
        return None
    return open_index(directory, dataset=loaded)
