"""`xclip-hf embed VIDEO... --model M --output DIR`: embed a collection into a resumable `datasets` dataset."""

from __future__ import annotations

import sys

from .common import (EXIT_FAILURE, EXIT_OK, UsageError, add_device_argument, add_dtype_argument, add_model_argument,
                     add_num_workers_argument, check_model_source, failed_inputs, library_progress,
                     nonnegative_float, one_line, positive_float, positive_int, resolve_device, usage_errors)

HELP = "embed many videos (whole or in windows) into a datasets dataset; resumable, on torchrun/accelerate or Ray"


def add_arguments(p) -> None:
    """Arguments of `embed` (no heavy import here: `--help` must answer at once)."""
    p.add_argument("videos", nargs="*", help="video files, directories (searched recursively), glob patterns or URLs "
                                             "(http(s)://, file://, s3:// with s3fs, ...)")
    p.add_argument("--list", dest="list_file", default=None, help="a text file with one video path or URL per line")
    p.add_argument("--dataset", default=None,
                   help="instead of files: a Hugging Face dataset (a save_to_disk folder, or a folder/hub id that "
                        "datasets.load_dataset reads)")
    p.add_argument("--video-column", default=None,
                   help="the dataset's column of paths, URLs or video bytes (default: video)")
    p.add_argument("--id-column", default=None,
                   help="the dataset's column of ids (default: the path/URL, or the row number for bytes)")
    p.add_argument("--split", default=None, help="the dataset's split (needed when it has several)")
    p.add_argument("--streaming", action="store_true", help="read the dataset as a stream (an IterableDataset)")
    p.add_argument("--webdataset", nargs="+", default=None, metavar="SHARDS",
                   help="instead of files: webdataset tar shards (paths, brace patterns 'a-{000..009}.tar', fsspec "
                        "URLs); a row's id is its sample key")
    p.add_argument("--video-key", default=None,
                   help="the webdataset member extension(s) holding the video, e.g. mp4 or 'mp4;webm' "
                        "(default: the sample's one video file)")
    p.add_argument("--url-timeout", type=positive_float, default=None,
                   help="seconds one URL's download may take before it becomes an error row (default 60)")
    add_model_argument(p)
    p.add_argument("--output", required=True, help="output directory (new, empty, or an earlier run's: resumed)")
    p.add_argument("--chunk-length", type=positive_float, default=None, help="one row per window of S seconds (default: per video)")
    p.add_argument("--stride", type=positive_float, default=None, help="seconds between window starts (default: --chunk-length)")
    p.add_argument("--num-frames", type=positive_int, default=None, help="frames per row (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="windows per model forward")
    add_num_workers_argument(p, default=2)
    p.add_argument("--timeout", type=positive_float, default=600.0,
                   help="seconds a decoding worker may take for one batch before its videos count as stalled (error rows)")
    add_dtype_argument(p)
    p.add_argument("--save-dtype", default="float32", choices=["float32", "float16"], help="dtype of the stored vectors")
    add_device_argument(p)
    p.add_argument("--save-context", action="store_true",
                   help="also store the prompt generator's visual context (lets `search` re-rank with X-CLIP's prompts)")
    p.add_argument("--save-frame-embeds", action="store_true", help="also store the per-frame embeddings")
    p.add_argument("--shard-size", type=positive_int, default=64, help="videos per committed shard (the unit of resumption)")
    p.add_argument("--no-retry-errors", action="store_true",
                   help="on a rerun, keep the error rows of earlier runs (default: embed those inputs again)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (also transformers' weight-loading bar)")
    p.add_argument("--engine", default="accelerate", choices=["accelerate", "ray"],
                   help="accelerate: this process (or each of torchrun / accelerate launch); ray: Ray Data tasks read "
                        "and decode, a pool of model actors embeds (pip install 'xclip_hf[ray]')")
    p.add_argument("--ray-address", default=None,
                   help="(--engine ray) the cluster: 'auto' (one started with `ray start`), HOST:PORT or "
                        "ray://HOST:PORT (default: as ray.init(): $RAY_ADDRESS, else one `ray start`ed on this "
                        "machine, else a new local one)")
    p.add_argument("--num-actors", type=positive_int, default=None, help="(--engine ray) model actors (default 1)")
    p.add_argument("--cpus-per-actor", type=positive_float, default=None,
                   help="(--engine ray) CPUs per model actor, also its math threads (default 1)")
    p.add_argument("--gpus-per-actor", type=nonnegative_float, default=None,
                   help="(--engine ray) GPUs per model actor, fractions share one (default 0: CPU actors)")


def _failed_rows(dataset, shown: int = 5) -> list[str]:
    """'path (first line of its error)' of the first `shown` files with an error row, and the other paths."""
    import pyarrow.compute as pc

    table = dataset.select_columns(["path", "error"]).with_format("arrow")[:]
    table = table.filter(pc.is_valid(table["error"]))
    errors = dict(zip(table["path"].to_pylist(), table["error"].to_pylist()))  # one entry per file
    return [f"{path} ({one_line(Exception(error))})" if i < shown else path
            for i, (path, error) in enumerate(errors.items())]


def _source_options(args) -> dict:
    """The source options given on the command line (`corpus.sources.open_source`'s keywords)."""
    given = {"dataset": args.dataset, "video_column": args.video_column, "id_column": args.id_column,
             "split": args.split, "streaming": args.streaming or None, "webdataset": args.webdataset,
             "video_key": args.video_key, "url_timeout_s": args.url_timeout}
    return {k: v for k, v in given.items() if v is not None}


def run(args) -> int:
    from ..corpus.embed import run_embedding
    from ..jobs import job_state
    from ..video.windows import check_window_lengths

    if not args.videos and args.list_file is None and args.dataset is None and args.webdataset is None:
        raise UsageError("no input videos: pass video files, directories, globs or URLs, --list FILE, --dataset or "
                         "--webdataset")
    with usage_errors():
        if args.chunk_length is not None:
            check_window_lengths(args.chunk_length, args.stride)
        elif args.stride is not None:
            raise UsageError("--stride needs --chunk-length (window length in seconds)")
    with usage_errors():
        from ..corpus.ray_engine import ray_options

        given = [flag for flag, value in (("--ray-address", args.ray_address), ("--num-actors", args.num_actors),
                                          ("--cpus-per-actor", args.cpus_per_actor),
                                          ("--gpus-per-actor", args.gpus_per_actor)) if value is not None]
        if given and args.engine != "ray":
            raise UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --engine ray")
        ray_options(args.engine, None, args.ray_address, args.num_actors, args.cpus_per_actor, args.gpus_per_actor)
        if args.engine == "ray" and args.device is not None:
            raise UsageError("--device is the accelerate engine's: Ray actors use their GPU with --gpus-per-actor")
    check_model_source(args.model, prog="xclip-hf embed")
    with library_progress(args.no_progress):
        dataset, counts = run_embedding(
            args.videos, args.output, args.model, list_file=args.list_file, chunk_length_s=args.chunk_length,
            stride_length_s=args.stride, num_frames=args.num_frames, batch_size=args.batch_size,
            num_workers=args.num_workers, dtype=args.dtype, save_dtype=args.save_dtype,
            device=None if args.engine == "ray" else resolve_device(args.device, "embed", args.model),
            save_context=args.save_context, save_frame_embeds=args.save_frame_embeds, shard_size=args.shard_size,
            timeout_s=args.timeout, retry_errors=not args.no_retry_errors, progress=not args.no_progress,
            engine=args.engine, ray_address=args.ray_address, num_actors=args.num_actors,
            cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor, **_source_options(args),
        )
    if not job_state().is_main_process:
        return EXIT_FAILURE if counts.failed else EXIT_OK
    print(f"xclip-hf embed: {counts.summary(args.output, len(dataset))}", file=sys.stderr)
    failed = _failed_rows(dataset) if counts.failed else []
    return failed_inputs("embed", failed, counts.done + counts.skipped + counts.failed, "failed (error rows)")
