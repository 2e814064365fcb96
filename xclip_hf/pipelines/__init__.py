"""Pipelines: `pipeline("zero-shot-video-classification")` (registered when `xclip_hf` is imported)."""

from ..models.text_features import LabelEmbeddingCache, build_label_set, text_weights_fingerprint
from .zero_shot_video_classification import ZeroShotVideoClassificationPipeline, build_pipeline, register_pipeline

__all__ = ["ZeroShotVideoClassificationPipeline", "build_pipeline", "register_pipeline", "LabelEmbeddingCache", "build_label_set",
           "text_weights_fingerprint"]
