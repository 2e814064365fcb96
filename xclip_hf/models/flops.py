"""Multiply-accumulate count of one X-CLIP view, as the paper reports FLOPs (Tab. 1/2: GFLOPs = GMACs)."""

import functools

import torch
from torch.utils.flop_counter import FlopCounterMode

from .configuration_xclip import XClipConfig


def count_flops(config: XClipConfig, num_labels: int = 1, text_length: int = 77, batch_size: int = 1) -> int:
    """MACs of one `XClipModel` forward on `batch_size` views and `num_labels` texts, counted on the meta device."""
    if num_labels < 1 or text_length < 2:
        raise ValueError(f"count_flops needs num_labels >= 1 and text_length >= 2; got {num_labels}, {text_length}.")
    return _count_flops(config.to_json_string(use_diff=False), num_labels, text_length, batch_size)


@functools.lru_cache(maxsize=64)
def _count_flops(config_json: str, num_labels: int, text_length: int, batch_size: int) -> int:
    import json

    from .modeling_xclip import XClipModel

    config = XClipConfig.from_dict(json.loads(config_json))
    vision = config.vision_config
    with torch.device("meta"):
        model = XClipModel._from_config(config, attn_implementation="eager").eval()
        pixel_values = torch.zeros(batch_size, vision.num_frames, vision.num_channels, vision.image_size,
                                   vision.image_size)
        input_ids = torch.zeros(num_labels, text_length, dtype=torch.long)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=input_ids, pixel_values=pixel_values)
    return counter.get_total_flops() // 2
