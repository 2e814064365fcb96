"""Hubness correction of text->video scores: QB-Norm's Dynamic Inverted Softmax, with the corpus as its query bank,
and the dual softmax (opt-in).

QB-Norm (Bogolin et al., CVPR 2022, "Cross Modal Retrieval with Querybank Normalisation": its inverted softmax and
Dynamic Inverted Softmax, as defined there and in the authors' `dynamic_inverted_softmax.py`). A querybank B of
probe queries is scored against the gallery, s_b(j) for b in B. The inverted softmax (IS) divides a query's
exponentiated similarity to gallery item j by that item's total over the bank,

    IS(q, j) = exp(beta s_q(j)) / sum_{b in B} exp(beta s_b(j)),

so an item close to many probes (a hub) is pulled down. The Dynamic Inverted Softmax (DIS) applies it only to the
queries whose best item is a hub candidate: with the activation set A = the union over b in B of the top-k items of
s_b,

    DIS(q, j) = IS(q, j) if argmax_i s_q(i) is in A, else s_q(j)        (for every j of that query alike).

beta = 20 on cosine similarities and k = 1, the defaults of the authors' code (`dynamic_inverted_softmax.py`).

The bank here is the corpus itself: B is the valid rows of the embed output (all of them, or a seeded uniform sample
of `BANK_SIZE`), each probe's vector its stored video embedding, and s_b(j) = cos(v_b, v_j) with the probe's own row
left out of its sums and of its top-k (its self-similarity of 1 would add the same exp(beta) to every row in the
sample and make each probe its own top-1). No captions are needed; a row that is close to many other videos of the
corpus counts as a hub. A row's statistics, log sum_b exp(beta s_b(j)) and whether it is in A, come from one pass
over the stored vectors a block at a time (`SCORES_PER_CHUNK` similarities per matmul; in RAM: the bank's vectors,
bank_size x width floats, and 9 bytes per row for the result), and are stored in ``DIR/_qbnorm`` beside the
embeddings (two .npy files, read memory-mapped), keyed by the settings and the output's state (its shards, rows and
model fingerprint), so repeated searches reuse them.

Dual softmax (Cheng et al. 2021, "Improving Video-Text Retrieval by Multi-Stream Corpus Alignment and Dual Softmax
Loss", the inference prior): S'(q, j) = S(q, j) softmax_{q'}(S(q', j) / tau)(q) over the queries scored together
(tau = 0.01 on cosines). It presumes the queries of one call are a set in which each video answers about one query
(one-to-one, as in benchmark test sets): with one query it changes nothing, with repeated or related queries it
splits a video's weight between them. Hence opt-in only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["HUBNESS", "QBNORM_BETA", "ACTIVATION_K", "BANK_SIZE", "MIN_BANK_SIZE", "DUAL_SOFTMAX_TEMPERATURE",
           "check_hubness", "inverted_softmax", "dynamic_inverted_softmax", "qb_norm", "dual_softmax", "QueryBank",
           "corpus_query_bank", "query_bank", "saved_output_dir", "BANK_DIR"]

logger = logging.getLogger(__name__)

HUBNESS = ("none", "qbnorm", "dual-softmax")
QBNORM_BETA, ACTIVATION_K = 20.0, 1  # the authors' defaults, on cosine similarities
BANK_SIZE = 8192  # probes drawn from the corpus (all rows of a smaller corpus)
MIN_BANK_SIZE = 16  # fewer probes: a row's normaliser is its similarity to a handful of neighbours, not its hubness
DUAL_SOFTMAX_TEMPERATURE = 0.01
BANK_DIR, MANIFEST = "_qbnorm", "manifest.json"
NORMALISER_FILE, ACTIVATED_FILE = "log_normaliser.npy", "activated.npy"  # per dataset row; read memory-mapped
FORMAT = "xclip-hf-qbnorm-bank-v1"


def check_hubness(hubness: str, beta: float = QBNORM_BETA, bank_size: int = BANK_SIZE) -> str:
    """``hubness`` checked to be one of `HUBNESS`, with QB-Norm's ``beta`` and ``bank_size``: ValueError naming them."""
    if hubness not in HUBNESS:
        raise ValueError(f"hubness must be one of {', '.join(HUBNESS)}, got {hubness!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"the QB-Norm beta must be a positive number, got {beta!r}")
    if isinstance(bank_size, bool) or not isinstance(bank_size, int) or bank_size < MIN_BANK_SIZE:
        raise ValueError(f"the QB-Norm bank size must be an integer of at least {MIN_BANK_SIZE}, got {bank_size!r}")
    return hubness


# ------------------------------------------------------------------------------------------ the formulas
def inverted_softmax(scores, log_normaliser, beta: float = QBNORM_BETA) -> np.ndarray:
    """IS(q, j) = exp(beta s_q(j)) / sum_b exp(beta s_b(j)), given log of the denominator per column (QB-Norm)."""
    scores = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.exp(beta * scores - np.asarray(log_normaliser, dtype=np.float64))
    return np.where(np.isfinite(scores) & np.isfinite(out), out, -np.inf)


def dynamic_inverted_softmax(scores, log_normaliser, activated, beta: float = QBNORM_BETA) -> np.ndarray:
    """DIS: IS for the queries (rows of ``scores`` (Q, C)) whose best column is ``activated``, the scores unchanged
    for the others (QB-Norm's Dynamic Inverted Softmax; the columns' log-normalisers and activation flags given)."""
    scores = np.array(scores, dtype=np.float64, copy=True, ndmin=2)
    if scores.shape[1] == 0:
        return scores
    gate = np.asarray(activated, dtype=bool)[np.argmax(scores, axis=1)] & np.isfinite(scores.max(axis=1))
    scores[gate] = inverted_softmax(scores[gate], log_normaliser, beta)
    return scores


def qb_norm(scores, bank_scores, beta: float = QBNORM_BETA, k: int = ACTIVATION_K) -> np.ndarray:
    """QB-Norm with an explicit bank: ``scores`` (Q, C) of the queries, ``bank_scores`` (B, C) of the probes over
    the same columns (-inf: a pair left out), corrected by the Dynamic Inverted Softmax."""
    bank = beta * np.asarray(bank_scores, dtype=np.float64)
    if bank.ndim != 2 or bank.shape[1] != np.shape(scores)[-1]:
        raise ValueError(f"bank_scores must be (probes, {np.shape(scores)[-1]}), got shape {bank.shape}")
    if len(bank) < 1:
        raise ValueError("the query bank is empty")
    peak = bank.max(axis=0)
    safe = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        log_normaliser = safe + np.log(np.exp(bank - safe).sum(axis=0))
    activated = np.zeros(bank.shape[1], dtype=bool)
    for row in bank:
        top = np.argsort(-row, kind="stable")[:k]
        activated[top[np.isfinite(row[top])]] = True
    return dynamic_inverted_softmax(scores, log_normaliser, activated, beta)


def dual_softmax(scores, temperature: float = DUAL_SOFTMAX_TEMPERATURE) -> np.ndarray:
    """S'(q, j) = S(q, j) softmax over the queries of S(., j) / tau (the dual softmax prior; -inf stays -inf)."""
    scores = np.array(scores, dtype=np.float64, copy=True, ndmin=2)
    finite = np.isfinite(scores)
    logits = np.where(finite, scores / temperature, -np.inf)
    peak = logits.max(axis=0, keepdims=True)
    weights = np.exp(logits - np.where(np.isfinite(peak), peak, 0.0))
    total = weights.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        prior = weights / total
    return np.where(finite, scores * prior, -np.inf)


# ------------------------------------------------------------------------------------------ the corpus as bank
@dataclass
class QueryBank:
    """QB-Norm's statistics of a corpus used as its own query bank, per dataset row: the log of its inverted-softmax
    denominator over the probes and whether it is in the activation set (nan / False for rows without a vector)."""

    log_normaliser: np.ndarray
    activated: np.ndarray
    beta: float = QBNORM_BETA
    k: int = ACTIVATION_K
    probes: int = 0

    def correct(self, scores, row_ids) -> np.ndarray:
        """DIS of query scores (Q, C) over the dataset rows ``row_ids`` (C,)."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        return dynamic_inverted_softmax(scores, self.log_normaliser[row_ids], self.activated[row_ids], self.beta)

    def min_log_normaliser(self) -> float:
        """The smallest denominator's log over the rows (bounds how far IS can raise a row)."""
        finite = self.log_normaliser[np.isfinite(self.log_normaliser)]
        return float(finite.min()) if len(finite) else 0.0


def _unit(vectors) -> np.ndarray:
    """Rows as contiguous float32 of unit length."""
    out = np.array(vectors, dtype=np.float32, order="C", copy=True)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def corpus_query_bank(blocks, rows: int, bank_ids: np.ndarray, bank_vectors: np.ndarray, beta: float = QBNORM_BETA,
                      k: int = ACTIVATION_K, progress: bool = True, total: int | None = None,
                      scores_per_chunk: int = 1 << 24) -> QueryBank:
    """`QueryBank` of ``rows`` dataset rows from their vectors, given as ``blocks`` of (row ids, vectors), against the
    probes (``bank_ids``: their rows, sorted; ``bank_vectors``); a probe's own row is left out of its similarities;
    at most ``scores_per_chunk`` similarities are held at once."""
    from tqdm.auto import tqdm

    bank_ids = np.asarray(bank_ids, dtype=np.int64)
    bank = torch.from_numpy(_unit(bank_vectors))
    log_normaliser = np.full(rows, np.nan)
    best = torch.full((len(bank), k), -math.inf, dtype=torch.float64)
    best_rows = torch.full((len(bank), k), -1, dtype=torch.int64)
    step = max(1, scores_per_chunk // max(1, len(bank)))
    with tqdm(total=total, unit="vector", desc="QB-Norm bank", disable=True if not progress else None,
              unit_scale=True, leave=False) as bar:
        for ids, block in blocks:
            ids, block = np.asarray(ids, dtype=np.int64), _unit(block)
            for start in range(0, len(ids), step):
                part = ids[start:start + step]
                scores = (torch.from_numpy(block[start:start + step]) @ bank.T).double()  # (n, probes)
                pos = np.minimum(np.searchsorted(bank_ids, part), len(bank_ids) - 1)
                own = np.flatnonzero(bank_ids[pos] == part)  # rows that are probes: leave out their self-similarity
                scores[own, pos[own]] = -math.inf
                log_normaliser[part] = torch.logsumexp(beta * scores, dim=1).numpy()
                top = scores.topk(min(k, len(part)), dim=0)  # each probe's best rows in this part
                merged = torch.cat([best, top.values.T], dim=1)
                merged_rows = torch.cat([best_rows, torch.from_numpy(part)[top.indices.T]], dim=1)
                keep = merged.topk(k, dim=1)
                best, best_rows = keep.values, merged_rows.gather(1, keep.indices)
            bar.update(len(ids))
    activated = np.zeros(rows, dtype=bool)
    chosen = best_rows[torch.isfinite(best)].numpy()
    activated[chosen[chosen >= 0]] = True
    return QueryBank(log_normaliser, activated, float(beta), int(k), len(bank))


def saved_output_dir(dataset) -> str | None:
    """The folder a dataset was loaded from, when it is that folder's whole dataset (not a select/filter view)."""
    files = getattr(dataset, "cache_files", None) or []
    if not files or getattr(dataset, "_indices", None) is not None:
        return None
    return os.path.dirname(files[0]["filename"])


def _compute(dataset, beta, k, bank_size, seed, progress, vectors, scores_per_chunk) -> QueryBank:
    """The `QueryBank` of a dataset's valid rows: from ``vectors`` (valid row ids, values) when given, else read a
    block at a time from the saved output's mapped files."""
    from .index import BLOCK_ROWS, StoredVectors

    rng = np.random.default_rng(seed)
    if vectors is None:
        stored = StoredVectors(dataset)
        _check_count(stored.count, k)
        bank_ids = stored.sample(bank_size, rng)
        return corpus_query_bank(stored.blocks(), stored.rows, bank_ids, stored.gather(bank_ids), beta, k, progress,
                                 stored.count, scores_per_chunk)
    ids, values = vectors
    count = len(ids)
    _check_count(count, k)
    ranks = np.sort(rng.choice(count, size=min(bank_size, count), replace=False))  # `StoredVectors.sample`'s draw
    blocks = ((ids[i:i + BLOCK_ROWS], values[i:i + BLOCK_ROWS]) for i in range(0, count, BLOCK_ROWS))
    return corpus_query_bank(blocks, len(dataset), ids[ranks], values[ranks], beta, k, progress, count,
                             scores_per_chunk)


def _check_count(count: int, k: int) -> None:
    """ValueError unless the corpus has enough vectors to be a query bank."""
    if count < max(MIN_BANK_SIZE, k + 1):
        raise ValueError(f"QB-Norm with the corpus as its query bank needs at least {max(MIN_BANK_SIZE, k + 1)} videos "
                         f"with a vector, the embeddings hold {count}: search without --hubness qbnorm")


def query_bank(dataset, beta: float = QBNORM_BETA, k: int = ACTIVATION_K, bank_size: int = BANK_SIZE, seed: int = 0,
               progress: bool = True, vectors=None, scores_per_chunk: int = 1 << 24) -> QueryBank:
    """The `QueryBank` of an embedding dataset, its own rows as the probes; for a saved output (not a view) read from
    ``DIR/_qbnorm`` when it was computed with the same settings from the same rows, else computed and stored there.
    ``vectors``: the dataset's (valid row ids, vectors) when the caller holds them (a view must give them)."""
    check_hubness("qbnorm", beta, bank_size)
    directory = saved_output_dir(dataset)
    if directory is None:
        if vectors is None:
            raise ValueError("QB-Norm of a select/filter view of a dataset needs its vectors")
        return _compute(dataset, beta, k, bank_size, seed, progress, vectors, scores_per_chunk)
    from .index import output_state

    key = {"format": FORMAT, "beta": float(beta), "k": int(k), "bank_size": int(bank_size), "seed": int(seed),
           **output_state(directory, dataset)}
    folder = os.path.join(directory, BANK_DIR)
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            saved = json.load(f)
        if {name: saved.get(name) for name in key} == json.loads(json.dumps(key)):
            log_normaliser = np.load(os.path.join(folder, NORMALISER_FILE), mmap_mode="r")
            activated = np.load(os.path.join(folder, ACTIVATED_FILE), mmap_mode="r")
            if len(log_normaliser) == len(activated) == len(dataset):
                return QueryBank(log_normaliser, activated, float(beta), int(k), int(saved["probes"]))
    bank = _compute(dataset, beta, k, bank_size, seed, progress, None, scores_per_chunk)
    _store(directory, folder, key, bank)
    return bank


def _store(directory: str, folder: str, key: dict, bank: QueryBank) -> None:
    """Write the bank's statistics to ``folder`` (atomically, under the output's lock); only a warning if the output
    is locked by a running job or cannot be written."""
    from ..jobs.lock import JobLock, OutputLockedError
    from .index import replace_dir

    try:
        lock = JobLock.acquire(directory)
    except (OutputLockedError, OSError) as err:
        logger.warning(f"QB-Norm statistics not stored in {folder!r} ({err}): they are computed again next time")
        return
    tmp = os.path.join(directory, f".tmp{BANK_DIR}-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(tmp)
        np.save(os.path.join(tmp, NORMALISER_FILE), bank.log_normaliser)
        np.save(os.path.join(tmp, ACTIVATED_FILE), bank.activated)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump({**key, "probes": bank.probes}, f, indent=2)
        replace_dir(tmp, folder)
    except OSError as err:
        logger.warning(f"QB-Norm statistics not stored in {folder!r} ({err}): they are computed again next time")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        lock.release()
