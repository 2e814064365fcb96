"""Open-VCLIP and FROSTER checkpoints -> our models: their own code is the oracle (tiny checkpoints saved by it, its
logits on fixed inputs: tests/fixtures/README.md), the neighbour-frame attention against a direct computation, the
CLIP interpolation, the CLI, errors that name the input, and the successors' model cards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from xclip_hf import XClipConfig, XClipModel
from xclip_hf.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES = {"openvclip": FIXTURES / "openvclip" / "openvclip_tiny", "froster": FIXTURES / "froster" / "froster_tiny"}
CARDS = Path(__file__).resolve().parents[1] / "model_cards" / "successors"


def fixture(family):
    """(checkpoint path, their inputs and logits) of a family's oracle fixture."""
    base = CASES[family]
    return base.with_suffix(".pyth"), torch.load(base.parent / (base.name + "_io.pt"))


def ensemble_classifier(model, text_ids):
    """Their classifier, computed independently: each template's text features normalised, averaged, normalised."""
    with torch.no_grad():
        feats = [torch.nn.functional.normalize(model.get_text_features(ids).pooler_output, dim=-1) for ids in text_ids]
    return torch.nn.functional.normalize(torch.stack(feats).mean(0), dim=-1)


def our_logits(model, io):
    """Our logits on their inputs: (B, C, T, H, W) -> our (B, T, C, H, W), their template ensemble as text."""
    with torch.no_grad():
        return model(pixel_values=io["pixel_values"].permute(0, 2, 1, 3, 4),
                     text_embeds=ensemble_classifier(model, io["text_ids"])).logits_per_video


@pytest.mark.parametrize("family", sorted(CASES))
def test_converted_model_matches_the_original_code(family, tmp_path):
    from xclip_hf.conversion import convert_successor_checkpoint

    checkpoint, io = fixture(family)
    result = convert_successor_checkpoint(checkpoint, tmp_path / "out", family, progress=False)
    model = XClipModel.from_pretrained(tmp_path / "out").eval()
    vision = model.config.vision_config
    assert vision.neighbour_frame_attention and vision.normalize_frame_embeds and not vision.use_mit
    assert vision.num_frames == io["pixel_values"].shape[2]  # from the checkpoint's saved cfg (DATA.NUM_FRAMES)
    torch.testing.assert_close(our_logits(model, io), io["logits"], atol=1e-4, rtol=0)
    if family == "froster":  # the teacher and the residual projections are training-only: left out, said so
        assert any("raw_model.*" in n for n in result.notes) and any("projector_v.*" in n for n in result.notes)


@pytest.mark.parametrize("option", ["neighbour_frame_attention", "normalize_frame_embeds"])
def test_each_option_is_needed_to_match(option):
    """The oracle tells the options apart: switching either off moves the logits well past the tolerance."""
    from xclip_hf.conversion.openvclip import load_successor, read_successor

    checkpoint, io = fixture("openvclip")
    ckpt = read_successor(checkpoint)
    setattr(ckpt.config.vision_config, option, False)
    assert (our_logits(load_successor(ckpt), io) - io["logits"]).abs().max() > 1e-2


def test_neighbour_attention_against_a_direct_computation():
    """Each frame's queries over [frame t+1, frame t-1, frame t] keys (zero keys / values past the clip's ends)."""
    from xclip_hf.models.modeling_xclip import XClipAttention, eager_attention
    from xclip_hf.models.neighbour_frame_attention import neighbour_frame_attention

    torch.manual_seed(0)
    config = XClipConfig.from_variant("xclip-tiny", use_mit=False, use_cross_frame_attention=False,
                                      neighbour_frame_attention=True).vision_config
    config._attn_implementation = "eager"
    heads, d = 4, 32
    attn = XClipAttention(config, d, heads).eval()
    b, t, length = 2, 3, 5
    x = torch.randn(b * t, length, d)
    with torch.no_grad():
        out = neighbour_frame_attention(attn, x, t, eager_attention)[0]
        q, k, v = (p(x).view(b, t, length, heads, d // heads) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        expected = torch.empty(b, t, length, heads, d // heads)
        for clip in range(b):
            for f in range(t):
                def frame(i, src):
                    return src[clip, i] if 0 <= i < t else torch.zeros_like(src[clip, f])
                keys = torch.cat([frame(f + 1, k), frame(f - 1, k), k[clip, f]])  # (3L, H, dh)
                values = torch.cat([frame(f + 1, v), frame(f - 1, v), v[clip, f]])
                for h in range(heads):
                    w = (q[clip, f, :, h] @ keys[:, h].T / (d // heads) ** 0.5).softmax(-1)
                    expected[clip, f, :, h] = w @ values[:, h]
        expected = attn.out_proj(expected.reshape(b * t, length, d))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_neighbour_attention_refuses_token_merging():
    config = XClipConfig.from_variant("xclip-tiny", num_frames=3, use_mit=False, use_cross_frame_attention=False,
                                      neighbour_frame_attention=True, prompt_layers=0)
    model = XClipModel(config).eval()
    with pytest.raises(ValueError, match="token merging is not available"):
        model.get_video_features(torch.randn(1, 3, 3, 32, 32), token_merging_ratio=0.3)


def test_options_clash_with_x_clip_modules():
    from huggingface_hub.errors import StrictDataclassClassValidationError

    for overrides in (dict(neighbour_frame_attention=True), dict(use_cross_frame_attention=False, use_mit=False,
                                                                  neighbour_frame_attention=True, token_merging_ratio=0.5),
                      dict(normalize_frame_embeds=True)):
        with pytest.raises(StrictDataclassClassValidationError, match="needs"):
            XClipConfig.from_variant("xclip-tiny", **overrides)


def tiny_clip(family):
    """A transformers CLIPModel with the architecture of a family's fixture (random weights)."""
    from transformers import CLIPConfig, CLIPModel

    width = 128 if family == "openvclip" else 64
    config = CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=64, intermediate_size=256, num_hidden_layers=1,
                         num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu"),
        vision_config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=1,
                           num_attention_heads=width // 64, image_size=16, patch_size=8, hidden_act="quick_gelu"),
        projection_dim=32)
    torch.manual_seed(3)
    return CLIPModel(config).eval()


def test_weight_ensembling_is_their_patching(tmp_path):
    """Their TEST.PATCHING_RATIO r: theta = r * CLIP + (1 - r) * theirs for every CLIP weight (names mapped), nothing
    else touched: weight-space ensembling with alpha = 1 - r; alpha=1: theirs."""
    from xclip_hf.conversion.openvclip import load_successor, read_successor
    from xclip_hf.models.clip_expansion import rename_clip_key

    checkpoint, io = fixture("openvclip")
    clip = tiny_clip("openvclip")
    before = load_successor(read_successor(checkpoint)).state_dict()
    before = {k: v.clone() for k, v in before.items()}
    after = load_successor(read_successor(checkpoint)).interpolate_weights(clip, 0.75).state_dict()
    clip_state = {rename_clip_key(k): v for k, v in clip.state_dict().items() if not k.endswith("position_ids")}
    for key, value in after.items():
        expected = 0.25 * clip_state[key] + 0.75 * before[key] if key in clip_state else before[key]
        torch.testing.assert_close(value, expected, atol=1e-6, rtol=0, msg=key)
    assert len(clip_state) > 20 and set(clip_state) <= set(after)
    unchanged = load_successor(read_successor(checkpoint)).interpolate_weights(clip, 1.0)
    torch.testing.assert_close(our_logits(unchanged, io), io["logits"], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="does not fit the model"):
        load_successor(read_successor(checkpoint)).interpolate_weights(tiny_clip("froster"), 0.5)


def test_cli_convert_from(tmp_path, capsys):
    checkpoint, io = fixture("froster")
    assert main(["convert", "--from", "froster", str(checkpoint), str(tmp_path / "out"), "--no-progress"]) == 0
    assert "converted" in capsys.readouterr().out
    model = XClipModel.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(our_logits(model, io), io["logits"], atol=1e-4, rtol=0)
    assert main(["info", "--model", str(tmp_path / "out")]) == 0
    assert "neighbour-frame attention (Open-VCLIP) + mean of unit frame embeddings" in capsys.readouterr().out
    clip_dir = tmp_path / "clip"
    tiny_clip("froster").save_pretrained(clip_dir)
    assert main(["convert", "--from", "froster", str(checkpoint), str(tmp_path / "patched"), "--no-progress",
                 "--clip-source", str(clip_dir), "--alpha", "0.5"]) == 0
    patched = XClipModel.from_pretrained(tmp_path / "patched").eval()
    assert (our_logits(patched, io) - io["logits"]).abs().max() > 1e-3  # the interpolation changed the weights
    for bad in (["--clip-source", str(clip_dir)], ["--alpha", "0.5"], ["--clip", str(clip_dir)]):
        args = ["convert", str(checkpoint), str(tmp_path / "bad"), *bad]
        if "--from" not in bad:
            args += ["--from", "openvclip"]
        assert main(args) == 2, bad


def save(path, data):
    torch.save(data, path)
    return path


def test_clear_errors_name_the_input(tmp_path):
    from xclip_hf.conversion.openvclip import read_successor

    checkpoint, _ = fixture("openvclip")
    state = torch.load(checkpoint)["model_state"]
    cases = {
        "bare.pyth": ({"model": state}, "no 'model_state' entry"),
        "junk.pyth": ({"model_state": {**state, "head.weight": torch.zeros(2)}}, "unexpected keys head.weight"),
        "xclip.pyth": ({"model_state": {**state, "model.mit.positional_embedding": torch.zeros(1, 3, 32)}},
                       None),
        "cfa.pyth": ({"model_state": {**state, "model.visual.transformer.resblocks.0.message_fc.weight":
                                      torch.zeros(128, 128)}}, "cross_frame_attend"),
        "notclip.pyth": ({"model_state": {"model.foo": torch.zeros(1)}}, "not a CLIP ViT"),
        "other_type.pyth": ({"model_state": state, "cfg": "MODEL:\n  TEMPORAL_MODELING_TYPE: channel_shift\n"},
                            "channel_shift"),
    }
    for name, (data, message) in cases.items():
        path = save(tmp_path / name, data)
        with pytest.raises(ValueError) as err:
            read_successor(path)
        assert str(path) in str(err.value), (name, err.value)
        if message:
            assert message in str(err.value), (name, err.value)
    with pytest.raises(ValueError, match="family must be one of"):
        read_successor(checkpoint, "vclip")
    with pytest.raises(FileNotFoundError):
        read_successor(tmp_path / "missing.pyth")


def test_successor_model_cards():
    """One card per released variant: front matter, the published zero-shot figures of the issue, the command."""
    published = {"openvclip": {"UCF-101": 83.4, "HMDB-51": 53.9, "Kinetics-600": 73.0},
                 "froster": {"UCF-101": 84.8, "HMDB-51": 54.8, "Kinetics-600": 74.8}}
    for family, figures in published.items():
        text = (CARDS / f"{family}-b16.md").read_text(encoding="utf-8")
        match = re.match(r"\A---\n(.*?)\n---\n(.*)\Z", text, re.S)
        assert match, family
        meta, body = yaml.safe_load(match.group(1)), match.group(2)
        assert {"video-classification", "zero-shot-video-classification", "xclip_hf"} <= set(meta["tags"])
        for dataset, value in figures.items():
            assert re.search(rf"^\| {re.escape(dataset)} \| {value} \|", body, re.M), (family, dataset)
        assert f"xclip-hf convert --from {family}" in body
    index = (CARDS / "README.md").read_text(encoding="utf-8")
    assert "(openvclip-b16.md)" in index and "(froster-b16.md)" in index


def test_families_registry_has_the_successors_and_the_cli_offers_them(capsys):
    from xclip_hf.conversion.families import get_family

    assert get_family("openvclip").fixed == (("family", "openvclip"),)
    assert get_family("froster").fixed == (("family", "froster"),)
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal's width
    assert "openvclip" in help_text and "froster" in help_text and "--alpha 1-r" in help_text
    with pytest.raises(ValueError, match="known: froster"):
        get_family("vclip")


@pytest.mark.slow
@pytest.mark.onnx
def test_onnx_export_of_the_successor_options_equals_torch(tmp_path):
    """A model with neighbour-frame attention and unit-frame pooling exports (ONNX Runtime): same logits as torch."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from _helpers_pipeline import make_our_checkpoint

    from xclip_hf.deploy import export_onnx
    from xclip_hf.models.loading import load_model_and_processor

    base, processor = load_model_and_processor(make_our_checkpoint(tmp_path / "base"))
    config = base.config
    config.vision_config.use_cross_frame_attention = config.vision_config.use_mit = False
    config.vision_config.neighbour_frame_attention = config.vision_config.normalize_frame_embeds = True
    torch.manual_seed(0)
    model = XClipModel(config).eval()
    model.save_pretrained(tmp_path / "successor")
    processor.save_pretrained(tmp_path / "successor")
    exported, _ = load_model_and_processor(export_onnx(str(tmp_path / "successor"), tmp_path / "onnx"),
                                           runtime="onnxruntime")
    assert exported.config.vision_config.neighbour_frame_attention
    texts = processor.tokenizer(["a b", "c", "d e f"], padding="max_length", return_tensors="pt",
                                max_length=config.text_config.max_position_embeddings)
    for batch in (1, 3):  # the batch axis stays dynamic
        pixels = torch.randn(batch, config.vision_config.num_frames, 3, 32, 32,
                             generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(pixel_values=pixels, **texts).logits_per_video
        got = exported(pixel_values=pixels, **texts).logits_per_video
        torch.testing.assert_close(torch.as_tensor(got), want, atol=1e-4, rtol=0)
