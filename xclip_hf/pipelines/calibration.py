"""Calibrated answers from a file of `xclip-hf calibrate` (`evaluation/calibration.py`): the open-set prediction set
{k : 1 - s_k <= q} (the top label, or "unknown" when empty) and multi-label decisions 1 - s_k <= q_k; a file fitted
for other scores (model, labels, texts, views, frames) is refused."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch

__all__ = ["FORMAT", "UNKNOWN", "Calibration", "load_calibration", "label_texts", "check_calibration", "clears",
           "check_open_set_labels", "open_set_result", "check_multi_label", "multi_label_result"]

FORMAT = "xclip-hf-calibration-v1"
UNKNOWN = "unknown"
REQUIRED = ("format", "method", "eps", "n", "model_fingerprint", "labels", "template", "texts", "scoring",
            "threshold", "label_thresholds")


@dataclass(frozen=True)
class Calibration:
    """A loaded calibration record (the JSON object `calibrate` writes) and where it came from, for messages."""

    record: dict
    source: str

    @property
    def labels(self) -> list[str]:
        """The labels the thresholds were fitted for."""
        return list(self.record["labels"])

    @property
    def quantile(self) -> float:
        """The open-set nonconformity threshold q (a label is in the set when 1 - score <= q)."""
        return float(self.record["threshold"]["nonconformity"])

    def label_quantile(self, label: str) -> float | None:
        """The multi-label nonconformity threshold q_k of `label` (None: too few calibration videos of it)."""
        return self.record["label_thresholds"][label]["nonconformity"]


def _bad(source: str, why: str) -> ValueError:
    """The error for a malformed calibration record from `source`."""
    return ValueError(f"calibration {source}: {why} (write one with `xclip-hf calibrate`)")


def _check_quantile(value, source: str, where: str, allow_none: bool = False) -> None:
    """ValueError unless `value` is a number in [0, 1] (or None with `allow_none`)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise _bad(source, f"{where} must be a number in [0, 1], got {value!r}")


def _check_record(record, source: str) -> None:
    """ValueError naming `source` when `record` is not a calibration record of this format."""
    if not isinstance(record, dict):
        raise _bad(source, f"expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise _bad(source, f"missing {', '.join(map(repr, missing))}")
    if record["format"] != FORMAT:
        raise _bad(source, f"format {record['format']!r} is not {FORMAT!r}")
    labels = record["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise _bad(source, f"'labels' must be a non-empty list of strings, got {labels!r}")
    _check_quantile(record["threshold"].get("nonconformity") if isinstance(record["threshold"], dict) else None,
                    source, "threshold.nonconformity")
    per_label = record["label_thresholds"]
    if not isinstance(per_label, dict) or sorted(per_label) != sorted(labels):
        raise _bad(source, "'label_thresholds' must hold one entry per label")
    for label, entry in per_label.items():
        _check_quantile(entry.get("nonconformity") if isinstance(entry, dict) else -1, source,
                        f"label_thresholds[{label!r}].nonconformity", allow_none=True)


def load_calibration(source) -> Calibration:
    """A `Calibration` from a JSON file path, a record dict or a `Calibration`, its fields checked."""
    if isinstance(source, Calibration):
        return source
    if isinstance(source, dict):
        _check_record(source, "record")
        return Calibration(source, "record")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"calibration must be a JSON file path or a record dict, got {type(source).__name__}")
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ValueError(f"calibration file {path!r} does not exist (write one with `xclip-hf calibrate`)")
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _bad(repr(path), f"cannot be read as JSON ({type(err).__name__}: {err})") from err
    _check_record(record, repr(path))
    return Calibration(record, repr(path))


def _template_value(template):
    """A template as JSON stores it (a list of templates compares equal to the same tuple)."""
    return list(template) if isinstance(template, (list, tuple)) else template


def label_texts(label_set) -> dict:
    """Label -> the texts it is encoded from (template(s) applied to its name or its descriptions' phrasings)."""
    return {label: list(texts) for label, texts in zip(label_set.labels, label_set.grouped(label_set.texts))}


def check_calibration(calibration: Calibration, *, fingerprint: str, label_set, scoring: dict) -> None:
    """ValueError naming both sides when `calibration` was fitted for another model (fingerprint), label set,
    template, class texts (descriptions) or scoring (views, frames): its thresholds hold only for those scores."""
    from ..jobs.identity import short

    record, source = calibration.record, calibration.source
    if record["model_fingerprint"] != fingerprint:
        raise ValueError(f"calibration {source} was fitted for model {short(record['model_fingerprint'])} "
                         f"({record.get('model_source') or 'source not recorded'}); this pipeline's model is "
                         f"{short(fingerprint)}: calibrate this model (`xclip-hf calibrate`)")
    labels = list(label_set.labels)
    if sorted(record["labels"]) != sorted(labels):
        raise ValueError(f"calibration {source} was fitted for labels {record['labels']}; the call has "
                         f"{labels}: pass the same candidate labels or calibrate for these")
    if _template_value(record["template"]) != _template_value(label_set.template):
        raise ValueError(f"calibration {source} was fitted with template {record['template']!r}; the call has "
                         f"{_template_value(label_set.template)!r}")
    texts = label_texts(label_set)
    differ = [label for label in labels if record["texts"].get(label) != texts[label]]
    if differ:
        label = differ[0]
        raise ValueError(f"calibration {source} was fitted with other texts for {len(differ)} label(s) (class "
                         f"descriptions): {label!r} was {record['texts'].get(label)}, the call has {texts[label]}")
    differ = {k: (record["scoring"].get(k), v) for k, v in scoring.items() if record["scoring"].get(k) != v}
    if differ:
        raise ValueError(f"calibration {source} was fitted on other scores: "
                         + ", ".join(f"{k} {a!r} there, {b!r} here" for k, (a, b) in differ.items()))


def clears(scores: torch.Tensor, quantile) -> torch.Tensor:
    """Which scores clear a split-conformal threshold: 1 - s <= q, in float64 (the form the quantile was fitted in)."""
    return (1.0 - scores.double()) <= torch.as_tensor(quantile, dtype=torch.float64)


def _ranked_pairs(scores: torch.Tensor, labels) -> list[tuple[float, str, int]]:
    """(score, label, column) best first."""
    return sorted(((float(s), label, k) for k, (s, label) in enumerate(zip(scores.tolist(), labels))),
                  key=lambda item: -item[0])


def check_open_set_labels(labels) -> None:
    """ValueError when a candidate label is named "unknown": the open-set answer could not be told from it."""
    if UNKNOWN in labels:
        raise ValueError(f"candidate label {UNKNOWN!r} cannot be told from the open-set answer {UNKNOWN!r}: rename it "
                         "(or use multi_label=True, whose answer lists labels)")


def open_set_result(scores: torch.Tensor, labels, calibration: Calibration, top_k: int | None = None) -> dict:
    """One video's open-set answer: ``{"label": the top label, or "unknown" when the prediction set is empty,
    "score": the top score, "prediction_set": [labels with 1 - score <= q, best first], "threshold": 1 - q (the
    lowest score in the set), "scores": [{"score", "label"}, ...] best first (`top_k` of them)}``."""
    scores = scores.reshape(-1)
    inside = clears(scores, calibration.quantile)
    ranked = _ranked_pairs(scores, labels)
    prediction_set = [label for _, label, k in ranked if bool(inside[k])]
    top_score, top_label, _ = ranked[0]
    return {"label": top_label if prediction_set else UNKNOWN, "score": top_score, "prediction_set": prediction_set,
            "threshold": 1.0 - calibration.quantile,
            "scores": [{"score": s, "label": label} for s, label, _ in ranked[:top_k]]}


def check_multi_label(calibration: Calibration) -> None:
    """ValueError naming the labels `calibration` has no multi-label threshold for (too few calibration videos)."""
    missing = {label: entry for label, entry in calibration.record["label_thresholds"].items()
               if entry.get("nonconformity") is None}
    if missing:
        why = "; ".join(f"{label!r}: {entry.get('reason') or 'no threshold'}" for label, entry in missing.items())
        raise ValueError(f"multi_label=True: calibration {calibration.source} has no per-label threshold for "
                         f"{len(missing)} label(s) ({why}): calibrate with more videos of them or a larger eps")


def multi_label_result(scores: torch.Tensor, labels, calibration: Calibration, top_k: int | None = None) -> dict:
    """One video's multi-label answer: ``{"labels": [labels with 1 - score <= q_label, best first] (empty: none),
    "scores": [{"score", "label", "threshold" (1 - q_label), "decision"}, ...] best first (`top_k` of them)}``."""
    scores = scores.reshape(-1)
    quantiles = [calibration.label_quantile(label) for label in labels]
    decisions = clears(scores, quantiles)
    ranked = _ranked_pairs(scores, labels)
    return {"labels": [label for _, label, k in ranked if bool(decisions[k])],
            "scores": [{"score": s, "label": label, "threshold": 1.0 - quantiles[k], "decision": bool(decisions[k])}
                       for s, label, k in ranked[:top_k]]}
