"""`xclip-hf search --index DIR "a person surfing" --model M`: text-to-video search over an `embed` output."""

from __future__ import annotations

import json

from .common import (add_device_argument, add_hubness_arguments, add_index_argument, add_model_argument,
                     check_model_source, library_progress, nonempty_text, positive_int, resolve_device,
                     run_after_parse, usage_errors)

HELP = "search an embedded collection by text (cosine recall, X-CLIP prompt re-ranking when contexts were saved)"


def add_arguments(p) -> None:
    """Arguments of `search` (no heavy import here: `--help` must answer at once)."""
    add_index_argument(p, required=False)
    p.add_argument("queries", nargs="+", type=nonempty_text, metavar="QUERY", help="one or more texts to search for")
    add_model_argument(p, note="the model the index was made with (needs its text tower)")
    run_after_parse(p, _index_from_positional)
    p.add_argument("--top-k", type=positive_int, default=10, help="results per query")
    p.add_argument("--no-rerank", action="store_true", help="cosine only, even where video contexts were saved")
    p.add_argument("--rerank-candidates", type=positive_int, default=None, help="candidates re-ranked (default max(4k, 50))")
    p.add_argument("--template", default="{}", help='hypothesis template applied to each query (default "{}")')
    p.add_argument("--faiss", default=None, type=nonempty_text, metavar="FACTORY",
                   help='recall through a datasets FAISS index ("Flat": exact; "HNSW32", "IVF256,Flat": approximate); '
                        "needs faiss (pip install faiss-cpu); default: exact cosine with torch")
    p.add_argument("--allow-model-mismatch", action="store_true",
                   help="search even if --model is not the model that embedded the dataset (its fingerprint differs)")
    add_hubness_arguments(p)
    add_device_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON: a list of {path, start_s, end_s, score} per query")
    p.add_argument("--no-progress", action="store_true", help="hide transformers' weight-loading bar")


def _index_from_positional(args) -> None:
    """The old spelling `search DIR QUERY...`: without --index, the first positional is the index folder."""
    if args.index is not None:
        return
    if len(args.queries) < 2:
        raise ValueError("the following arguments are required: --index (or the old spelling: DIR QUERY...)")
    args.index, args.queries = args.queries[0], args.queries[1:]


def _seconds(value) -> str:
    return "?" if value is None else f"{value:.2f}"


def run(args) -> int:
    from ..corpus.search import search_videos
    from ..models.text_features import build_label_set

    with usage_errors():
        build_label_set(["query"], args.template)  # the template, before anything loads
    check_model_source(args.model, prog="xclip-hf search")
    with library_progress(args.no_progress):
        results = search_videos(args.index, list(args.queries), args.model, top_k=args.top_k,
                                rerank=not args.no_rerank, rerank_candidates=args.rerank_candidates,
                                template=args.template, device=resolve_device(args.device, "search", args.model),
                                faiss_factory=args.faiss,
                                allow_model_mismatch=args.allow_model_mismatch, hubness=args.hubness,
                                qbnorm_beta=args.qbnorm_beta, bank_size=args.bank_size)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else dict(zip(args.queries, results)), indent=2))
        return 0
    for query, hits in zip(args.queries, results):
        print(query)
        width = max((len(h["path"]) for h in hits), default=0)
        for rank, h in enumerate(hits, 1):
            score = f"{h['score']:.4f}" if args.hubness == "none" else f"{h['score']:.4g}"  # QB-Norm's can be tiny
            print(f"  {rank:>3}  {h['path']:<{width}}  {_seconds(h['start_s'])}-{_seconds(h['end_s'])} s  {score}")
    return 0
