"""Neighbour-frame attention (Open-VCLIP): each frame's self-attention also attends to frames t-1 and t+1.

The keys and values of frame t are those of frame t+1, frame t-1 and frame t itself (3 L tokens); past either end
of the clip the missing frame's keys and values are zeros (they still take part in the softmax, with score 0), as
in the original code. Shapes: B videos, T frames, L tokens per frame, H heads, d head width.
"""

from __future__ import annotations

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

__all__ = ["neighbour_states", "neighbour_frame_attention", "neighbour_frame_block"]


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


def neighbour_frame_attention(attention, hidden_states, num_frames: int, eager, **kwargs):
    """`attention`'s projections (an XClipAttention) with keys / values of frames t+1, t-1, t -> (output, weights).

    `eager`: the attention function used when the model's attention implementation is "eager".
    """
    frames_total, length, _ = hidden_states.shape

    def heads(proj):
        """(B*T, L, D) -> projected (B*T, H, L, d)."""
        return proj(hidden_states).view(frames_total, length, -1, attention.head_dim).transpose(1, 2)

    query = heads(attention.q_proj)
    key = neighbour_states(heads(attention.k_proj), num_frames)
    value = neighbour_states(heads(attention.v_proj), num_frames)
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager)
    out, weights = attend(attention, query, key, value, None, scaling=attention.scale,
                          dropout=attention.dropout if attention.training else 0.0, is_causal=False, **kwargs)
    return attention.out_proj(out.reshape(frames_total, length, -1)), weights


def neighbour_frame_block(layer, hidden_states, num_frames: int, eager, merge_state=None, **kwargs):
    """A CLIP block (`layer`: an XClipEncoderLayer) with neighbour-frame self-attention: x + Attn; x + FFN(LN(x))."""
    if merge_state is not None:
        raise ValueError("token merging is not available with neighbour_frame_attention (Open-VCLIP models): "
                         "pass token_merging_ratio=0")
    attn, _ = neighbour_frame_attention(layer.self_attn, layer.layer_norm1(hidden_states), num_frames, eager, **kwargs)
    hidden_states = hidden_states + layer.drop_path(attn)
    return hidden_states + layer.drop_path(layer.mlp(layer.layer_norm2(hidden_states)))
