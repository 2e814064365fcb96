"""Closed-set (fully supervised) evaluation, paper Sec. 4.2: multi-view top-1/top-5, per-class accuracy, confusion."""

from __future__ import annotations

import os

import numpy as np

from ..data.annotations import read_annotation_file, read_table_file
from .labels import resolve_labels
from .metrics import classification_figures, save_confusion_png
from .predictions import is_main_process, predictions_dir
from .report import build_report, find_paper_figures, model_identity, paper_figure, write_report
from .options import EvaluationOptions, evaluation_options, text_settings
from .runner import pipeline_for, score_videos

__all__ = ["read_annotations", "scoring_options", "evaluate_classification", "evaluate_closed_set"]


def read_annotations(data_file, class_names: list[str], video_root=None) -> tuple[list[str], list[int]]:
    """(absolute video paths, class ids) from an X-CLIP `path label` .txt or a CSV/JSON(L) table (ids or names)."""
    if os.fspath(data_file).lower().endswith(".txt"):
        return read_annotation_file(data_file, class_names, video_root)
    videos, references, _ = read_table_file(data_file, class_names, video_root=video_root)
    return videos, references


def evaluate_classification(pipe, videos: list[str], references: list[int], class_names: list[str], **options) -> dict:
    """Score `videos` with `options`; figures over the readable ones: {"figures", "scores", "kept", "bad_videos"}."""
    scored = score_videos(pipe, videos, class_names, **options)
    refs = np.asarray(references, dtype=np.int64)[scored.kept]
    figures = classification_figures(scored.scores, refs, class_names)
    return {"figures": figures, "scores": scored.scores, "kept": scored.kept, "bad_videos": scored.bad_videos}


def scoring_options(o, predictions, job: dict) -> dict:
    """`score_videos`' keyword arguments from the shared options `o`, committing to `predictions` with `job`."""
    return dict(num_temporal_clips=o.num_temporal_clips, num_spatial_crops=o.num_spatial_crops,
                num_frames=o.num_frames, template=o.template, descriptions=o.descriptions, batch_size=o.batch_size,
                on_bad_video=o.on_bad_video, progress=o.progress, predictions_dir=predictions,
                shard_size=o.shard_size, num_workers=o.num_workers, job_settings=job)


def evaluate_closed_set(model, data_file, labels, *, options: EvaluationOptions | None = None, **overrides) -> dict:
    """Run the closed-set protocol; returns the report (report.json/.md and confusion.png in `output_dir`).

    `labels`: a shipped list name (`kinetics400`, ...), an `id,name` csv, or a list of names. `options` / `overrides`:
    the shared `EvaluationOptions`. With `output_dir`, predictions are committed every `shard_size` videos under
    `output_dir/predictions` and a rerun resumes.
    """
    o = evaluation_options(options, overrides)
    output_dir, num_temporal_clips, num_spatial_crops = o.output_dir, o.num_temporal_clips, o.num_spatial_crops
    class_names, dataset_key = resolve_labels(labels)
    dataset = o.dataset or dataset_key
    videos, references = read_annotations(data_file, class_names, o.video_root)
    pipe = pipeline_for(model, o)
    job = {"protocol": "closed-set", "data_file": os.path.abspath(data_file)}
    out = evaluate_classification(pipe, videos, references, class_names,
                                  **scoring_options(o, predictions_dir(output_dir), job))
    identity = model_identity(pipe.model, model if isinstance(model, (str, os.PathLike)) else None)
    settings = {"data_file": os.fspath(data_file), "labels": labels if isinstance(labels, str) else None,
                "dataset": dataset, "num_classes": len(class_names), "views": f"{num_temporal_clips}x{num_spatial_crops}",
                "num_temporal_clips": num_temporal_clips, "num_spatial_crops": num_spatial_crops,
                "num_frames": o.num_frames or identity["num_frames"], **text_settings(o), "num_videos": len(videos)}
    results = {"summary": {k: v for k, v in out["figures"].items() if k not in ("per_class_accuracy", "confusion_matrix")},
               "per_class_accuracy": out["figures"]["per_class_accuracy"],
               "confusion_matrix": out["figures"]["confusion_matrix"], "class_names": class_names,
               "predictions": [{"video": videos[i], "label": int(references[i]), "predicted": int(row.argmax())}
                               for i, row in zip(out["kept"], out["scores"])]}
    paper = paper_figure(find_paper_figures(o.paper_figures), "closed-set", dataset, identity)
    report = build_report("closed-set", settings, identity, results, out["bad_videos"], paper)
    if output_dir is not None:
        report["files"] = write_report(output_dir, report)
        png = os.path.join(output_dir, "confusion.png")
        report["files"]["confusion_png"] = (save_confusion_png(png, results["confusion_matrix"], class_names)
                                            if is_main_process() else png)
    return report
