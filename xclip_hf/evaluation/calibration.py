"""`xclip-hf calibrate`: split conformal thresholds fitted on a labelled held-out list, for the pipeline's
``calibration=`` (`pipelines/calibration.py`): q = the ceil((n+1)(1-eps))-th smallest 1 - s_i[y_i], so that
P(y in {k : 1 - s_k <= q}) >= 1 - eps for exchangeable videos; per label, the same over that label's videos alone."""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction

import numpy as np

from .closed_set import read_annotations, scoring_options
from .labels import resolve_labels
from .options import EvaluationOptions, check_unused, evaluation_options
from .runner import pipeline_for, score_videos

__all__ = ["check_eps", "conformal_rank", "minimum_calibration_size", "nonconformity_scores", "conformal_quantile",
           "label_thresholds", "fit_calibration", "calibrate", "calibration_record", "write_calibration"]

OPEN_SET_METHOD = "split conformal: nonconformity 1 - score of the true label, quantile rank ceil((n+1)(1-eps))"
MULTI_LABEL_METHOD = "label-conditional split conformal: the same quantile over the videos of each label alone"


def check_eps(eps) -> float:
    """`eps` as a float in (0, 1) (the allowed miscoverage), else a ValueError naming it."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 < eps < 1:
        raise ValueError(f"eps must be a number in (0, 1) (the allowed miscoverage, e.g. 0.1), got {eps!r}")
    return float(eps)


def _one_minus(eps: float) -> Fraction:
    """1 - eps exactly as written (0.1 is 1/10, not the nearest double), so that the rank has no rounding error."""
    return 1 - Fraction(repr(float(eps)))


def minimum_calibration_size(eps: float) -> int:
    """The smallest n with ceil((n+1)(1-eps)) <= n, i.e. n >= (1-eps)/eps."""
    return math.ceil(_one_minus(check_eps(eps)) / (1 - _one_minus(eps)))


def conformal_rank(n: int, eps: float, what: str = "calibration videos") -> int:
    """k = ceil((n+1)(1-eps)), the rank of the split-conformal quantile; ValueError when k > n (n too small)."""
    k = math.ceil((n + 1) * _one_minus(check_eps(eps)))
    if k > n:
        raise ValueError(f"eps={eps} needs at least {minimum_calibration_size(eps)} {what}, got {n} "
                         f"(ceil((n+1)(1-eps)) = {k} > n = {n}): use more videos or a larger eps")
    return k


def nonconformity_scores(scores, references) -> np.ndarray:
    """a_i = 1 - scores[i, references[i]] (float64), the nonconformity of each video's true label."""
    scores = np.asarray(scores, dtype=np.float64)
    references = np.asarray(references, dtype=np.int64)
    if scores.ndim != 2 or references.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (N, K) and references (N,), got {scores.shape} and {references.shape}")
    if references.size and (references.min() < 0 or references.max() >= scores.shape[1]):
        raise ValueError(f"references must be class ids in [0, {scores.shape[1]}), got {sorted(set(references))}")
    return 1.0 - scores[np.arange(len(references)), references]


def conformal_quantile(nonconformity, eps: float, what: str = "calibration videos") -> float:
    """q = the ceil((n+1)(1-eps))-th smallest nonconformity score (the ceil((n+1)(1-eps))/n empirical quantile)."""
    values = np.sort(np.asarray(nonconformity, dtype=np.float64).reshape(-1))
    return float(values[conformal_rank(len(values), eps, what) - 1])


def label_thresholds(scores, references, labels, eps: float) -> dict:
    """Per label: ``{"n", "nonconformity": q_label or None, "score": 1 - q_label or None, "reason"}`` from the
    videos annotated with it (None with the reason when they are too few for `eps`)."""
    nonconformity = nonconformity_scores(scores, references)
    references = np.asarray(references, dtype=np.int64)
    out = {}
    for k, label in enumerate(labels):
        mine = nonconformity[references == k]
        try:
            q = conformal_quantile(mine, eps, f"calibration videos of {label!r}")
        except ValueError as err:
            out[label] = {"n": int(mine.size), "nonconformity": None, "score": None, "reason": str(err)}
        else:
            out[label] = {"n": int(mine.size), "nonconformity": q, "score": 1.0 - q, "reason": None}
    return out


def fit_calibration(scores, references, labels, eps: float) -> dict:
    """The fitted part of a calibration record: eps, n, the open-set threshold and the per-label thresholds."""
    labels = list(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores must be (N, {len(labels)}) for {len(labels)} labels, got {scores.shape}")
    nonconformity = nonconformity_scores(scores, references)
    n = len(nonconformity)
    q = conformal_quantile(nonconformity, eps)
    return {"method": {"open_set": OPEN_SET_METHOD, "multi_label": MULTI_LABEL_METHOD}, "eps": check_eps(eps),
            "n": n, "threshold": {"nonconformity": q, "score": 1.0 - q, "rank": conformal_rank(n, eps)},
            "label_thresholds": label_thresholds(scores, references, labels, eps)}


def calibrate(model, data_file, labels, *, eps: float = 0.1, options: EvaluationOptions | None = None,
              **overrides) -> dict:
    """Score the labelled held-out list `data_file` (the formats `evaluate` reads) and fit the thresholds for `eps`;
    returns the calibration record (`write_calibration` saves it). `options` / `overrides`: `EvaluationOptions`."""
    check_eps(eps)
    o = evaluation_options(options, overrides)
    check_unused(o, "calibrate", ("output_dir", "paper_figures", "dataset"), "it writes one calibration file")
    class_names, _ = resolve_labels(labels)
    videos, references = read_annotations(data_file, class_names, o.video_root)
    conformal_rank(len(videos), eps, f"videos in {os.fspath(data_file)!r}")  # refuse before scoring
    pipe = pipeline_for(model, o)
    scored = score_videos(pipe, videos, class_names,
                          **scoring_options(o, None, {"protocol": "calibrate", "data_file": os.fspath(data_file)}))
    fitted = fit_calibration(scored.scores, np.asarray(references)[scored.kept], class_names, eps)
    return calibration_record(pipe, fitted, class_names, template=o.template, descriptions=o.descriptions,
                              num_temporal_clips=o.num_temporal_clips, num_spatial_crops=o.num_spatial_crops,
                              num_frames=o.num_frames, data_file=os.path.abspath(data_file),
                              bad_videos=scored.bad_videos)


def calibration_record(pipe, fitted: dict, labels, *, template="{}", descriptions=None, num_temporal_clips: int = 1,
                       num_spatial_crops: int = 1, num_frames: int | None = None, data_file=None,
                       bad_videos=()) -> dict:
    """The record the pipeline's ``calibration=`` reads: `fitted` (`fit_calibration`) with what it holds for: the
    pipeline's model fingerprint, the labels, their texts (template(s), descriptions) and scoring (views, frames)."""
    from ..jobs.identity import model_fingerprint
    from ..models.text_features import build_label_set
    from ..pipelines.calibration import FORMAT, label_texts
    from ..version import package_version

    num_frames = num_frames or int(pipe.model.config.vision_config.num_frames)
    label_set = build_label_set(list(labels), template, descriptions=descriptions)
    described = None if descriptions is None else (
        os.path.abspath(descriptions) if isinstance(descriptions, (str, os.PathLike)) else "(a mapping)")
    return {"format": FORMAT, **fitted, "model_fingerprint": model_fingerprint(pipe.model, whole=True),
            "model_source": str(getattr(pipe.model, "name_or_path", "") or ""), "labels": list(labels),
            "template": template if isinstance(template, str) else list(template), "descriptions": described,
            "texts": label_texts(label_set), "scoring": {"num_temporal_clips": num_temporal_clips,
                                              "num_spatial_crops": num_spatial_crops, "num_frames": num_frames},
            "data_file": data_file, "bad_videos": list(bad_videos), "code_version": package_version()}


def write_calibration(path, record: dict) -> str:
    """Write `record` as JSON to `path` (its folder made if needed); returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    return path
