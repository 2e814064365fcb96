"""`xclip-hf index OUTPUT [--memory-gb N] [--kind auto|flat|ivfpq|hnsw]`: a FAISS index of an `embed` output, which
`xclip-hf search` then uses (candidates re-ranked by exact cosine)."""

from __future__ import annotations

import os
import sys

from .common import positive_float

HELP = "build a FAISS index of an embed output for search past RAM (flat, IVF-PQ or HNSW, chosen for a memory budget)"
KINDS = ("auto", "flat", "ivfpq", "hnsw")  # corpus.index.KINDS (not imported here: --help answers at once)


def recall_target(text: str) -> float:
    """argparse type: a recall in (0, 1]."""
    import argparse

    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a recall in (0, 1], got {text!r}")
    return value


def add_arguments(p) -> None:
    """Arguments of `index` (no heavy import here: `--help` must answer at once)."""
    p.add_argument("output", metavar="OUTPUT", help="the --output folder of `xclip-hf embed`; the index is written "
                                                    "into it (OUTPUT/_faiss_index)")
    p.add_argument("--memory-gb", type=positive_float, default=4.0,
                   help="RAM the index may take, in GiB (default %(default)s): picks the kind and its code size")
    p.add_argument("--kind", default="auto", choices=KINDS,
                   help="auto (default): exact flat while a query stays under 20 ms, else IVF-PQ; or force one")
    p.add_argument("--recall", type=recall_target, default=0.95,
                   help="recall@10 after exact re-ranking that the search parameters are tuned for (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    # FAISS's OpenMP threads spin while they wait; on a machine shared with other work that costs up to 20x
    # (measured: IVF training 0.3 s passive, 4-8 s spinning). Set before faiss is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..corpus.index import build_index

    manifest = build_index(args.output, kind=args.kind, memory_gb=args.memory_gb, recall_target=args.recall,
                           progress=not args.no_progress)
    measured = manifest["measured"]
    print(f"xclip-hf index: {manifest['vectors']} vectors in an index of kind {manifest['kind']} ({manifest['factory']}"
          f"{', ' + manifest['search_parameters'] if manifest['search_parameters'] else ''}), "
          f"{measured['index_bytes'] / 2 ** 20:.1f} MiB, tuned recall@10 {measured['tuned_recall_at_10']:.3f}; "
          f"written to {os.path.join(args.output, '_faiss_index')!r}", file=sys.stderr)
    return 0
