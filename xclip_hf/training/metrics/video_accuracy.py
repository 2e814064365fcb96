"""Top-k video classification accuracy as an `evaluate` metric module (paper Sec. 4.1: top-1 / top-5).

Self-contained (no relative imports): `evaluate.load(<this file>)` copies it into its module cache.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Top-k accuracy: the fraction of samples whose reference class is among the k highest-scoring classes.
`predictions` are per-class scores (logits or probabilities), one row of `num_classes` floats per sample;
`references` are integer class indices. With fewer than k classes, every reference is within the top k. Tied scores are ranked by class index
(lower first), like `argmax`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): per-class scores, shape (num_samples, num_classes).
    references (`list[int]`): class index of each sample, in [0, num_classes).
    top_k (`tuple[int]`, defaults to (1, 5)): the k values to report.
Returns:
    dict with one entry per k, named `top{k}` (e.g. `top1`, `top5`), each a float in [0, 1].
Example:
    >>> metric = load_topk_accuracy()
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], top_k=(1,))
    {'top1': 0.5}
"""


def topk_accuracy(scores: np.ndarray, references: np.ndarray, top_k=(1, 5)) -> dict:
    """Top-k accuracy of per-class scores (N, C) against integer references (N,) (paper Sec. 4.1)."""
    scores = np.asarray(scores, dtype=np.float64)
    references = np.asarray(references)
    if scores.ndim != 2:
        raise ValueError(f"video_accuracy: predictions must be (num_samples, num_classes) scores, got shape {scores.shape}")
    if references.shape != (scores.shape[0],):
        raise ValueError(f"video_accuracy: references must have shape ({scores.shape[0]},) to match predictions, got {references.shape}")
    if scores.shape[0] == 0:
        raise ValueError("video_accuracy: no samples to score (predictions is empty)")
    num_classes = scores.shape[1]
    bad = (references < 0) | (references >= num_classes)
    if bad.any():
        raise ValueError(f"video_accuracy: reference label {int(references[bad][0])} is outside [0, {num_classes}) for {num_classes} classes")
    # rank of the reference in a stable descending sort: ties go to the lower class index, as in
    # an argmax, so a constant score row is not counted as a hit for every class
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.argmax(order == references[:, None], axis=1)
    result = {}
    for k in top_k:
        if int(k) < 1:
            raise ValueError(f"video_accuracy: top_k values must be >= 1, got {k}")
        result[f"top{int(k)}"] = float((rank < int(k)).mean())
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VideoAccuracy(evaluate.Metric):
    """Top-1 / top-5 accuracy from class scores and integer labels (paper Sec. 4.1)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, top_k=(1, 5)):
        return topk_accuracy(np.asarray(predictions), np.asarray(references), top_k=top_k)
