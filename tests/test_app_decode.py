"""One decode per app answer (issue 29): the classify handler reads the video once, the page shows the frames the
model saw (the video processor's resized/cropped frames, not normalisation undone by hand), the scores are the
pipeline's. Runs the service and the page's handler in-process (no server)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gradio")

from _helpers_app import LONG_LABELS, write_long_video  # noqa: E402
from _helpers_pipeline import make_our_checkpoint, write_videos  # noqa: E402

from xclip_hf.video import reader  # noqa: E402

LABELS = ", ".join(LONG_LABELS)
WINDOW = dict(window_s=4.0, stride_s=2.0)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A tiny checkpoint, a short clip and a 24 s video, the service, the page's classify handler and an oracle
    pipeline loaded on its own."""
    from transformers import pipeline

    from xclip_hf.app.service import AppService
    from xclip_hf.app.ui import _classify_handler

    root = tmp_path_factory.mktemp("decode")
    ckpt = make_our_checkpoint(root / "ckpt")
    service = AppService(ckpt)
    yield {"service": service, "handler": _classify_handler(service), "clip": write_videos(str(root))[0],
           "long": write_long_video(str(root / "long.mp4")),
           "oracle": pipeline("zero-shot-video-classification", model=ckpt)}
    service.close()


@pytest.fixture
def decodes(monkeypatch):
    """Counts decode passes: every frame read of `VideoFile` (get_frames / iter_frames) and every first-frame probe
    of a backend for the frame size (PyAV's display matrix, decord's shape)."""
    count = [0]

    def counted(method, probe=None):
        def wrapper(self, *args, **kwargs):
            if probe is None or probe(self):
                count[0] += 1
            return method(self, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(reader.VideoFile, "get_frames", counted(reader.VideoFile.get_frames))
    monkeypatch.setattr(reader.VideoFile, "iter_frames", counted(reader.VideoFile.iter_frames))
    monkeypatch.setattr(reader._PyAVBackend, "_orientation_now",
                        counted(reader._PyAVBackend._orientation_now, lambda b: b._orientation is None))
    monkeypatch.setattr(reader._DecordBackend, "_frame_size",
                        counted(reader._DecordBackend._frame_size, lambda b: b._size is None))
    return count


def _answer(app, source, mode):
    """The page's classify handler for an uploaded file: (status, scores, frames, ..., result, ...)."""
    return app["handler"](source, "", LABELS, 5, "{}", mode, WINDOW["window_s"], WINDOW["stride_s"],
                          progress=lambda *a, **k: None)


def _processor_crops(service, path, indices) -> np.ndarray:
    """The frames at ``indices`` through the video processor with rescaling and normalisation off: (T, h, w, 3)."""
    frames = torch.from_numpy(reader.read_video(path, indices)).permute(0, 3, 1, 2)[None]
    crops = service.processor.video_processor.process_clips(frames, do_rescale=False, do_normalize=False)
    return crops[0].permute(0, 2, 3, 1).numpy()


def _undo_normalisation(service, path, indices) -> np.ndarray:
    """The app's former frames: the model input of ``indices`` with normalisation and rescaling undone by hand."""
    vp = service.processor.video_processor
    frames = torch.from_numpy(reader.read_video(path, indices)).permute(0, 3, 1, 2)[None]
    x = vp.process_clips(frames)[0]
    x = x * torch.tensor(vp.image_std).view(1, -1, 1, 1) + torch.tensor(vp.image_mean).view(1, -1, 1, 1)
    return (x / float(vp.rescale_factor)).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("mode", ["whole video", "windows"])
def test_one_answer_decodes_the_video_once(app, decodes, mode):
    status = _answer(app, app["long"], mode)[0]
    assert "frames per clip" in status, status
    assert decodes[0] == 1


def test_whole_video_frames_are_the_processors_crops_and_scores_the_pipelines(app):
    service, path = app["service"], app["clip"]
    out = _answer(app, path, "whole video")
    got = np.stack([image for image, _ in out[2]])
    with reader.open_video(path) as video:
        indices = np.asarray(service.processor.video_processor.sample_indices(
            video.num_frames, num_frames=service.num_frames))[0]
        times = video.frame_times
    np.testing.assert_array_equal(got, _processor_crops(service, path, indices))
    assert np.abs(got.astype(int) - _undo_normalisation(service, path, indices).astype(int)).max() <= 1
    assert [caption for _, caption in out[2]] == [f"{times[i]:.2f} s" for i in indices]
    expected = app["oracle"](path, candidate_labels=LONG_LABELS, top_k=5)
    result = out[5]["predictions"]
    assert [p["label"] for p in result] == [p["label"] for p in expected]
    np.testing.assert_allclose([p["score"] for p in result], [p["score"] for p in expected], atol=1e-6, rtol=0)


def test_window_frames_are_the_best_windows_crops_and_scores_the_pipelines(app):
    from xclip_hf.video.windows import plan_windows

    service, path = app["service"], app["long"]
    out = _answer(app, path, "windows")
    result = out[5]
    expected = app["oracle"](path, candidate_labels=LONG_LABELS, chunk_length_s=4.0, stride_length_s=2.0,
                             return_timestamps=True)
    assert [tuple(w["timestamp"]) for w in result["windows"]] == [tuple(w["timestamp"]) for w in expected]
    for got, want in zip(result["windows"], expected):
        assert [p["label"] for p in got["labels"]] == [p["label"] for p in want["labels"]]
        np.testing.assert_allclose([p["score"] for p in got["labels"]], [p["score"] for p in want["labels"]],
                                   atol=1e-6, rtol=0)
    best = max(range(len(expected)), key=lambda i: expected[i]["labels"][0]["score"])
    assert result["best_window"] == best
    with reader.open_video(path) as video:
        plan = plan_windows(video.frame_times, video.duration, 4.0, 2.0, service.num_frames)
        times = video.frame_times
    indices = plan[best].indices
    got = np.stack([image for image, _ in out[2]])
    np.testing.assert_array_equal(got, _processor_crops(service, path, indices))
    assert np.abs(got.astype(int) - _undo_normalisation(service, path, indices).astype(int)).max() <= 1
    assert [caption for _, caption in out[2]] == [f"{times[i]:.2f} s" for i in indices]


def test_crops_normalised_by_the_processor_are_its_model_input():
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    vp = XClipVideoProcessor()
    clips = torch.randint(0, 256, (2, 3, 3, 60, 300), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for crops in (1, 3):
        cropped = vp.crop_clips(clips, num_spatial_crops=crops)
        assert cropped.dtype == torch.uint8 and cropped.shape == (2 * crops, 3, 3, 224, 224)
        assert torch.equal(vp.normalize_crops(cropped), vp.process_clips(clips, num_spatial_crops=crops))
    with pytest.raises(ValueError, match="uint8"):
        vp.crop_clips(clips.float())


def test_resolving_a_video_decodes_no_frame(app, decodes):
    _, _, info = app["service"].resolve_video(source=None, upload=app["long"])
    assert info.num_frames == 192 and info.fps == 8 and decodes[0] == 0
