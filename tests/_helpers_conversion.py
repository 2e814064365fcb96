"""Shared by the conversion tests: original X-CLIP checkpoints (.pth) written from the format's facts (key names,
packed q/k/v, `x @ proj` projections, heads = width // 64), independently of `xclip_hf.conversion.original`, and a
tiny XClipModel with every weight random."""

from __future__ import annotations

import torch

from xclip_hf import XClipConfig, XClipModel


# ------------------------------------------------------------------------------------------- original-layout files
# a spec: vision width W, layers, patch, image, frames T, MIT layers, joint dim P, prompt layers, text width,
# text layers, context length, vocabulary, MLP widths. Heads are width // 64, as in the original code.
SPECS = {
    "tiny-1frame": dict(W=64, layers=1, patch=4, image=12, T=1, mit=1, P=64, prompt=0, Wt=64, text_layers=1, ctx=5,
                        vocab=40, mlp=48, mit_mlp=32, text_mlp=80),
    "deep-b": dict(W=128, layers=3, patch=8, image=32, T=5, mit=2, P=64, prompt=3, Wt=128, text_layers=2, ctx=16,
                   vocab=300, mlp=96, mit_mlp=256, text_mlp=64),
    "wide-p16": dict(W=192, layers=2, patch=16, image=48, T=3, mit=1, P=128, prompt=2, Wt=64, text_layers=2, ctx=9,
                     vocab=77, mlp=64, mit_mlp=64, text_mlp=128),
}


def original_state_dict(s: dict, seed: int = 0, clip_only: bool = False, tensor=None) -> dict[str, torch.Tensor]:
    """Random tensors under the original code's names and shapes (the issue's facts); `tensor(*shape)` makes the
    tensors instead when given (e.g. stride-0 views)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2 if tensor is None else tensor(*shape)

    def ln(name, d):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = 1 + r(d), r(d)

    def linear(name, out, inp, bias=True):
        sd[f"{name}.weight"] = r(out, inp)
        if bias:
            sd[f"{name}.bias"] = r(out)

    def mha(name, d):  # nn.MultiheadAttention: q, k, v packed in in_proj
        sd[f"{name}.in_proj_weight"], sd[f"{name}.in_proj_bias"] = r(3 * d, d), r(3 * d)
        linear(f"{name}.out_proj", d, d)

    def block(name, d, hidden, message=False):
        mha(f"{name}.attn", d)
        ln(f"{name}.ln_1", d)
        linear(f"{name}.mlp.c_fc", hidden, d)
        linear(f"{name}.mlp.c_proj", d, hidden)
        ln(f"{name}.ln_2", d)
        if message:
            linear(f"{name}.message_fc", d, d)
            ln(f"{name}.message_ln", d)
            mha(f"{name}.message_attn", d)

    W, P, Wt = s["W"], s["P"], s["Wt"]
    sd["visual.conv1.weight"] = r(W, 3, s["patch"], s["patch"])
    sd["visual.class_embedding"] = r(W)
    sd["visual.positional_embedding"] = r((s["image"] // s["patch"]) ** 2 + 1, W)
    ln("visual.ln_pre", W)
    for i in range(s["layers"]):
        block(f"visual.transformer.resblocks.{i}", W, s["mlp"], message=not clip_only)
    ln("visual.ln_post", W)
    sd["visual.proj"] = r(W, P)
    sd["token_embedding.weight"] = r(s["vocab"], Wt)
    sd["positional_embedding"] = r(s["ctx"], Wt)
    for i in range(s["text_layers"]):
        block(f"transformer.resblocks.{i}", Wt, s["text_mlp"])
    ln("ln_final", Wt)
    sd["text_projection"] = r(Wt, P)
    sd["logit_scale"] = torch.tensor(3.3)
    if clip_only:
        return sd
    sd["mit.positional_embedding"] = r(1, s["T"], P)
    for i in range(s["mit"]):
        block(f"mit.resblocks.{i}", P, s["mit_mlp"])
    ln("prompts_visual_ln", W)
    sd["prompts_visual_proj"] = r(W, P)
    ln("prompts_generator.norm", P)
    for i in range(s["prompt"]):
        name = f"prompts_generator.decoder.{i}"
        for proj in ("q_proj", "k_proj", "v_proj"):
            linear(f"{name}.cross_attn.{proj}", P, P, bias=False)
        linear(f"{name}.cross_attn.proj", P, P)
        ln(f"{name}.norm1", P)
        ln(f"{name}.norm3", P)
        linear(f"{name}.mlp.0", 4 * P, P)
        linear(f"{name}.mlp.3", P, 4 * P)
    sd["prompts_generator.alpha"] = r(P)
    return sd


def save_original(path, state, config=None, **extra):
    """The original container: {'model': ..., 'optimizer': ..., 'epoch': ..., 'config': ...}."""
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 8e-6}]},
                "lr_scheduler": {"last_epoch": 3}, "max_accuracy": 0.81, "epoch": 3,
                "config": config if config is not None else {"MODEL": {"ARCH": "ViT-B/32"}}, **extra}, path)
    return str(path)


def tiny_model(seed=0, vocab=99, frames=3):
    """Our XClipModel with the original code's head counts (width // 64), every weight random."""
    config = XClipConfig(
        projection_dim=64,
        text_config=dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=1, max_position_embeddings=77, prompt_layers=2,
                         prompt_num_attention_heads=1),
        vision_config=dict(hidden_size=128, intermediate_size=80, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=8, image_size=32, num_frames=frames, mit_hidden_size=64,
                           mit_intermediate_size=48, mit_num_hidden_layers=1, mit_num_attention_heads=1),
    )
    torch.manual_seed(seed)
    model = XClipModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def stride0_checkpoint(path) -> str:
    """A ~1.5 MB original-layout .pth of stride-0 views declaring ~14e9 parameters (width 8192, 12 layers): the
    issue's "0.8 MB file" that `convert` once built into a ~58 GB model."""
    spec = dict(W=8192, layers=12, patch=14, image=224, T=8, mit=1, P=1024, prompt=2, Wt=1024, text_layers=12,
                ctx=77, vocab=49408, mlp=32768, mit_mlp=4096, text_mlp=4096)
    state = original_state_dict(spec, tensor=lambda *shape: torch.zeros(()).expand(*shape))
    assert sum(t.numel() for t in state.values()) > 13e9 and all(0 in t.stride() for t in state.values() if t.ndim == 2)
    return save_original(path, state)
