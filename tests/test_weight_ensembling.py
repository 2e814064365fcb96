"""Weight-space ensembling (WiSE-FT / Open-VCLIP, issue 30 item 2): `interpolate_weights` blends every parameter CLIP
has as (1 - alpha) * CLIP + alpha * fine-tuned and keeps X-CLIP's own modules; checked against an independent
`from_clip` of the CLIP source and the formula computed here, through the Python API and `classify` / `convert`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from xclip_hf import XClipConfig, XClipForVideoClassification, XClipModel
from xclip_hf.cli import main

from _helpers_conversion import SPECS, original_state_dict, save_original
from _helpers_pipeline import LABELS, make_our_checkpoint, write_videos

# CLIP's names that the expansion renames (paper Sec. 3.2): written here, not read from xclip_hf
RENAMED = {"vision_model.pre_layrnorm.weight": "vision_model.pre_layernorm.weight",
           "vision_model.pre_layrnorm.bias": "vision_model.pre_layernorm.bias",
           "visual_projection.weight": "vision_model.visual_projection.weight",
           "text_projection.weight": "text_model.text_projection.weight"}


def clip_model(text: dict, vision: dict, projection_dim: int, seed: int, scale: float = 0.0) -> CLIPModel:
    """A random transformers CLIPModel of these tower sizes, every parameter moved by noise of std `scale`."""
    torch.manual_seed(seed)
    text = dict(bos_token_id=0, eos_token_id=2, pad_token_id=1, **text)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)).eval()
    with torch.no_grad():
        for p in clip.parameters():
            p.add_(torch.randn_like(p) * scale)
    return clip


def clip_like(config: XClipConfig, seed: int, scale: float = 0.0) -> CLIPModel:
    """A random CLIPModel with the shapes of the CLIP part of an X-CLIP `config`."""
    v, t = config.vision_config, config.text_config
    common = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    text = {k: getattr(t, k) for k in common + ("vocab_size", "max_position_embeddings")}
    vision = {k: getattr(v, k) for k in common + ("image_size", "patch_size")}
    return clip_model(text, vision, config.projection_dim, seed, scale)


def tiny_clip(seed: int = 0, hidden: int = 32) -> CLIPModel:
    """A tiny random CLIP (hidden width `hidden`)."""
    layers = dict(hidden_size=hidden, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    return clip_model(dict(vocab_size=99, max_position_embeddings=77, **layers),
                      dict(image_size=32, patch_size=8, **layers), 64, seed)


def fine_tuned(cls, clip, seed: int = 1):
    """`cls.from_clip(clip)` with every parameter moved, as fine-tuning would (CLIP's and X-CLIP's own)."""
    model = cls.from_clip(clip, num_frames=3).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def shared_names(model, clip) -> dict[str, str]:
    """Our parameter name of each CLIP weight (the test's own renaming; a classifier nests the model in `xclip.`)."""
    prefix = "xclip." if isinstance(model, XClipForVideoClassification) else ""
    return {key: prefix + RENAMED.get(key, key) for key in clip.state_dict() if not key.endswith("position_ids")}


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cls", [XClipModel, XClipForVideoClassification])
def test_alpha_one_is_the_fine_tuned_model(cls):
    clip = tiny_clip()
    model = fine_tuned(cls, clip)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.interpolate_weights(clip, 1.0) is model
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("cls", [XClipModel, XClipForVideoClassification])
def test_alpha_zero_is_the_clip_expansion_with_xclip_modules_fine_tuned(cls, tmp_path):
    clip = tiny_clip()
    clip.save_pretrained(tmp_path / "clip")
    model = fine_tuned(cls, clip)
    tuned = snapshot(model)
    model.interpolate_weights(str(tmp_path / "clip"), 0)  # the source as a folder
    expanded = dict(cls.from_clip(tmp_path / "clip", num_frames=3).named_parameters())  # independent expansion
    shared = set(shared_names(model, clip).values())
    params = dict(model.named_parameters())
    assert shared < set(params)
    for name, param in params.items():
        if name in shared:
            assert torch.equal(param, expanded[name]), name
        else:  # X-CLIP's own modules: message tokens / CFA, MIT, prompt generator, context projection
            assert torch.equal(param, tuned[name]), name
    own = set(params) - shared
    for module in (".cfa.", ".mit.", "prompt_generator.", "context_projection", "message_"):
        assert any(module in n for n in own), module


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 0.3])
def test_each_parameter_is_linear_in_alpha(alpha):
    """Exactly (1 - alpha) * CLIP + alpha * fine-tuned per parameter (rounded once to float32), the rest untouched;
    the logits are not linear in alpha and are not tested."""
    clip = tiny_clip()
    model = fine_tuned(XClipForVideoClassification, clip)
    tuned = snapshot(model)
    model.interpolate_weights(clip, alpha)
    names = shared_names(model, clip)
    clip_state = clip.state_dict()
    params = dict(model.named_parameters())
    for key, ours in names.items():
        expected = ((1 - alpha) * clip_state[key].double() + alpha * tuned[ours].double()).float()
        assert torch.equal(params[ours], expected), ours
        assert not torch.equal(params[ours], tuned[ours]), ours
    for name in set(params) - set(names.values()):
        assert torch.equal(params[name], tuned[name]), name
    # linear between the two ends: theta(alpha) - theta(0) = alpha * (theta(1) - theta(0))
    for key, ours in names.items():
        torch.testing.assert_close(params[ours] - clip_state[key], alpha * (tuned[ours] - clip_state[key]))


def test_blending_invalidates_the_classifier_text_cache():
    """The classifier's cached class-text features follow the new weights (same logits as a fresh blended model)."""
    from _helpers_pipeline import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = XClipConfig.from_variant("xclip-tiny", num_frames=3, vocab_size=len(tokenizer))
    clip = clip_like(config, seed=4, scale=0.5)
    model = fine_tuned(XClipForVideoClassification, clip)
    model.set_class_texts(tokenizer, id2label=dict(enumerate(LABELS)))
    fresh = XClipForVideoClassification(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    video = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        before = model(pixel_values=video).logits  # fills the text cache
        model.interpolate_weights(clip, 0.5)
        fresh.interpolate_weights(clip, 0.5)
        after, expected = model(pixel_values=video).logits, fresh(pixel_values=video).logits
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_extract_clip_undoes_the_expansion():
    from xclip_hf.models.weight_ensembling import extract_clip

    clip = tiny_clip()
    back = extract_clip(XClipModel.from_clip(clip, num_frames=3)).state_dict()
    assert all(torch.equal(back[k], v) for k, v in clip.state_dict().items())
    model = fine_tuned(XClipModel, clip)
    again = XClipModel.from_clip(extract_clip(model), num_frames=3)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[ours], again.get_parameter(ours)) for ours in shared_names(model, clip).values())


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan, math.inf, "0.5", True, None, [0.5]])
def test_alpha_outside_zero_one_or_not_a_number_is_refused(alpha):
    clip = tiny_clip()
    model = fine_tuned(XClipModel, clip)
    tuned = snapshot(model)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]") as err:
        model.interpolate_weights(clip, alpha)
    assert repr(alpha) in str(err.value)
    assert all(torch.equal(p, tuned[n]) for n, p in model.named_parameters())


def test_a_clip_source_that_does_not_fit_is_refused_naming_it_and_the_parameter(tmp_path):
    wide = tiny_clip(hidden=48)
    wide.save_pretrained(tmp_path / "wide")
    model = fine_tuned(XClipModel, tiny_clip())
    tuned = snapshot(model)
    with pytest.raises(ValueError) as err:
        model.interpolate_weights(str(tmp_path / "wide"), 0.5)
    message = str(err.value)
    assert str(tmp_path / "wide") in message and "does not fit" in message and "48)" in message
    assert "embeddings" in message  # the first mismatching parameter, by name
    assert all(torch.equal(p, tuned[n]) for n, p in model.named_parameters())  # nothing half-blended


def test_a_source_that_is_not_a_clip_checkpoint_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model = fine_tuned(XClipModel, tiny_clip())
    with pytest.raises(ValueError, match="no-such-clip' does not exist"):
        model.interpolate_weights(str(tmp_path / "no-such-clip"), 0.5)
    ours = make_our_checkpoint(tmp_path / "xclip")  # an X-CLIP folder is not a CLIP checkpoint
    with pytest.raises(ValueError, match="'xclip_hf' checkpoint, not a transformers CLIPModel"):
        model.interpolate_weights(ours, 0.5)
    tiny_clip().save_pretrained(tmp_path / "partial")  # a CLIP folder without one weight: never filled in randomly
    weights = load_file(tmp_path / "partial" / "model.safetensors")
    del weights["visual_projection.weight"]
    save_file(weights, tmp_path / "partial" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="partial' is not a CLIP checkpoint.*visual_projection.weight"):
        model.interpolate_weights(tmp_path / "partial", 0.5)
    with pytest.raises(TypeError, match="CLIPModel"):
        model.interpolate_weights({"vision_model": 1}, 0.5)


def test_a_model_without_the_clip_parameters_is_refused():
    from xclip_hf.models.weight_ensembling import interpolate_weights

    clip = tiny_clip()
    video_tower = fine_tuned(XClipModel, clip).vision_model
    with pytest.raises(ValueError, match=r"XClipVisionModel lacks \d+ of the CLIP parameters.*a full X-CLIP model"):
        interpolate_weights(video_tower, clip, 0.5)
    with pytest.raises(TypeError, match="must be an X-CLIP model"):
        interpolate_weights({"text_model.embeddings.token_embedding.weight": torch.zeros(99, 32)}, clip, 0.5)


# --------------------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("wise")
    model_dir = make_our_checkpoint(root / "model")
    clip = clip_like(XClipConfig.from_pretrained(model_dir), seed=7, scale=0.5)
    clip.save_pretrained(root / "clip")
    return {"model": model_dir, "clip": str(root / "clip"), "videos": write_videos(str(root))[:1], "root": root}


def _classify(checkpoint, capsys, *extra) -> tuple[int, object]:
    code = main(["classify", *checkpoint["videos"], "--labels", ",".join(LABELS), "--model", checkpoint["model"],
                 "--json", "--no-progress", *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_classify_alpha_scores_with_the_blended_model(checkpoint, capsys):
    from xclip_hf.pipelines.zero_shot_video_classification import build_pipeline

    code, blended = _classify(checkpoint, capsys, "--alpha", "0.4", "--clip-source", checkpoint["clip"])
    assert code == 0
    model = XClipModel.from_pretrained(checkpoint["model"]).interpolate_weights(checkpoint["clip"], 0.4)
    expected = build_pipeline(model, processor=checkpoint["model"])(checkpoint["videos"][0], candidate_labels=LABELS)
    got = {p["label"]: p["score"] for p in blended[0]["predictions"]}
    assert got == pytest.approx({p["label"]: p["score"] for p in expected}, abs=1e-6)
    code, plain = _classify(checkpoint, capsys)
    code_one, one = _classify(checkpoint, capsys, "--alpha", "1", "--clip-source", checkpoint["clip"])
    assert code == code_one == 0 and one == plain and plain != blended


@pytest.mark.parametrize("extra,status,words", [
    (["--alpha", "0.5"], 2, "--alpha needs --clip-source"),
    (["--clip-source", "C"], 2, "--clip-source needs --alpha"),
    (["--alpha", "1.5", "--clip-source", "C"], 2, "argument --alpha: expected a number in [0, 1], got '1.5'"),
    (["--alpha", "half", "--clip-source", "C"], 2, "argument --alpha: expected a number in [0, 1], got 'half'"),
])
def test_classify_weight_ensembling_usage_errors(checkpoint, capsys, extra, status, words):
    argv = ["classify", *checkpoint["videos"], "--labels", "a,b", "--model", checkpoint["model"], *extra]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    assert code == status and words in capsys.readouterr().err


def test_classify_refuses_a_clip_source_that_does_not_fit(checkpoint, tmp_path, capsys):
    tiny_clip(hidden=48).save_pretrained(tmp_path / "wide")
    code, err = _classify(checkpoint, capsys, "--alpha", "0.5", "--clip-source", str(tmp_path / "wide"))
    assert code == 1 and str(tmp_path / "wide") in err and "does not fit" in err


def test_convert_alpha_writes_the_blended_model(tmp_path, capsys):
    s = SPECS["tiny-1frame"]
    pth = save_original(tmp_path / "m.pth", original_state_dict(s, seed=2))
    assert main(["convert", pth, str(tmp_path / "plain"), "--no-progress"]) == 0
    plain = XClipModel.from_pretrained(tmp_path / "plain")
    clip = clip_like(plain.config, seed=3, scale=0.5)
    clip.save_pretrained(tmp_path / "clip")
    assert main(["convert", pth, str(tmp_path / "wise"), "--alpha", "0.25", "--clip-source", str(tmp_path / "clip"),
                 "--no-progress"]) == 0
    assert "(1-0.25)*CLIP + 0.25*checkpoint" in capsys.readouterr().out
    wise = dict(XClipModel.from_pretrained(tmp_path / "wise").named_parameters())
    names = shared_names(plain, clip)
    clip_state = clip.state_dict()
    for name, param in plain.named_parameters():
        key = next((k for k, v in names.items() if v == name), None)
        expected = param if key is None else ((0.75 * clip_state[key].double() + 0.25 * param.double()).float())
        assert torch.equal(wise[name], expected), name
    assert main(["convert", pth, str(tmp_path / "bad"), "--alpha", "0.25", "--no-progress"]) == 2
    assert "--alpha needs --clip-source" in capsys.readouterr().err
