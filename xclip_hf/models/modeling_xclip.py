"""X-CLIP models: the video encoder (Sec. 3.2), the text encoder with video-specific prompts (Sec. 3.3), both towers.

Shapes: B videos, T frames, N patches per frame, K texts; D widths (Dv vision, Dt text, P joint projection).
"""

from typing import Unpack

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.generic import TransformersKwargs, can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_xclip import XClipConfig, XClipTextConfig, XClipVisionConfig
from .modeling_outputs_xclip import XClipOutput, XClipTextOutput, XClipVisionOutput
from .neighbour_frame_attention import neighbour_frame_block
from .token_merging import (MERGING_ATTENTION, check_token_merging_ratio, merge_tokens, proportional_attention_bias,
                            start_merging, unmerge_tokens)


# ------------------------------------------------------------------------------------------------ building blocks
def eager_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """softmax(Q K^T * scale + mask) V in plain torch; returns (B, L, H, d) and the attention weights."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class XClipAttention(nn.Module):
    """Multi-head attention (transformers' attention backends); `key_value_states` makes it cross-attention (Eq. 10).

    `return_key=True` also returns the keys (B, H, L, d) (token merging's similarity).
    """

    def __init__(self, config, embed_dim: int, num_heads: int, dropout: float = 0.0, qkv_bias: bool = True,
                 is_causal: bool = False):
        super().__init__()
        self.config = config
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.dropout, self.is_causal = dropout, is_causal
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, hidden_states, key_value_states=None, attention_mask=None, return_key=False, **kwargs):
        kv = hidden_states if key_value_states is None else key_value_states
        (batch, q_len, _), k_len = hidden_states.shape, kv.shape[1]
        query = self.q_proj(hidden_states).view(batch, q_len, -1, self.head_dim).transpose(1, 2)
        key = self.k_proj(kv).view(batch, k_len, -1, self.head_dim).transpose(1, 2)
        value = self.v_proj(kv).view(batch, k_len, -1, self.head_dim).transpose(1, 2)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention)
        out, weights = attend(self, query, key, value, attention_mask, scaling=self.scale,
                              dropout=self.dropout if self.training else 0.0, is_causal=self.is_causal, **kwargs)
        if return_key:
            return self.out_proj(out.reshape(batch, q_len, -1)), weights, key
        return self.out_proj(out.reshape(batch, q_len, -1)), weights


class XClipMLP(nn.Module):
    """Feed-forward network fc1 -> QuickGELU -> fc2 (the FFN of Eq. 9, the MIT, the text encoder and Eq. 10)."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation_fn = ACT2FN[hidden_act]
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states):
        return self.fc2(self.dropout(self.activation_fn(self.fc1(hidden_states))))


def average_view_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Multi-view inference (Sec. 4.1, "4x3 views"): (B, V, K) logits -> per-view softmax averaged, (B, K) float32."""
    return logits.float().softmax(dim=-1).mean(dim=1)


def check_host_class_indices(labels: torch.Tensor, num_classes: int, name: str = "labels", what: str = "class indices"):
    """ValueError naming out-of-range `labels`, checked only for host (CPU) tensors in eager mode."""
    if labels.device.type != "cpu" or torch.compiler.is_compiling() or labels.numel() == 0:
        return
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"{name} must be {labels.shape[0]} {what} in [0, {num_classes}); got {labels.tolist()}.")


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a residual branch for whole samples with probability `drop_prob`, rescale the rest."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class XClipDropPath(nn.Module):
    """Module form of `drop_path` (stochastic depth on the CFA, IFA and FFN residual branches)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self):
        return f"p={self.drop_prob}"


class XClipEncoderLayer(GradientCheckpointingLayer):
    """Pre-LN transformer block x + Attn(LN(x)); x + FFN(LN(x)) (CLIP's block: text encoder, MIT, CLIP-Mean frames)."""

    def __init__(self, config, hidden_size, intermediate_size, num_heads, drop_prob=0.0, is_causal=False):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.self_attn = XClipAttention(config, hidden_size, num_heads, config.attention_dropout, is_causal=is_causal)
        self.layer_norm2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = XClipMLP(hidden_size, intermediate_size, config.hidden_act)
        self.drop_path = XClipDropPath(drop_prob)

    def forward(self, hidden_states, attention_mask=None, merge_state=None, **kwargs):
        if merge_state is not None:  # frames of the CLIP-Mean baseline, with token merging
            return self.attend_merge_ffn(hidden_states, hidden_states.shape[1], merge_state, **kwargs)
        attn, _ = self.self_attn(self.layer_norm1(hidden_states), attention_mask=attention_mask, **kwargs)
        hidden_states = hidden_states + self.drop_path(attn)
        return hidden_states + self.drop_path(self.mlp(self.layer_norm2(hidden_states)))

    def attend_merge_ffn(self, tokens, seq_len: int, merge_state, **kwargs):
        """Proportional attention, the first `seq_len` tokens kept and merged (`token_merging`), FFN -> (z, state)."""
        bias = proportional_attention_bias(merge_state.sizes, tokens.shape[1] - seq_len, tokens.dtype)
        attn, _, keys = self.self_attn(self.layer_norm1(tokens), attention_mask=bias, return_key=True, **kwargs)
        hidden_states = (tokens + self.drop_path(attn))[:, :seq_len]
        hidden_states, merge_state = merge_tokens(hidden_states, keys[:, :, :seq_len], merge_state)
        return hidden_states + self.drop_path(self.mlp(self.layer_norm2(hidden_states))), merge_state


class XClipCrossFrameLayer(XClipEncoderLayer):
    """Cross-frame communication block (Sec. 3.2): message tokens, cross-frame fusion (Eq. 7), diffusion (Eq. 8-9)."""

    def __init__(self, config: XClipVisionConfig, drop_prob=0.0):
        d = config.hidden_size
        super().__init__(config, d, config.intermediate_size, config.num_attention_heads, drop_prob)
        self.message_proj = nn.Linear(d, d)
        self.cfa_layernorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.cfa = XClipAttention(config, d, config.num_attention_heads, config.attention_dropout)

    def forward(self, hidden_states, num_frames: int, merge_state=None, **kwargs):
        frames, seq_len, dim = hidden_states.shape
        messages = self.message_proj(hidden_states[:, 0]).view(-1, num_frames, dim)
        messages = messages + self.drop_path(self.cfa(self.cfa_layernorm(messages), **kwargs)[0])  # Eq. 7
        tokens = torch.cat([hidden_states, messages.reshape(frames, 1, dim)], dim=1)  # message token last
        if merge_state is not None:  # token merging: Eq. 8 with proportional attention, the frame tokens merged, Eq. 9
            return self.attend_merge_ffn(tokens, seq_len, merge_state, **kwargs)
        tokens = tokens + self.drop_path(self.self_attn(self.layer_norm1(tokens), **kwargs)[0])  # Eq. 8
        hidden_states = tokens[:, :seq_len]  # the message token is dropped before the FFN
        return hidden_states + self.drop_path(self.mlp(self.layer_norm2(hidden_states)))  # Eq. 9


class XClipNeighbourFrameLayer(XClipEncoderLayer):
    """CLIP's block whose self-attention also sees frames t-1 and t+1 (Open-VCLIP, `neighbour_frame_attention.py`)."""

    def forward(self, hidden_states, num_frames: int, merge_state=None, **kwargs):
        return neighbour_frame_block(self, hidden_states, num_frames, eager_attention, merge_state, **kwargs)


class XClipEncoder(nn.Module):
    """A stack of blocks (per-layer outputs are recorded by the models' `capture_outputs`, not here)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden_states, **kwargs):
        for layer in self.layers:
            hidden_states = layer(hidden_states, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class XClipVisionEmbeddings(nn.Module):
    """Frame input of the CCT (Eq. 4): z_t^(0) = [x_class, E x_t1, ..., E x_tN] + e^spa (conv patch embedding, no bias)."""

    def __init__(self, config: XClipVisionConfig):
        super().__init__()
        self.config = config
        d, self.patch_size = config.hidden_size, config.patch_size
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.patch_embedding = nn.Conv2d(config.num_channels, d, config.patch_size, config.patch_size, bias=False)
        num_positions = (config.image_size // config.patch_size) ** 2 + 1
        self.position_embedding = nn.Embedding(num_positions, d)
        self.register_buffer("position_ids", torch.arange(num_positions).expand((1, -1)), persistent=False)

    def spatial_position_encoding(self, height: int, width: int) -> torch.Tensor:
        """e^spa, bicubically resized to a (height/P) x (width/P) patch grid when it differs from the pretrained one."""
        pos = self.position_embedding(self.position_ids)
        grid = self.config.image_size // self.patch_size
        new_h, new_w = height // self.patch_size, width // self.patch_size
        if (new_h, new_w) == (grid, grid):
            return pos
        patch_pos = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        patch_pos = nn.functional.interpolate(patch_pos, size=(new_h, new_w), mode="bicubic", align_corners=False)
        return torch.cat([pos[:, :1], patch_pos.permute(0, 2, 3, 1).reshape(1, new_h * new_w, -1)], dim=1)

    def forward(self, pixel_values, interpolate_pos_encoding=False):
        frames, _, height, width = pixel_values.shape
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_embedding.expand(frames, 1, -1).to(patches.dtype), patches], dim=1)
        if interpolate_pos_encoding:
            return tokens + self.spatial_position_encoding(height, width)
        return tokens + self.position_embedding(self.position_ids)


class XClipTextEmbeddings(nn.Module):
    """CLIP text input: token embedding + learned absolute position embedding."""

    def __init__(self, config: XClipTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)),
                             persistent=False)

    def forward(self, input_ids, position_ids=None):
        if position_ids is None:
            position_ids = self.position_ids[:, : input_ids.shape[-1]]
        return self.token_embedding(input_ids) + self.position_embedding(position_ids)


class XClipMultiFrameIntegrationTransformer(nn.Module):
    """MIT (Eq. 6): v = AvgPool(MIT(H + e^temp)), with a residual around the whole transformer."""

    def __init__(self, config: XClipVisionConfig):
        super().__init__()
        d = config.mit_hidden_size
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_frames, d))
        self.encoder = XClipEncoder(
            XClipEncoderLayer(config, d, config.mit_intermediate_size, config.mit_num_attention_heads)
            for _ in range(config.mit_num_hidden_layers)
        )

    def temporal_position_encoding(self, num_frames: int) -> torch.Tensor:
        """e^temp of Eq. 6 for `num_frames` frames: the learned table, or it linearly resampled to T (frame times).

        T == the trained count returns the table itself; any other T is an extrapolation of the trained model.
        """
        table = self.position_embedding
        if num_frames == table.shape[1]:
            return table
        resampled = nn.functional.interpolate(table.transpose(1, 2).float(), size=num_frames, mode="linear",
                                              align_corners=False)
        return resampled.transpose(1, 2).to(table.dtype)

    def forward(self, frame_embeds, interpolate_pos_encoding=False):
        position = self.position_embedding
        if interpolate_pos_encoding:
            position = self.temporal_position_encoding(frame_embeds.shape[1])
        hidden = self.encoder(frame_embeds + position).last_hidden_state
        return (hidden + frame_embeds).mean(dim=1)


class XClipPromptGeneratorLayer(nn.Module):
    """One block of the video-specific prompt generator (Eq. 10): c += MHSA(LN(c), z); c += FFN(LN(c))."""

    def __init__(self, config: XClipTextConfig):
        super().__init__()
        d = config.projection_dim
        self.layer_norm1 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.cross_attn = XClipAttention(config, d, config.prompt_num_attention_heads,
                                         config.prompt_attention_dropout, qkv_bias=False)
        self.proj_dropout = nn.Dropout(config.prompt_projection_dropout)
        self.layer_norm2 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mlp = XClipMLP(d, 4 * d, config.prompt_hidden_act, dropout=config.prompt_attention_dropout)

    def forward(self, text, context):
        text = text + self.proj_dropout(self.cross_attn(self.layer_norm1(text), key_value_states=context)[0])
        return text + self.mlp(self.layer_norm2(text))


class XClipPromptGenerator(nn.Module):
    """Video-specific prompt generator (Sec. 3.3): returns alpha * c-tilde, the prompt added to the text embedding."""

    def __init__(self, config: XClipTextConfig):
        super().__init__()
        self.context_layernorm = nn.LayerNorm(config.projection_dim, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(XClipPromptGeneratorLayer(config) for _ in range(config.prompt_layers))
        self.alpha = nn.Parameter(torch.full((config.projection_dim,), float(config.prompt_alpha)))

    def forward(self, text_embeds, video_context):
        context = self.context_layernorm(video_context)
        for layer in self.layers:
            text_embeds = layer(text_embeds, context)
        return self.alpha * text_embeds


def sincos_position_table(grid: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Centred 2-D sin-cos pattern (grid*grid, dim) float64: sin, cos of the column, then of the row (dim % 4 == 0)."""
    omega = temperature ** (-torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    y, x = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")
    x, y = x.reshape(-1, 1) * omega, y.reshape(-1, 1) * omega
    pattern = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
    return pattern - pattern.mean(dim=0)


@torch.no_grad()
def sincos_position_init(embeddings: XClipVisionEmbeddings) -> torch.Tensor:
    """Position table of `position_embedding_init="sincos"`: class row kept, patch rows the sin-cos pattern."""
    table = embeddings.position_embedding.weight.detach().clone()
    pattern = sincos_position_table(embeddings.config.image_size // embeddings.config.patch_size, table.shape[1])
    target = embeddings.patch_embedding.weight.double().flatten(1).pow(2).sum(dim=1).mean().sqrt()
    table[1:] = (pattern * (target / pattern.pow(2).mean().sqrt())).to(table.dtype)
    return table


# ----------------------------------------------------------------------------------------------------- models
class XClipPreTrainedModel(PreTrainedModel):
    """Weight initialisation, gradient checkpointing and attention backends shared by all X-CLIP models."""

    config: XClipConfig
    base_model_prefix = "xclip"
    main_input_name = "pixel_values"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["XClipEncoderLayer", "XClipCrossFrameLayer", "XClipVisionEmbeddings", "XClipTextEmbeddings"]
    # Recorded by `capture_outputs`: the input of the first block and the output of every block (frame encoder /
    # text encoder), and the weights of their self-attention (not the CFA, MIT or prompt-generator attention).
    _can_record_outputs = {
        "hidden_states": XClipEncoderLayer,
        "attentions": OutputRecorder(XClipAttention, index=1, layer_name="self_attn"),
    }
    # Modules X-CLIP adds to CLIP (Sec. 3.2 Initialization); the paper trains them with a 10x learning rate.
    _new_module_names = ("message_proj", "cfa_layernorm", "cfa", "mit", "prompt_generator", "context_layernorm",
                         "context_projection")

    def _init_weights(self, module):
        super()._init_weights(module)
        factor = getattr(self.config, "initializer_factor", 1.0)
        if isinstance(module, XClipTextEmbeddings):
            init.normal_(module.token_embedding.weight, std=0.02 * factor)
            init.normal_(module.position_embedding.weight, std=0.01 * factor)
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
        elif isinstance(module, XClipVisionEmbeddings):
            std = module.config.initializer_range * factor
            init.normal_(module.class_embedding, std=module.class_embedding.shape[0] ** -0.5 * factor)
            init.normal_(module.patch_embedding.weight, std=std)
            init.normal_(module.position_embedding.weight, std=std)
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
            if module.config.position_embedding_init == "sincos":
                init.copy_(module.position_embedding.weight, sincos_position_init(module))
        elif isinstance(module, XClipMultiFrameIntegrationTransformer):
            init.trunc_normal_(module.position_embedding, std=0.02)
        elif isinstance(module, XClipPromptGenerator):
            init.constant_(module.alpha, float(self._sub_config("text").prompt_alpha))
        elif isinstance(module, XClipVisionModel):
            dv = module.config.hidden_size
            init.normal_(module.visual_projection.weight, std=dv**-0.5 * factor)
            init.normal_(module.context_projection, std=dv**-0.5 * factor)
        elif isinstance(module, XClipTextModel):
            init.normal_(module.text_projection.weight, std=module.config.hidden_size**-0.5 * factor)
        elif isinstance(module, XClipModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    def _sub_config(self, which):
        return getattr(self.config, f"{which}_config", self.config)

    def new_parameter_names(self) -> set[str]:
        """Names of the parameters X-CLIP adds to a pretrained CLIP: message tokens and CFA, MIT, prompt generator."""
        return {n for n, _ in self.named_parameters() if set(n.split(".")) & set(self._new_module_names)}

    def _pretrained_text_parameters(self):
        return [(n, p) for n, p in self.named_parameters()
                if (n.startswith("text_model.") or ".text_model." in n) and "prompt_generator." not in n]

    def freeze_text_encoder(self, freeze: bool = True) -> int:
        """Freeze (or unfreeze) the text encoder and projection, not the prompt generator (Tab. 7); returns a count."""
        params = self._pretrained_text_parameters()
        if not params:
            raise ValueError(f"freeze_text_encoder: {type(self).__name__} has no text encoder")
        for _, param in params:
            param.requires_grad_(not freeze)
        return len(params)

    @property
    def text_encoder_frozen(self) -> bool:
        """True when no parameter of the text encoder (prompt generator aside) requires gradients."""
        return not any(p.requires_grad for _, p in self._pretrained_text_parameters())

    def freeze_vision_encoder(self, freeze: bool = True) -> int:
        """Freeze (or unfreeze) CLIP's image-encoder weights, not X-CLIP's new modules (Tab. 7); returns the count."""
        new = self.new_parameter_names()
        params = [p for n, p in self.named_parameters()
                  if (n.startswith("vision_model.") or ".vision_model." in n) and n not in new]
        if not params:
            raise ValueError(f"freeze_vision_encoder: {type(self).__name__} has no vision_model parameters")
        for param in params:
            param.requires_grad_(not freeze)
        return len(params)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load our checkpoints, or other layouts (published microsoft/xclip-*) converted through `models.formats`."""
        from .formats import model_loading_kwargs

        kwargs = model_loading_kwargs(cls, pretrained_model_name_or_path, kwargs, XClipConfig)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        """transformers' `save_pretrained`, always with our own weight names (a loading conversion is one-way)."""
        return super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)


class XClipVisionModel(XClipPreTrainedModel):
    """The video encoder (Sec. 3.2): cross-frame transformer -> frame projection -> MIT, on (B, T, 3, H, W) videos."""

    config: XClipVisionConfig
    _no_split_modules = ["XClipCrossFrameLayer", "XClipVisionEmbeddings"]
    # the text tower of a full checkpoint, when the video encoder is loaded alone
    _keys_to_ignore_on_load_unexpected = [r"^text_model\.", r"^logit_scale"]

    def __init__(self, config: XClipVisionConfig):
        super().__init__(config)
        d, p = config.hidden_size, config.projection_dim
        n = config.num_hidden_layers  # stochastic depth grows linearly with depth
        dpr = [float(config.drop_path_rate) * i / max(n - 1, 1) for i in range(n)]
        self.embeddings = XClipVisionEmbeddings(config)
        self.pre_layernorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        if config.use_cross_frame_attention:
            layers = [XClipCrossFrameLayer(config, rate) for rate in dpr]
        elif config.neighbour_frame_attention:  # Open-VCLIP: frames also attend to frames t-1 and t+1
            layers = [XClipNeighbourFrameLayer(config, d, config.intermediate_size, config.num_attention_heads, rate)
                      for rate in dpr]
        else:  # CLIP-Mean baseline (Tab. 6): frames encoded independently
            layers = [XClipEncoderLayer(config, d, config.intermediate_size, config.num_attention_heads, rate)
                      for rate in dpr]
        self.encoder = XClipEncoder(layers)
        self.post_layernorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.visual_projection = nn.Linear(d, p, bias=False)
        self.mit = XClipMultiFrameIntegrationTransformer(config) if config.use_mit else None
        self.context_layernorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.context_projection = nn.Parameter(torch.zeros(d, p))
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.patch_embedding

    def _check_pixel_values(self, pixel_values, interpolate_pos_encoding):
        c = self.config
        shape = tuple(pixel_values.shape)
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (batch, frames, channels, height, width); got shape {shape}.")
        if not pixel_values.is_floating_point():  # dtype is metadata: no host sync
            raise ValueError(f"pixel_values has dtype {pixel_values.dtype} (shape {shape}); the model expects rescaled, "
                             "normalised float frames: pass raw frames through XClipVideoProcessor first.")
        _, frames, channels, height, width = shape
        if channels != c.num_channels:
            raise ValueError(f"pixel_values has {channels} channels (shape {shape}); the model expects {c.num_channels}.")
        if frames < 1:
            raise ValueError(f"pixel_values has no frames (shape {shape}); pass at least one frame per video.")
        if frames != c.num_frames and (c.use_mit or c.use_cross_frame_attention) and not interpolate_pos_encoding:
            raise ValueError(f"pixel_values has {frames} frames (shape {shape}); this model was built for "
                             f"num_frames={c.num_frames}. Sample {c.num_frames} frames per video (or pass "
                             "interpolate_pos_encoding=True to resample the temporal position embedding).")
        if (height, width) != (c.image_size, c.image_size) and not interpolate_pos_encoding:
            raise ValueError(f"pixel_values frames are {height}x{width} (shape {shape}); the model expects "
                             f"{c.image_size}x{c.image_size} (or pass interpolate_pos_encoding=True).")
        if height % c.patch_size or width % c.patch_size:
            raise ValueError(f"pixel_values frames {height}x{width} (shape {shape}) are not multiples of the "
                             f"patch size {c.patch_size}.")

    @can_return_tuple
    def forward(self, pixel_values, interpolate_pos_encoding=False, token_merging_ratio=None,
                **kwargs: Unpack[TransformersKwargs]) -> XClipVisionOutput:
        """`hidden_states` / `attentions` (on request) are those of the cross-frame communication transformer.

        `token_merging_ratio` replaces the config's for this call (`token_merging.py`; with merging, the hidden
        states of the layers have fewer tokens; `last_hidden_state` has every input position).
        """
        self._check_pixel_values(pixel_values, interpolate_pos_encoding)
        batch, frames = pixel_values.shape[:2]
        encoded = self.encode_frames(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True,
                                     token_merging_ratio=token_merging_ratio, **kwargs)
        tokens = encoded.last_hidden_state
        frame_embeds = self.visual_projection(self.post_layernorm(tokens[:, 0])).view(batch, frames, -1)
        pooled = nn.functional.normalize(frame_embeds, dim=-1) if self.config.normalize_frame_embeds else frame_embeds
        video_embeds = self.mit(frame_embeds, interpolate_pos_encoding) if self.mit is not None else pooled.mean(dim=1)
        video_context = self.video_context(tokens, batch)
        return XClipVisionOutput(video_embeds=video_embeds, frame_embeds=frame_embeds, video_context=video_context,
                                 last_hidden_state=tokens.view(batch, frames, *tokens.shape[1:]),
                                 pooler_output=video_embeds, hidden_states=encoded.hidden_states,
                                 attentions=encoded.attentions)

    @capture_outputs(tie_last_hidden_states=False)
    def encode_frames(self, pixel_values, interpolate_pos_encoding=False, token_merging_ratio=None,
                      **kwargs) -> BaseModelOutput:
        """Cross-frame communication transformer (Eq. 4, 7-9): (B, T, C, H, W) -> frame tokens (B*T, N+1, Dv)."""
        _, frames, channels, height, width = pixel_values.shape
        tokens = self.embeddings(pixel_values.reshape(-1, channels, height, width), interpolate_pos_encoding)
        if self.config.use_cross_frame_attention or self.config.neighbour_frame_attention:
            kwargs["num_frames"] = frames
        ratio = self.config.token_merging_ratio if token_merging_ratio is None else token_merging_ratio
        if ratio:
            return self.encode_merging(self.pre_layernorm(tokens), check_token_merging_ratio(ratio), **kwargs)
        return self.encoder(self.pre_layernorm(tokens), **kwargs)

    def encode_merging(self, tokens, ratio: float, **kwargs) -> BaseModelOutput:
        """The frame encoder with token merging in every layer; its output spread back over the input positions."""
        if self.config._attn_implementation not in MERGING_ATTENTION:
            raise ValueError(f"token merging needs an attention that adds a bias to its scores ({MERGING_ATTENTION}); "
                             f"this model uses {self.config._attn_implementation!r}: load it with "
                             "attn_implementation='sdpa' or set token_merging_ratio=0")
        state = start_merging(tokens, ratio)
        for layer in self.encoder.layers:
            tokens, state = layer(tokens, merge_state=state, **kwargs)
        return BaseModelOutput(last_hidden_state=unmerge_tokens(tokens, state))

    def video_context(self, frame_tokens, batch):
        """z-bar of Eq. 10: LayerNorm'd final patch tokens (no [class]) projected to P, averaged over the T frames."""
        context = self.context_layernorm(frame_tokens[:, 1:]) @ self.context_projection
        return context.view(batch, -1, *context.shape[1:]).mean(dim=1)


class XClipTextModel(XClipPreTrainedModel):
    """CLIP text encoder + prompt generator: (K, P) text embeddings, or (B, K, P) given `video_context` (Sec. 3.3)."""

    config: XClipTextConfig
    main_input_name = "input_ids"
    _no_split_modules = ["XClipEncoderLayer", "XClipTextEmbeddings"]
    # the video tower of a full checkpoint, when the text encoder is loaded alone
    _keys_to_ignore_on_load_unexpected = [r"^vision_model\.", r"^logit_scale"]

    def __init__(self, config: XClipTextConfig):
        super().__init__(config)
        d = config.hidden_size
        self.embeddings = XClipTextEmbeddings(config)
        self.encoder = XClipEncoder(
            XClipEncoderLayer(config, d, config.intermediate_size, config.num_attention_heads, is_causal=True)
            for _ in range(config.num_hidden_layers)
        )
        self.final_layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.text_projection = nn.Linear(d, config.projection_dim, bias=False)
        self.prompt_generator = XClipPromptGenerator(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.token_embedding

    def set_input_embeddings(self, value):
        self.embeddings.token_embedding = value

    def _check_input_ids(self, input_ids):
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (num_texts, sequence_length); got shape {tuple(input_ids.shape)}.")
        limit = self.config.max_position_embeddings
        if input_ids.shape[1] > limit:
            raise ValueError(f"input_ids has {input_ids.shape[1]} tokens per text (shape {tuple(input_ids.shape)}); "
                             f"the text encoder has {limit} positions. Tokenize with truncation=True, max_length={limit}.")
        if input_ids.shape[0] == 0:
            raise ValueError("input_ids holds no text (shape (0, ...)): pass at least one label.")

    def eos_positions(self, input_ids):
        """Where each text is pooled: its end-of-text token (the highest id, as in CLIP, unless eos_token_id is set)."""
        if self.config.eos_token_id is None:
            return input_ids.argmax(dim=-1)
        return (input_ids == self.config.eos_token_id).int().argmax(dim=-1)

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, input_ids, attention_mask=None, position_ids=None, video_context=None,
                **kwargs: Unpack[TransformersKwargs]) -> XClipTextOutput:
        self._check_input_ids(input_ids)
        hidden = self.embeddings(input_ids, position_ids)
        mask = create_causal_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask, cache=None)
        hidden = self.final_layer_norm(self.encoder(hidden, attention_mask=mask, **kwargs).last_hidden_state)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), self.eos_positions(input_ids)]
        text_embeds = self.text_projection(pooled)
        if video_context is not None:
            text_embeds = self.apply_video_prompt(text_embeds, video_context)
        return XClipTextOutput(text_embeds=text_embeds, last_hidden_state=hidden, pooler_output=pooled)

    def apply_video_prompt(self, text_embeds, video_context):
        """c-hat = c + alpha * c-tilde (Sec. 3.3): (K, P) or (B, K, P) text embeddings -> (B, K, P)."""
        if text_embeds.ndim == 2:
            text_embeds = text_embeds.unsqueeze(0).expand(video_context.shape[0], -1, -1)
        return text_embeds + self.prompt_generator(text_embeds, video_context)


class XClipModel(XClipPreTrainedModel):
    """X-CLIP (Sec. 3.1): video encoder, text encoder with video-specific prompts, cosine-similarity logits (Eq. 3)."""

    config: XClipConfig
    main_input_name = "input_ids"  # forward's first argument, as transformers' XCLIPModel
    # a saved XClipForVideoClassification also stores its tokenized class names
    _keys_to_ignore_on_load_unexpected = [r"^class_input_ids$", r"^class_attention_mask$"]

    def __init__(self, config: XClipConfig):
        super().__init__(config)
        self.text_model = XClipTextModel._from_config(config.text_config)
        self.vision_model = XClipVisionModel._from_config(config.vision_config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    @classmethod
    def from_clip(cls, clip, num_frames: int = 8, **overrides):
        """Expand a transformers `CLIPModel` (instance, directory or hub id) to X-CLIP (Sec. 3.2, Initialization)."""
        from .clip_expansion import expand_clip

        return expand_clip(cls, clip, num_frames=num_frames, **overrides)

    @can_return_tuple
    def get_text_features(self, input_ids, attention_mask=None, position_ids=None,
                          **kwargs: Unpack[TransformersKwargs]) -> BaseModelOutputWithPooling:
        """Projected, un-prompted text embeddings c (Eq. 1) as `.pooler_output` (K, P), like transformers' CLIP."""
        out = self.text_model(input_ids, attention_mask=attention_mask, position_ids=position_ids, return_dict=True,
                              **kwargs)
        return BaseModelOutputWithPooling(last_hidden_state=out.last_hidden_state, pooler_output=out.text_embeds,
                                          hidden_states=out.hidden_states, attentions=out.attentions)

    @can_return_tuple
    def get_video_features(self, pixel_values, **kwargs: Unpack[TransformersKwargs]) -> XClipVisionOutput:
        """Video embeddings v (Eq. 6) as `.pooler_output` (B, P), plus frame embeddings and the prompt context."""
        return self.vision_model(pixel_values, return_dict=True, **kwargs)

    @can_return_tuple
    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, text_embeds=None,
                labels=None, return_loss=None, interpolate_pos_encoding=False, token_merging_ratio=None,
                **kwargs: Unpack[TransformersKwargs]) -> XClipOutput:
        """Two-tower logits (Eq. 3); `text_embeds` (K, P) replaces `input_ids` (label caches).

        `labels` (B,): each video's text among the K -> cross-entropy; `return_loss`: symmetric contrastive loss
        (K == B); `token_merging_ratio`: the video encoder's for this call (default: its config's).
        """
        if pixel_values is None:
            raise ValueError("XClipModel needs pixel_values (batch, frames, 3, height, width).")
        if (input_ids is None) == (text_embeds is None):
            raise ValueError("Pass exactly one of input_ids (tokenized texts) or text_embeds (precomputed features).")
        kwargs = self._output_flags(kwargs)
        vision = self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True,
                                   token_merging_ratio=token_merging_ratio, **kwargs)
        text = None
        if text_embeds is None:
            text = self.text_model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                   return_dict=True, **kwargs)
            text_embeds = text.text_embeds
        elif text_embeds.ndim != 2 or text_embeds.shape[-1] != self.config.projection_dim:
            raise ValueError(f"text_embeds must be (num_texts, {self.config.projection_dim}); "
                             f"got shape {tuple(text_embeds.shape)}.")
        logits_per_video, video_embeds, prompted = self.video_text_logits(vision.video_embeds, vision.video_context,
                                                                          text_embeds)
        loss = self.loss(logits_per_video, labels, return_loss)
        return XClipOutput(loss=loss, logits_per_video=logits_per_video, logits_per_text=logits_per_video.t(),
                           video_embeds=video_embeds, text_embeds=prompted, text_model_output=text,
                           vision_model_output=vision)

    def _output_flags(self, kwargs: dict) -> dict:
        """`output_*` flags for the towers: explicit arguments win, else this config's flags when set."""
        kwargs = dict(kwargs)
        for flag in ("output_hidden_states", "output_attentions"):
            if kwargs.get(flag) is None:
                kwargs.pop(flag, None)
                if getattr(self.config, flag, False):
                    kwargs[flag] = True
        return kwargs

    def video_text_logits(self, video_embeds, video_context, text_embeds):
        """Eq. 3 with Eq. 10 from stored features: exp(logit_scale) * cos(v, c + prompt(c, z-bar)).

        video_embeds (B, P), video_context (B, N, P), unprompted text_embeds (K, P) -> logits (B, K), normalised v
        (B, P), prompted texts c-hat (B, K, P).
        """
        prompted = self.text_model.apply_video_prompt(text_embeds.to(video_context.dtype), video_context)
        if not self.config.vision_config.normalize_frame_embeds:  # else the mean of unit frame embeddings, as is
            video_embeds = nn.functional.normalize(video_embeds, dim=-1)
        prompted = nn.functional.normalize(prompted, dim=-1)
        logits_per_video = torch.einsum("bd,bkd->bk", video_embeds, self.logit_scale.exp() * prompted)
        return logits_per_video, video_embeds, prompted

    @staticmethod
    def loss(logits_per_video, labels=None, return_loss=None):
        """Cross-entropy over the K texts for class `labels`, or the symmetric contrastive loss for matching pairs."""
        if labels is not None:
            num_texts = logits_per_video.shape[1]
            if labels.shape != logits_per_video.shape[:1]:
                raise ValueError(f"labels must be {logits_per_video.shape[0]} indices in [0, {num_texts}); "
                                 f"got shape {tuple(labels.shape)}.")
            check_host_class_indices(labels, num_texts, "labels", "indices")
            return nn.functional.cross_entropy(logits_per_video, labels)
        if not return_loss:
            return None
        batch, num_texts = logits_per_video.shape
        if batch != num_texts:
            raise ValueError(f"return_loss=True needs one matching text per video; got {batch} videos and "
                             f"{num_texts} texts (pass labels for classification over a label set).")
        target = torch.arange(batch, device=logits_per_video.device)
        return (nn.functional.cross_entropy(logits_per_video, target)
                + nn.functional.cross_entropy(logits_per_video.t(), target)) / 2


__all__ = ["average_view_probabilities", "XClipPreTrainedModel", "XClipVisionModel", "XClipTextModel", "XClipModel", "XClipOutput",
           "XClipVisionOutput", "XClipTextOutput"]
