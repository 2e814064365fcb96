"""Training building blocks: top-k metric module, k-shot sampling, augmentation, mixup, parameter groups."""

import colorsys

import numpy as np
import pytest
import torch

from xclip_hf.training.augment import (
    MULTI_SCALE_CROP_SCALES,
    VideoTrainAugmentation,
    _hsv_to_rgb,
    _rgb_to_hsv,
    color_jitter,
    multi_scale_crop,
    multi_scale_crop_box,
    random_grayscale,
    random_horizontal_flip,
)
from xclip_hf.training.few_shot import check_disjoint_label_sets, sample_k_shot
from xclip_hf.training.metrics import load_topk_accuracy
from xclip_hf.training.mixup import MixupCutmix


# ------------------------------------------------------------------------------------------- metric module
def test_topk_metric_hand_made_case():
    metric = load_topk_accuracy()
    # 4 samples, 6 classes. Ranks of the reference (0 = best), worked out by hand:
    #   sample 0: ref 2 scores 0.9, the highest                    -> rank 0 (top-1 hit)
    #   sample 1: ref 0 scores 0.1; 0.5 0.4 0.3 0.2 are above it    -> rank 4 (top-5 hit, top-1 miss)
    #   sample 2: ref 5 scores 0.0, the lowest of 6                 -> rank 5 (miss for both)
    #   sample 3: ref 1 scores 3.0 < 4.0 (class 4)                  -> rank 1 (top-5 hit)
    predictions = [
        [0.1, 0.2, 0.9, 0.3, 0.4, 0.5],
        [0.1, 0.5, 0.4, 0.3, 0.2, 0.0],
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
        [-1.0, 3.0, 0.0, 1.0, 4.0, 2.0],
    ]
    result = metric.compute(predictions=predictions, references=[2, 0, 5, 1])
    assert result == {"top1": pytest.approx(1 / 4), "top5": pytest.approx(3 / 4)}
    # a single k and a tie: equal scores rank by class index, like argmax
    tie = metric.compute(predictions=[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], references=[0, 1], top_k=(1, 2))
    assert tie == {"top1": pytest.approx(0.5), "top2": pytest.approx(1.0)}


def test_topk_metric_rejects_bad_labels():
    metric = load_topk_accuracy()
    with pytest.raises(ValueError, match="reference label 3 is outside"):
        metric.compute(predictions=[[0.1, 0.2, 0.3]], references=[3])


# ------------------------------------------------------------------------------------------------ few-shot
def test_k_shot_keeps_exactly_k_per_class_seeded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=200).tolist()
    for k in (1, 2, 4, 8):
        kept = sample_k_shot(labels, k, seed=3)
        assert len(kept) == len(set(kept)) == 5 * k
        assert np.bincount([labels[i] for i in kept], minlength=5).tolist() == [k] * 5
    assert sample_k_shot(labels, 4, seed=3) == sample_k_shot(labels, 4, seed=3)
    draws = {tuple(sample_k_shot(labels, 4, seed=s)) for s in range(5)}
    assert len(draws) > 1  # the seed changes which videos are kept


def test_k_shot_error_names_the_class():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match=r"class 1 \('jumping'\) has 2 videos, fewer than k=3"):
        sample_k_shot(labels, 3, label_names=["running", "jumping", "walking"])
    with pytest.raises(ValueError, match=r"class 3 \('sitting'\) has 0 videos"):
        sample_k_shot(labels, 1, label_names=["running", "jumping", "walking", "sitting"])


def test_zero_shot_label_sets_must_be_disjoint():
    check_disjoint_label_sets(["moving left", "moving right"], ["growing", "shrinking"])
    with pytest.raises(ValueError, match="moving left"):
        check_disjoint_label_sets(["moving left", "growing"], ["Moving  Left", "shrinking"])


# ------------------------------------------------------------------------------------------- augmentation
def _still_clip(frames=4, height=40, width=56, seed=0):
    """A clip whose frames are all the same random image: any per-clip transform keeps them equal."""
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))
    return image.unsqueeze(0).repeat(frames, 1, 1, 1)


def test_multi_scale_crop_box_sizes_and_positions():
    gen = torch.Generator().manual_seed(0)
    sides = {int(40 * s) for s in MULTI_SCALE_CROP_SCALES}
    seen = set()
    for _ in range(300):
        top, left, h, w = multi_scale_crop_box(40, 56, generator=gen)
        assert h in sides and w in sides
        i, j = sorted(sides, reverse=True).index(h), sorted(sides, reverse=True).index(w)
        assert abs(i - j) <= 1  # aspect pairs at most one scale step apart
        assert 0 <= top <= 40 - h and 0 <= left <= 56 - w
        step_h, step_w = (40 - h) // 4, (56 - w) // 4
        assert (top, left) in {(0, 0), (0, 4 * step_w), (4 * step_h, 0), (4 * step_h, 4 * step_w), (2 * step_h, 2 * step_w)}
        seen.add((h, w))
    assert len(seen) == 10  # 4 squares + 3 x 2 neighbouring aspect pairs


def test_augmentations_use_one_draw_per_clip():
    clip = _still_clip()
    gen = torch.Generator().manual_seed(1)
    augment = VideoTrainAugmentation(crop_size=24, color_jitter_prob=1.0, grayscale_prob=0.5)
    for _ in range(10):
        out = augment(clip, generator=gen)
        assert out.shape == (4, 3, 24, 24)
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert torch.equal(out, out[:1].expand_as(out))  # every frame got the same transform


def test_flip_and_grayscale_match_their_definitions():
    clip = _still_clip(frames=2)
    assert torch.equal(random_horizontal_flip(clip, p=1.0), torch.flip(clip, dims=[-1]))
    assert torch.equal(random_horizontal_flip(clip, p=0.0), clip)
    gray = random_grayscale(clip, p=1.0)
    luma = 0.299 * clip[:, 0] + 0.587 * clip[:, 1] + 0.114 * clip[:, 2]
    for c in range(3):
        torch.testing.assert_close(gray[:, c], luma)


def test_hsv_conversion_matches_colorsys():
    pixels = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(2))
    pixels[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # grey: hue and saturation 0
    hsv = _rgb_to_hsv(pixels)
    for y in range(7):
        for x in range(9):
            expected = colorsys.rgb_to_hsv(*pixels[0, :, y, x].tolist())
            np.testing.assert_allclose(hsv[0, :, y, x].numpy(), expected, atol=1e-5)
    torch.testing.assert_close(_hsv_to_rgb(hsv), pixels, atol=1e-5, rtol=0)


def test_brightness_jitter_scales_every_pixel_by_one_factor():
    clip = _still_clip() * 0.5  # no clipping at 1.4x
    out = color_jitter(clip, brightness=0.4, contrast=0, saturation=0, hue=0, p=1.0, generator=torch.Generator().manual_seed(5))
    ratio = out / clip
    assert 0.6 <= ratio.min() and ratio.max() <= 1.4
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio.mean().item()), atol=1e-4, rtol=0)


def test_multi_scale_crop_output_and_bad_input():
    out = multi_scale_crop(_still_clip(), 16, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"shape \(T, 3, H, W\)"):
        multi_scale_crop(torch.rand(4, 40, 56, 3), 16)
    with pytest.raises(ValueError, match="float clip"):
        random_grayscale(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


# ------------------------------------------------------------- training preprocessing through the processor
def _processor(size, crop=32, frames=8):
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    return XClipVideoProcessor(num_frames=frames, size={"shortest_edge": size}, crop_size={"height": crop, "width": crop})


OFF = dict(scales=(1.0,), flip_prob=0.0, color_jitter_prob=0.0, grayscale_prob=0.0)  # no random change left


def _frames(frames=8, height=48, width=48, dtype=np.float32):
    """Integer pixel values in [0, 255] (float frames: evaluation rounds resized uint8 frames as PIL does, training
    keeps them float, so float frames are the ones both paths see alike)."""
    return np.random.default_rng(0).integers(0, 256, (frames, height, width, 3)).astype(dtype)


def test_training_preprocessing_without_augmentation_equals_evaluation():
    """The training sample goes through the video processor (its resize geometry and normalisation) with the
    augmentation in place of the crop: with every random change off, it is the evaluation sample."""
    from xclip_hf.training import VideoClipTransform

    frames = _frames()  # 8 frames for num_frames=8: random and middle sampling take the same frames
    processor = _processor(size=32)  # square frames resized to 32 x 32 = the crop: the crop is the whole frame
    torch.manual_seed(0)
    train = VideoClipTransform(processor, VideoTrainAugmentation(crop_size=32, **OFF))._train_clip(frames)
    evaluation = VideoClipTransform(processor)._eval_views(frames)
    assert train.shape == evaluation.shape == (8, 3, 32, 32)
    torch.testing.assert_close(train, evaluation, atol=1e-6, rtol=0)
    # the first resize is the processor's (short side 40), not one of the augmentation's own: with a 32/40 scale
    # the crop box is 32 x 32 at one of five positions of the evaluation-resized frame, taken without resizing
    processor = _processor(size=40)
    whole = processor(frames, do_center_crop=False, return_tensors="pt")["pixel_values"][0]
    step = (40 - 32) // 4
    boxes = [whole[..., t : t + 32, l : l + 32] for t, l in
             [(0, 0), (0, 4 * step), (4 * step, 0), (4 * step, 4 * step), (2 * step, 2 * step)]]
    for seed in range(4):
        torch.manual_seed(seed)
        augmentation = VideoTrainAugmentation(crop_size=32, **{**OFF, "scales": (0.8,)})
        clip = VideoClipTransform(processor, augmentation)._train_clip(frames)
        assert min(float((clip - box).abs().max()) for box in boxes) <= 1e-6


def test_processor_applies_the_augmentation_reproducibly():
    """`augmentation=` of the video processor: one draw per clip from torch's RNG, normalised by the processor; a
    processor never holds an augmentation (a saved one would augment at inference)."""
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    still = np.repeat(_frames(frames=1, height=40, width=56, dtype=np.uint8), 8, axis=0)
    processor, augment = _processor(size=37), VideoTrainAugmentation(color_jitter_prob=1.0, grayscale_prob=0.5)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(processor(still, augmentation=augment, return_tensors="pt")["pixel_values"])
    assert runs[0].shape == (1, 8, 3, 32, 32)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert torch.equal(runs[0], runs[0][:, :1].expand_as(runs[0]))  # the same transform on every frame
    mean, std = torch.tensor(processor.image_mean).view(3, 1, 1), torch.tensor(processor.image_std).view(3, 1, 1)
    unnormalised = runs[0][0] * std + mean
    assert unnormalised.min() >= -1e-6 and unnormalised.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="call option"):
        XClipVideoProcessor(augmentation=augment)
    with pytest.raises(ValueError, match="num_spatial_crops=1"):
        processor(still, augmentation=augment, num_spatial_crops=3)
    with pytest.raises(ValueError, match=r"video 0: augmentation needs frames in \[0, 1\]"):
        processor(still, augmentation=augment, do_rescale=False)
    with pytest.raises(ValueError, match="crop_size 24 disagrees"):
        processor(still, augmentation=VideoTrainAugmentation(crop_size=24))


# ---------------------------------------------------------------------------------------------------- mixup
def test_mixup_targets_match_mixed_pixels():
    torch.manual_seed(0)
    x = torch.rand(4, 2, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    mixer = MixupCutmix(num_labels=5, mixup_alpha=0.8, cutmix_alpha=0.0)
    mixed, targets = mixer(x, labels)
    assert targets.shape == (4, 5)
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    lam = targets[0, 0].item()  # sample 0 mixes with sample 3 (the batch reversed)
    assert targets[0, 3].item() == pytest.approx(1 - lam)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.flip(0))


def test_cutmix_pastes_one_box_on_all_frames_and_weights_by_area():
    torch.manual_seed(1)
    x = torch.zeros(2, 3, 3, 16, 16)
    x[1] = 1.0  # sample 0 is black, sample 1 white: the pasted area is visible
    mixer = MixupCutmix(num_labels=2, mixup_alpha=0.0, cutmix_alpha=1.0)
    for _ in range(5):
        mixed, targets = mixer(x, torch.tensor([0, 1]))
        pasted = mixed[0, :, 0]  # (T, H, W) of sample 0, one channel
        assert torch.equal(pasted, pasted[:1].expand_as(pasted))  # same box on every frame
        area = pasted[0].mean().item()
        assert targets[0, 1].item() == pytest.approx(area)
        assert targets[0, 0].item() == pytest.approx(1 - area)


def test_mixup_rejects_bad_labels():
    with pytest.raises(ValueError, match="label 7 is outside"):
        MixupCutmix(num_labels=3)(torch.rand(2, 1, 3, 4, 4), torch.tensor([0, 7]))


def test_mixup_label_smoothing_matches_torch_cross_entropy():
    # with mixing switched off, the smoothed soft targets through the model's soft loss must equal torch's
    # label-smoothed cross-entropy on the class indices (an independent definition of smoothing)
    from xclip_hf import XClipConfig, XClipForVideoClassification

    model = XClipForVideoClassification(XClipConfig.from_variant("xclip-tiny", num_frames=1, vocab_size=600))
    logits, labels = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2])
    _, targets = MixupCutmix(num_labels=7, prob=0.0, label_smoothing=0.1)(torch.rand(5, 1, 3, 4, 4), labels)
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(model.classification_loss(logits, targets), expected)


# ------------------------------------------------------------------------------------- parameter groups
def _expanded_tiny_clip():
    """A tiny transformers CLIP with random (non-constant) weights, expanded to the X-CLIP classifier."""
    from transformers import CLIPConfig, CLIPModel

    from xclip_hf import XClipForVideoClassification

    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
        projection_dim=16,
    ))
    with torch.no_grad():  # no LayerNorm of ones / bias of zeros that a new module could equal by chance
        for p in clip.parameters():
            p.normal_()
    return clip, XClipForVideoClassification.from_clip(clip, num_frames=4)


def test_param_groups_give_10x_to_exactly_the_new_modules():
    from xclip_hf.training import xclip_param_groups

    clip, model = _expanded_tiny_clip()
    groups = xclip_param_groups(model, learning_rate=1e-3, weight_decay=0.001)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every trainable parameter in exactly one group
    # oracle: a parameter is new iff its value is none of CLIP's tensors (expansion copies CLIP's weights)
    clip_tensors = list(clip.state_dict().values())
    for name, param in model.named_parameters():
        inherited = any(t.shape == param.shape and torch.equal(t, param.detach()) for t in clip_tensors)
        assert lr_of[id(param)] == pytest.approx(1e-3 if inherited else 1e-2), name
    # and the 10x parameters are exactly as many numbers as X-CLIP adds on top of CLIP
    added = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in clip.parameters())
    assert sum(p.numel() for g in groups if g["lr"] > 1e-3 for p in g["params"]) == added


def test_no_weight_decay_for_biases_norms_embeddings_and_logit_scale():
    from xclip_hf.training import xclip_param_groups

    _, model = _expanded_tiny_clip()
    model.freeze_text_encoder()
    decay_of = {id(p): g["weight_decay"] for g in xclip_param_groups(model, 1e-3, 0.001) for p in g["params"]}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert id(param) not in decay_of, name  # frozen parameters are left out
            continue
        exempt = param.ndim < 2 or "embedding" in name.split(".")[-2] or "position_embedding" in name or name.endswith("logit_scale")
        exempt = exempt and "patch_embedding" not in name
        assert decay_of[id(param)] == (0.0 if exempt else 0.001), name


def test_multiview_prediction_averages_view_softmax(tmp_path):
    from transformers import TrainingArguments

    from xclip_hf import XClipConfig, XClipForVideoClassification
    from xclip_hf.training import XClipTrainer

    torch.manual_seed(0)
    from xclip_hf.data.tokenizer import build_clip_tokenizer

    tokenizer = build_clip_tokenizer(["moving left", "moving right", "growing"])
    model = XClipForVideoClassification(XClipConfig.from_variant("xclip-tiny", num_frames=2, vocab_size=len(tokenizer))).eval()
    model.set_class_texts(tokenizer, id2label={0: "moving left", 1: "moving right", 2: "growing"})
    trainer = XClipTrainer(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"))
    pixel_values = torch.randn(2, 3, 2, 3, 32, 32)  # 2 videos x 3 views
    _, logits, labels = trainer.prediction_step(model, {"pixel_values": pixel_values, "labels": torch.tensor([0, 1])}, False)
    with torch.no_grad():
        per_view = torch.stack([model(pixel_values=pixel_values[:, v]).logits for v in range(3)], dim=1)
    torch.testing.assert_close(logits.exp(), per_view.softmax(-1).mean(1))
    assert labels.tolist() == [0, 1]
