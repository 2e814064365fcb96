"""Text-video retrieval from `xclip-hf embed` vectors: R@1/5/10, median and mean rank both ways, ties counted against the query."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from .options import EvaluationOptions, check_unused, evaluation_options

__all__ = ["retrieval_ranks", "retrieval_metrics", "read_captions", "evaluate_retrieval"]

RECALL_AT = (1, 5, 10)


def retrieval_ranks(scores, relevant) -> np.ndarray:
    """Rank (1-based) of each query's best correct candidate: scores (Q, C), relevant (Q, C) boolean."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be the same (Q, C) shape")
    if not relevant.any(1).all():
        raise ValueError(f"query {int(np.flatnonzero(~relevant.any(1))[0])} has no correct candidate")
    best = np.where(relevant, scores, -np.inf).max(1, keepdims=True)
    return 1 + ((scores >= best) & ~relevant).sum(1)


def retrieval_metrics(scores, relevant, recall_at=RECALL_AT) -> dict:
    """R@K (%), median rank, mean rank of `retrieval_ranks`."""
    ranks = retrieval_ranks(scores, relevant)
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in recall_at}
    out.update(median_rank=float(np.median(ranks)), mean_rank=float(np.mean(ranks)), num_queries=int(len(ranks)))
    return out


def read_captions(path, video_root=None) -> list[tuple[str, str]]:
    """(absolute video path, caption) pairs from a .csv/.tsv (columns video,caption), a .json list or .jsonl of
    {"video", "caption"} objects; several captions per video allowed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"captions file not found: {path!r}")
    root = os.fspath(video_root) if video_root is not None else os.path.dirname(os.path.abspath(path))
    ext = os.path.splitext(path)[1].lower()
    with open(path, encoding="utf-8", newline="") as f:
        if ext in (".csv", ".tsv"):
            rows = list(csv.DictReader(f, delimiter="\t" if ext == ".tsv" else ","))
        elif ext == ".json":
            rows = json.load(f)
        elif ext == ".jsonl":
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            raise ValueError(f"captions file {path!r} must be .csv, .tsv, .json or .jsonl")
    pairs = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not str(row.get("video") or "").strip() or not str(row.get("caption") or "").strip():
            raise ValueError(f"captions file {path!r} row {i}: needs a non-empty 'video' and 'caption', got {row!r}")
        pairs.append((os.path.abspath(os.path.join(root, str(row["video"]).strip())), str(row["caption"]).strip()))
    if not pairs:
        raise ValueError(f"captions file {path!r} has no rows")
    return pairs


def _score_matrix(dataset, captions: list[str], model, processor, rerank: bool, rerank_candidates: int | None,
                  template: str, device) -> np.ndarray:
    """(captions, dataset rows) scores from `corpus.search.score_matrix`; a caption shared by several videos is
    scored once."""
    from ..corpus.search import score_matrix

    distinct = list(dict.fromkeys(captions))
    scores = score_matrix(dataset, distinct, model, processor, rerank=rerank, rerank_candidates=rerank_candidates,
                          template=template, device=device)
    row = {caption: q for q, caption in enumerate(distinct)}
    return scores[[row[c] for c in captions]]


NOT_USED = ("num_temporal_clips", "num_spatial_crops", "num_frames", "batch_size", "on_bad_video", "dtype",
            "shard_size", "num_workers", "descriptions")


def evaluate_retrieval(model, captions_file, embeddings, *, rerank: bool = True, rerank_candidates: int | None = None,
                       options: EvaluationOptions | None = None, **overrides) -> dict:
    """Retrieval figures of `embeddings` (an `xclip-hf embed` output dir, one row per video) for a captions file:
    cosine always, and the re-ranked scores too when `rerank` and the rows stored `video_context`. `options` /
    `overrides`: the shared `EvaluationOptions` (the videos were read by `embed`: `output_dir`, `video_root`,
    `processor`, `template` and `device` apply; `progress`, `paper_figures` and `dataset` are accepted, unused)."""
    from datasets import load_from_disk

    from ..corpus.search import load_search_model
    from .report import build_report, model_identity, write_report

    o = evaluation_options(options, overrides)
    check_unused(o, "retrieval", NOT_USED, "the videos were read and embedded by `xclip-hf embed`")
    template, device = o.template, o.device
    if not isinstance(template, str):
        raise ValueError(f"retrieval: template must be one string (applied to each caption), got {template!r}")
    pairs = read_captions(captions_file, o.video_root)
    dataset = load_from_disk(os.fspath(embeddings)) if isinstance(embeddings, (str, os.PathLike)) else embeddings
    paths = [os.path.abspath(p) for p in dataset["path"]]
    if len(set(paths)) != len(paths):
        raise ValueError(f"embeddings {os.fspath(embeddings)!r} hold several rows per video (windows); embed "
                         "without --chunk-length for retrieval")
    errors = dict(zip(paths, dataset["error"])) if "error" in dataset.column_names else {}
    bad = [{"video": v, "error": errors[v] if errors.get(v) else "not in the embeddings"}
           for v in dict.fromkeys(v for v, _ in pairs) if v not in errors or errors.get(v)]
    bad_set = {b["video"] for b in bad}
    pairs = [(v, c) for v, c in pairs if v not in bad_set]
    if not pairs:
        raise ValueError("no caption's video has an embedding; the first problem: "
                         f"{bad[0]['video']}: {bad[0]['error']}")
    wanted = {v for v, _ in pairs}
    kept = [i for i, p in enumerate(paths) if p in wanted]  # candidates: the captioned videos that have vectors
    videos = [paths[i] for i in kept]  # in the dataset's row order: the score matrix's columns
    captions = [c for _, c in pairs]
    relevant = np.zeros((len(pairs), len(videos)), dtype=bool)
    relevant[np.arange(len(pairs)), [videos.index(v) for v, _ in pairs]] = True
    net, processor = load_search_model(model, o.processor, device)
    kinds = {"cosine": False}
    if rerank and "video_context" in dataset.column_names:
        kinds["rerank"] = True
    subset = dataset.select(kept) if len(kept) < len(paths) else dataset
    results = {}
    for name, use_rerank in kinds.items():
        scores = _score_matrix(subset, captions, net, processor, use_rerank, rerank_candidates, template, device)
        t2v, v2t = retrieval_metrics(scores, relevant), retrieval_metrics(scores.T, relevant.T)
        results[name] = {**{f"t2v_{k}": v for k, v in t2v.items()}, **{f"v2t_{k}": v for k, v in v2t.items()}}
    identity = model_identity(net, model if isinstance(model, (str, os.PathLike)) else None)
    source = os.fspath(embeddings) if isinstance(embeddings, (str, os.PathLike)) else None
    settings = {"captions_file": os.fspath(captions_file), "embeddings": source,
                "num_captions": len(captions), "num_videos": len(videos), "template": template,
                "rerank": "rerank" in kinds, "rerank_candidates": rerank_candidates,
                "tie_rule": "wrong candidates tied with the best correct one rank above it"}
    summary = results.get("rerank", results["cosine"])
    report = build_report("retrieval", settings, identity, {"summary": summary, **results}, bad)
    if o.output_dir is not None:
        report["files"] = write_report(o.output_dir, report)
    return report
