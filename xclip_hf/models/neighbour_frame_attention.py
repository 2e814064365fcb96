"""Neighbour-frame attention (Open-VCLIP): each frame's self-attention also attends to frames t-1 and t+1.

The keys and values of frame t are those of frame t+1, frame t-1 and frame t itself (3 L tokens); past either end
of the clip the missing frame's keys and values are zeros (they still take part in the softmax, with score 0), as
in the original code. Shapes: B videos, T frames, L tokens per frame, H heads, d head width.
"""

from __future__ import annotations

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .modeling_xclip import XClipAttention, XClipEncoderLayer, eager_attention

__all__ = ["neighbour_states", "XClipNeighbourFrameAttention", "XClipNeighbourFrameLayer"]


def neighbour_states(states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*T, H, L, d) keys or values -> (B*T, H, 3L, d): frame t+1's, frame t-1's (zeros past the ends), frame t's."""
    frames_total, heads, length, dim = states.shape
    if frames_total % num_frames:
        raise ValueError(f"neighbour-frame attention: {frames_total} frames are not whole clips of {num_frames}")
    clips = states.view(-1, num_frames, heads, length, dim)
    zeros = clips.new_zeros(clips.shape[0], 1, heads, length, dim)
    following = torch.cat([clips[:, 1:], zeros], dim=1)
    preceding = torch.cat([zeros, clips[:, :-1]], dim=1)
    return torch.cat([following, preceding, clips], dim=3).view(frames_total, heads, 3 * length, dim)


class XClipNeighbourFrameAttention(XClipAttention):
    """Self-attention of each frame's tokens over its own and its two neighbouring frames' keys and values."""

    def forward(self, hidden_states, num_frames: int, attention_mask=None, **kwargs):
        frames_total, length, _ = hidden_states.shape

        def heads(proj):
            return proj(hidden_states).view(frames_total, length, -1, self.head_dim).transpose(1, 2)

        query = heads(self.q_proj)
        key, value = neighbour_states(heads(self.k_proj), num_frames), neighbour_states(heads(self.v_proj), num_frames)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention)
        out, weights = attend(self, query, key, value, None, scaling=self.scale,
                              dropout=self.dropout if self.training else 0.0, is_causal=False, **kwargs)
        return self.out_proj(out.reshape(frames_total, length, -1)), weights


class XClipNeighbourFrameLayer(XClipEncoderLayer):
    """CLIP's pre-LN block with neighbour-frame self-attention: x + Attn(LN(x), frames t-1..t+1); x + FFN(LN(x))."""

    def __init__(self, config, drop_prob: float = 0.0):
        d = config.hidden_size
        super().__init__(config, d, config.intermediate_size, config.num_attention_heads, drop_prob)
        self.self_attn = XClipNeighbourFrameAttention(config, d, config.num_attention_heads, config.attention_dropout)

    def forward(self, hidden_states, num_frames: int, merge_state=None, **kwargs):
        if merge_state is not None:
            raise ValueError("token merging is not available with neighbour_frame_attention (Open-VCLIP models): "
                             "pass token_merging_ratio=0")
        attn, _ = self.self_attn(self.layer_norm1(hidden_states), num_frames, **kwargs)
        hidden_states = hidden_states + self.drop_path(attn)
        return hidden_states + self.drop_path(self.mlp(self.layer_norm2(hidden_states)))
