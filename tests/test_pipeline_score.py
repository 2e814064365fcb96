"""`ZeroShotVideoClassificationPipeline.score`: the (videos x labels) matrix equals the call's ranked results put
back in label order, for every whole-video option, windows (their mean), streams and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import pipeline

import xclip_hf  # noqa: F401  (registers the task)

from _helpers_pipeline import LABELS, make_our_checkpoint, video_frames, write_videos

TASK = "zero-shot-video-classification"
SHUFFLED = [LABELS[i] for i in (3, 0, 4, 2, 1)]  # not the tokenizer's nor an alphabetical order


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    pipe = pipeline(TASK, model=make_our_checkpoint(root / "ours"), device="cpu")
    return pipe, write_videos(str(root)), root


def _in_label_order(results, labels) -> np.ndarray:
    """Independent path: the call's ranked {"score", "label"} dicts, read back into label order."""
    return np.array([[{x["label"]: x["score"] for x in result}[label] for label in labels] for result in results])


def test_score_matrix_equals_the_calls_results_in_label_order(setup):
    pipe, (mp4, webm), _ = setup
    videos = [mp4, webm, mp4]
    views = dict(num_temporal_clips=2, num_spatial_crops=3, batch_size=2)
    matrix = pipe.score(videos, SHUFFLED, **views)
    assert isinstance(matrix, torch.Tensor) and matrix.dtype == torch.float32 and matrix.shape == (3, len(SHUFFLED))
    want = _in_label_order(pipe(videos, candidate_labels=SHUFFLED, **views), SHUFFLED)
    np.testing.assert_array_equal(matrix.double().numpy(), want)
    assert np.ptp(want, axis=1).min() > 1e-3 and not np.allclose(want[0], want[1])  # rows and columns differ
    # another label order permutes the columns; other call options apply (template, frame count)
    np.testing.assert_allclose(pipe.score(videos, LABELS, **views).numpy(), matrix.numpy()[:, [1, 4, 3, 0, 2]],
                               atol=1e-6, rtol=0)  # the text batch is another order: float rounding differs
    other = dict(hypothesis_template="a video of {}", num_frames=4)
    np.testing.assert_array_equal(pipe.score([webm], LABELS, **other).double().numpy(),
                                  _in_label_order([pipe(webm, candidate_labels=LABELS, **other)], LABELS))


def test_one_video_a_stream_and_an_empty_list(setup):
    pipe, (mp4, _), _ = setup
    one = pipe.score(mp4, LABELS)
    assert one.shape == (1, len(LABELS))
    np.testing.assert_array_equal(one.double().numpy(), _in_label_order([pipe(mp4, candidate_labels=LABELS)], LABELS))
    frames = video_frames(9, 40, 52, seed=3)
    streamed = pipe.score((f for f in [frames, frames[:6]]), LABELS, batch_size=2)
    assert streamed.shape == (2, len(LABELS))
    np.testing.assert_array_equal(streamed.numpy(), pipe.score([frames, frames[:6]], LABELS, batch_size=2).numpy())
    empty = pipe.score([], LABELS)
    assert empty.shape == (0, len(LABELS))


def test_windows_score_their_mean_and_per_window_options_are_refused(setup):
    pipe, (mp4, webm), _ = setup
    windows = dict(chunk_length_s=0.2, stride_length_s=0.1)
    matrix = pipe.score([mp4, webm], LABELS, **windows)
    want = _in_label_order(pipe([mp4, webm], candidate_labels=LABELS, **windows), LABELS)
    np.testing.assert_array_equal(matrix.double().numpy(), want)
    per_window = pipe(mp4, candidate_labels=LABELS, return_timestamps=True, **windows)
    assert len(per_window) > 1  # several windows, averaged
    np.testing.assert_allclose(matrix[0].numpy(), _in_label_order([w["labels"] for w in per_window], LABELS).mean(0),
                               atol=1e-6, rtol=0)
    for refused, name in ((dict(return_timestamps=True), "return_timestamps=True"), (dict(top_k=2), "top_k=2"),
                          (dict(aggregate="segments"), "aggregate='segments'")):
        with pytest.raises(ValueError, match=f"return_tensors=True returns every label's score.*{name}"):
            pipe.score(mp4, LABELS, **windows, **refused)
    with pytest.raises(ValueError, match="return_tensors must be True or False"):
        pipe(mp4, candidate_labels=LABELS, return_tensors="yes")
    with pytest.raises(ValueError, match="always returns the score matrix"):
        pipe.score(mp4, LABELS, return_tensors=False)


def test_bad_videos_and_labels_are_named(setup):
    pipe, (mp4, _), root = setup
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        pipe.score([mp4, str(root / "nope.mp4")], LABELS)
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    with pytest.raises(ValueError, match="corrupt.mp4"):
        pipe.score([mp4, str(corrupt)], LABELS, batch_size=2)
    with pytest.raises(ValueError, match="duplicate"):
        pipe.score(mp4, ["riding a bike", "riding a bike"])
    with pytest.raises(ValueError, match="needs `candidate_labels`"):
        pipe.score(mp4)
