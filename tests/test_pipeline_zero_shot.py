"""pipeline("zero-shot-video-classification"): end to end on real files, oracle parity, label cache, bad input."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import threading
import time

import numpy as np
import pytest
import torch
from transformers import pipeline

import xclip_hf  # noqa: F401  (registers the task)
from xclip_hf import XClipModel

from _helpers_pipeline import LABELS, make_our_checkpoint, make_published_checkpoint, video_frames, write_videos

TASK = "zero-shot-video-classification"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("zsvc")
    ours = make_our_checkpoint(root / "ours")
    published = make_published_checkpoint(root / "published")
    videos = write_videos(str(root))
    return {"root": root, "ours": ours, "published": published, "videos": videos}


@pytest.fixture(scope="module")
def pipe(workdir):
    return pipeline(TASK, model=workdir["ours"], device="cpu")


def _scores(result):
    return {item["label"]: item["score"] for item in result}


def _reference_probs(model, processor, video, labels, **view_kwargs):
    """Independent of the pipeline's cache path: full forward with input_ids, softmax per view, mean over views."""
    pixel_values = processor.video_processor(videos=[video], return_tensors="pt", **view_kwargs)["pixel_values"]
    text = processor.tokenizer(labels, padding=True, return_tensors="pt")
    if pixel_values.ndim == 5:
        pixel_values = pixel_values.unsqueeze(1)
    views = pixel_values[0].to(model.dtype)
    with torch.no_grad():
        out = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=views)
    _reference_probs.last_logits = out.logits_per_video.float()
    return out.logits_per_video.float().softmax(-1).mean(0), pixel_values, text


def test_task_is_registered():
    from transformers.pipelines import get_supported_tasks

    assert TASK in get_supported_tasks()


def test_end_to_end_format_order_topk_and_model_parity(pipe, workdir):
    mp4, webm = workdir["videos"]
    assert isinstance(pipe.model, XClipModel)
    single = pipe(mp4, candidate_labels=LABELS)
    assert isinstance(single, list) and len(single) == len(LABELS)
    assert all(set(item) == {"score", "label"} for item in single)
    assert sorted(item["label"] for item in single) == sorted(LABELS)
    scores = [item["score"] for item in single]
    assert scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1.0) < 1e-5
    assert scores[0] - scores[-1] > 1e-3  # the perturbed tiny model separates the labels

    for path, result in zip([mp4, webm], pipe([mp4, webm], candidate_labels=LABELS)):
        ref, _, _ = _reference_probs(pipe.model, pipe.processor, path, LABELS)
        got = _scores(result)
        np.testing.assert_allclose([got[label] for label in LABELS], ref.numpy(), atol=1e-5)

    top = pipe([mp4, webm], candidate_labels=LABELS, top_k=2)
    assert len(top) == 2 and all(len(r) == 2 for r in top)
    assert top[0] == single[:2]
    batched = pipe([mp4, webm, mp4], candidate_labels=LABELS, batch_size=2)
    unbatched = pipe([mp4, webm, mp4], candidate_labels=LABELS, batch_size=1)
    for a, b in zip(batched, unbatched):
        assert [x["label"] for x in a] == [x["label"] for x in b]
        np.testing.assert_allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-5)


def test_multi_view_averages_the_per_view_softmax(pipe, workdir):
    mp4 = workdir["videos"][0]
    views = dict(num_temporal_clips=2, num_spatial_crops=3)
    result = pipe(mp4, candidate_labels=LABELS, **views)
    ref, pixel_values, _ = _reference_probs(pipe.model, pipe.processor, mp4, LABELS, **views)
    assert pixel_values.shape[1] == 6
    assert not torch.equal(pixel_values[0, 0], pixel_values[0, 5])  # the views do differ
    got = _scores(result)
    np.testing.assert_allclose([got[label] for label in LABELS], ref.numpy(), atol=1e-5)
    single = _scores(pipe(mp4, candidate_labels=LABELS))
    assert max(abs(single[k] - got[k]) for k in LABELS) > 1e-4
    # the test tells averaging probabilities (the paper's protocol) from averaging logits
    logit_mean = _reference_probs.last_logits.mean(0).softmax(-1).numpy()
    assert np.abs(logit_mean - np.array([got[label] for label in LABELS])).max() > 1e-4


def test_array_tensor_and_frame_list_inputs_agree(pipe):
    frames = video_frames(9, 40, 52, seed=3)
    from_array = pipe(frames, candidate_labels=LABELS)
    from_tensor = pipe(torch.from_numpy(frames), candidate_labels=LABELS)
    from_list = pipe(list(frames), candidate_labels=LABELS)
    assert [x["label"] for x in from_array] == [x["label"] for x in from_tensor] == [x["label"] for x in from_list]
    np.testing.assert_allclose([x["score"] for x in from_array], [x["score"] for x in from_list], atol=1e-6)
    both = pipe([frames, list(frames)], candidate_labels=LABELS)
    assert len(both) == 2 and both[0] == from_array
    streamed = list(pipe((f for f in [frames, frames]), candidate_labels=LABELS, batch_size=2))
    assert len(streamed) == 2 and [x["label"] for x in streamed[1]] == [x["label"] for x in from_array]


def test_labels_and_template_given_at_init(workdir):
    mp4 = workdir["videos"][0]
    pipe = pipeline(TASK, model=workdir["ours"], device="cpu", candidate_labels=LABELS,
                    hypothesis_template="a video of {}")
    expected = pipeline(TASK, model=workdir["ours"], device="cpu")(mp4, candidate_labels=LABELS,
                                                                 hypothesis_template="a video of {}")
    assert pipe(mp4) == expected
    assert pipe(mp4, candidate_labels=LABELS[:2]) == pipe(mp4, candidate_labels=LABELS[:2],
                                                           hypothesis_template="a video of {}")


def test_published_directory_matches_transformers_oracle(workdir):
    from transformers import XCLIPModel

    pipe = pipeline(TASK, model=workdir["published"], device="cpu")
    assert type(pipe.model) is XClipModel
    oracle = XCLIPModel.from_pretrained(workdir["published"]).eval()
    for path in workdir["videos"]:
        result = _scores(pipe(path, candidate_labels=LABELS))
        _, pixel_values, text = _reference_probs(pipe.model, pipe.processor, path, LABELS)
        with torch.no_grad():
            logits = oracle(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                            pixel_values=pixel_values[:, 0]).logits_per_video
        expected = logits.softmax(-1)[0].numpy()
        np.testing.assert_allclose([result[label] for label in LABELS], expected, atol=1e-5)


class _CountingTextEncoder:
    """Wraps `model.get_text_features` and counts the calls."""

    def __init__(self, model):
        self.calls = 0
        self._inner = model.get_text_features
        model.get_text_features = self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._inner(*args, **kwargs)


def test_label_cache_runs_text_encoder_once_and_invalidates(workdir):
    mp4, webm = workdir["videos"]
    pipe = pipeline(TASK, model=workdir["ours"], device="cpu", label_cache_size=2)
    counter = _CountingTextEncoder(pipe.model)
    first = pipe([mp4, webm], candidate_labels=LABELS, batch_size=2)
    again = pipe([webm, mp4], candidate_labels=LABELS)
    assert counter.calls == 1  # two calls, three batches, one text-encoder run
    assert [x["label"] for x in again[0]] == [x["label"] for x in first[1]]
    np.testing.assert_allclose([x["score"] for x in again[0]], [x["score"] for x in first[1]], atol=1e-5)
    pipe(mp4, candidate_labels=LABELS[:3])
    assert counter.calls == 2  # new label set
    pipe(mp4, candidate_labels=LABELS, hypothesis_template="a video of {}")
    assert counter.calls == 3  # new template
    pipe(mp4, candidate_labels=LABELS[:3])
    assert counter.calls == 3  # still cached (LRU of 2)
    assert len(pipe.label_cache) == 2
    pipe(mp4, candidate_labels=LABELS)
    assert counter.calls == 4  # the first entry was evicted

    # weights change in place (load_state_dict copies into the parameters): the cache must not serve stale features
    state = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    state["text_model.text_projection.weight"] = state["text_model.text_projection.weight"].flip(0)
    before = _scores(pipe(mp4, candidate_labels=LABELS))
    pipe.model.load_state_dict(state)
    after = _scores(pipe(mp4, candidate_labels=LABELS))
    assert counter.calls == 5
    ref, _, _ = _reference_probs(pipe.model, pipe.processor, mp4, LABELS)
    np.testing.assert_allclose([after[label] for label in LABELS], ref.numpy(), atol=1e-5)
    assert max(abs(before[k] - after[k]) for k in LABELS) > 1e-4

    # an optimizer step also invalidates
    optimizer = torch.optim.SGD(pipe.model.text_model.parameters(), lr=1.0)
    for p in pipe.model.text_model.parameters():
        p.grad = torch.ones_like(p) * 0.01
    optimizer.step()
    pipe(mp4, candidate_labels=LABELS)
    assert counter.calls == 6


def test_results_identical_with_and_without_cache(workdir):
    videos = workdir["videos"]
    cached = pipeline(TASK, model=workdir["ours"], device="cpu")
    uncached = pipeline(TASK, model=workdir["ours"], device="cpu", label_cache_size=0)
    counter = _CountingTextEncoder(uncached.model)
    for _ in range(2):
        a = cached(videos, candidate_labels=LABELS, batch_size=2)
        b = uncached(videos, candidate_labels=LABELS, batch_size=2)
        assert a == b
    assert counter.calls == 2 * 1  # no cache: once per batch (one batch of two videos per call)


def test_bad_labels_raise_clear_errors(pipe, workdir, caplog):
    mp4 = workdir["videos"][0]
    with pytest.raises(ValueError, match="candidate_labels is empty"):
        pipe(mp4, candidate_labels=[])
    with pytest.raises(ValueError, match="needs `candidate_labels`"):
        pipe(mp4)
    with pytest.raises(ValueError, match="duplicates.*'cooking pasta'"):
        pipe(mp4, candidate_labels=["cooking pasta", "riding a bike", "cooking pasta"])
    with pytest.raises(TypeError, match=r"candidate_labels\[1\] is 42"):
        pipe(mp4, candidate_labels=["cooking pasta", 42])
    with pytest.raises(ValueError, match="no '\\{\\}' placeholder"):
        pipe(mp4, candidate_labels=LABELS, hypothesis_template="a video")
    with pytest.raises(ValueError, match="top_k"):
        pipe(mp4, candidate_labels=LABELS, top_k=0)
    long_label = " ".join(["cooking pasta riding"] * 40)
    with caplog.at_level(logging.WARNING):
        result = pipe(mp4, candidate_labels=["playing guitar", long_label])
    assert "truncated" in caplog.text and "cooking pasta riding" in caplog.text
    assert {item["label"] for item in result} == {"playing guitar", long_label}


def test_bad_videos_name_the_file_and_do_not_hang(pipe, workdir, tmp_path):
    mp4 = workdir["videos"][0]
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        pipe([mp4, missing], candidate_labels=LABELS)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    start = time.monotonic()
    with pytest.raises(ValueError, match="corrupt.mp4"):
        pipe([mp4, str(corrupt)], candidate_labels=LABELS)
    assert time.monotonic() - start < 30
    with pytest.raises(ValueError, match="5-D"):
        pipe(np.zeros((1, 2, 3, 8, 8, 3), dtype=np.uint8), candidate_labels=LABELS)
    with pytest.raises(ValueError, match="4-D"):
        pipe(np.zeros((8, 8), dtype=np.uint8), candidate_labels=LABELS)
    with pytest.raises(TypeError, match="unsupported video input"):
        pipe([mp4, 3.5], candidate_labels=LABELS)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="127.0.0.1:9/missing.mp4"):
        pipe("http://127.0.0.1:9/missing.mp4", candidate_labels=LABELS)
    assert time.monotonic() - start < 15


def test_http_url_is_downloaded_and_decoded(pipe, workdir, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the downloads go
    root = os.path.dirname(workdir["videos"][0])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{os.path.basename(workdir['videos'][1])}"
        from_url = pipe(url, candidate_labels=LABELS)
        windows = dict(candidate_labels=LABELS, chunk_length_s=0.4, return_timestamps=True)
        windows_from_url = pipe([url, url], num_workers=2, **windows)
    finally:
        server.shutdown()
        server.server_close()
    assert from_url == pipe(workdir["videos"][1], candidate_labels=LABELS)
    from_file = pipe(workdir["videos"][1], **windows)
    for result in windows_from_url:  # read in worker processes: the same windows and scores
        assert [w["timestamp"] for w in result] == [w["timestamp"] for w in from_file]
        for got, want in zip(result, from_file):
            assert [x["label"] for x in got["labels"]] == [x["label"] for x in want["labels"]]
            np.testing.assert_allclose([x["score"] for x in got["labels"]], [x["score"] for x in want["labels"]],
                                       atol=1e-6)
    assert os.listdir(tmp_path) == []  # every download was removed after use


def test_bfloat16_on_cpu(workdir):
    mp4 = workdir["videos"][0]
    fp32 = _scores(pipeline(TASK, model=workdir["ours"], device="cpu")(mp4, candidate_labels=LABELS))
    pipe16 = pipeline(TASK, model=workdir["ours"], device="cpu", torch_dtype=torch.bfloat16)
    assert pipe16.model.dtype == torch.bfloat16
    result = pipe16(mp4, candidate_labels=LABELS)
    scores = [x["score"] for x in result]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-3
    assert max(abs(fp32[k] - _scores(result)[k]) for k in LABELS) < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(pipe, workdir):
    mp4 = workdir["videos"][0]
    gpu = pipeline(TASK, model=workdir["ours"], device="cuda")
    assert gpu.model.device.type == "cuda"
    a, b = _scores(gpu(mp4, candidate_labels=LABELS)), _scores(pipe(mp4, candidate_labels=LABELS))
    assert max(abs(a[k] - b[k]) for k in LABELS) < 1e-3


def test_nothing_outside_the_pipeline_class_calls_its_internals():
    """Windows, views and the CLI go through the pipeline's public call (issue 18: `windowed.py` and `classify`
    called `_sanitize_parameters`, `_preprocess_params` and `forward` from outside)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    internals = re.compile(r"\b(_sanitize_parameters|_preprocess_params|_forward_params|_postprocess_params)\b|"
                           r"\bpipe\w*\.(forward|preprocess|postprocess|_\w+)\(")
    owner = root / "xclip_hf" / "pipelines" / "zero_shot_video_classification.py"
    offenders = [f"{path.relative_to(root)}:{n}" for folder in ("xclip_hf", "examples", "benchmarks")
                 for path in sorted((root / folder).rglob("*.py")) if path != owner
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if internals.search(line)]
    assert not offenders, offenders
