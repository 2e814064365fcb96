import pytest
import torch
from transformers import AutoModelForVideoClassification, CLIPConfig, CLIPModel

from _oracle import save_oracle
from xclip_hf import XClipConfig, XClipForVideoClassification, XClipModel
from xclip_hf.data.tokenizer import build_clip_tokenizer

CLASSES = ["moving left", "moving right", "growing", "shrinking"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_clip_tokenizer(CLASSES + ["appearing", "disappearing", "a video of"], vocab_size=600)


def _classifier(tokenizer, num_frames=3):
    torch.manual_seed(0)
    config = XClipConfig.from_variant("xclip-tiny", num_frames=num_frames, vocab_size=len(tokenizer),
                                      id2label=dict(enumerate(CLASSES)))
    model = XClipForVideoClassification(config).eval()
    model.set_class_texts(tokenizer)
    return model


def test_logits_are_xclip_logits_against_class_prompts(tokenizer):
    model = _classifier(tokenizer)
    pixels = torch.randn(2, 3, 3, 32, 32)
    texts = tokenizer(CLASSES, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model.xclip(input_ids=texts.input_ids, attention_mask=texts.attention_mask, pixel_values=pixels)
        got = model(pixel_values=pixels)
    assert got.logits.shape == (2, 4)
    torch.testing.assert_close(got.logits, want.logits_per_video, atol=1e-5, rtol=0)


def test_loss_label_smoothing_and_soft_targets(tokenizer, tmp_path):
    from transformers import TrainingArguments

    from xclip_hf.training import XClipTrainer

    model = _classifier(tokenizer)
    pixels = torch.randn(2, 3, 3, 32, 32)
    out = model(pixel_values=pixels, labels=torch.tensor([1, 3]))
    logp = torch.log_softmax(out.logits, -1)
    torch.testing.assert_close(out.loss, -logp[[0, 1], [1, 3]].mean())  # the model's loss: plain cross-entropy
    # label smoothing is a training argument (TrainingArguments.label_smoothing_factor; the paper's 0.1)
    eps = 0.1
    args = TrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=eps, report_to=[], use_cpu=True)
    loss = XClipTrainer(model=model, args=args).compute_loss(model, {"pixel_values": pixels,
                                                                    "labels": torch.tensor([1, 3])})
    hand = -((1 - eps) * logp[[0, 1], [1, 3]] + eps * logp.mean(-1)).mean()
    torch.testing.assert_close(loss, hand)
    soft = torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.2, 0.8]])
    out = model(pixel_values=pixels, labels=soft)
    torch.testing.assert_close(out.loss, -(soft * torch.log_softmax(out.logits, -1)).sum(-1).mean())
    with pytest.raises(ValueError, match="class indices"):
        model(pixel_values=pixels, labels=torch.tensor([0, 9]))


def _count_text_calls(model):
    calls = []
    model.xclip.text_model.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_frozen_text_encoder_caches_class_features(tokenizer):
    model = _classifier(tokenizer)
    model.train()
    calls = _count_text_calls(model)
    pixels = torch.randn(2, 3, 3, 32, 32)
    labels = torch.tensor([0, 1])
    model(pixel_values=pixels, labels=labels).loss.backward()
    model(pixel_values=pixels, labels=labels)
    assert len(calls) == 2  # trainable text encoder: recomputed every step
    model.freeze_text_encoder()
    model.zero_grad()
    first = model(pixel_values=pixels, labels=labels)
    first.loss.backward()
    second = model(pixel_values=pixels, labels=labels)
    assert len(calls) == 3  # frozen: computed once, then cached
    torch.testing.assert_close(first.logits, second.logits)
    text = model.xclip.text_model
    assert all(p.grad is None for n, p in text.named_parameters() if not n.startswith("prompt_generator"))
    assert text.prompt_generator.alpha.grad is not None  # the prompt generator still learns
    with torch.no_grad():  # a weight change invalidates the cache
        text.text_projection.weight.mul_(2)
    model(pixel_values=pixels)
    assert len(calls) == 4


def test_trainable_text_encoder_encodes_class_texts_once_per_evaluation(tokenizer):
    """Evaluation (no gradients, eval mode) reuses the class features between batches even when the text encoder
    trains; a training step that changes its weights, or training mode, computes them again."""
    model = _classifier(tokenizer).eval()
    assert not model.text_encoder_frozen
    calls = _count_text_calls(model)
    pixels = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        first = model(pixel_values=pixels).logits
        second = model(pixel_values=pixels).logits
    assert len(calls) == 1
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.train()
    model(pixel_values=pixels, labels=torch.tensor([0, 1])).loss.backward()
    assert len(calls) == 2  # with gradients: recomputed
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    model.eval()
    with torch.no_grad():
        after = model(pixel_values=pixels).logits
        model(pixel_values=pixels)
    assert len(calls) == 3  # new weights: one new encoding, then cached again
    assert not torch.allclose(after, first)
    model.xclip.text_model.train()  # dropout on: no cache even without gradients
    with torch.no_grad():
        model(pixel_values=pixels)
    assert len(calls) == 4


def test_frozen_class_feature_cache_never_stale_and_not_poisoned(tokenizer):
    """`param.data = new tensor` (freed memory may be reused at the same address) must never hit the old entry,
    and editing the returned features in place must not change later results."""
    model = _classifier(tokenizer)
    model.freeze_text_encoder()
    text = model.xclip.text_model
    for round_ in range(20):
        gen = torch.Generator().manual_seed(round_)
        for p in text.parameters():
            p.data = torch.randn(p.shape, generator=gen) * 0.05
        cached = model.class_text_features()
        length = model.class_text_length()
        ids, mask = model.class_input_ids[:, :length], model.class_attention_mask[:, :length]
        with torch.no_grad():
            fresh = model.xclip.get_text_features(ids, attention_mask=mask).pooler_output
        torch.testing.assert_close(cached, fresh, rtol=0, atol=0)
        cached.mul_(0)  # poisoning attempt
        torch.testing.assert_close(model.class_text_features(), fresh, rtol=0, atol=0)


def test_save_reload_keeps_classes_and_auto_class(tokenizer, tmp_path):
    model = _classifier(tokenizer)
    pixels = torch.randn(1, 3, 3, 32, 32)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForVideoClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is XClipForVideoClassification
    assert loaded.config.id2label == dict(enumerate(CLASSES))
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


def test_classifier_from_xclip_and_published_checkpoints(tokenizer, tmp_path):
    ours = tmp_path / "ours"
    XClipModel(XClipConfig.from_variant("xclip-tiny", num_frames=3, vocab_size=len(tokenizer))).save_pretrained(ours)
    model, info = XClipForVideoClassification.from_pretrained(ours, id2label=dict(enumerate(CLASSES)),
                                                              output_loading_info=True)
    assert not info["unexpected_keys"] and set(info["missing_keys"]) <= {"class_input_ids", "class_attention_mask"}
    published = tmp_path / "published"
    oracle = save_oracle(published, num_frames=3)
    model, info = XClipForVideoClassification.from_pretrained(published, output_loading_info=True)
    assert not info["unexpected_keys"], info
    torch.testing.assert_close(model.xclip.text_model.prompt_generator.alpha, oracle.prompts_generator.alpha)


def _tiny_clip():
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4),
        projection_dim=64)
    return CLIPModel(config).eval()


def test_from_clip_inherits_clip_weights(tmp_path):
    clip = _tiny_clip()
    clip.save_pretrained(tmp_path)
    model = XClipModel.from_clip(tmp_path, num_frames=3).eval()
    ours = model.state_dict()
    renamed = {"vision_model.pre_layrnorm.weight": "vision_model.pre_layernorm.weight",
               "visual_projection.weight": "vision_model.visual_projection.weight",
               "text_projection.weight": "text_model.text_projection.weight"}
    checked = 0
    for key, tensor in clip.state_dict().items():
        if key.endswith("position_ids"):
            continue
        assert torch.equal(ours[renamed.get(key, key).replace("pre_layrnorm", "pre_layernorm")], tensor), key
        checked += 1
    assert checked == len([k for k in clip.state_dict() if not k.endswith("position_ids")])
    ids = torch.randint(1, 97, (3, 7))
    ids[:, -1] = 98  # end-of-text = highest id
    with torch.no_grad():
        torch.testing.assert_close(model.get_text_features(ids).pooler_output, clip.get_text_features(ids).pooler_output)
    # the new modules are freshly initialised, not copies of CLIP's attention
    layer = model.vision_model.encoder.layers[0]
    assert not torch.equal(layer.cfa.q_proj.weight, layer.self_attn.q_proj.weight)
    assert model.vision_model.mit is not None and model.config.vision_config.mit_num_attention_heads == 1
    assert torch.allclose(model.text_model.prompt_generator.alpha, torch.full((64,), 0.1))


def test_from_clip_frame_averaging_of_identical_frames_matches_clip_image_features():
    """CLIP-Mean (no cross-frame attention, no MIT) of a video of one repeated image is CLIP's image feature."""
    clip = _tiny_clip()
    model = XClipModel.from_clip(clip, num_frames=4, use_cross_frame_attention=False, use_mit=False).eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        video = model.get_video_features(image.unsqueeze(1).expand(1, 4, 3, 32, 32)).pooler_output
        torch.testing.assert_close(video, clip.get_image_features(pixel_values=image).pooler_output, atol=1e-5, rtol=0)
