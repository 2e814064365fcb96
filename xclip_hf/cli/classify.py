"""`xclip-hf classify VIDEO... --labels ... --model M`: zero-shot classification (a timeline with `--chunk-length`)."""

from __future__ import annotations

import argparse
import json
import sys

from .common import (CommandFailure, UsageError, add_device_argument, add_dtype_argument, add_model_argument,
                     add_num_workers_argument, add_template_arguments, add_weight_ensembling_arguments,
                     check_model_source, check_weight_ensembling, failed_inputs, library_progress, positive_float,
                     positive_int, read_labels, resolve_device, template_option, usage_errors, writing)

HELP = "zero-shot classification of video files against free-form labels"


def add_arguments(c) -> None:
    """Arguments of `classify` (no heavy import here: `--help` must answer at once)."""
    c.add_argument("videos", nargs="+", help="video files (paths or http(s) URLs)")
    group = c.add_mutually_exclusive_group(required=True)
    group.add_argument("--labels", help='comma-separated candidate labels, e.g. "running,swimming,cooking"')
    group.add_argument("--labels-file", help="a text file with one candidate label per line (blank lines ignored)")
    add_model_argument(c)
    c.add_argument("--top-k", type=positive_int, default=None, help="print only the K best labels per video")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_template_arguments(c)
    c.add_argument("--num-temporal-clips", type=positive_int, default=1, help="temporal views averaged per video (paper: 4)")
    c.add_argument("--num-spatial-crops", type=int, choices=(1, 3), default=1, help="spatial crops averaged per video (paper: 3)")
    c.add_argument("--batch-size", type=positive_int, default=1, help="videos per model forward")
    add_device_argument(c)
    add_dtype_argument(c)
    add_num_workers_argument(c)
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    c.add_argument("--compile", action="store_true",
                   help="torch.compile the video forward: faster per video after a one-off warm-up (minutes for "
                        "B/32 on a CPU); worth it for many videos")
    c.add_argument("--token-merging-ratio", type=merging_ratio, default=None, metavar="R",
                   help="merge this fraction of each frame's patch tokens in every layer (token merging, in [0, 1): "
                        "faster, approximate; default: the model config's, 0 = off); torch models only")
    c.add_argument("--num-frames", type=positive_int, default=None,
                   help="frames per clip or window (default: the model's; another count resamples the MIT's "
                        "temporal position embedding)")
    c.add_argument("--decode-mode", choices=["exact", "keyframes"], default=None,
                   help="exact: the sampled frames (default, unless the model's video processor config says "
                        "otherwise); keyframes: the nearest key frame where one lies within half the spacing of the "
                        "sampled frames (approximate, faster)")
    add_weight_ensembling_arguments(c)
    o = c.add_argument_group("open set and multi-label (a file of `xclip-hf calibrate`)")
    o.add_argument("--calibration", default=None, metavar="JSON",
                   help="answer 'unknown' when no label clears the calibrated threshold (split conformal: the true "
                        "label of a known-class video is in the prediction set with probability >= 1 - eps); the "
                        "file must be fitted for this model, these labels, template, views and frames")
    o.add_argument("--multi-label", action="store_true",
                   help="with --calibration: every label whose score clears its own calibrated threshold (may be none)")
    w = c.add_argument_group("untrimmed videos (windows)")
    w.add_argument("--chunk-length", type=positive_float, default=None, metavar="SECONDS",
                   help="classify windows of this many seconds and print a timeline")
    w.add_argument("--stride", type=positive_float, default=None, metavar="SECONDS",
                   help="hop between windows in seconds (default: the window length)")
    w.add_argument("--segments", action="store_true",
                   help="print segments instead of windows: the segmentation the windows wholly inside segments "
                        "explain best (the pipeline's aggregate='segmentation')")
    w.add_argument("--plot", default=None, metavar="PNG",
                   help="save each label's probability over time (one panel per video) to this PNG")


def merging_ratio(text: str) -> float:
    """argparse type: a number in [0, 1) (the token-merging ratio)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _format_table(path: str, predictions: list[dict]) -> str:
    """A readable block per video: rank, label, score."""
    width = max(len(p["label"]) for p in predictions) if predictions else 0
    lines = [path]
    for rank, p in enumerate(predictions, 1):
        lines.append(f"  {rank:>3}  {p['label']:<{width}}  {p['score']:.4f}")
    return "\n".join(lines)


def _format_calibrated(path: str, answer: dict) -> str:
    """A readable block per video for `--calibration`: the answer (or the labels that are on), then every score."""
    if "prediction_set" in answer:
        head = (f"  answer: {answer['label']}" if answer["prediction_set"] else
                f"  answer: unknown (no label scores >= {answer['threshold']:.4f})")
        lines = [path, head + (f"  prediction set: {', '.join(answer['prediction_set'])}"
                               if answer["prediction_set"] else "")]
        rows = [(p["label"], f"{p['score']:.4f}") for p in answer["scores"]]
    else:
        lines = [path, f"  labels: {', '.join(answer['labels']) or 'none'}"]
        rows = [(p["label"], f"{p['score']:.4f} {'>=' if p['decision'] else '< '} {p['threshold']:.4f}")
                for p in answer["scores"]]
    width = max(len(label) for label, _ in rows) if rows else 0
    lines += [f"  {rank:>3}  {label:<{width}}  {text}" for rank, (label, text) in enumerate(rows, 1)]
    return "\n".join(lines)


def _format_timeline(path: str, rows: list[dict], segments: bool) -> str:
    """A readable block per video: start-end, top label, score (one row per window or per segment)."""
    lines = [path]
    for row in rows:
        if segments:
            start, end, label, score = row["start_s"], row["end_s"], row["label"], row["score"]
        else:
            (start, end), label, score = row["timestamp"], row["labels"][0]["label"], row["labels"][0]["score"]
        lines.append(f"  {start:8.2f} - {end:8.2f} s  {score:.4f}  {label}")
    return "\n".join(lines)


def _check_arguments(args, labels) -> None:
    """Reject labels, template and window options that make no sense, before loading anything (`UsageError`)."""
    from ..models.text_features import build_label_set
    from ..video.windows import check_window_lengths

    check_weight_ensembling(args)
    with usage_errors():
        build_label_set(labels, args.template, descriptions=args.descriptions)
        if args.multi_label and args.calibration is None:
            raise UsageError("--multi-label needs --calibration (per-label thresholds from `xclip-hf calibrate`)")
        if args.calibration is not None and args.chunk_length is not None:
            raise UsageError("--calibration applies to whole videos (the scores it was fitted on), not --chunk-length")
        if args.chunk_length is None:
            given = [flag for flag, value in (("--stride", args.stride), ("--segments", args.segments),
                                              ("--plot", args.plot)) if value]
            if given:
                raise UsageError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --chunk-length (window "
                                 "length in seconds)")
            return
        check_window_lengths(args.chunk_length, args.stride)
        if args.num_temporal_clips != 1:
            raise UsageError("--num-temporal-clips does not apply to windows (each window is one clip); use --stride")


def run_windows(args, pipe, labels) -> int:
    """`--chunk-length`: a timeline per video (windows or segments), optional JSON and PNG."""
    from ..pipelines.failures import each_video
    from ..pipelines.segments import timeline_segments

    call = dict(candidate_labels=labels, hypothesis_template=args.template,
                class_descriptions=args.descriptions, num_frames=args.num_frames,
                num_spatial_crops=args.num_spatial_crops, chunk_length_s=args.chunk_length,
                stride_length_s=args.stride, return_timestamps=True, batch_size=args.batch_size,
                decode_mode=args.decode_mode,
                num_workers=args.num_workers, progress=False if args.no_progress else None)
    results, timelines, failures = [], {}, []
    for path, windows, err in each_video(lambda video: pipe(video, **call), args.videos, errors=Exception):
        if err is not None:
            failures.append(path)
            results.append({"video": path, "error": f"{type(err).__name__}: {err}"})
            if not args.json:
                print(f"{path}\n  error: {err}", flush=True)
            continue
        timelines[path] = windows
        rows = timeline_segments(windows) if args.segments else [
            {"timestamp": w["timestamp"], "labels": w["labels"][:args.top_k] if args.top_k else w["labels"]}
            for w in windows]
        results.append({"video": path, "segments" if args.segments else "windows": rows})
        if not args.json:
            print(_format_timeline(path, rows, args.segments), flush=True)
    if args.plot and timelines:
        from ..pipelines.timeline import save_timeline

        stride = args.stride if args.stride is not None else args.chunk_length
        with writing(args.plot):
            save_timeline(args.plot, timelines, args.chunk_length, stride)
        print(f"saved {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    return failed_inputs("classify", failures, len(args.videos), "could not be classified")


def check_compile(model: str, compile: bool, token_merging_ratio: float | None = None,
                  alpha: float | None = None) -> None:
    """`--compile` / `--token-merging-ratio` / `--alpha` apply to torch models, not to a folder of graphs written by
    `xclip-hf export-onnx` (`UsageError`)."""
    from ..deploy.manifest import is_export_dir

    if alpha is not None and is_export_dir(model):
        raise UsageError(f"--alpha applies to torch models; {model!r} holds exported graphs (blend the torch model "
                         "with XClipModel.interpolate_weights, save it, then export it)")
    if compile and is_export_dir(model):
        raise UsageError(f"--compile applies to torch models; {model!r} holds exported graphs")
    if token_merging_ratio is not None and is_export_dir(model):
        raise UsageError(f"--token-merging-ratio applies to torch models; {model!r} holds exported graphs (their "
                         "video graph has the ratio of the config they were exported with)")


def ensembled_model(args):
    """`--model` as given, or loaded and blended with `--clip-source` at `--alpha` (weight-space ensembling)."""
    if args.alpha is None:
        return args.model
    from ..models.loading import load_model

    return load_model(args.model).interpolate_weights(args.clip_source, args.alpha)


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..pipelines.failures import batch_then_each
    from ..pipelines.video_inputs import is_url
    from ..pipelines.zero_shot_video_classification import build_pipeline
    from ..video.reader import check_video_path

    labels = read_labels(args.labels, args.labels_file)
    args.template = template_option(args.template)
    _check_arguments(args, labels)
    unreadable = []
    for video in args.videos:  # every path checked before the model loads
        try:
            is_url(video) or check_video_path(video)
        except ValueError as err:
            unreadable.append(str(err))
    if unreadable:
        raise CommandFailure("; ".join(unreadable))
    if args.calibration is not None:  # a missing or malformed file fails before the model loads
        from ..pipelines.calibration import load_calibration

        load_calibration(args.calibration)
    check_model_source(args.model)
    check_compile(args.model, args.compile, args.token_merging_ratio, args.alpha)
    with library_progress(args.no_progress):
        pipe = build_pipeline(ensembled_model(args), device=resolve_device(args.device, "classify", args.model),
                              dtype=args.dtype, compile=args.compile, token_merging_ratio=args.token_merging_ratio)
    call = dict(candidate_labels=labels, hypothesis_template=args.template,
                class_descriptions=args.descriptions, top_k=args.top_k,
                num_temporal_clips=args.num_temporal_clips, num_spatial_crops=args.num_spatial_crops,
                num_frames=args.num_frames, decode_mode=args.decode_mode)
    with usage_errors():  # labels (as the model's tokenizer reads them) and options, before any video is read
        pipe([], **call)  # an empty batch: checks the labels and options, reads no video
    if args.calibration is not None:  # a file fitted for another model or labels: a failure naming it (status 1)
        call.update(calibration=args.calibration, multi_label=args.multi_label)
        pipe([], **call)
    if args.chunk_length is not None:
        return run_windows(args, pipe, labels)
    results, failures = [], []
    chunk = args.batch_size
    bar = tqdm(total=len(args.videos), unit="video", desc="classifying", disable=args.no_progress or None,
               file=sys.stderr)
    for start in range(0, len(args.videos), chunk):
        paths = args.videos[start:start + chunk]
        scored = batch_then_each(lambda videos: pipe(videos, batch_size=len(videos), num_workers=args.num_workers,
                                                     **call),
                                 lambda video: pipe(video, **call), paths, errors=Exception, retry_one=True)
        for p, output, err in scored:  # a failed batch was retried file by file: the others are kept
            if err is None:
                results.append({"video": p, "predictions": output})
            else:
                failures.append(p)
                results.append({"video": p, "error": f"{type(err).__name__}: {err}"})
        bar.update(len(paths))
        if not args.json:
            for r in results[-len(paths):]:
                text = (f"{r['video']}\n  error: {r['error']}" if "predictions" not in r else
                        _format_calibrated(r["video"], r["predictions"]) if args.calibration is not None else
                        _format_table(r["video"], r["predictions"]))
                bar.write(text + "\n", file=sys.stdout)
    bar.close()
    if args.json:
        print(json.dumps(results, indent=2))
    return failed_inputs("classify", failures, len(args.videos), "could not be classified")
