"""Fine-tuning pieces of the paper's recipe (Sec. 4.2-4.4, supplementary Sec. 2-3) for `transformers.Trainer`."""

from .augment import VideoTrainAugmentation
from .bad_samples import BAD_VIDEO_POLICIES, BadVideoCallback, SkipBadSamplesCollator, TooManyBadVideosError, check_videos
from .dataset import VideoClipTransform, load_video_dataset, read_labels_file
from .few_shot import check_disjoint_label_sets, sample_k_shot
from .metrics import load_topk_accuracy
from .mixup import MixupCutmix
from .param_groups import freeze_vision_encoder, no_weight_decay_names, xclip_param_groups
from .trainer import XClipTrainer

__all__ = [
    "BAD_VIDEO_POLICIES",
    "BadVideoCallback",
    "SkipBadSamplesCollator",
    "TooManyBadVideosError",
    "check_videos",
    "MixupCutmix",
    "VideoClipTransform",
    "VideoTrainAugmentation",
    "XClipTrainer",
    "check_disjoint_label_sets",
    "freeze_vision_encoder",
    "load_topk_accuracy",
    "load_video_dataset",
    "no_weight_decay_names",
    "read_labels_file",
    "sample_k_shot",
    "xclip_param_groups",
]
