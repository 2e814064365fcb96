"""Output containers of the X-CLIP models (video tower, text tower with prompts, two-tower logits)."""

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

__all__ = ["XClipVisionOutput", "XClipTextOutput", "XClipOutput"]


@dataclass
class XClipVisionOutput(ModelOutput):
    """Video encoder output.

    video_embeds: (B, P) v (Eq. 6) = pooler_output. frame_embeds: (B, T, P) h_t. video_context: (B, N, P) z-bar
    (Eq. 10). last_hidden_state: (B, T, N+1, Dv) final frame tokens ([class] first).
    """

    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    video_context: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class XClipTextOutput(ModelOutput):
    """Text encoder output.

    text_embeds: (K, P) c, or (B, K, P) c-hat given a video context. last_hidden_state: (K, L, Dt). pooler_output:
    (K, Dt) end-of-text states before the projection.
    """

    text_embeds: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class XClipOutput(ModelOutput):
    """Two-tower output: logits_per_video (B, K) = exp(logit_scale) * cos(v, c-hat) (Eq. 3), logits_per_text (K, B).

    video_embeds (B, P) and text_embeds (B, K, P) are L2-normalised.
    """

    loss: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    text_model_output: XClipTextOutput | None = None
    vision_model_output: XClipVisionOutput | None = None

    def to_tuple(self):
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())
