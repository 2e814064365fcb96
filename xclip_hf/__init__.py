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

__version__ = "0.1.0"
