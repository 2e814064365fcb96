"""Zero-shot protocols, paper Sec. 4.4: split files (mean +- std over splits) and the Kinetics-600 new classes."""

from __future__ import annotations

import os
import re

import numpy as np

from .closed_set import read_annotations, scoring_options
from .labels import resolve_labels
from .metrics import classification_figures, mean_std
from .predictions import predictions_dir
from .report import build_report, find_paper_figures, model_identity, paper_figure, write_report
from .options import EvaluationOptions, check_unused, evaluation_options, text_settings
from .runner import pipeline_for, score_videos

__all__ = ["normalise_class_name", "kinetics600_new_classes", "class_subsets", "evaluate_zero_shot",
           "evaluate_kinetics600_new_classes"]

_QUOTES = re.compile(r"[\"'`\u2018\u2019\u201c\u201d]")
_QUALIFIER = re.compile(r"^(.*?)\s*\(([^()]*)\)$")
SUBSET_SIZE = 160


def normalise_class_name(name: str) -> str:
    """Lower case, underscores as spaces, quotes dropped, whitespace collapsed."""
    text = _QUOTES.sub("", str(name).replace("_", " ").lower())
    return " ".join(text.split())


def _base(normalised: str) -> str | None:
    """The name without a trailing parenthesised qualifier, or None if it has none."""
    match = _QUALIFIER.match(normalised)
    return match.group(1).strip() if match else None


def kinetics600_new_classes(k400_names, k600_names, renames: dict | None = None) -> dict:
    """The K600 classes absent from K400 (K600 order): {"new_classes", "count", "matched", "normalised"}."""
    renames = {normalise_class_name(a): normalise_class_name(b) for a, b in (renames or {}).items()}
    old = {}
    for name in k400_names:
        key = normalise_class_name(name)
        old.setdefault(renames.get(key, key), name)
    matched, notes, unmatched = {}, [], []
    for name in k600_names:
        key = normalise_class_name(name)
        if key in old:
            matched[name] = old[key]
            if name != old[key]:
                rule = "rename" if normalise_class_name(old[key]) != key else "case/underscore/quotes"
                notes.append({"kinetics600": name, "kinetics400": old[key], "rule": rule})
        else:
            unmatched.append(name)
    free_old = {normalise_class_name(v): v for v in old.values() if v not in matched.values()}
    # qualifier pairing: the base of one side equals the other side's name, one to one
    def pair(names_a, table_b):
        index = {}
        for name in names_a:
            base = _base(normalise_class_name(name))
            if base is not None:
                index.setdefault(base, []).append(name)
        return {base: group[0] for base, group in index.items() if len(group) == 1 and base in table_b}
    qualified_new = pair(unmatched, free_old)  # K600 "x (q)" -> K400 "x"
    for base, name in qualified_new.items():
        matched[name] = free_old.pop(base)
        notes.append({"kinetics600": name, "kinetics400": matched[name], "rule": "qualifier added"})
    remaining = {normalise_class_name(n): n for n in unmatched if n not in matched}
    qualified_old = pair(free_old.values(), remaining)  # K400 "x (q)" -> K600 "x"
    for base, old_name in qualified_old.items():
        matched[remaining[base]] = old_name
        notes.append({"kinetics600": remaining[base], "kinetics400": old_name, "rule": "qualifier dropped"})
    new = [name for name in k600_names if name not in matched]
    return {"new_classes": new, "count": len(new), "matched": len(matched), "normalised": notes,
            "exact_name_difference": len(set(k600_names) - set(k400_names))}


def class_subsets(classes: list[str], num_subsets: int = 3, size: int = SUBSET_SIZE, seed: int = 0) -> list[list[str]]:
    """`num_subsets` seeded random subsets of `size` classes (seed, seed+1, ...), each in the input order."""
    if size > len(classes):
        raise ValueError(f"cannot draw {size} classes from {len(classes)}")
    subsets = []
    for i in range(num_subsets):
        chosen = set(np.random.default_rng(seed + i).choice(len(classes), size=size, replace=False).tolist())
        subsets.append([c for k, c in enumerate(classes) if k in chosen])
    return subsets


def _split_name(path) -> str:
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def _headline(figures: dict) -> dict:
    return {k: figures[k] for k in ("top1", "top5", "mean_class_accuracy", "num_videos") if k in figures}


def _summary(per_split: dict) -> dict:
    """Mean +- std over the splits of each top-k figure every split has (top-5 needs 5 classes)."""
    return {m: mean_std([r[m] for r in per_split.values()]) for m in ("top1", "top5")
            if all(m in r for r in per_split.values())}


def _finish(protocol, dataset, pipe, model, settings, results, bad, output_dir, paper_figures):
    identity = model_identity(pipe.model, model if isinstance(model, (str, os.PathLike)) else None)
    settings["num_frames"] = settings.get("num_frames") or identity["num_frames"]
    paper = paper_figure(find_paper_figures(paper_figures), protocol, dataset, identity)
    report = build_report(protocol, settings, identity, results, bad, paper)
    if output_dir is not None:
        report["files"] = write_report(output_dir, report)
    return report


def evaluate_zero_shot(model, split_files, labels, *, options: EvaluationOptions | None = None,
                       **overrides) -> dict:
    """Per-split top-1/top-5 and mean +- std over `split_files`; `options` / `overrides`: `EvaluationOptions`."""
    o = evaluation_options(options, overrides)
    split_files = [split_files] if isinstance(split_files, (str, os.PathLike)) else list(split_files)
    if not split_files:
        raise ValueError("zero-shot needs at least one split file")
    class_names, dataset_key = resolve_labels(labels)
    splits = [(_split_name(f), *read_annotations(f, class_names, o.video_root)) for f in split_files]
    union = list(dict.fromkeys(v for _, videos, _ in splits for v in videos))
    pipe = pipeline_for(model, o)
    job = {"protocol": "zero-shot", "split_files": [os.path.abspath(f) for f in split_files]}
    scored = score_videos(pipe, union, class_names, **scoring_options(o, predictions_dir(o.output_dir), job))
    row = {union[i]: r for i, r in zip(scored.kept, scored.scores)}
    per_split = {}
    for name, videos, refs in splits:
        keep = [j for j, v in enumerate(videos) if v in row]
        if not keep:
            raise ValueError(f"split {name!r}: none of its videos could be evaluated")
        figures = classification_figures(np.stack([row[videos[j]] for j in keep]), np.asarray(refs)[keep], class_names)
        per_split[name] = _headline(figures)
    summary = _summary(per_split)
    settings = {"split_files": [os.fspath(f) for f in split_files], "labels": labels if isinstance(labels, str) else None,
                "dataset": o.dataset or dataset_key, "num_classes": len(class_names), **text_settings(o),
                "views": f"{o.num_temporal_clips}x{o.num_spatial_crops}", "num_frames": o.num_frames,
                "num_videos": len(union)}
    return _finish("zero-shot", o.dataset or dataset_key, pipe, model, settings,
                   {"summary": summary, "splits": per_split}, scored.bad_videos, o.output_dir, o.paper_figures)


def evaluate_kinetics600_new_classes(model, data_file, *, k400_labels="kinetics400", k600_labels="kinetics600",
                                     renames: dict | None = None, subsets: list[list[str]] | None = None,
                                     num_subsets: int = 3, subset_size: int = SUBSET_SIZE, seed: int = 0,
                                     options: EvaluationOptions | None = None, **overrides) -> dict:
    """Zero-shot on the K600 classes absent from K400, over seeded (or given) subsets of their names.

    `data_file` annotates K600 validation videos with K600 ids. With `output_dir`, resumable through
    `output_dir/predictions/subset{i}`. `options` / `overrides`: `EvaluationOptions` (one view; `dataset` kinetics600).
    """
    o = evaluation_options(options, overrides)
    check_unused(o, "zero-shot on the Kinetics-600 new classes", ("num_temporal_clips", "num_spatial_crops"),
                 "one view per video, the paper's protocol")
    dataset = o.dataset or "kinetics600"
    k400, _ = resolve_labels(k400_labels)
    k600, _ = resolve_labels(k600_labels)
    derived = kinetics600_new_classes(k400, k600, renames)
    if subsets is None:
        subsets = class_subsets(derived["new_classes"], num_subsets, min(subset_size, derived["count"]), seed)
    videos, refs = read_annotations(data_file, k600, o.video_root)
    pipe = pipeline_for(model, o)
    per_subset, bad = {}, {}
    for i, subset in enumerate(subsets):
        unknown = sorted(set(subset) - set(derived["new_classes"]))
        if unknown:
            raise ValueError(f"subset {i} names classes that are not new in Kinetics-600: {unknown[:5]}")
        column = {k600.index(name): k for k, name in enumerate(subset)}
        chosen = [(v, column[r]) for v, r in zip(videos, refs) if r in column]
        if not chosen:
            raise ValueError(f"subset {i}: {os.fspath(data_file)!r} has no videos of its classes")
        job = {"protocol": "zero-shot k600-new-classes", "data_file": os.path.abspath(data_file)}
        scored = score_videos(pipe, [v for v, _ in chosen], subset,
                              **scoring_options(o, predictions_dir(o.output_dir, f"subset{i}"), job))
        figures = classification_figures(scored.scores, np.asarray([r for _, r in chosen])[scored.kept], subset)
        per_subset[f"subset{i}"] = _headline(figures)
        bad.update({b["video"]: b for b in scored.bad_videos})
    summary = _summary(per_subset)
    settings = {"data_file": os.fspath(data_file), "dataset": dataset, "mode": "kinetics600-new-classes",
                "num_subsets": len(subsets), "subset_size": len(subsets[0]), "seed": seed, "template": o.template,
                "num_frames": o.num_frames, "new_classes": derived["count"]}
    results = {"summary": summary, "splits": per_subset, "new_classes": derived, "subsets": subsets}
    return _finish("zero-shot", dataset, pipe, model, settings, results, list(bad.values()), o.output_dir,
                   o.paper_figures)
