"""xclip_hf: X-CLIP video recognition (Ni et al., ECCV 2022) for Hugging Face Transformers.

Importing the package registers our configs and models with the Auto classes (AutoConfig, AutoModel,
AutoModelForVideoClassification), the video processor and processor (AutoVideoProcessor, AutoProcessor), and
the "zero-shot-video-classification" pipeline.
"""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

from .configuration_xclip import PUBLISHED_CHECKPOINTS, VARIANTS, XClipConfig, XClipTextConfig, XClipVisionConfig
from .data.tokenizer import build_clip_tokenizer
from .data.video_writer import write_video
from .embed import embed_videos
from .flops import count_flops
from .modeling_xclip import (
    XClipModel,
    XClipOutput,
    XClipPreTrainedModel,
    XClipTextModel,
    XClipTextOutput,
    XClipVisionModel,
    XClipVisionOutput,
)
from .modeling_xclip_classification import XClipForVideoClassification
from .pipelines import ZeroShotVideoClassificationPipeline
from .pipelines import register_pipeline as _register_pipeline
from .processing_xclip import XClipProcessor  # registers AutoProcessor
from .sampling import (
    dense_multiview_indices,
    dense_sample_indices,
    sparse_multiview_indices,
    sparse_sample_indices,
    temporal_clip_indices,
)
from .search import search_videos
from .video_io import VideoInfo, get_video_info, load_video, open_video, read_video
from .video_processing_xclip import XClipVideoProcessor  # registers AutoVideoProcessor

for _config, _model in ((XClipConfig, XClipModel), (XClipTextConfig, XClipTextModel),
                        (XClipVisionConfig, XClipVisionModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
AutoModelForVideoClassification.register(XClipConfig, XClipForVideoClassification, exist_ok=True)
_register_pipeline()

__version__ = "0.1.0"
