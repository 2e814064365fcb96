"""`xclip-hf evaluate PROTOCOL ...`: the paper's evaluation protocols with a report (report.json + report.md)."""

from __future__ import annotations

import sys

from .common import (add_device_argument, add_dtype_argument, add_index_argument, add_model_argument,
                     add_num_workers_argument, add_template_arguments, check_model_source, library_progress,
                     nonnegative_float, positive_float, positive_int, resolve_device, template_option, usage_errors)

HELP = "evaluate with the paper's protocols (closed-set, zero-shot, few-shot), retrieval, localisation"


def _common(p, data_help: str, nargs=None) -> None:
    add_model_argument(p)
    p.add_argument("--data", required=True, nargs=nargs, help=data_help)
    p.add_argument("--labels", default=None,
                   help="class names: a shipped list (kinetics400, kinetics600, ucf101, hmdb51) or an id,name csv")
    p.add_argument("--video-root", default=None, help="folder the annotation paths are relative to (default: its folder)")
    p.add_argument("--output", required=True, help="folder for report.json, report.md (and figures)")
    add_template_arguments(p, "class name")
    p.add_argument("--num-frames", type=positive_int, default=None, help="frames per view (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=1,
                   help="chunks per model forward: temporal views (each with its spatial crops), or windows")
    p.add_argument("--on-bad-video", choices=["skip", "raise"], default="skip",
                   help="skip (count and list in the report) or stop at a video that cannot be read")
    p.add_argument("--shard-size", type=positive_int, default=64,
                   help="videos per committed shard of predictions under OUTPUT/predictions (the unit of resumption)")
    add_device_argument(p)
    add_dtype_argument(p)
    p.add_argument("--paper-figures", default=None, help="paper_figures.json (default: the one shipped with xclip_hf)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _views(p, temporal: int = 1, spatial: int = 1) -> None:
    p.add_argument("--num-temporal-clips", type=positive_int, default=temporal, help="temporal views (paper: 4)")
    p.add_argument("--num-spatial-crops", type=int, choices=[1, 3], default=spatial, help="spatial crops (paper: 3)")


def _workers(p) -> None:
    add_num_workers_argument(p)


def add_arguments(c) -> None:
    sub = c.add_subparsers(dest="protocol", required=True)
    p = sub.add_parser("closed-set", help="fully supervised: top-1/top-5, per-class accuracy, confusion matrix (Sec. 4.2)")
    _common(p, "annotation file: X-CLIP 'path label' .txt, or .csv/.json/.jsonl with video,label columns")
    _views(p)
    _workers(p)
    z = sub.add_parser("zero-shot", help="zero-shot: per-split top-1/top-5, mean ± std over splits (Sec. 4.4)")
    _common(z, "one annotation file per test split (UCF-101 / HMDB-51: three); with --k600-new-classes, the "
               "Kinetics-600 validation annotation (K600 ids)", nargs="+")
    _views(z)
    _workers(z)
    k = z.add_argument_group("Kinetics-600 new classes")
    k.add_argument("--k600-new-classes", action="store_true",
                   help="evaluate on the K600 classes absent from K400 (derived from the two label lists)")
    k.add_argument("--k400-labels", default="kinetics400", help="Kinetics-400 list (name or id,name csv)")
    k.add_argument("--k600-labels", default="kinetics600", help="Kinetics-600 list (name or id,name csv)")
    k.add_argument("--renames", default=None, help="csv of 'k400 name,k600 name' pairs for renamed classes")
    k.add_argument("--num-subsets", type=positive_int, default=3, help="seeded subsets of classes (paper: 3)")
    k.add_argument("--subset-size", type=positive_int, default=160, help="classes per subset (paper: 160)")
    k.add_argument("--seed", type=int, default=0, help="seed of the first subset (then seed+1, ...)")
    f = sub.add_parser("few-shot", help="few-shot: K-shot lists + training commands, then top-1 per K (Sec. 4.3)")
    _common(f, "evaluation annotation file (split 1)")
    f.add_argument("--train-file", required=True, help="the full training annotation file K-shot lists are drawn from")
    f.add_argument("--k", type=positive_int, nargs="+", default=[2, 4, 8, 16], help="shots per class (paper: 2 4 8 16)")
    f.add_argument("--seed", type=int, default=0, help="seed of the K-shot draw and of training")
    f.add_argument("--train", action="store_true", help="run the training commands (else: write them, evaluate "
                   "the models already trained under --output)")
    f.add_argument("--script", default=None, help="a training script taking run_video_classification's options "
                   "(default: python -m xclip_hf.training.run_video_classification)")
    _workers(f)
    loc = sub.add_parser("localisation", help="untrimmed videos: frame accuracy and segment mAP@tIoU 0.3/0.5/0.7")
    _common(loc, "segment annotation csv with columns video,start_s,end_s,label")
    loc.add_argument("--chunk-length", type=positive_float, required=True, metavar="SECONDS", help="window length")
    loc.add_argument("--stride", type=positive_float, default=None, metavar="SECONDS", help="hop between windows")
    loc.add_argument("--aggregate", choices=["segmentation", "frames", "segments", "windows"], default="segmentation",
                     help="how windows become segments (the pipeline's aggregate=): segmentation (default): the "
                          "segmentation the windows inside segments explain best; frames: per-frame scores over "
                          "covering windows; segments (or windows): consecutive window top labels merged")
    loc.add_argument("--min-duration", type=nonnegative_float, default=None, metavar="SECONDS",
                     help="shortest segment (default: 0.5 x the window length for segmentation, 0.625 x for frames)")
    r = sub.add_parser("retrieval", help="text->video and video->text R@1/5/10, median/mean rank from embed vectors")
    add_model_argument(r, note="the model the index was made with")
    r.add_argument("--captions", required=True, help="captions file: .csv/.tsv (video,caption) or .json/.jsonl")
    add_index_argument(r, alias="--embeddings", note="one row per video")
    r.add_argument("--video-root", default=None, help="folder the caption paths are relative to")
    r.add_argument("--output", required=True, help="folder for report.json and report.md")
    r.add_argument("--template", default="{}", help='text template, default "{}"')
    r.add_argument("--no-rerank", action="store_true", help="cosine only (no prompt-generator re-rank)")
    r.add_argument("--rerank-candidates", type=positive_int, default=None,
                   help="videos re-ranked per caption, the best by cosine (default: every video)")
    add_device_argument(r)
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _read_renames(path) -> dict:
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        rows = [row for row in csv.reader(f) if row and not row[0].startswith("#")]
    bad = [row for row in rows if len(row) != 2]
    if bad:
        raise ValueError(f"renames file {path!r}: expected 'k400 name,k600 name' rows, got {bad[0]}")
    return {a.strip(): b.strip() for a, b in rows}


def _zero_shot(args, options) -> dict:
    from ..evaluation import zero_shot

    views = dict(num_temporal_clips=args.num_temporal_clips, num_spatial_crops=args.num_spatial_crops)
    if not args.k600_new_classes:
        if args.labels is None:
            raise ValueError("zero-shot needs --labels (a shipped list name or an id,name csv)")
        return zero_shot.evaluate_zero_shot(args.model, args.data, args.labels, options=options)
    if len(args.data) != 1:
        raise ValueError("--k600-new-classes takes one --data file (the Kinetics-600 validation annotation)")
    if views != dict(num_temporal_clips=1, num_spatial_crops=1):
        raise ValueError("--k600-new-classes evaluates one view per video (the paper's protocol)")
    return zero_shot.evaluate_kinetics600_new_classes(
        args.model, args.data[0], k400_labels=args.k400_labels, k600_labels=args.k600_labels,
        renames=_read_renames(args.renames) if args.renames else None, num_subsets=args.num_subsets,
        subset_size=args.subset_size, seed=args.seed, options=options)


def _few_shot(args, options):
    """Write the K-shot lists and commands; train with --train; evaluate the trained models (None: none yet)."""
    import os

    from ..jobs import job_state
    from ..evaluation import few_shot

    if args.labels is None:
        raise ValueError("few-shot needs --labels (a shipped list name or an id,name csv)")
    state = job_state(args.device)
    if args.train and state.num_processes > 1:
        raise ValueError("few-shot --train runs the training commands: start it as one process (each command can "
                         "be launched with torchrun itself); the evaluation then runs under torchrun")
    with state.main_process_first():  # the others write the same seeded lists after it, never at the same time
        plan = few_shot.prepare_few_shot(args.train_file, args.data,
                                         args.labels, args.k, args.output, ["--model_name_or_path", args.model],
                                         seed=args.seed, video_root=args.video_root, script=args.script)
    if state.is_main_process:
        print(f"wrote {len(plan['lists'])} K-shot lists and {plan['script']}", file=sys.stderr)
    if args.train:
        few_shot.run_training(plan["commands"])
    models = {k: d for k, d in plan["models"].items() if os.path.isfile(os.path.join(d, "config.json"))}
    if not models:
        if state.is_main_process:
            print(f"no trained model yet: run {plan['script']} (or pass --train), then rerun this command")
        return None
    return few_shot.evaluate_few_shot(models, args.data, args.labels, options=options,
                                      settings={"k": args.k, "seed": args.seed, "lists": plan["lists"]})


FROM_FLAGS = ("num_temporal_clips", "num_spatial_crops", "num_frames", "batch_size", "on_bad_video",
              "paper_figures", "shard_size", "num_workers")


def _options(args):
    """The shared `EvaluationOptions` from the command line; a flag the protocol's parser lacks keeps the default."""
    from ..evaluation.options import EvaluationOptions

    given = {name: getattr(args, name) for name in FROM_FLAGS if hasattr(args, name)}
    dtype = getattr(args, "dtype", "auto")
    template = template_option(args.template) if isinstance(args.template, list) else args.template
    return EvaluationOptions(output_dir=args.output, video_root=args.video_root, template=template,
                             descriptions=getattr(args, "descriptions", None),
                             device=args.device, dtype=None if dtype == "auto" else dtype,
                             progress=False if args.no_progress else None, **given)


def _summary(report: dict) -> str:
    results = report["results"].get("summary", {})
    parts = []
    for key, value in results.items():
        if isinstance(value, dict) and "mean" in value:
            parts.append(f"{key} {value['mean']:.2f} ± {value['std']:.2f}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.2f}")
    bad = report["bad_videos"]["count"]
    return ", ".join(parts) + (f"; {bad} bad video(s) skipped" if bad else "")


def run(args) -> int:
    from ..evaluation.labels import resolve_labels
    from ..evaluation.predictions import is_main_process

    from ..video.windows import check_window_lengths

    with usage_errors():  # a label list that is neither shipped nor a file is a bad argument (exit status 2)
        for name in ("labels", "k400_labels", "k600_labels"):
            if getattr(args, name, None) is not None:
                resolve_labels(getattr(args, name))
        if args.protocol == "localisation":  # as classify and embed check their windows
            check_window_lengths(args.chunk_length, args.stride)
    check_model_source(args.model)
    args.device = resolve_device(args.device, f"evaluate {args.protocol}", args.model)
    options = _options(args)
    with library_progress(args.no_progress):
        if args.protocol == "closed-set":
            from ..evaluation.closed_set import evaluate_closed_set

            if args.labels is None:
                raise ValueError("closed-set needs --labels (a shipped list name or an id,name csv)")
            report = evaluate_closed_set(args.model, args.data, args.labels, options=options)
        elif args.protocol == "zero-shot":
            report = _zero_shot(args, options)
        elif args.protocol == "few-shot":
            report = _few_shot(args, options)
            if report is None:
                return 0
        elif args.protocol == "localisation":
            from ..evaluation.localisation import evaluate_localisation

            report = evaluate_localisation(args.model, args.data, args.labels, chunk_length_s=args.chunk_length,
                                           stride_length_s=args.stride, aggregate=args.aggregate,
                                           min_duration_s=args.min_duration, options=options)
        elif args.protocol == "retrieval":
            from ..evaluation.retrieval import evaluate_retrieval

            report = evaluate_retrieval(args.model, args.captions, args.index, rerank=not args.no_rerank,
                                        rerank_candidates=args.rerank_candidates, options=options)
        else:  # pragma: no cover - argparse restricts the choices
            raise ValueError(f"unknown protocol {args.protocol!r}")
    if is_main_process():
        print(f"{args.protocol}: {_summary(report)}")
        print(f"wrote {report['files']['json']} and {report['files']['md']}", file=sys.stderr)
    return 0
