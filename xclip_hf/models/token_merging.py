"""Token merging (ToMe: bipartite soft matching, Bolya et al., ICLR 2023) inside each frame of the CCT (Sec. 3.2).

Per layer, between the intra-frame attention (Eq. 8) and the FFN (Eq. 9), r of a frame's patch tokens are averaged
into their most similar partner (cosine of the attention keys), r = floor(ratio x the frame's patch tokens at that
layer), at most half of them. The [class] token is never merged and stays at position 0; the message token is not
in the frame's token set. Each token's size (how many input patches it holds) weights the averages and the attention
(proportional attention: + log size on the scores); after the last layer the tokens are spread back over the input
positions, so the outputs keep their shapes. Shapes: F frames (B*T), L tokens ([class] first), H heads.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .configuration_xclip import check_token_merging_ratio

__all__ = ["MergeState", "start_merging", "merge_count", "proportional_attention_bias", "bipartite_soft_matching",
           "merge_tokens", "unmerge_tokens", "check_token_merging_ratio", "MERGING_ATTENTION"]

# attention backends that take the proportional-attention bias as an additive float mask
MERGING_ATTENTION = ("eager", "sdpa")


class MergeState(NamedTuple):
    """The ratio, each token's size (float32 (F, L)) and each input token's current position (long (F, L0))."""

    ratio: float
    sizes: torch.Tensor
    source: torch.Tensor


def start_merging(tokens: torch.Tensor, ratio: float) -> MergeState:
    """The state before the first layer: every token of the (F, L, D) input holds itself, size 1."""
    frames, length = tokens.shape[:2]
    sizes = torch.ones(frames, length, dtype=torch.float32, device=tokens.device)
    source = torch.arange(length, device=tokens.device).expand(frames, length)
    return MergeState(float(ratio), sizes, source)


def merge_count(ratio: float, num_patches: int) -> int:
    """r of one layer: floor(ratio x patch tokens), at most half of them (all that bipartite matching can pair)."""
    return min(math.floor(ratio * num_patches + 1e-9), num_patches // 2)


def proportional_attention_bias(sizes: torch.Tensor, extra: int, dtype: torch.dtype) -> torch.Tensor:
    """log(size) of each key as an additive attention mask (F, 1, 1, L + extra); `extra` trailing keys get 0."""
    bias = sizes.log()
    if extra:
        bias = torch.cat([bias, bias.new_zeros(bias.shape[0], extra)], dim=1)
    return bias[:, None, None, :].to(dtype)


def bipartite_soft_matching(keys: torch.Tensor, r: int):
    """Tokens split even/odd into A ([class] first) and B; A's r most similar to B -> (kept A, merged A, their B)."""
    metric = nn.functional.normalize(keys.float().mean(dim=1), dim=-1)  # (F, H, L, d) -> (F, L, d)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
    scores[:, 0] = -math.inf  # the [class] token is never merged
    best, best_match = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    merged, kept = order[:, :r], order[:, r:].sort(dim=-1).values  # sorted: [class] stays first
    return kept, merged, best_match.gather(1, merged)


def _merge_rows(x: torch.Tensor, kept: torch.Tensor, merged: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(F, L, C) -> (F, L - r, C): kept A rows, then B rows with the merged A rows added to their matches."""
    a, b = x[:, ::2], x[:, 1::2]
    width = x.shape[-1]
    kept_rows = a.gather(1, kept[..., None].expand(-1, -1, width))
    merged_rows = a.gather(1, merged[..., None].expand(-1, -1, width))
    return torch.cat([kept_rows, b.scatter_add(1, dst[..., None].expand(-1, -1, width), merged_rows)], dim=1)


def _new_positions(length: int, kept: torch.Tensor, merged: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(F, L) long: where each of the L tokens lands in the merged sequence of `_merge_rows`."""
    frames, num_kept = kept.shape
    in_a = torch.cat([kept, merged], dim=1)
    a_to = torch.cat([torch.arange(num_kept, device=kept.device).expand(frames, num_kept), dst + num_kept], dim=1)
    b_to = (torch.arange(length // 2, device=kept.device) + num_kept).expand(frames, length // 2)
    a_then_b = torch.cat([torch.empty_like(in_a).scatter(1, in_a, a_to), b_to], dim=1)
    token = torch.arange(length, device=kept.device)  # token i is A's i // 2 (i even) or B's i // 2 (i odd)
    return a_then_b[:, torch.where(token % 2 == 0, token // 2, (length + 1) // 2 + token // 2)]


def merge_tokens(hidden: torch.Tensor, keys: torch.Tensor, state: MergeState):
    """Merge `merge_count` patch tokens per frame by size-weighted average: (F, L, D) -> (F, L - r, D), new state."""
    length = hidden.shape[1]
    r = merge_count(state.ratio, length - 1)
    if r == 0:
        return hidden, state
    kept, merged, dst = bipartite_soft_matching(keys, r)
    sizes = state.sizes[..., None]
    summed = _merge_rows(torch.cat([hidden.float() * sizes, sizes], dim=-1), kept, merged, dst)
    new_sizes = summed[..., -1]
    merged_hidden = (summed[..., :-1] / new_sizes[..., None]).to(hidden.dtype)
    source = _new_positions(length, kept, merged, dst).gather(1, state.source)
    return merged_hidden, MergeState(state.ratio, new_sizes, source)


def unmerge_tokens(hidden: torch.Tensor, state: MergeState) -> torch.Tensor:
    """(F, L, D) merged tokens -> (F, L0, D): each input position gets the token it was merged into."""
    return hidden.gather(1, state.source[..., None].expand(-1, -1, hidden.shape[-1]))
