import pytest
import torch
from transformers import AutoConfig, AutoModel, XCLIPModel

from _oracle import VOCAB, save_oracle, text_batch
from xclip_hf import XClipConfig, XClipModel, XClipTextModel, XClipVisionModel
from xclip_hf.models.flops import count_flops


@pytest.fixture(scope="module", params=[1, 3, 8], ids=lambda t: f"T{t}")
def oracle_pair(request, tmp_path_factory):
    """(transformers XCLIPModel, its save_pretrained directory, num_frames)."""
    path = tmp_path_factory.mktemp(f"published_T{request.param}")
    return save_oracle(path, num_frames=request.param), path, request.param


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def loaded_pair(request, oracle_pair):
    """(oracle, ours, loading info, num_frames): both loaded once per (frames, attention kernel)."""
    _, path, frames = oracle_pair
    attn = request.param
    oracle = XCLIPModel.from_pretrained(path, attn_implementation=attn).eval()  # same kernel on both sides
    ours, info = XClipModel.from_pretrained(path, attn_implementation=attn, output_loading_info=True)
    return oracle, ours.eval(), info, frames


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_texts", [1, 5])
@pytest.mark.parametrize("padded", [False, True])
def test_parity_with_transformers_oracle(loaded_pair, batch, num_texts, padded):
    oracle, ours, info, frames = loaded_pair
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ids, mask = text_batch(num_texts, pad_from=4 if padded else None)
    pixels = torch.randn(batch, frames, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = oracle(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        got = ours(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    for key in ("logits_per_video", "video_embeds", "text_embeds"):
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0)
    torch.testing.assert_close(got.logits_per_text, want.logits_per_text, atol=1e-5, rtol=0)


def test_published_features_match_oracle(oracle_pair):
    oracle, path, frames = oracle_pair
    ours = XClipModel.from_pretrained(path).eval()
    ids, mask = text_batch(4, pad_from=3)
    pixels = torch.randn(2, frames, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.get_text_features(ids, attention_mask=mask).pooler_output,
                                   oracle.get_text_features(ids, attention_mask=mask).pooler_output, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.get_video_features(pixels).pooler_output,
                                   oracle.get_video_features(pixels).pooler_output, atol=1e-5, rtol=0)


def test_sub_models_load_published_and_full_checkpoints(oracle_pair, tmp_path):
    oracle, path, frames = oracle_pair
    ids, mask = text_batch(3, pad_from=4)
    pixels = torch.randn(2, frames, 3, 32, 32)
    full = XClipModel.from_pretrained(path).eval()
    full.save_pretrained(tmp_path)  # ours: a published-loaded model saves under our own key names
    for source in (path, tmp_path):
        vision, info = XClipVisionModel.from_pretrained(source, output_loading_info=True)
        assert not info["missing_keys"] and not info["mismatched_keys"], info
        text, info = XClipTextModel.from_pretrained(source, output_loading_info=True)
        assert not info["missing_keys"] and not info["mismatched_keys"], info
        with torch.no_grad():
            torch.testing.assert_close(vision.eval()(pixels).video_embeds,
                                       oracle.get_video_features(pixels).pooler_output, atol=1e-5, rtol=0)
            torch.testing.assert_close(text.eval()(ids, attention_mask=mask).text_embeds,
                                       oracle.get_text_features(ids, attention_mask=mask).pooler_output,
                                       atol=1e-5, rtol=0)
    from safetensors import safe_open
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert set(f.keys()) == set(full.state_dict().keys())


def _tiny(num_frames=3, **kw):
    torch.manual_seed(0)
    return XClipModel(XClipConfig.from_variant("xclip-tiny", num_frames=num_frames, vocab_size=VOCAB, **kw)).eval()


def test_batch_invariance():
    model = _tiny()
    ids, mask = text_batch(5, pad_from=4)
    pixels = torch.randn(4, 3, 3, 32, 32)
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        for i in range(4):
            alone = model(input_ids=ids, attention_mask=mask, pixel_values=pixels[i: i + 1])
            torch.testing.assert_close(alone.logits_per_video[0], batched.logits_per_video[i], atol=1e-5, rtol=0)
            torch.testing.assert_close(alone.video_embeds[0], batched.video_embeds[i], atol=1e-5, rtol=0)
            torch.testing.assert_close(alone.text_embeds[0], batched.text_embeds[i], atol=1e-5, rtol=0)


def test_precomputed_text_embeds_equal_input_ids():
    model = _tiny()
    ids, mask = text_batch(5, pad_from=4)
    pixels = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        direct = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        cached = model.get_text_features(ids, attention_mask=mask).pooler_output
        via_cache = model(text_embeds=cached, pixel_values=pixels)
    torch.testing.assert_close(via_cache.logits_per_video, direct.logits_per_video, atol=1e-6, rtol=0)


def test_activation_checkpointing_same_loss_and_grads():
    model = _tiny(drop_path_rate=0.0)
    model.train()
    ids, mask = text_batch(3, pad_from=4)
    pixels = torch.randn(2, 3, 3, 32, 32)
    labels = torch.tensor([0, 2])

    def run():
        model.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_plain, grads_plain = run()
    model.activation_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    loss_ckpt, grads_ckpt = run()
    torch.testing.assert_close(loss_ckpt, loss_plain, atol=1e-6, rtol=0)
    assert grads_plain.keys() == grads_ckpt.keys() and len(grads_plain) > 50
    for name in grads_plain:
        torch.testing.assert_close(grads_ckpt[name], grads_plain[name], atol=1e-6, rtol=0, msg=name)


def test_contrastive_and_classification_losses():
    model = _tiny()
    ids, mask = text_batch(2)
    pixels = torch.randn(2, 3, 3, 32, 32)
    out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_loss=True)
    logits = out.logits_per_video
    target = torch.arange(2)
    want = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.t(), target)) / 2
    torch.testing.assert_close(out.loss, want)
    labels = torch.tensor([1, 1])
    out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
    torch.testing.assert_close(out.loss, -torch.log_softmax(out.logits_per_video, -1)[:, 1].mean())
    with pytest.raises(ValueError, match="labels"):
        model(input_ids=ids, pixel_values=pixels, labels=torch.tensor([0, 7]))


def test_drop_path_is_active_in_training_only():
    model = _tiny(drop_path_rate=0.5)
    pixels = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        a = model.get_video_features(pixels).pooler_output
        b = model.get_video_features(pixels).pooler_output
        model.train()
        c = model.get_video_features(pixels).pooler_output
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_save_load_roundtrip_and_auto_classes(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).__class__ is XClipConfig
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is XClipModel
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    ids, mask = text_batch(3)
    pixels = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, pixel_values=pixels).logits_per_video,
                           loaded.eval()(input_ids=ids, pixel_values=pixels).logits_per_video)


def test_sub_models_standalone():
    config = XClipConfig.from_variant("xclip-tiny", num_frames=3, vocab_size=VOCAB)
    vision = XClipVisionModel(config.vision_config).eval()
    out = vision(torch.randn(2, 3, 3, 32, 32), output_hidden_states=True)
    assert out.video_embeds.shape == (2, 16) and out.frame_embeds.shape == (2, 3, 16)
    assert out.last_hidden_state.shape == (2, 3, 17, 32) and out.video_context.shape == (2, 16, 16)
    assert len(out.hidden_states) == 3
    text = XClipTextModel(config.text_config).eval()
    ids, _ = text_batch(4)
    plain = text(ids).text_embeds
    assert plain.shape == (4, 16)
    prompted = text(ids, video_context=out.video_context).text_embeds
    assert prompted.shape == (2, 4, 16)
    assert not torch.allclose(prompted[0], plain)


def test_output_attentions_eager():
    model = XClipModel._from_config(XClipConfig.from_variant("xclip-tiny", num_frames=3, vocab_size=VOCAB),
                                    attn_implementation="eager").eval()
    ids, _ = text_batch(2)
    out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 3, 32, 32), output_attentions=True)
    attn = out.vision_model_output.attentions
    assert len(attn) == 2 and attn[0].shape == (3, 4, 18, 18)  # 16 patches + [class] + message token
    torch.testing.assert_close(attn[0].sum(-1), torch.ones(3, 4, 18))


def test_clip_mean_baseline_has_no_cross_frame_modules():
    model = _tiny(use_cross_frame_attention=False, use_mit=False)
    assert not any("message_proj" in n or ".mit." in n for n, _ in model.named_parameters())
    ids, _ = text_batch(2)
    pixels = torch.randn(2, 3, 3, 32, 32)
    out = model.get_video_features(pixels)
    torch.testing.assert_close(out.video_embeds, out.frame_embeds.mean(1))
    # frames are encoded independently: shuffling frames permutes frame embeddings only
    shuffled = model.get_video_features(pixels[:, [2, 0, 1]])
    torch.testing.assert_close(shuffled.frame_embeds, out.frame_embeds[:, [2, 0, 1]], atol=1e-6, rtol=0)


def test_new_parameter_names_are_the_xclip_additions():
    model = _tiny()
    new = model.new_parameter_names()
    assert "vision_model.encoder.layers.0.message_proj.weight" in new
    assert "vision_model.encoder.layers.1.cfa.q_proj.weight" in new
    assert "vision_model.mit.position_embedding" in new
    assert "text_model.prompt_generator.alpha" in new
    assert "vision_model.context_projection" in new
    assert "vision_model.encoder.layers.0.self_attn.q_proj.weight" not in new
    assert "text_model.encoder.layers.0.mlp.fc1.weight" not in new
    assert "vision_model.visual_projection.weight" not in new


@pytest.mark.parametrize("variant,frames,paper_gmacs", [
    ("xclip-base-patch32", 8, 39), ("xclip-base-patch32", 16, 75), ("xclip-base-patch16", 8, 145),
    ("xclip-base-patch16", 16, 287), ("xclip-large-patch14", 8, 658),
])
def test_flops_match_paper_table_1(variant, frames, paper_gmacs):
    macs = count_flops(XClipConfig.from_variant(variant, num_frames=frames), num_labels=1, text_length=77)
    assert abs(macs / 1e9 - paper_gmacs) / paper_gmacs < 0.01, macs / 1e9


def test_clear_errors_name_the_shape():
    model = _tiny()
    ids, _ = text_batch(2)
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
        model(input_ids=ids, pixel_values=torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"1 channels.*\(2, 3, 1, 32, 32\)"):
        model(input_ids=ids, pixel_values=torch.randn(2, 3, 1, 32, 32))
    with pytest.raises(ValueError, match=r"5 frames.*num_frames=3"):
        model(input_ids=ids, pixel_values=torch.randn(2, 5, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expects 32x32"):
        model(input_ids=ids, pixel_values=torch.randn(2, 3, 3, 48, 48))
    with pytest.raises(ValueError, match=r"80 tokens.*\(2, 80\)"):
        model(input_ids=torch.ones(2, 80, dtype=torch.long), pixel_values=torch.randn(2, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="exactly one"):
        model(pixel_values=torch.randn(2, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="Unknown X-CLIP variant"):
        XClipConfig.from_variant("xclip-huge")


def test_variant_table_and_hub_ids():
    config = XClipConfig.from_variant("xclip-base-patch32", num_frames=16)
    assert config.vision_config.num_frames == 16 and config.vision_config.patch_size == 32
    assert config.hub_id() == "microsoft/xclip-base-patch32-16-frames"
    assert XClipConfig.from_variant("xclip-large-patch14-336", num_frames=16).hub_id() == \
        "microsoft/xclip-large-patch14-16-frames"
    assert XClipConfig.from_variant("xclip-base-patch16", num_frames=32).variant_name() == "xclip-base-patch16"


def test_published_config_converts_for_every_config_class(tmp_path):
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    from xclip_hf import XClipTextConfig, XClipVisionConfig

    save_oracle(tmp_path, num_frames=3)
    with CaptureLogger(logging.get_logger("transformers.configuration_utils")) as captured:
        full = XClipConfig.from_pretrained(tmp_path)
        text = XClipTextConfig.from_pretrained(tmp_path)
        vision = XClipVisionConfig.from_pretrained(tmp_path)
    assert "model of type" not in captured.out
    assert full.text_config.eos_token_id is None  # published text encoders pool at the highest token id
    assert text.prompt_num_attention_heads == 2 and text.projection_dim == 16
    assert vision.num_frames == 3 and vision.projection_dim == 16 and vision.mit_hidden_size == 16


def test_output_flags_set_in_the_config_are_honoured():
    torch.manual_seed(0)
    config = XClipConfig.from_variant("xclip-tiny", num_frames=3, vocab_size=VOCAB, output_hidden_states=True)
    model = XClipModel._from_config(config, attn_implementation="eager").eval()
    ids, mask = text_batch(2)
    pixels = torch.randn(1, 3, 3, 32, 32)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)  # no flag passed: the config's
        assert len(out.vision_model_output.hidden_states) == 3 and len(out.text_model_output.hidden_states) == 3
        assert out.vision_model_output.attentions is None
        # the first state is the input of the first block, the last one the last block's output (before post-LN)
        frames = model.vision_model.pre_layernorm(model.vision_model.embeddings(pixels.flatten(0, 1)))
        torch.testing.assert_close(out.vision_model_output.hidden_states[0], frames)
        torch.testing.assert_close(out.vision_model_output.hidden_states[-1],
                                   out.vision_model_output.last_hidden_state.flatten(0, 1))
        assert model(input_ids=ids, pixel_values=pixels, output_hidden_states=False).vision_model_output.hidden_states is None
        vision = XClipVisionModel._from_config(config.vision_config, attn_implementation="eager").eval()
        vision.config.output_attentions = True  # a tower's own config
        attentions = vision(pixels).attentions
        assert len(attentions) == 2 and attentions[0].shape == (3, 4, 18, 18)
        as_tuple = model(input_ids=ids, pixel_values=pixels, return_dict=False)
        assert isinstance(as_tuple, tuple)
        torch.testing.assert_close(as_tuple[0], out.logits_per_video)


@pytest.mark.slow
def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    model = _tiny(num_frames=2)
    ids, mask = text_batch(3, pad_from=4)
    pixels = torch.randn(2, 2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)  # a graph break (host read, data-dependent if) would raise
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        got = compiled(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    for key in ("logits_per_video", "video_embeds", "text_embeds"):
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0)
    torch._dynamo.reset()


@pytest.mark.slow
def test_classifier_training_forward_with_labels_compiles_fullgraph():
    """The no-host-read rule: labels.min()/.item()/.tolist() or a data-dependent `if` in forward breaks the graph."""
    from xclip_hf import XClipForVideoClassification
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    torch._dynamo.reset()
    classes = ["moving left", "moving right", "growing"]
    tokenizer = build_clip_tokenizer(classes + ["shrinking"], vocab_size=600)
    torch.manual_seed(0)
    config = XClipConfig.from_variant("xclip-tiny", num_frames=2, vocab_size=len(tokenizer),
                                      id2label=dict(enumerate(classes)))
    model = XClipForVideoClassification(config)
    model.set_class_texts(tokenizer)
    model.train()
    pixels, labels = torch.randn(2, 2, 3, 32, 32), torch.tensor([2, 0])
    want = model(pixel_values=pixels, labels=labels)
    # dynamo's full-graph capture is what detects host reads; the aot_eager backend traces forward and backward
    # without the minutes of code generation
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(pixel_values=pixels, labels=labels)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    got.loss.backward()
    assert model.xclip.vision_model.encoder.layers[0].message_proj.weight.grad is not None
    torch._dynamo.reset()


def test_published_format_is_known_in_one_module():
    """Removing published support = deleting conversion/published.py and its one registration line (formats.py)."""
    import pathlib

    import xclip_hf

    root = pathlib.Path(xclip_hf.__file__).parent
    # the published layout's key names, processor files and model type, as code (not prose) would use them
    markers = ("prompts_generator", "message_fc", "image_processor_type", "feature_extractor_type",
               '== "xclip"', "== 'xclip'")
    # (conversion/original.py is the VideoX .pth layout, which shares some key names with the published one)
    offenders = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if p.name not in ("published.py", "original.py")
                       and any(m in p.read_text(encoding="utf-8") for m in markers))
    assert offenders == [], offenders
    registrations = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if p.name != "published.py"
                     for line in p.read_text(encoding="utf-8").splitlines()
                     if '"xclip_hf.models.published"' in line and not line.lstrip().startswith("#")]
    assert registrations == ["models/formats.py"]


# ------------------------------------------------------------------------- initialisation and config rules
def _numpy_sincos(grid, dim):
    """Independent float64 numpy 2-D sin-cos table: per patch (row y, column x, row-major), dim/4 frequencies
    10000^(-k/(dim/4)) of sin x, cos x, sin y, cos y; centred over the patches."""
    import numpy as np

    omega = 10000.0 ** (-np.arange(dim // 4) / (dim // 4))
    rows = []
    for y in range(grid):
        for x in range(grid):
            rows.append(np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)]))
    table = np.array(rows)
    return table - table.mean(axis=0)


def test_sincos_position_init_is_a_config_option(tmp_path):
    """vision_config.position_embedding_init="sincos": the patch rows are the 2-D sin-cos table (numpy oracle) at
    the RMS of the patch embedding's output for unit-variance pixels; every other weight, the class row included,
    is the default init; the option is saved, and loading does not re-initialise."""
    import numpy as np

    plain, model = _tiny(), _tiny(position_embedding_init="sincos")  # same seed
    assert model.config.vision_config.position_embedding_init == "sincos"
    embeddings = model.vision_model.embeddings
    table = embeddings.position_embedding.weight.detach()
    grid = embeddings.config.image_size // embeddings.config.patch_size
    weight = embeddings.patch_embedding.weight.detach().double().numpy().reshape(table.shape[1], -1)
    expected = _numpy_sincos(grid, table.shape[1])
    expected *= np.sqrt((weight**2).sum(axis=1).mean()) / np.sqrt((expected**2).mean())
    np.testing.assert_allclose(table[1:].double().numpy(), expected, rtol=1e-5, atol=1e-7)
    different = [n for n, p in plain.state_dict().items() if not torch.equal(p, model.state_dict()[n])]
    assert different == ["vision_model.embeddings.position_embedding.weight"]
    assert torch.equal(table[0], plain.vision_model.embeddings.position_embedding.weight[0])
    # the scale, measured: the spread of the patch embedding's output for unit-variance pixels
    with torch.no_grad():
        patch_rms = float(embeddings.patch_embedding(torch.randn(64, 3, 32, 32)).pow(2).mean().sqrt())
    assert abs(float(table[1:].pow(2).mean().sqrt()) / patch_rms - 1) < 0.1
    model.save_pretrained(tmp_path)
    assert XClipConfig.from_pretrained(tmp_path).vision_config.position_embedding_init == "sincos"
    torch.manual_seed(1)  # a re-initialisation would draw other weights
    loaded = XClipModel.from_pretrained(tmp_path)
    assert all(torch.equal(p, loaded.state_dict()[n]) for n, p in model.state_dict().items())
    from huggingface_hub.errors import StrictDataclassClassValidationError

    with pytest.raises(StrictDataclassClassValidationError, match="position_embedding_init must be one of"):
        XClipConfig.from_variant("xclip-tiny", position_embedding_init="learned")


def test_override_keys_have_one_owner():
    """from_variant and the CLIP expansion route a key to the config that owns it (route_overrides)."""
    from transformers import CLIPConfig

    from xclip_hf.models.clip_expansion import xclip_config_from_clip
    from xclip_hf.models.configuration_xclip import route_overrides

    overrides = {"mit_num_hidden_layers": 2, "max_position_embeddings": 40, "logit_scale_init_value": 1.5,
                 "text_config.hidden_act": "gelu"}
    assert route_overrides(overrides) == {"": {"logit_scale_init_value": 1.5},
                                          "text_config": {"max_position_embeddings": 40, "hidden_act": "gelu"},
                                          "vision_config": {"mit_num_hidden_layers": 2}}
    clip = CLIPConfig(text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                       num_attention_heads=4), projection_dim=64,
                      vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                                         num_hidden_layers=1, num_attention_heads=4))
    for build in (lambda **kw: XClipConfig.from_variant("xclip-tiny", **kw), lambda **kw: xclip_config_from_clip(clip, **kw)):
        config = build(**overrides)
        assert config.vision_config.mit_num_hidden_layers == 2 and config.text_config.max_position_embeddings == 40
        assert config.text_config.hidden_act == "gelu" and config.logit_scale_init_value == 1.5
        with pytest.raises(ValueError, match=r"vision_config\.intermediate_size"):  # a field of both towers
            build(intermediate_size=64)
        with pytest.raises(ValueError, match="no X-CLIP config has this field"):
            build(mit_layers=2)


def test_published_layout_reads_its_files_with_the_hub_keywords(monkeypatch, tmp_path):
    """Every file the published layout reads gets the from_pretrained keywords that locate files (formats'
    HUB_KWARGS), all of them and nothing else."""
    from xclip_hf.models import formats, published

    calls = []

    def spy(path, filename, **kwargs):
        calls.append((filename, kwargs))
        return {"vision_config": {"num_frames": 8}} if filename == "config.json" else {"video_processor": {"size": 224}}

    monkeypatch.setattr(published, "read_json_file", spy)
    monkeypatch.setattr(published, "read_config_dict", lambda path, **kw: spy(path, "config.json", **kw))
    given = {"cache_dir": str(tmp_path), "force_download": True, "proxies": {"https": "p"}, "token": "t",
             "revision": "r", "local_files_only": True, "subfolder": "s", "num_frames_hint": 3, "_from_auto": True}
    assert published.published_video_processor_dict(tmp_path, None, given) == {"size": 224, "num_frames": 8}
    expected = {k: given[k] for k in formats.HUB_KWARGS}
    assert [name for name, _ in calls] == ["processor_config.json", "config.json"]
    assert all(kwargs == expected for _, kwargs in calls), calls
