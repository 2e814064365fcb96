"""xclip_hf: X-CLIP video recognition (Ni et al., ECCV 2022) for Hugging Face Transformers.

Importing the package registers our configs and models with the Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

from .configuration_xclip import PUBLISHED_CHECKPOINTS, VARIANTS, XClipConfig, XClipTextConfig, XClipVisionConfig
from .modeling_xclip import (
    XClipModel,
    XClipOutput,
    XClipPreTrainedModel,
    XClipTextModel,
    XClipTextOutput,
    XClipVisionModel,
    XClipVisionOutput,
)

for _config, _model in ((XClipConfig, XClipModel), (XClipTextConfig, XClipTextModel),
                        (XClipVisionConfig, XClipVisionModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
from .modeling_xclip_classification import XClipForVideoClassification
from .flops import count_flops

AutoModelForVideoClassification.register(XClipConfig, XClipForVideoClassification, exist_ok=True)

# --- other components register below (video processor, processor, pipeline, training) ---
# video side (importing these modules registers AutoVideoProcessor / AutoProcessor for XClipConfig)
from .data.tokenizer import build_clip_tokenizer
from .data.video_writer import write_video
from .processing_xclip import XClipProcessor
from .sampling import (
    dense_multiview_indices,
    dense_sample_indices,
    sparse_multiview_indices,
    sparse_sample_indices,
    temporal_clip_indices,
)
from .video_io import VideoInfo, get_video_info, load_video, open_video, read_video
from .video_processing_xclip import XClipVideoProcessor

# pipeline: registers "zero-shot-video-classification" with transformers' PIPELINE_REGISTRY
from .pipelines import ZeroShotVideoClassificationPipeline, register_pipeline as _register_pipeline

_register_pipeline()

__version__ = "0.1.0"
