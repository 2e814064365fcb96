"""The paper's evaluation protocols (closed-set, zero-shot, few-shot), retrieval and localisation, with a report."""

from .closed_set import evaluate_closed_set, read_annotations
from .labels import LABEL_LISTS, load_label_list, resolve_labels
from .metrics import classification_figures, mean_std
from .options import EvaluationOptions
from .report import write_report
from .runner import build_pipeline, score_videos

__all__ = ["evaluate_closed_set", "read_annotations", "LABEL_LISTS", "load_label_list", "resolve_labels",
           "classification_figures", "mean_std", "EvaluationOptions", "write_report", "build_pipeline", "score_videos"]
