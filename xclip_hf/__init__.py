"""xclip_hf: X-CLIP video recognition (Ni et al., ECCV 2022) for Hugging Face Transformers.

`import xclip_hf` imports no torch: names are imported on first use, and registered with transformers when it loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _registration
from .utils.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> submodule that defines it (imported on first access)
_EXPORTS = {
    **dict.fromkeys(["PUBLISHED_CHECKPOINTS", "VARIANTS", "XClipConfig", "XClipTextConfig", "XClipVisionConfig"],
                    "models.configuration_xclip"),
    "build_clip_tokenizer": "data.tokenizer",
    "convert_original_checkpoint": "conversion.convert",
    "write_video": "data.video_writer",
    "count_flops": "models.flops",
    "embed_videos": "corpus.embed",
    "search_videos": "corpus.search",
    **dict.fromkeys(["XClipModel", "XClipPreTrainedModel", "XClipTextModel", "XClipVisionModel"], "models.modeling_xclip"),
    **dict.fromkeys(["XClipOutput", "XClipTextOutput", "XClipVisionOutput"], "models.modeling_outputs_xclip"),
    "XClipForVideoClassification": "models.modeling_xclip_classification",
    "ZeroShotVideoClassificationPipeline": "pipelines",
    "XClipProcessor": "models.processing_xclip",
    **dict.fromkeys(["dense_multiview_indices", "dense_sample_indices", "sparse_multiview_indices",
                     "sparse_sample_indices", "temporal_clip_indices"], "video.sampling"),
    **dict.fromkeys(["VideoInfo", "get_video_info", "load_video", "open_video", "read_video"], "video.reader"),
    "XClipVideoProcessor": "models.video_processing_xclip",
}

__all__ = [*_EXPORTS, "__version__"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .models.configuration_xclip import PUBLISHED_CHECKPOINTS, VARIANTS, XClipConfig, XClipTextConfig, XClipVisionConfig
    from .data.tokenizer import build_clip_tokenizer
    from .conversion.convert import convert_original_checkpoint
    from .data.video_writer import write_video
    from .models.flops import count_flops
    from .models.modeling_xclip import (
        XClipModel,
        XClipOutput,
        XClipPreTrainedModel,
        XClipTextModel,
        XClipTextOutput,
        XClipVisionModel,
        XClipVisionOutput,
    )
    from .models.modeling_xclip_classification import XClipForVideoClassification
    from .pipelines import ZeroShotVideoClassificationPipeline
    from .models.processing_xclip import XClipProcessor
    from .video.sampling import (
        dense_multiview_indices,
        dense_sample_indices,
        sparse_multiview_indices,
        sparse_sample_indices,
        temporal_clip_indices,
    )
    from .video.reader import VideoInfo, get_video_info, load_video, open_video, read_video
    from .models.video_processing_xclip import XClipVideoProcessor

_registration.install()
