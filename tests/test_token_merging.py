"""Token merging (`vision_config.token_merging_ratio`, models/token_merging.py): off is the exact model; on, the
[class] and message tokens are never merged, each layer merges floor(ratio x patch tokens), proportional attention
over a merged pair equals attention over the pair; the config, pipeline, CLI, torch.compile and the ONNX export."""

from __future__ import annotations

import json
import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassError

from _helpers_pipeline import LABELS, make_our_checkpoint, write_videos
from xclip_hf import XClipConfig, XClipModel
from xclip_hf.models import modeling_xclip, token_merging
from xclip_hf.models.configuration_xclip import XClipVisionConfig
from xclip_hf.models.modeling_xclip import XClipAttention


def _model(ratio=0.0, image_size=32, layers=2, frames=3, cross_frame=True, attn="sdpa", seed=0):
    """A seeded tiny X-CLIP (patch 8: image_size 32 -> 16 patches per frame)."""
    torch.manual_seed(seed)
    config = XClipConfig.from_variant("xclip-tiny", num_frames=frames, image_size=image_size,
                                      token_merging_ratio=ratio, use_cross_frame_attention=cross_frame,
                                      **{"vision_config.num_hidden_layers": layers})
    model = XClipModel(config).eval()
    model.set_attn_implementation(attn)
    return model


def _inputs(batch=2, frames=3, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 900, (3, 7), generator=g), torch.randn(batch, frames, 3, size, size, generator=g)


def _expected_lengths(ratio, patches, layers):
    """Tokens per frame ([class] included) after each layer: r = floor(ratio x patches), at most half of them."""
    lengths = [patches + 1]
    for _ in range(layers):
        r = min(int(math.floor(ratio * patches + 1e-9)), patches // 2)
        patches -= r
        lengths.append(patches + 1)
    return lengths


def _recording_merges(monkeypatch):
    """Wrap `merge_tokens` as the model calls it: a list of (tokens in, keys in, state in, tokens out, state out)."""
    calls = []
    real = modeling_xclip.merge_tokens

    def record(hidden, keys, state):
        out, new_state = real(hidden, keys, state)
        calls.append((hidden, keys, state, out, new_state))
        return out, new_state

    monkeypatch.setattr(modeling_xclip, "merge_tokens", record)
    return calls


# ------------------------------------------------------------------------------------------------ off = exact
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_ratio_zero_is_the_model_without_merging_bit_for_bit(monkeypatch, attn):
    """Ratio 0 (the default, set in the config or given to the call) never enters the merging code."""
    model = _model(attn=attn)
    ids, pixels = _inputs()
    with torch.no_grad():
        want = model(input_ids=ids, pixel_values=pixels)

    def refuse(*args, **kwargs):
        raise AssertionError("token merging entered with ratio 0")

    for name in ("start_merging", "merge_tokens", "proportional_attention_bias", "unmerge_tokens"):
        monkeypatch.setattr(modeling_xclip, name, refuse)
    assert model.config.vision_config.token_merging_ratio == 0.0
    with torch.no_grad():
        default = model(input_ids=ids, pixel_values=pixels)
        given = model(input_ids=ids, pixel_values=pixels, token_merging_ratio=0.0)
        model.config.vision_config.token_merging_ratio = 0
        in_config = model(input_ids=ids, pixel_values=pixels)
    for got in (default, given, in_config):
        for key in ("logits_per_video", "video_embeds", "text_embeds"):
            assert torch.equal(got[key], want[key])
        assert torch.equal(got.vision_model_output.video_context, want.vision_model_output.video_context)


# ------------------------------------------------------------------------------------------------ on: shapes, counts
@pytest.mark.parametrize("cross_frame", [True, False], ids=["xclip", "clip-mean"])
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.9])
def test_merging_keeps_output_shapes_and_merges_the_computed_count(cross_frame, ratio):
    model = _model(image_size=64, layers=4, cross_frame=cross_frame)  # 64 patches per frame, 4 layers
    ids, pixels = _inputs(size=64)
    with torch.no_grad():
        exact = model(input_ids=ids, pixel_values=pixels)
        merged = model(input_ids=ids, pixel_values=pixels, token_merging_ratio=ratio, output_hidden_states=True)
    for key in ("logits_per_video", "video_embeds", "text_embeds"):
        assert merged[key].shape == exact[key].shape and torch.isfinite(merged[key]).all()
    vision, exact_vision = merged.vision_model_output, exact.vision_model_output
    for key in ("last_hidden_state", "video_context", "frame_embeds", "video_embeds"):
        assert vision[key].shape == exact_vision[key].shape
    assert not torch.allclose(merged.logits_per_video, exact.logits_per_video)  # merging really ran
    lengths = [h.shape[1] for h in vision.hidden_states]
    assert lengths == _expected_lengths(ratio, 64, 4)
    assert lengths[-1] < lengths[0]


def test_final_tokens_are_spread_back_over_their_input_positions():
    """`last_hidden_state` (B, T, N+1, D): as many distinct rows per frame as tokens are left, [class] first."""
    model = _model(ratio=0.3)
    _, pixels = _inputs()
    with torch.no_grad():
        out = model.vision_model(pixels, output_hidden_states=True)
    left = out.hidden_states[-1].shape[1]
    tokens = out.last_hidden_state.flatten(0, 1)
    assert tokens.shape[1] == 17 and left < 17
    for frame in tokens:
        assert torch.unique(frame, dim=0).shape[0] == left
    # the final layer's [class] token (position 0 of the merged sequence) is the frame's [class] output
    assert torch.equal(tokens[:, 0], out.hidden_states[-1][:, 0])


# ------------------------------------------------------------------------------------------------ what is merged
@pytest.mark.parametrize("cross_frame", [True, False], ids=["xclip", "clip-mean"])
def test_class_and_message_tokens_are_never_merged(monkeypatch, cross_frame):
    """Every layer's merge sees the frame's tokens only (no message token); the [class] token keeps size 1 at
    position 0 and the sizes of a frame always sum to its N+1 input tokens."""
    calls = _recording_merges(monkeypatch)
    model = _model(image_size=64, layers=4, cross_frame=cross_frame)
    _, pixels = _inputs(size=64)
    with torch.no_grad():
        model.vision_model(pixels, token_merging_ratio=0.45, output_hidden_states=True)
    assert len(calls) == 4
    length = 65
    for hidden, keys, state, out, new_state in calls:
        assert hidden.shape[1] == keys.shape[2] == length == state.sizes.shape[1]  # no message token in the set
        length = out.shape[1]
        assert new_state.sizes.shape[1] == length
        assert torch.equal(new_state.sizes[:, 0], torch.ones(len(new_state.sizes)))
        assert torch.equal(new_state.sizes.sum(dim=1), torch.full((len(new_state.sizes),), 65.0))
        assert (new_state.source[:, 0] == 0).all()  # the [class] input lives at position 0
        assert torch.equal(out[:, 0], hidden[:, 0])  # [class] untouched by the merge
        assert int((new_state.source == 0).sum()) == len(new_state.source)  # nothing merged into it


def test_class_token_is_not_merged_even_when_it_is_the_best_match():
    """Keys where the [class] key equals a patch key (cosine 1, the best pair): a patch pair is merged instead."""
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(1, 2, 9, 4, generator=g)
    keys[:, :, 1] = keys[:, :, 0]  # [class] (set A, index 0) and token 1 (set B, index 0) identical
    hidden = torch.randn(1, 9, 6, generator=g)
    state = token_merging.start_merging(hidden, 0.25)  # r = floor(0.25 x 8) = 2
    out, new_state = token_merging.merge_tokens(hidden, keys, state)
    assert out.shape == (1, 7, 6)
    assert new_state.sizes[0, 0] == 1 and torch.equal(out[:, 0], hidden[:, 0])
    assert new_state.sizes.sum() == 9


def test_identical_tokens_are_merged_into_one_of_size_two():
    g = torch.Generator().manual_seed(1)
    keys = torch.randn(1, 2, 7, 4, generator=g)
    hidden = torch.randn(1, 7, 5, generator=g)
    keys[:, :, 4], hidden[:, 4] = keys[:, :, 3], hidden[:, 3]  # token 4 (A) duplicates token 3 (B)
    state = token_merging.start_merging(hidden, 1 / 6)  # r = 1 of 6 patches
    out, new_state = token_merging.merge_tokens(hidden, keys, state)
    merged_into = new_state.source[0, 4]
    assert new_state.source[0, 3] == merged_into and new_state.sizes[0, merged_into] == 2
    torch.testing.assert_close(out[0, merged_into], hidden[0, 3])
    kept = [i for i in range(7) if i not in (3, 4)]
    torch.testing.assert_close(out[0, new_state.source[0, kept]], hidden[0, kept])  # the others unchanged


# -------------------------------------------------------------------------------------------- proportional attention
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_merged_pair_with_proportional_attention_equals_the_unmerged_pair(attn):
    """Attention over [x0, x1, x2, x2, x4] equals attention over [x0, x1, x2 (size 2), x4] with + log(size):
    computed by hand (softmax over the duplicated keys) and by `XClipAttention` with the merging bias."""
    torch.manual_seed(0)
    config = XClipVisionConfig(hidden_size=16, num_attention_heads=2)
    config._attn_implementation = attn
    attention = XClipAttention(config, 16, 2).eval()
    x = torch.randn(1, 5, 16)
    x[:, 3] = x[:, 2]
    merged = x[:, [0, 1, 2, 4]]
    sizes = torch.tensor([[1.0, 1.0, 2.0, 1.0]])
    with torch.no_grad():
        want = attention(x)[0][:, [0, 1, 2, 4]]
        got = attention(merged, attention_mask=token_merging.proportional_attention_bias(sizes, 0, x.dtype))[0]
        unweighted = attention(merged)[0]
        # by hand, one head: softmax(q k^T / sqrt(d) + log s) v == softmax over the duplicated keys
        q, k, v = torch.randn(3, 8), torch.randn(4, 8), torch.randn(4, 8)
        dup = [0, 1, 2, 2, 3]
        by_hand = torch.softmax(q @ k[dup].T / 8**0.5, -1) @ v[dup]
        proportional = torch.softmax(q @ k.T / 8**0.5 + sizes.log(), -1) @ v
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(unweighted, want, atol=1e-4)  # the bias matters
    torch.testing.assert_close(proportional, by_hand, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cross_frame", [True, False], ids=["xclip", "clip-mean"])
def test_merging_a_duplicated_patch_changes_nothing(cross_frame):
    """Two identical patch tokens (same pixels, same position embedding): layer 1 merges exactly that pair (r = 1),
    layer 2 attends to it with size 2; every output equals the model without merging."""
    model = _model(ratio=1 / 16, cross_frame=cross_frame)  # 16 patches: r = 1, then floor(15 / 16) = 0
    with torch.no_grad():
        table = model.vision_model.embeddings.position_embedding.weight
        table[3] = table[2]  # patches 1 and 2 (sequence positions 2 and 3: one in each set)
    ids, pixels = _inputs()
    pixels[..., 0:8, 16:24] = pixels[..., 0:8, 8:16]
    with torch.no_grad():
        exact = model(input_ids=ids, pixel_values=pixels, token_merging_ratio=0.0)
        merged = model(input_ids=ids, pixel_values=pixels, output_hidden_states=True)
    assert [h.shape[1] for h in merged.vision_model_output.hidden_states] == [17, 16, 16]
    for key in ("logits_per_video", "video_embeds", "text_embeds"):
        torch.testing.assert_close(merged[key], exact[key], rtol=0, atol=1e-5)
    for key in ("last_hidden_state", "video_context"):
        torch.testing.assert_close(merged.vision_model_output[key], exact.vision_model_output[key], rtol=0, atol=1e-5)


def test_message_token_gets_no_bias():
    bias = token_merging.proportional_attention_bias(torch.tensor([[1.0, 3.0, 2.0]]), 1, torch.float32)
    assert bias.shape == (1, 1, 1, 4)
    torch.testing.assert_close(bias.flatten(), torch.tensor([0.0, math.log(3), math.log(2), 0.0]))


# ------------------------------------------------------------------------------------------------ config and arguments
def test_config_round_trip_and_validation(tmp_path):
    config = XClipConfig.from_variant("xclip-tiny", token_merging_ratio=0.25)
    assert config.vision_config.token_merging_ratio == 0.25
    assert XClipConfig.from_variant("xclip-tiny").vision_config.token_merging_ratio == 0.0
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["vision_config"]["token_merging_ratio"] == 0.25
    assert XClipConfig.from_pretrained(tmp_path).vision_config.token_merging_ratio == 0.25
    assert XClipVisionConfig.from_pretrained(tmp_path).token_merging_ratio == 0.25
    for bad in (1, 1.0, -0.1, float("nan"), True):
        with pytest.raises(StrictDataclassClassValidationError, match="token_merging_ratio must be a number in "
                                                                      f"\\[0, 1\\).*got {bad}"):
            XClipConfig.from_variant("xclip-tiny", token_merging_ratio=bad)
    for bad in ("0.2", None):  # not a number: the dataclass's own type check names the field
        with pytest.raises(StrictDataclassError, match="token_merging_ratio"):
            XClipConfig.from_variant("xclip-tiny", token_merging_ratio=bad)
    model = _model()
    _, pixels = _inputs()
    with pytest.raises(ValueError, match="token_merging_ratio must be a number in \\[0, 1\\).*got 1.5"):
        model.vision_model(pixels, token_merging_ratio=1.5)


def test_saved_model_merges_with_its_config_ratio(tmp_path):
    model = _model(ratio=0.3)
    model.save_pretrained(tmp_path)
    loaded = XClipModel.from_pretrained(tmp_path).eval()
    ids, pixels = _inputs()
    with torch.no_grad():
        want = model(input_ids=ids, pixel_values=pixels, token_merging_ratio=0.3).logits_per_video
        exact = model(input_ids=ids, pixel_values=pixels, token_merging_ratio=0.0).logits_per_video
        got = loaded(input_ids=ids, pixel_values=pixels).logits_per_video
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert not torch.allclose(got, exact)


def test_attention_without_a_bias_is_refused():
    model = _model(ratio=0.3)
    model.config.vision_config._attn_implementation = "flash_attention_2"
    _, pixels = _inputs()
    with pytest.raises(ValueError, match="token merging needs an attention that adds a bias.*flash_attention_2"):
        model.vision_model(pixels)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("tome")
    return {"model": make_our_checkpoint(root / "model"), "videos": write_videos(str(root))}


def test_pipeline_ratio_replaces_the_config_and_leaves_the_model_alone(checkpoint):
    from xclip_hf.models.loading import load_model_and_processor
    from xclip_hf.pipelines.zero_shot_video_classification import ZeroShotVideoClassificationPipeline

    model, processor = load_model_and_processor(checkpoint["model"])
    plain = ZeroShotVideoClassificationPipeline(model=model, processor=processor)
    merging = ZeroShotVideoClassificationPipeline(model=model, processor=processor, token_merging_ratio=0.4)
    assert model.config.vision_config.token_merging_ratio == 0.0  # the ratio is the pipeline's, not written
    video = checkpoint["videos"][0]
    exact = plain.score(video, candidate_labels=LABELS)
    got = merging.score(video, candidate_labels=LABELS)
    model.config.vision_config.token_merging_ratio = 0.4
    in_config = plain.score(video, candidate_labels=LABELS)
    model.config.vision_config.token_merging_ratio = 0.0
    torch.testing.assert_close(got, in_config, rtol=0, atol=1e-6)
    assert not torch.allclose(got, exact)
    with pytest.raises(ValueError, match="token_merging_ratio must be a number in \\[0, 1\\)"):
        ZeroShotVideoClassificationPipeline(model=model, processor=processor, token_merging_ratio=1.0)


def test_cli_token_merging_ratio(checkpoint, capsys):
    from xclip_hf.cli import main

    video = checkpoint["videos"][0]
    common = [video, "--labels", ",".join(LABELS), "--model", checkpoint["model"], "--json", "--no-progress"]
    assert main(["classify", *common]) == 0
    exact = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert main(["classify", *common, "--token-merging-ratio", "0.4"]) == 0
    merged = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert {p["label"] for p in merged} == set(LABELS)
    assert {p["label"]: p["score"] for p in merged} != {p["label"]: p["score"] for p in exact}
    with pytest.raises(SystemExit) as err:
        main(["classify", *common, "--token-merging-ratio", "1"])
    assert err.value.code == 2 and "expected a number in [0, 1), got '1'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ compiled and exported
@pytest.mark.slow
def test_torch_compile_fullgraph_with_merging_matches_eager():
    torch._dynamo.reset()
    model = _model(ratio=0.3, frames=2)
    ids, pixels = _inputs(frames=2)
    compiled = torch.compile(model, fullgraph=True)  # a host read of a tensor value would break the graph
    with torch.no_grad():
        want = model(input_ids=ids, pixel_values=pixels)
        got = compiled(input_ids=ids, pixel_values=pixels)
    for key in ("logits_per_video", "video_embeds", "text_embeds"):
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0)
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.onnx
def test_onnx_export_with_merging_equals_torch(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from xclip_hf.cli import main
    from xclip_hf.deploy import export_onnx
    from xclip_hf.models.loading import load_model_and_processor
    from xclip_hf.pipelines.zero_shot_video_classification import ZeroShotVideoClassificationPipeline

    model, processor = load_model_and_processor(checkpoint["model"])
    model.config.vision_config.token_merging_ratio = 0.4
    model.save_pretrained(tmp_path / "merging")
    processor.save_pretrained(tmp_path / "merging")
    out = export_onnx(str(tmp_path / "merging"), tmp_path / "onnx")
    exported, _ = load_model_and_processor(out, runtime="onnxruntime")
    assert exported.config.vision_config.token_merging_ratio == 0.4
    for batch in (1, 3):  # the batch axis stays dynamic
        pixels = torch.randn(batch, 3, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model.get_video_features(pixels)
            exact = model.get_video_features(pixels, token_merging_ratio=0.0)
        got = exported.get_video_features(pixels)
        for name in ("video_embeds", "video_context", "frame_embeds"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=1e-4)
        assert not torch.allclose(got.video_embeds, exact.video_embeds, atol=1e-3)
    with pytest.raises(ValueError, match="token_merging_ratio applies to torch models"):
        ZeroShotVideoClassificationPipeline(model=out, token_merging_ratio=0.2)
    assert main(["classify", checkpoint["videos"][0], "--labels", "a,b", "--model", out,
                 "--token-merging-ratio", "0.2"]) == 2
