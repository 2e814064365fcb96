"""Fine-tuning pieces of the paper's recipe (Sec. 4.2-4.4, supplementary Sec. 2-3) for `transformers.Trainer`."""

from .augment import VideoTrainAugmentation
from .few_shot import check_disjoint_label_sets, sample_k_shot
from .metrics import load_topk_accuracy
from .mixup import MixupCutmix
from .param_groups import XClipTrainer, no_weight_decay_names, xclip_param_groups

__all__ = [
    "VideoTrainAugmentation",
    "MixupCutmix",
    "XClipTrainer",
    "check_disjoint_label_sets",
    "load_topk_accuracy",
    "no_weight_decay_names",
    "sample_k_shot",
    "xclip_param_groups",
]
