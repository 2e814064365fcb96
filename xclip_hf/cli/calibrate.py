"""`xclip-hf calibrate --data held_out.txt --labels L --model M --output cal.json`: open-set and multi-label
thresholds (split conformal, `evaluation/calibration.py`) for `classify --calibration`."""

from __future__ import annotations

import argparse
import sys

from .common import (add_device_argument, add_dtype_argument, add_model_argument, add_num_workers_argument,
                     add_template_arguments, check_model_source, library_progress, positive_int, resolve_device,
                     template_option, usage_errors, writing)

HELP = "fit open-set ('unknown') and multi-label thresholds on a labelled held-out list (split conformal)"


def miscoverage(text: str) -> float:
    """argparse type: eps, a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def add_arguments(c) -> None:
    """Arguments of `calibrate` (the data, labels and scoring flags spelled as `evaluate`'s)."""
    add_model_argument(c)
    c.add_argument("--data", required=True, help="labelled held-out annotation file (not trained on): X-CLIP "
                   "'path label' .txt, or .csv/.json/.jsonl with video,label columns")
    c.add_argument("--labels", required=True,
                   help="class names: a shipped list (kinetics400, ...) or an id,name csv; `classify` must be given "
                        "the same labels")
    c.add_argument("--output", required=True, metavar="JSON", help="the calibration file to write")
    c.add_argument("--eps", type=miscoverage, default=0.1,
                   help="allowed miscoverage: the true label is in the prediction set of a known-class video with "
                        "probability >= 1 - eps (default %(default)s)")
    c.add_argument("--video-root", default=None,
                   help="folder the annotation paths are relative to (default: its folder)")
    add_template_arguments(c)
    c.add_argument("--num-frames", type=positive_int, default=None, help="frames per view (default: the model's)")
    c.add_argument("--num-temporal-clips", type=positive_int, default=1, help="temporal views (paper: 4)")
    c.add_argument("--num-spatial-crops", type=int, choices=[1, 3], default=1, help="spatial crops (paper: 3)")
    c.add_argument("--batch-size", type=positive_int, default=1, help="chunks per model forward")
    c.add_argument("--on-bad-video", choices=["skip", "raise"], default="skip",
                   help="skip (listed in the file) or stop at a video that cannot be read")
    add_device_argument(c)
    add_dtype_argument(c)
    add_num_workers_argument(c)
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _summary(record: dict) -> str:
    """One line: n, eps, the open-set score threshold, the per-label ones (or how many are missing)."""
    per_label = record["label_thresholds"]
    missing = [label for label, entry in per_label.items() if entry["nonconformity"] is None]
    line = (f"calibrate: n={record['n']} videos, eps={record['eps']}: a label is in the prediction set when its "
            f"score >= {record['threshold']['score']:.4f}")
    if missing:
        return line + f"; no per-label threshold for {len(missing)} label(s) (too few videos): {', '.join(missing)}"
    return line + "; per label: " + ", ".join(f"{label} >= {entry['score']:.4f}" for label, entry in per_label.items())


def run(args) -> int:
    from ..evaluation.calibration import calibrate, check_eps, write_calibration
    from ..evaluation.labels import resolve_labels
    from ..evaluation.options import EvaluationOptions

    from ..models.text_features import build_label_set

    with usage_errors():
        check_eps(args.eps)
        build_label_set(resolve_labels(args.labels)[0], template_option(args.template), descriptions=args.descriptions)
    check_model_source(args.model)
    device = resolve_device(args.device, "calibrate", args.model)
    options = EvaluationOptions(video_root=args.video_root, template=template_option(args.template),
                                descriptions=args.descriptions, num_frames=args.num_frames,
                                num_temporal_clips=args.num_temporal_clips, num_spatial_crops=args.num_spatial_crops,
                                batch_size=args.batch_size, on_bad_video=args.on_bad_video, device=device,
                                dtype=None if args.dtype == "auto" else args.dtype, num_workers=args.num_workers,
                                progress=False if args.no_progress else None)
    with library_progress(args.no_progress):
        record = calibrate(args.model, args.data, args.labels, eps=args.eps, options=options)
    with writing(args.output):
        write_calibration(args.output, record)
    print(_summary(record))
    if record["bad_videos"]:
        print(f"calibrate: {len(record['bad_videos'])} bad video(s) skipped (listed in {args.output})",
              file=sys.stderr)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
