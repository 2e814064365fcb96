"""`xclip-hf embed VIDEO... --model M --output DIR`: embed a collection into a resumable `datasets` dataset."""

from __future__ import annotations

import sys

HELP = "embed many videos (whole or in windows) into a datasets dataset; resumable, runs under torchrun/accelerate"


def add_arguments(p) -> None:
    """Arguments of `embed` (no heavy import here: `--help` must answer at once)."""
    p.add_argument("videos", nargs="*", help="video files, directories (searched recursively) or glob patterns")
    p.add_argument("--list", dest="list_file", default=None, help="a text file with one video path per line")
    p.add_argument("--model", required=True, help="model directory or hub id (ours or the published microsoft/xclip-*)")
    p.add_argument("--output", required=True, help="output directory (new, empty, or an earlier run's: resumed)")
    p.add_argument("--chunk-length", type=float, default=None, help="one row per window of S seconds (default: per video)")
    p.add_argument("--stride", type=float, default=None, help="seconds between window starts (default: --chunk-length)")
    p.add_argument("--num-frames", type=int, default=None, help="frames per row (default: the model's)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per model forward")
    p.add_argument("--num-workers", type=int, default=2, help="decoding worker processes beside the model (0: none)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds a decoding worker may take for one batch before its videos count as stalled (error rows)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="compute dtype of the model")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "float16"], help="dtype of the stored vectors")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: this process's accelerator or cpu)")
    p.add_argument("--save-context", action="store_true",
                   help="also store the prompt generator's visual context (lets `search` re-rank with X-CLIP's prompts)")
    p.add_argument("--save-frame-embeds", action="store_true", help="also store the per-frame embeddings")
    p.add_argument("--shard-size", type=int, default=64, help="videos per committed shard (the unit of resumption)")
    p.add_argument("--no-retry-errors", action="store_true",
                   help="on a rerun, keep the error rows of earlier runs (default: embed those inputs again)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from accelerate import PartialState

    from ..corpus.embed import run_embedding

    if not args.videos and args.list_file is None:
        raise ValueError("no input videos: pass video files, directories or globs, or --list FILE")
    dataset, counts = run_embedding(
        args.videos, args.output, args.model, list_file=args.list_file, chunk_length_s=args.chunk_length,
        stride_length_s=args.stride, num_frames=args.num_frames, batch_size=args.batch_size,
        num_workers=args.num_workers, dtype=args.dtype, save_dtype=args.save_dtype, device=args.device,
        save_context=args.save_context, save_frame_embeds=args.save_frame_embeds, shard_size=args.shard_size,
        timeout_s=args.timeout, retry_errors=not args.no_retry_errors, progress=not args.no_progress,
    )
    if PartialState().is_main_process:
        print(f"xclip-hf embed: {counts.summary(args.output, len(dataset))}", file=sys.stderr)
    return 1 if counts.failed else 0
