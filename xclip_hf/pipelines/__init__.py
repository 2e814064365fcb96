"""Pipelines: `pipeline("zero-shot-video-classification")` (registered when `xclip_hf` is imported).

The pipeline class is imported on first use (PEP 562), so that `pipelines.video_chunks` (also `embed`'s loader)
does not import `transformers.pipelines`.
"""

from ..models.text_features import LabelEmbeddingCache, build_label_set, text_weights_fingerprint
from ..utils.lazy import lazy_exports

# public name -> submodule that defines it (imported on first access)
_EXPORTS = dict.fromkeys(["ZeroShotVideoClassificationPipeline", "build_pipeline", "register_pipeline"],
                         "zero_shot_video_classification")

__all__ = ["ZeroShotVideoClassificationPipeline", "build_pipeline", "register_pipeline", "LabelEmbeddingCache", "build_label_set",
           "text_weights_fingerprint"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
