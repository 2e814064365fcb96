"""Metric modules shipped inside the package, loaded by path with `evaluate.load` (the hub is unreachable)."""

import os

VIDEO_ACCURACY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "video_accuracy.py")


def load_topk_accuracy(**kwargs):
    """`evaluate.load` of the packaged top-1/top-5 module (paper Sec. 4.1 reports both)."""
    import evaluate

    return evaluate.load(VIDEO_ACCURACY_PATH, **kwargs)


__all__ = ["VIDEO_ACCURACY_PATH", "load_topk_accuracy"]
