"""XClipVideoProcessor: parity with transformers' VideoMAE preprocessing, input forms, multi-view, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.auto.video_processing_auto import AutoVideoProcessor
from transformers.models.videomae.image_processing_pil_videomae import VideoMAEImageProcessorPil

from _helpers_video import INDEX_STEP, index_frames, no_hang
from xclip_hf.data.video_writer import write_video
from xclip_hf.video.sampling import sparse_multiview_indices
from xclip_hf.video.reader import read_video
from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
PUBLISHED = {  # microsoft/xclip-base-patch32 preprocessor_config.json (VideoMAE-style)
    "do_center_crop": True,
    "crop_size": 224,
    "do_normalize": True,
    "do_resize": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "image_mean": MEAN.tolist(),
    "image_std": STD.tolist(),
    "feature_extractor_type": "VideoMAEFeatureExtractor",
    "image_processor_type": "VideoMAEImageProcessor",
    "processor_class": "XCLIPProcessor",
    "resample": 2,
    "size": 224,
}
ORACLE_KEYS = ("do_center_crop", "crop_size", "do_normalize", "do_resize", "do_rescale", "rescale_factor",
               "image_mean", "image_std", "resample", "size")


def natural_frames(num_frames, height, width, seed=0):
    """Smooth structure plus fine texture (exercises antialiasing when downsampling)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for t in range(num_frames):
        base = np.stack([128 + 90 * np.sin((x + 7 * t) / 9.0), 128 + 90 * np.cos(y / 13.0 + t), (x + y + 5 * t) % 256], -1)
        out.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255))
    return np.stack(out).astype(np.uint8)


@pytest.fixture(scope="module")
def published_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("published")
    (d / "preprocessor_config.json").write_text(json.dumps(PUBLISHED))
    return d


@pytest.mark.parametrize(
    "shape,size,crop",
    [((8, 360, 640), 224, 224), ((8, 360, 480), 256, 224), ((4, 400, 360), 336, 336), ((4, 61, 97), 224, 224)],
)
def test_matches_transformers_videomae_preprocessing(published_dir, shape, size, crop):
    frames = natural_frames(*shape)
    ours = XClipVideoProcessor.from_pretrained(published_dir)
    oracle = VideoMAEImageProcessorPil(**{**{k: PUBLISHED[k] for k in ORACLE_KEYS}, "size": size, "crop_size": crop})
    expected = oracle(list(frames), return_tensors="pt")["pixel_values"]
    got = ours(frames, size=size, crop_size=crop, num_frames=shape[0], return_tensors="pt")["pixel_values"]
    assert got.shape == expected.shape == (1, shape[0], 3, crop, crop)
    diff = (got - expected).abs()
    assert diff.mean() <= 0.005 and diff.max() <= 0.1, (diff.mean().item(), diff.max().item())


def test_input_forms_agree(tmp_path):
    frames = natural_frames(10, 48, 64)
    vp = XClipVideoProcessor(num_frames=4, size=40, crop_size=32)
    ref = vp(frames, return_tensors="pt")["pixel_values"]
    assert ref.shape == (1, 4, 3, 32, 32) and ref.dtype == torch.float32
    forms = {
        "torch TCHW": torch.from_numpy(frames).permute(0, 3, 1, 2),
        "list of arrays": list(frames),
        "list of PIL": [Image.fromarray(f) for f in frames],
        "numpy TCHW": np.ascontiguousarray(frames.transpose(0, 3, 1, 2)),
    }
    for name, video in forms.items():
        torch.testing.assert_close(vp(video, return_tensors="pt")["pixel_values"], ref, msg=name)
    batch = vp(np.stack([frames, frames[::-1]]), return_tensors="np")["pixel_values"]
    assert isinstance(batch, np.ndarray) and batch.shape == (2, 4, 3, 32, 32)
    np.testing.assert_allclose(batch[0], ref[0].numpy(), atol=1e-6)
    # a path decodes only the sampled frames and matches the same frames given as an array
    path = write_video(tmp_path / "v.mp4", frames)
    decoded = read_video(path)
    from_path = vp([path, path], return_tensors="pt")["pixel_values"]
    assert from_path.shape == (2, 4, 3, 32, 32)
    torch.testing.assert_close(from_path[0], vp(decoded, return_tensors="pt")["pixel_values"][0])


def _denormalize(pixels):
    return (pixels.numpy().transpose(0, 2, 3, 1) * STD + MEAN) * 255  # (T, H, W, 3)


@pytest.mark.parametrize("as_path", [False, True])
def test_multiview_4_clips_x_3_crops(tmp_path, as_path):
    frames = index_frames(64, 160, 320)  # R = frame index * 4, G = column ramp, B = row ramp
    video = write_video(tmp_path / "idx.mp4", frames, lossless=True) if as_path else frames
    vp = XClipVideoProcessor(num_frames=4, size=80, crop_size=64, num_temporal_clips=4, num_spatial_crops=3)
    out = vp(video, return_tensors="pt")["pixel_values"]
    assert out.shape == (1, 12, 4, 3, 64, 64)
    expected_idx = sparse_multiview_indices(64, 4, 4)  # table checked in test_video_io
    # frames resized to 80x160; crops of 64 at left 0 / 48 / 96, top 8; original column = 2 * resized + 0.5
    for view in range(12):
        clip, crop = divmod(view, 3)
        rgb = _denormalize(out[0, view])
        np.testing.assert_allclose(rgb[..., 0].mean((1, 2)), expected_idx[clip] * INDEX_STEP, atol=2.5)
        left = (0, 48, 96)[crop]
        expected_g = (2 * (left + np.arange(64)) + 0.5) * 255 / 319
        np.testing.assert_allclose(rgb[..., 1].mean((0, 1)), expected_g, atol=3.5)
        expected_b = (2 * (8 + np.arange(64)) + 0.5) * 255 / 159
        np.testing.assert_allclose(rgb[..., 2].mean((0, 2)), expected_b, atol=3.5)
    flat = out[0].reshape(12, -1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(12) for j in range(i + 1, 12))


def test_portrait_three_crops_run_along_the_height():
    frames = index_frames(4, 120, 60)
    vp = XClipVideoProcessor(num_frames=4, size=30, crop_size=30, num_spatial_crops=3, do_normalize=False)
    out = vp(frames, return_tensors="pt")["pixel_values"][0]  # (3, 4, 3, 30, 30), resized to 60x30
    top_rows_b = out[:, 0, 2, 0, :].mean(-1) * 255  # blue = row ramp at the first row of each crop
    expected = [(2 * top + 0.5) * 255 / 119 for top in (0, 15, 30)]
    np.testing.assert_allclose(top_rows_b.numpy(), expected, atol=3.5)


def test_channel_conversions_and_small_frames():
    rgb = natural_frames(4, 40, 40)
    gray = rgb[..., :1]
    vp = XClipVideoProcessor(num_frames=4, size=32, crop_size=32)
    torch.testing.assert_close(vp(gray)["pixel_values"], vp(np.repeat(gray, 3, -1))["pixel_values"])
    rgba = np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 7, np.uint8)], -1)
    torch.testing.assert_close(vp(rgba)["pixel_values"], vp(rgb)["pixel_values"])
    pil_l = [Image.fromarray(f[..., 0], mode="L") for f in gray]
    torch.testing.assert_close(vp(pil_l)["pixel_values"], vp(gray)["pixel_values"])
    pil_rgba = [Image.fromarray(f, mode="RGBA") for f in rgba]
    torch.testing.assert_close(vp(pil_rgba)["pixel_values"], vp(rgb)["pixel_values"])
    small = vp(natural_frames(4, 10, 14), size=8, crop_size=32)["pixel_values"]  # upsampled until the crop fits
    assert small.shape == (1, 4, 3, 32, 32) and torch.isfinite(small).all()


def test_short_and_one_frame_inputs(tmp_path):
    vp = XClipVideoProcessor(num_frames=8, size=32, crop_size=32, do_normalize=False)
    for n in (1, 3):
        path = write_video(tmp_path / f"n{n}.webm", index_frames(n, 32, 48))
        out = vp(path, return_tensors="pt")["pixel_values"]
        assert out.shape == (1, 8, 3, 32, 32)
        red = out[0, :, 0].mean((-1, -2)).numpy() * 255
        expected = np.floor((np.arange(8) + 0.5) * n / 8) * INDEX_STEP
        np.testing.assert_allclose(red, expected, atol=3)


def test_random_sampling_is_seedable():
    frames = index_frames(64, 16, 16)
    vp = XClipVideoProcessor(num_frames=8, size=16, crop_size=16, do_normalize=False, random_sampling=True)

    def picked(seed):
        out = vp(frames, seed=seed)["pixel_values"][0, :, 0].mean((-1, -2))
        return np.round(out.numpy() * 255 / INDEX_STEP).astype(int)

    a, b, c = picked(3), picked(3), picked(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert all(8 * i <= a[i] < 8 * (i + 1) for i in range(8))
    dense = vp(frames, sampling="dense", frame_stride=4, random_sampling=False)["pixel_values"][0, :, 0].mean((-1, -2))
    np.testing.assert_allclose(dense.numpy() * 255 / INDEX_STEP, np.arange(17, 46, 4), atol=0.1)  # start (64 - 29) // 2


def test_bad_input_is_rejected_with_clear_errors(tmp_path):
    vp = XClipVideoProcessor(num_frames=2, size=16, crop_size=16)
    frames = natural_frames(3, 20, 20)
    bad = {
        "4-D": frames[0],  # rank 3
        "5-D": frames[None, None],  # rank 6
        "1, 3 or 4 channels": frames[..., :2],
        "single PIL image": Image.fromarray(frames[0]),
        "empty list": [],
        "frame 1 has shape": [frames[0], frames[1, :10]],
    }
    with no_hang(60):
        for message, video in bad.items():
            with pytest.raises(ValueError, match=message):
                vp(video)
        missing = str(tmp_path / "missing.mp4")
        with pytest.raises(ValueError, match="missing.mp4"):
            vp([missing])
        (tmp_path / "text.mp4").write_text("not a video")
        with pytest.raises(ValueError, match="text.mp4"):
            vp(str(tmp_path / "text.mp4"))
        for kwargs, message in [
            ({"num_spatial_crops": 2}, "num_spatial_crops"),
            ({"sampling": "uniform"}, "sampling"),
            ({"num_frame": 4}, "unknown option"),
            ({"num_frames": 0}, "num_frames"),
            ({"resample": 1}, "resample"),
        ]:
            with pytest.raises(ValueError, match=message):
                vp(frames, **kwargs)


def test_save_load_round_trip_and_auto_class(tmp_path, published_dir):
    import xclip_hf  # noqa: F401  (registers the Auto classes)

    vp = XClipVideoProcessor(num_frames=16, size=256, crop_size=224, num_temporal_clips=2, num_spatial_crops=3)
    vp.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
    assert saved["video_processor_type"] == "XClipVideoProcessor" and saved["num_spatial_crops"] == 3
    for loaded in (XClipVideoProcessor.from_pretrained(tmp_path), AutoVideoProcessor.from_pretrained(tmp_path)):
        assert type(loaded) is XClipVideoProcessor
        assert loaded.to_dict() == vp.to_dict()
    published = XClipVideoProcessor.from_pretrained(published_dir)
    assert published.size.shortest_edge == 224 and (published.crop_size.height, published.crop_size.width) == (224, 224)
    assert tuple(published.image_mean) == tuple(MEAN) and int(published.resample) == 2
