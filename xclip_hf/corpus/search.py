"""Text-to-video search over a dataset written by `embed_videos` / `xclip-hf embed`.

Two stages. (1) Recall: the query's unprompted text feature c (paper Eq. 1, ``XClipModel.get_text_features``,
computed by the zero-shot pipeline's own text path and label cache) against every stored ``video_embeds`` v by
exact cosine similarity, in chunks with torch (`VideoIndex`), or, with ``faiss`` installed, through a `datasets`
FAISS index of the normalised vectors (`FaissVideoIndex`: exact with ``"Flat"``, approximate with e.g. ``"HNSW32"``
or ``"IVF256,Flat"``). (2) Re-rank, for rows that stored ``video_context``:
the top candidates are scored with X-CLIP's video-specific prompts (Sec. 3.3, Eq. 10) through
``XClipModel.video_text_logits``, the code ``XClipModel.forward`` scores with, so a re-ranked score IS the logit the
zero-shot pipeline gives that (video, text) pair: exp(logit_scale) * cos(v, c + prompt(c, z-bar)).

Scores: the logit (as above) when re-ranked; otherwise the cosine similarity of stage 1. `search_videos` returns
each query's best rows; `score_matrix` every (query, row) score, unranked, as evaluation uses them.

Queries are independent: each gets its own result list, so repeated or near-identical queries are allowed (texts
that tokenize alike are encoded once). The model is checked against the one that wrote the dataset: the
fingerprint of its video side (`identity.model_fingerprint`) must equal the one `embed` recorded. Where
`xclip-hf index` built a FAISS index in the output (`corpus.index`), stage 1 goes through it: its candidates are
re-ranked by exact cosine from the stored vectors.

Hubness correction (``hubness=``, `hubness`): "qbnorm" re-scores with QB-Norm's Dynamic Inverted Softmax, the
corpus's own videos as the query bank; "dual-softmax" (opt-in: it assumes one-to-one queries) weighs each video's
score by a softmax over the queries searched together. Both act on the similarity on the cosine scale (a re-ranked
logit divided by exp(logit_scale)); "none" (the default) leaves every result as it was.
"""

from __future__ import annotations

import logging
import os
import weakref

import numpy as np
import torch

from ..models.text_features import TextFeatureEncoder
from .hubness import BANK_SIZE, QBNORM_BETA, check_hubness

__all__ = ["VideoIndex", "FaissVideoIndex", "search_videos", "score_matrix", "load_search_model",
           "check_index_model", "ModelMismatchError", "correct_scores", "corpus_query_bank_of", "search_vectors"]

logger = logging.getLogger(__name__)

CHUNK_ROWS = 262_144  # rows whose norms are taken at once when an index is built
SCORES_PER_CHUNK = 1 << 24  # scores (rows x queries) computed per matmul: bounds temporary memory for many queries
HUBNESS_CANDIDATES, MIN_HUBNESS_CANDIDATES = 10, 100  # rows recalled first for a hubness correction: max(10 k, 100)


def _list_column(table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A list<float> (or list<list<float>>) Arrow column as (valid row ids, values (rows, -1)) without going through
    Python objects. ``table`` is a pyarrow table whose rows are the dataset's rows (no indices mapping: read a
    `datasets` view through `_rows`)."""
    import pyarrow as pa

    ids, blocks, offset = [], [], 0
    for chunk in table.column(column).chunks:
        valid = np.asarray(chunk.is_valid())
        values = chunk.flatten()  # drops the null (error) rows, honours the chunk's offset
        while pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
            values = values.flatten()
        values = values.to_numpy(zero_copy_only=False)
        n_valid = int(valid.sum())
        if n_valid:
            blocks.append(values.reshape(n_valid, -1))
            ids.append(np.flatnonzero(valid) + offset)
        offset += len(chunk)
    if not blocks:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(ids), np.concatenate(blocks)


def _rows(dataset, columns, ids=None):
    """Rows ``ids`` (in that order; default all) of ``columns`` as a pyarrow table, read through the dataset API so
    that an indices mapping (a `select` / `filter` view) is applied, never the underlying table's row order.
    Without a mapping, all rows are a zero-copy slice of the (memory-mapped) table."""
    dataset = dataset.select_columns(columns)
    if ids is not None:
        dataset = dataset.select(list(ids))
    return dataset.with_format("arrow")[:]


def _as_dataset(dataset):
    """The embed output `dataset` (a `datasets.Dataset`, or its directory: `index.load_output`), its columns checked."""
    from datasets import Dataset

    from .index import load_output

    if isinstance(dataset, (str, os.PathLike)):
        dataset = load_output(dataset)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a datasets.Dataset or its directory, got {type(dataset).__name__}")
    missing = {"path", "start_s", "end_s", "video_embeds"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"the dataset has no column(s) {sorted(missing)}: it was not written by `xclip-hf embed`")
    return dataset


def _checked_queries(index, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, int]:
    """Queries as float (Q, P) of the index's width, and k capped at the number of rows."""
    queries = queries.reshape(-1, queries.shape[-1]).float()
    if len(index) and queries.shape[-1] != index.width:
        raise ValueError(f"query features have width {queries.shape[-1]}, the index holds vectors of width "
                         f"{index.width}: search with the model that wrote the embeddings")
    return queries, min(int(k), len(index))


class VideoIndex:
    """Exact cosine search over the ``video_embeds`` of an embedding dataset (rows with an error are left out).

    The vectors stay in their stored dtype (float16 halves memory and, on CPUs with fp16 matmul, time); a
    shortlist of the best candidates is re-scored in float32 so the returned cosines are exact.
    """

    def __init__(self, embeddings: torch.Tensor, row_ids: np.ndarray, dataset=None, device=None):
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (rows, width), got shape {tuple(embeddings.shape)}")
        self.device = torch.device(device or "cpu")
        self.embeddings = embeddings.to(self.device)
        norms = torch.cat([self.embeddings[i:i + CHUNK_ROWS].float().norm(dim=-1)
                           for i in range(0, len(self.embeddings), CHUNK_ROWS)]) if len(self.embeddings) else torch.zeros(0)
        self.inv_norms = 1.0 / norms.clamp_min(1e-12)
        self.row_ids = np.asarray(row_ids, dtype=np.int64)
        self.dataset = dataset

    @classmethod
    def from_dataset(cls, dataset, device=None) -> VideoIndex:
        """Index the ``video_embeds`` of a dataset (or its directory)."""
        dataset = _as_dataset(dataset)
        ids, values = _list_column(_rows(dataset, ["video_embeds"]), "video_embeds")
        return cls(torch.from_numpy(np.ascontiguousarray(values)), ids, dataset=dataset, device=device)

    @property
    def width(self) -> int:
        return int(self.embeddings.shape[1]) if len(self.embeddings) else 0

    def __len__(self):
        return len(self.embeddings)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, np.ndarray]:
        """Cosine similarity of queries (Q, P) to every row: the k best per query as (scores (Q, k'), row ids (Q, k'))."""
        queries, k = _checked_queries(self, queries, k)
        if k == 0:
            return torch.zeros(len(queries), 0), np.zeros((len(queries), 0), dtype=np.int64)
        queries = torch.nn.functional.normalize(queries.to(self.device), dim=-1)
        exact = self.embeddings.dtype == torch.float32
        shortlist = k if exact else min(len(self), max(4 * k, k + 64))
        coarse_q = queries.to(self.embeddings.dtype).T  # (P, Q), a transposed view: torch's fast matrix-vector path
        rows = max(1, SCORES_PER_CHUNK // len(queries))
        best_scores, best_pos = [], []
        for start in range(0, len(self), rows):
            scores = (self.embeddings[start:start + rows] @ coarse_q).float()  # (rows, Q)
            scores.mul_(self.inv_norms[start:start + rows, None])
            top = scores.topk(min(shortlist, len(scores)), dim=0)
            best_scores.append(top.values)
            best_pos.append(top.indices + start)
        scores, pos = torch.cat(best_scores), torch.cat(best_pos)
        top = scores.topk(min(shortlist, len(scores)), dim=0)
        pos = pos.gather(0, top.indices).T  # (Q, shortlist)
        if not exact:  # re-score the shortlist in float32 from the stored vectors
            vectors = self.embeddings[pos].float()  # (Q, S, P)
            scores = torch.einsum("qsp,qp->qs", vectors, queries) * self.inv_norms[pos]
        else:
            scores = top.values.T
        scores, order = scores.topk(k, dim=1)
        pos = pos.gather(1, order)
        return scores.cpu(), self.row_ids[pos.cpu().numpy()]


def _check_factory(factory) -> None:
    if not isinstance(factory, str) or not factory.strip():
        raise ValueError(f"faiss_factory must be a FAISS index factory string such as 'Flat', 'HNSW32' or "
                         f"'IVF256,Flat' (or None: exact cosine with torch), got {factory!r}")


class FaissVideoIndex:
    """Inner-product search over the L2-normalised ``video_embeds`` (= cosine) in a `datasets` FAISS index
    (``datasets.search.FaissIndex``), built with a FAISS ``factory`` string: ``"Flat"`` is exact (same rows and
    cosines as `VideoIndex`), ``"HNSW32"`` / ``"IVF256,Flat"`` trade exactness for speed on large collections.
    Rows with an error are left out. Same ``search`` interface as `VideoIndex`."""

    def __init__(self, embeddings: np.ndarray, row_ids: np.ndarray, factory: str = "Flat", dataset=None):
        try:
            import faiss
        except ImportError as err:
            raise ImportError("a FAISS index needs the faiss package: pip install faiss-cpu "
                              "(or search without it: exact cosine with torch)") from err
        from datasets.search import FaissIndex

        _check_factory(factory)
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"embeddings must be (rows, width), got shape {vectors.shape}")
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        try:
            self.index = FaissIndex(string_factory=factory, metric_type=faiss.METRIC_INNER_PRODUCT)
            if len(vectors):
                self.index.add_vectors(vectors, train_size=len(vectors))  # a no-op for indexes without training
        except RuntimeError as err:
            raise ValueError(f"FAISS could not build a {factory!r} index of {len(vectors)} vectors: {err}") from err
        self._len, self._width = len(vectors), vectors.shape[1]
        self.row_ids = np.asarray(row_ids, dtype=np.int64)
        self.dataset = dataset

    @classmethod
    def from_dataset(cls, dataset, factory: str = "Flat") -> FaissVideoIndex:
        """Index the ``video_embeds`` of a dataset (or its directory)."""
        dataset = _as_dataset(dataset)
        ids, values = _list_column(_rows(dataset, ["video_embeds"]), "video_embeds")
        return cls(values, ids, factory, dataset=dataset)

    @property
    def width(self) -> int:
        return int(self._width) if self._len else 0

    def __len__(self):
        return self._len

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, np.ndarray]:
        """Cosine similarity of queries (Q, P) to the rows: the k best per query as (scores (Q, k'), row ids (Q, k'))."""
        queries, k = _checked_queries(self, queries, k)
        if k == 0:
            return torch.zeros(len(queries), 0), np.zeros((len(queries), 0), dtype=np.int64)
        normalised = torch.nn.functional.normalize(queries, dim=-1).cpu().numpy()
        scores, positions = self.index.search_batch(np.ascontiguousarray(normalised), k)
        scores, positions = np.asarray(scores), np.asarray(positions)
        if (positions < 0).any():  # an approximate index can return fewer than k: keep what it found
            keep = int((positions >= 0).all(axis=0).sum())
            scores, positions = scores[:, :keep], positions[:, :keep]
        return torch.from_numpy(scores.astype(np.float32)), self.row_ids[positions]


def load_search_model(model, processor=None, device=None):
    """(XClipModel, XClipProcessor) for search, through the one loader (a text tower and a tokenizer are needed)."""
    from ..models.loading import load_model_and_processor

    return load_model_and_processor(model, processor=processor, need_text=True, device=device)


_TEXT_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def text_encoder_for(model, processor) -> TextFeatureEncoder:
    """The `TextFeatureEncoder` (label cache) kept for this model object and tokenizer: a second search with the
    same loaded model reuses the features of texts it encoded before."""
    encoders = _TEXT_ENCODERS.setdefault(model, {})
    key = id(processor.tokenizer)
    encoder = encoders.get(key)
    if encoder is None or encoder.processor.tokenizer is not processor.tokenizer:
        encoder = encoders[key] = TextFeatureEncoder(model, processor, cache_size=16)
    return encoder


def _text_features(model, processor, queries: list[str], template: str) -> torch.Tensor:
    """Unprompted text features (Q, P), one row per query, through the pipeline's text path (tokenization, label
    cache). Queries are independent, so the pipeline's duplicate-label check does not apply: queries whose texts
    tokenize alike (repeats, "dancing" / "Dancing") are encoded once and share their features."""
    from ..models.text_features import build_label_set, max_text_length

    unique = list(dict.fromkeys(queries))
    texts = build_label_set(unique, template).texts  # validates the template and every query
    tokenizer = processor.tokenizer
    length = max_text_length(model, tokenizer)
    ids = tokenizer(list(texts), truncation=True, max_length=length, verbose=False)["input_ids"]
    slot, kept = {}, []  # token ids -> position among the encoded queries
    for query, row in zip(unique, ids):
        if tuple(row) not in slot:
            slot[tuple(row)] = len(kept)
            kept.append(query)
    position = {query: slot[tuple(row)] for query, row in zip(unique, ids)}
    features = text_encoder_for(model, processor).features(build_label_set(kept, template))
    return features[[position[q] for q in queries]]


class ModelMismatchError(ValueError):
    """The search model is not the model whose video side wrote the dataset's vectors."""


def _job_directory(dataset) -> str | None:
    """The directory an embedding dataset was loaded from (where `embed` keeps its job config), or None."""
    if isinstance(dataset, (str, os.PathLike)):
        return os.fspath(dataset)
    files = getattr(dataset, "cache_files", None) or []
    return os.path.dirname(files[0]["filename"]) if files else None


def check_index_model(dataset, model, allow_model_mismatch: bool = False, name: str | None = None) -> None:
    """Check that ``model`` (a loaded model) is the one that embedded ``dataset`` (its directory or the dataset
    loaded from it), by the fingerprint `embed` recorded: `ModelMismatchError` if not (a warning instead with
    ``allow_model_mismatch``); a warning if the dataset records none (written before fingerprints were recorded,
    or not by `embed`)."""
    from ..jobs.identity import model_fingerprint, short, what_differs
    from ..jobs.store import read_job_config

    directory = _job_directory(dataset)
    config = read_job_config(directory) if directory and os.path.isdir(directory) else None
    recorded = (config or {}).get("model_fingerprint")
    name = name or getattr(model, "name_or_path", "") or type(model).__name__
    where = f"embedding dataset {directory!r}" if directory else "the embedding dataset (in memory)"
    if recorded is None:
        logger.warning(f"{where} records no model fingerprint (written before `xclip-hf embed` recorded them, or not "
                       f"by it): cannot check that {name!r} is the model its vectors come from")
        return
    fingerprint = model_fingerprint(model)
    if fingerprint == recorded:
        return
    source = config.get("model_source", config.get("model"))
    message = (f"{where} was embedded with another model ({source!r}, fingerprint {short(recorded)}) than {name!r} "
               f"(fingerprint {short(fingerprint)}{what_differs(recorded, fingerprint)}): its text features would be "
               "compared with another model's video vectors")
    if allow_model_mismatch:
        logger.warning(f"{message}; searching anyway (allow_model_mismatch)")
        return
    raise ModelMismatchError(f"{message}. Search with the model that wrote it, or pass allow_model_mismatch=True "
                             "(--allow-model-mismatch) to search anyway")


def _prepared(dataset, queries, model, processor, device, index, faiss_factory, allow_model_mismatch):
    """(query list, whether one text was given, model, processor, index, dataset) of a search, each checked."""
    single = isinstance(queries, str)
    query_list = [queries] if single else list(queries)
    if not query_list or any(not isinstance(q, str) or not q.strip() for q in query_list):
        raise ValueError(f"queries must be non-empty texts, got {queries!r}")
    if faiss_factory is not None:
        _check_factory(faiss_factory)
    net, processor = load_search_model(model, processor, device)
    check_index_model(dataset, net, allow_model_mismatch,
                      name=os.fspath(model) if isinstance(model, (str, os.PathLike)) else None)
    if index is None:
        index = (FaissVideoIndex.from_dataset(dataset, faiss_factory) if faiss_factory is not None
                 else VideoIndex.from_dataset(dataset, device=device))
    dataset = index.dataset if index.dataset is not None else _as_dataset(dataset)
    if len(index) and index.width != net.config.projection_dim:
        raise ValueError(f"the dataset holds vectors of width {index.width} but the model's joint space has "
                         f"{net.config.projection_dim} dimensions: search with the model that wrote the embeddings")
    return query_list, single, net, processor, index, dataset


def _query_scores(net, dataset, index, text: torch.Tensor, recall: int, rerank: int):
    """Per query, (row ids, float64 scores) of its `recall` best rows by cosine, in that order; with `rerank` > 0
    all on the logit scale, the best `rerank` of them re-ranked with the video-specific prompts (`_rerank`)."""
    scores, ids = index.search(text, recall)
    for q in range(len(text)):
        q_ids, q_scores = ids[q], scores[q].double().numpy()
        if rerank and len(q_ids):
            head = _rerank(net, dataset, q_ids[:rerank], q_scores[:rerank], text[q:q + 1])
            q_scores = np.concatenate([head, q_scores[rerank:] * float(net.logit_scale.exp())])
        yield q_ids, q_scores


def search_videos(dataset, queries, model, processor=None, top_k: int = 10, rerank: bool = True,
                  rerank_candidates: int | None = None, template: str = "{}", device=None, index=None,
                  faiss_factory: str | None = None, allow_model_mismatch: bool = False, hubness: str = "none",
                  qbnorm_beta: float = QBNORM_BETA, bank_size: int = BANK_SIZE):
    """Search an embedding dataset by text: ``[{"path", "start_s", "end_s", "score"}, ...]`` best first.

    Args:
        dataset: the output directory of `embed_videos` (or the dataset it returned).
        queries: a text, or a list of texts (then a list of result lists is returned, one per query, repeats
            included).
        model, processor: the X-CLIP model (directory, hub id or ``XClipModel``) the embeddings were made with:
            checked against the fingerprint `embed` recorded (`ModelMismatchError` if it is another model, unless
            ``allow_model_mismatch=True``; a warning for a dataset that records none).
        top_k: results per query. rerank: re-rank candidates that stored ``video_context`` with the prompt
            generator (their score is then the pipeline's logit); rerank_candidates: how many (default
            ``max(4 * top_k, 50)``). template: hypothesis template applied to each query (the pipeline's, "{}").
        index: a prebuilt `VideoIndex` / `FaissVideoIndex` / `index.DiskVideoIndex` of the dataset (reuse it across
            calls). Default: the FAISS index `xclip-hf index` built in the output folder if there is one (candidates
            re-ranked by exact cosine), else exact cosine over every row.
        faiss_factory: recall through a `datasets` FAISS index of this factory string ("Flat": exact;
            "HNSW32", "IVF256,Flat": approximate) instead of exact cosine with torch; needs ``faiss``.
        hubness: "none" (default), "qbnorm" (QB-Norm, the corpus as its query bank of ``bank_size`` probes, with
            ``qbnorm_beta``; rows recalled until the result is the one over every row) or "dual-softmax" (over the
            queries of this call, at least two, scored on the union of their max(10 top_k, 100) best rows): the
            score is then the corrected one (`hubness`).
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    check_hubness(hubness, qbnorm_beta, bank_size)
    queries = queries if isinstance(queries, str) else list(queries)
    if hubness == "dual-softmax" and (isinstance(queries, str) or len(queries) < 2):
        raise ValueError("hubness='dual-softmax' weighs each video by a softmax over the queries searched together: "
                         "give at least two queries (with one it changes nothing), or use 'qbnorm'")
    if index is None and faiss_factory is None:
        from .index import find_index

        index = find_index(dataset)  # the FAISS index `xclip-hf index` built in the output, if any
    query_list, single, net, processor, index, dataset = _prepared(dataset, queries, model, processor, device, index,
                                                                   faiss_factory, allow_model_mismatch)
    with torch.inference_mode():
        text = _text_features(net, processor, query_list, template)
        use_context = rerank and "video_context" in dataset.column_names
        candidates = max(rerank_candidates or max(4 * top_k, 50), top_k) if use_context else top_k
        if hubness != "none":
            hits = _corrected_hits(net, dataset, index, text, top_k, candidates if use_context else 0, hubness,
                                   qbnorm_beta, bank_size)
        else:
            hits = _query_scores(net, dataset, index, text, candidates, candidates if use_context else 0)
        results = []
        for q_ids, q_scores in hits:
            order = np.argsort(-q_scores, kind="stable")[:top_k]
            meta = dataset.select(q_ids[order].tolist()).select_columns(["path", "start_s", "end_s"])
            results.append([{"path": m["path"], "start_s": m["start_s"], "end_s": m["end_s"], "score": float(q_scores[i])}
                            for m, i in zip(meta, order)])
    return results[0] if single else results


def score_matrix(dataset, queries, model, processor=None, rerank: bool = True, rerank_candidates: int | None = None,
                 template: str = "{}", device=None, index=None, faiss_factory: str | None = None,
                 allow_model_mismatch: bool = False, hubness: str = "none", qbnorm_beta: float = QBNORM_BETA,
                 bank_size: int = BANK_SIZE) -> np.ndarray:
    """Every (query, row) score of an embedding dataset: float64 (queries, rows), rows in the dataset's order.

    The scores `search_videos` ranks: the cosine, or with ``rerank`` (rows that stored ``video_context``) the logit
    scale, where each query's ``rerank_candidates`` best rows by cosine (default: every row) get the prompt
    generator's logit and the others exp(logit_scale) * cosine. A row without a vector (an ``error`` row), or one an
    approximate FAISS index does not return, scores -inf. ``queries``: a text or a list of texts (one row each,
    repeats included); the other arguments as for `search_videos`. With ``hubness``, the matrix corrected by
    `correct_scores` (dual-softmax: over these queries).
    """
    if rerank_candidates is not None and (not isinstance(rerank_candidates, int) or isinstance(rerank_candidates, bool)
                                          or rerank_candidates < 1):
        raise ValueError(f"rerank_candidates must be a positive integer or None, got {rerank_candidates!r}")
    check_hubness(hubness, qbnorm_beta, bank_size)
    query_list, _, net, processor, index, dataset = _prepared(dataset, queries, model, processor, device, index,
                                                              faiss_factory, allow_model_mismatch)
    matrix = np.full((len(query_list), len(dataset)), -np.inf)
    with torch.inference_mode():
        text = _text_features(net, processor, query_list, template)
        use_context = rerank and "video_context" in dataset.column_names
        reranked = (rerank_candidates or len(index)) if use_context else 0
        for q, (q_ids, q_scores) in enumerate(_query_scores(net, dataset, index, text, len(index), reranked)):
            matrix[q, q_ids] = q_scores
    if hubness != "none":
        matrix = correct_scores(matrix, dataset, hubness, float(net.logit_scale.exp()) if reranked else 1.0,
                                qbnorm_beta, bank_size)
    return matrix


def corpus_query_bank_of(dataset, qbnorm_beta: float = QBNORM_BETA, bank_size: int = BANK_SIZE, progress=None):
    """QB-Norm's `hubness.QueryBank` of an embedding dataset, its own videos as the probes (stored beside a saved
    output and reused)."""
    from .hubness import query_bank, saved_output_dir

    vectors = None if saved_output_dir(dataset) else _list_column(_rows(dataset, ["video_embeds"]), "video_embeds")
    return query_bank(dataset, beta=qbnorm_beta, bank_size=bank_size, vectors=vectors,
                      scores_per_chunk=SCORES_PER_CHUNK, progress=True if progress is None else progress)


def correct_scores(matrix, dataset, hubness: str, scale: float = 1.0, qbnorm_beta: float = QBNORM_BETA,
                   bank_size: int = BANK_SIZE, bank=None) -> np.ndarray:
    """A (queries, dataset rows) score matrix corrected for hubness: its similarities (the scores over ``scale``,
    exp(logit_scale) for logits) by QB-Norm with ``dataset`` as its bank (``bank``: its `corpus_query_bank_of`, if
    already computed), or by the dual softmax over the queries."""
    from .hubness import dual_softmax

    check_hubness(hubness, qbnorm_beta, bank_size)
    similarity = np.asarray(matrix, dtype=np.float64) / scale
    if hubness == "none":
        return np.asarray(matrix, dtype=np.float64)
    if hubness == "dual-softmax":
        return dual_softmax(similarity)
    bank = bank if bank is not None else corpus_query_bank_of(dataset, qbnorm_beta, bank_size)
    return bank.correct(similarity, np.arange(similarity.shape[1]))


def search_vectors(dataset, query_vectors, top_k: int = 10, hubness: str = "none", index=None,
                   qbnorm_beta: float = QBNORM_BETA, bank_size: int = BANK_SIZE) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cosine search of an embedding dataset by query vectors (Q, P) already in the joint space (no text encoder, no
    re-rank): per query (dataset row ids, scores), best first; ``hubness`` and ``index`` as for `search_videos`."""
    check_hubness(hubness, qbnorm_beta, bank_size)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if index is None:
        from .index import find_index

        index = find_index(dataset) or VideoIndex.from_dataset(dataset)
    dataset = index.dataset if index.dataset is not None else _as_dataset(dataset)
    text = torch.as_tensor(np.asarray(query_vectors, dtype=np.float32))
    if text.ndim != 2:
        raise ValueError(f"query_vectors must be (queries, width), got shape {tuple(text.shape)}")
    if hubness == "dual-softmax" and len(text) < 2:
        raise ValueError("hubness='dual-softmax' needs at least two queries (with one it changes nothing)")
    top_k = min(top_k, len(index))
    if hubness != "none":
        return _corrected_hits(None, dataset, index, text, top_k, 0, hubness, qbnorm_beta, bank_size)
    return list(_query_scores(None, dataset, index, text, top_k, 0))


def _corrected_hits(net, dataset, index, text, top_k: int, rerank: int, hubness: str, beta: float, bank_size: int):
    """Per query (row ids, corrected scores), its best rows first (the hubness branch of `search_videos`; ``net``
    is only used to re-rank, ``rerank`` > 0)."""
    scale = float(net.logit_scale.exp()) if rerank else 1.0
    recall = min(len(index), max(HUBNESS_CANDIDATES * top_k, MIN_HUBNESS_CANDIDATES, rerank + 1))
    if hubness == "dual-softmax":
        return _dual_softmax_hits(net, dataset, index, text, top_k, recall, rerank, scale)
    bank = corpus_query_bank_of(dataset, beta, bank_size)
    out, pending = [None] * len(text), list(range(len(text)))
    floor = bank.min_log_normaliser()
    while pending:
        retry = []
        step = max(1, SCORES_PER_CHUNK // max(1, recall))  # queries at once: (queries x recall) scores held
        for begin in range(0, len(pending), step):
            batch = pending[begin:begin + step]
            for q, (ids, scores) in zip(batch, _query_scores(net, dataset, index, text[batch], recall,
                                                               min(rerank, recall))):
                corrected = bank.correct(scores[None] / scale, ids)[0]
                order = np.argsort(-corrected, kind="stable")[:top_k]
                out[q] = ids[order], corrected[order]
                gated = len(ids) and bank.activated[ids[np.argmax(scores)]]  # DIS applies IS to this query
                if gated and recall < len(index) and len(ids) == recall:
                    # a row not recalled has a cosine <= the last recalled one's: the most IS can raise it to
                    reach = np.exp(beta * scores[-1] / scale - floor)
                    if len(order) < top_k or corrected[order[-1]] < reach:
                        retry.append(q)
        pending, recall = retry, min(len(index), 4 * recall)
    return out


def _dual_softmax_hits(net, dataset, index, text, top_k: int, recall: int, rerank: int, scale: float):
    """Per query (row ids, dual-softmax scores) best first, over the union of the queries' recalled rows."""
    from .hubness import dual_softmax

    _, ids = index.search(text, recall)
    union = np.unique(ids)
    _, vectors = _list_column(_rows(dataset, ["video_embeds"], union), "video_embeds")
    vectors = torch.nn.functional.normalize(torch.from_numpy(vectors).double(), dim=-1)
    cosines = (torch.nn.functional.normalize(text.double().cpu(), dim=-1) @ vectors.T).numpy()
    block = np.empty_like(cosines)
    for q in range(len(text)):
        block[q] = _rerank(net, dataset, union, cosines[q], text[q:q + 1]) if rerank else cosines[q]
    corrected = dual_softmax(block / scale)
    order = np.argsort(-corrected, axis=1, kind="stable")[:, :top_k]
    return [(union[o], c[o]) for o, c in zip(order, corrected)]


def _rerank(net, dataset, ids: np.ndarray, cosines: np.ndarray, text: torch.Tensor) -> np.ndarray:
    """Logits of (candidate video, text) with the video-specific prompts, for candidates that stored a context."""
    rows = _rows(dataset, ["video_embeds", "video_context"], ids)
    keep, context = _list_column(rows, "video_context")
    scores = cosines * float(net.logit_scale.exp())  # on the logit scale: exp(s) * cos, unprompted
    if len(keep):
        with_video, video = _list_column(rows.take(keep), "video_embeds")
        if len(with_video) != len(keep):
            raise ValueError("the dataset has rows with a video_context but no video_embeds: it was not written by "
                             "`xclip-hf embed`")
        dtype = net.dtype
        video = torch.from_numpy(video).to(net.device, dtype)
        context = torch.from_numpy(context).to(net.device, dtype).reshape(len(keep), -1, video.shape[-1])
        logits, _, _ = net.video_text_logits(video, context, text.to(net.device, dtype))
        scores[keep] = logits[:, 0].double().cpu().numpy()
    return scores
