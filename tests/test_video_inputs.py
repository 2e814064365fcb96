"""One owner of "what is one video" (models/video_input.py): grayscale in every form scores as its RGB replication
through the video processor, the pipeline and embed; a refused input gets the same error from the processor and
the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import xclip_hf  # noqa: F401  (registers the task)
from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

from _helpers_pipeline import LABELS, make_our_checkpoint, video_frames, write_videos
from _helpers_video import write_gray_ffv1

TASK = "zero-shot-video-classification"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    checkpoint = make_our_checkpoint(root / "ours")
    gray = video_frames(9, 40, 52, seed=4)[..., 1]  # (T, H, W) uint8
    return {"root": root, "checkpoint": checkpoint, "pipe": pipeline(TASK, model=checkpoint, device="cpu"),
            "gray": gray, "rgb": np.repeat(gray[..., None], 3, axis=-1), "mp4": write_videos(str(root))[0]}


def _gray_forms(gray: np.ndarray) -> dict:
    return {
        "list of 2-D frames": list(gray),
        "T x H x W array": gray,
        "T x H x W tensor": torch.from_numpy(gray),
        "list of H x W x 1 frames": list(gray[..., None]),
        "T x H x W x 1 array": gray[..., None],
        "list of PIL L images": [Image.fromarray(frame, mode="L") for frame in gray],
    }


def _scores(result) -> np.ndarray:
    by_label = {item["label"]: item["score"] for item in result}
    return np.array([by_label[label] for label in LABELS])


def test_grayscale_forms_process_as_their_rgb_replication(setup):
    vp = XClipVideoProcessor(num_frames=4, size=32, crop_size=32)
    want = vp(setup["rgb"], return_tensors="pt")["pixel_values"]
    for name, video in _gray_forms(setup["gray"]).items():
        torch.testing.assert_close(vp(video, return_tensors="pt")["pixel_values"], want, atol=0, rtol=0, msg=name)
    batch = vp([setup["gray"], torch.from_numpy(setup["gray"])], return_tensors="pt")["pixel_values"]
    assert batch.shape[0] == 2 and torch.equal(batch[1], want[0])


def test_grayscale_forms_score_as_their_rgb_replication_in_the_pipeline(setup):
    pipe = setup["pipe"]
    want = _scores(pipe(setup["rgb"], candidate_labels=LABELS))
    for name, video in _gray_forms(setup["gray"]).items():
        np.testing.assert_allclose(_scores(pipe(video, candidate_labels=LABELS)), want, atol=1e-6, err_msg=name)
    both = pipe([setup["gray"], list(setup["gray"])], candidate_labels=LABELS)  # a batch of grayscale videos
    for result in both:
        np.testing.assert_allclose(_scores(result), want, atol=1e-6)
    windows = dict(candidate_labels=LABELS, chunk_length_s=0.4, fps=10, return_timestamps=True)
    for gray, rgb in zip(pipe(setup["gray"], **windows), pipe(setup["rgb"], **windows)):
        assert gray["timestamp"] == rgb["timestamp"]
        np.testing.assert_allclose(_scores(gray["labels"]), _scores(rgb["labels"]), atol=1e-6)


def test_grayscale_file_embeds_as_its_rgb_replication(setup, tmp_path):
    """embed takes files: a single-channel (gray8, lossless FFV1) file gives the vector of its frames replicated
    to RGB, computed here with the processor and XClipModel.get_video_features."""
    from xclip_hf import XClipModel, embed_videos

    path = write_gray_ffv1(tmp_path / "gray.mkv", setup["gray"])
    (row,) = embed_videos([path], tmp_path / "out", setup["checkpoint"], progress=False)
    assert row["error"] is None
    model = XClipModel.from_pretrained(setup["checkpoint"]).eval()
    processor = XClipVideoProcessor.from_pretrained(setup["checkpoint"])
    for video in (setup["rgb"], setup["gray"]):
        with torch.no_grad():
            want = model.get_video_features(pixel_values=processor(video, return_tensors="pt")["pixel_values"])
        np.testing.assert_allclose(row["video_embeds"], want.video_embeds[0].numpy(), atol=1e-5, rtol=0)


def _bad_inputs(setup) -> dict:
    rgb, gray = setup["rgb"], setup["gray"]
    return {
        "one 2-D image": gray[0],
        "one H x W x 3 image": rgb[0],
        "3 x H x W: one (C, H, W) image": gray[:3],
        "one PIL image": Image.fromarray(rgb[0]),
        "frames of two sizes": [rgb[0], rgb[1, :20]],
        "2 channels": rgb[..., :2],
        "6-D array": rgb[None, None],
        "a number": 3.5,
        "bytes": b"\x00\x01",
        "a batch with a number": [setup["mp4"], 3.5],
        "a batch with one image": [rgb, rgb[0]],
        "an empty frame list in a batch": [rgb, []],
    }


def test_refused_inputs_get_the_same_error_from_processor_and_pipeline(setup):
    vp = setup["pipe"].video_processor
    for name, video in _bad_inputs(setup).items():
        with pytest.raises((ValueError, TypeError)) as from_processor:
            vp(video, return_tensors="pt")
        with pytest.raises((ValueError, TypeError)) as from_pipeline:
            setup["pipe"](video, candidate_labels=LABELS)
        assert type(from_pipeline.value) is type(from_processor.value), name
        assert str(from_pipeline.value) == str(from_processor.value), name
        assert "video" in str(from_processor.value), name  # names the video
