"""Untrimmed videos: any frame count (MIT temporal position embedding, Eq. 6), windows, segments, one-pass reading."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from transformers import pipeline

import xclip_hf  # noqa: F401  (registers the task)
from xclip_hf import XClipConfig, XClipModel
from xclip_hf.data.video_writer import write_video
from xclip_hf.video.reader import VideoFile, _PyAVBackend
from xclip_hf.video.timing import frame_times_at_rate
from xclip_hf.video.windows import iter_window_frames, merge_segments, plan_windows

from _helpers_pipeline import LABELS, NUM_FRAMES, make_our_checkpoint
from _helpers_video import VFR_END, VFR_TIMES, long_index_frames, on_screen, pyav_decode_all, write_timed_video

TASK = "zero-shot-video-classification"


# ------------------------------------------------------------------ model: any number of frames


@pytest.fixture(scope="module")
def model8():
    torch.manual_seed(0)
    model = XClipModel(XClipConfig.from_variant("xclip-tiny", num_frames=8)).eval()
    with torch.no_grad():  # a non-trivial temporal table (it is initialised to zeros)
        model.vision_model.mit.position_embedding.normal_(0, 1)
    return model


def _expected_temporal_table(table: np.ndarray, t: int) -> np.ndarray:
    """Independent 1-D linear resampling: frame j of t sits at time (j + 0.5) / t; trained position i of n at
    (i + 0.5) / n; so frame j reads position (j + 0.5) * n / t - 0.5, clamped to [0, n - 1]."""
    n = table.shape[0]
    out = np.empty((t, table.shape[1]))
    for j in range(t):
        x = min(max((j + 0.5) * n / t - 0.5, 0.0), n - 1.0)
        lo = int(np.floor(x))
        hi = min(lo + 1, n - 1)
        out[j] = (1 - (x - lo)) * table[lo] + (x - lo) * table[hi]
    return out


def _video_inputs(batch, frames, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, 32, 32, generator=gen), torch.randn(3, 16, generator=gen)


def test_same_frame_count_is_bit_identical_with_and_without_the_flag(model8):
    pixels, text = _video_inputs(2, 8)
    with torch.no_grad():
        plain = model8(pixel_values=pixels, text_embeds=text)
        flagged = model8(pixel_values=pixels, text_embeds=text, interpolate_pos_encoding=True)
    assert torch.equal(plain.logits_per_video, flagged.logits_per_video)
    assert torch.equal(plain.video_embeds, flagged.video_embeds)


@pytest.mark.parametrize("frames", [1, 4, 16])
def test_other_frame_counts_use_the_linearly_resampled_temporal_embedding(model8, frames):
    mit = model8.vision_model.mit
    table = mit.position_embedding.detach()[0].double().numpy()
    expected = _expected_temporal_table(table, frames)
    captured = {}
    hook = mit.encoder.register_forward_pre_hook(lambda module, args: captured.setdefault("input", args[0].clone()))
    pixels, text = _video_inputs(2, frames, seed=frames)
    try:
        with torch.no_grad():
            out = model8(pixel_values=pixels, text_embeds=text, interpolate_pos_encoding=True)
    finally:
        hook.remove()
    assert out.logits_per_video.shape == (2, 3) and torch.isfinite(out.logits_per_video).all()
    frame_embeds = out.vision_model_output.frame_embeds
    added = (captured["input"] - frame_embeds).double().numpy()  # what the MIT added to H (Eq. 6)
    for b in range(2):
        np.testing.assert_allclose(added[b], expected, atol=1e-5)
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        model8(pixel_values=pixels, text_embeds=text)


def test_batch_invariance_at_16_frames(model8):
    pixels, text = _video_inputs(3, 16, seed=7)
    with torch.no_grad():
        batched = model8(pixel_values=pixels, text_embeds=text, interpolate_pos_encoding=True).logits_per_video
        single = torch.cat([model8(pixel_values=pixels[i:i + 1], text_embeds=text,
                                   interpolate_pos_encoding=True).logits_per_video for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_zero_frames_is_a_clear_error(model8):
    with pytest.raises(ValueError, match="no frames"):
        model8(pixel_values=torch.zeros(1, 0, 3, 32, 32), text_embeds=torch.zeros(2, 16), interpolate_pos_encoding=True)


# ------------------------------------------------------------------ windows and segments (pure)


def test_segments_merge_consecutive_windows_with_the_same_top_label():
    def window(start, end, label, score):
        other = "b" if label == "a" else "a"
        return {"timestamp": (start, end), "labels": [{"score": score, "label": label},
                                                      {"score": 1 - score, "label": other}]}

    windows = [window(0, 2, "a", 0.9), window(1, 3, "a", 0.7), window(2, 4, "b", 0.8), window(3, 5, "b", 0.6),
               window(4, 6, "a", 0.5)]
    segments = merge_segments(windows[::-1])  # order of the input does not matter
    assert [(s["start_s"], s["end_s"], s["label"]) for s in segments] == [
        (0, 2.5, "a"), (2.5, 4.5, "b"), (4.5, 6, "a")]  # overlaps split in their middle
    np.testing.assert_allclose([s["score"] for s in segments], [0.8, 0.7, 0.5])
    # non-overlapping windows: boundaries at the window edges
    segments = merge_segments([window(0, 1, "a", 0.6), window(1, 2, "b", 0.9), window(2, 3, "b", 0.7)])
    assert [(s["start_s"], s["end_s"], s["label"]) for s in segments] == [(0, 1, "a"), (1, 3, "b")]
    np.testing.assert_allclose(segments[1]["score"], 0.8)
    assert merge_segments([]) == []


def test_window_plan_tail_and_short_video():
    windows = plan_windows(*frame_times_at_rate(75, 10), 2, 1, num_frames=4)
    assert [w.timestamp for w in windows] == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (5.5, 7.5)]
    np.testing.assert_array_equal(windows[-1].indices, [57, 62, 67, 72])  # 20 frames from 55: middles of 5
    (only,) = plan_windows(*frame_times_at_rate(12, 10), 2, num_frames=4)
    assert only.timestamp == (0, 1.2) and only.indices.tolist() == [1, 4, 7, 10]


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_three_window_file_is_read_in_one_pass_each_frame_decoded_once(tmp_path, monkeypatch, backend):
    frames = long_index_frames(30, 48, 96)
    path = write_video(tmp_path / "three.mp4", frames, fps=10, gop_size=12)
    windows = plan_windows(*frame_times_at_rate(30, 10), 1, num_frames=3)
    assert len(windows) == 3
    decoded, streamed, opened = [], [], []
    original_decode = _PyAVBackend._decode_from
    original_iter = VideoFile.iter_frames

    def counting_decode(self, index, wanted=()):
        for pos, frame in original_decode(self, index, wanted):
            decoded.append(pos)
            yield pos, frame

    def counting_iter(self, indices):
        opened.append(1)
        for index, frame in original_iter(self, indices):
            streamed.append(index)
            yield index, frame

    monkeypatch.setattr(_PyAVBackend, "_decode_from", counting_decode)
    monkeypatch.setattr(VideoFile, "iter_frames", counting_iter)
    monkeypatch.setattr(VideoFile, "get_frames", lambda *a, **k: pytest.fail("per-window get_frames"))
    oracle = pyav_decode_all(path)
    with VideoFile(path, backend=backend) as video:
        got = list(iter_window_frames(video, windows))
    assert [w for w, _ in got] == windows
    for window, window_frames in got:
        np.testing.assert_array_equal(window_frames, oracle[window.indices])
    needed = sorted({i for w in windows for i in w.indices.tolist()})
    assert opened == [1] and streamed == needed  # one pass, sorted, every needed frame exactly once
    if backend == "pyav":
        assert len(decoded) == len(set(decoded))  # no frame went through the decoder twice


# ------------------------------------------------------------------ pipeline


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    checkpoint = make_our_checkpoint(root / "ours")
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, (12, 24, 40, 3), dtype=np.uint8), 5, axis=0)  # 60 frames, 6 s
    path = write_video(root / "long.mp4", frames, fps=10)
    return {"pipe": pipeline(TASK, model=checkpoint, device="cpu"), "path": path, "decoded": pyav_decode_all(path)}


def _scores(labels):
    return np.array([{item["label"]: item["score"] for item in labels}[label] for label in LABELS])


@pytest.mark.parametrize("num_frames", [NUM_FRAMES, 5])
def test_each_window_scores_like_its_frames_cut_out(setup, num_frames):
    pipe, decoded = setup["pipe"], setup["decoded"]
    result = pipe(setup["path"], candidate_labels=LABELS, chunk_length_s=2, stride_length_s=1.5,
                  return_timestamps=True, batch_size=3, num_frames=num_frames)
    assert [tuple(r["timestamp"]) for r in result] == [(0, 2), (1.5, 3.5), (3, 5), (4, 6)]
    for entry in result:
        start, end = (int(round(t * 10)) for t in entry["timestamp"])
        alone = pipe(decoded[start:end], candidate_labels=LABELS, num_frames=num_frames)
        np.testing.assert_allclose(_scores(entry["labels"]), _scores(alone), atol=1e-5)
        assert [item["score"] for item in entry["labels"]] == sorted((i["score"] for i in entry["labels"]), reverse=True)


def test_variable_frame_rate_windows_carry_the_frames_times(setup, tmp_path):
    """A file at 20 fps for 1 s, then 5 fps to 5.0 s: windows are cut on presentation times (the average-rate
    clock reported (1.02, 2.04) for frames shown at 0.5-0.8 s and ended the video at 4.54 s)."""
    pipe = setup["pipe"]
    path = write_timed_video(tmp_path / "vfr.mp4", VFR_TIMES, VFR_END, bframes=2)
    decoded = pyav_decode_all(path)
    result = pipe(path, candidate_labels=LABELS, chunk_length_s=1, return_timestamps=True, num_frames=4)
    assert [tuple(r["timestamp"]) for r in result] == [(k, k + 1) for k in range(5)]
    for entry in result:  # each window scores like the frames shown at 4 evenly spaced moments inside it
        start = entry["timestamp"][0]
        shown = [on_screen(VFR_TIMES, start + (j + 0.5) / 4) for j in range(4)]
        alone = pipe(decoded[shown], candidate_labels=LABELS, num_frames=4)
        np.testing.assert_allclose(_scores(entry["labels"]), _scores(alone), atol=1e-5)
    segments = pipe(path, candidate_labels=LABELS, chunk_length_s=1, aggregate="segments", num_frames=4)
    assert segments[-1]["end_s"] == VFR_END


def test_array_windows_top_k_mean_and_segments(setup):
    pipe, decoded = setup["pipe"], setup["decoded"]
    per_window = pipe(decoded, candidate_labels=LABELS, chunk_length_s=2, fps=10, return_timestamps=True, top_k=2)
    assert len(per_window) == 3 and all(len(r["labels"]) == 2 for r in per_window)
    from_file = pipe(setup["path"], candidate_labels=LABELS, chunk_length_s=2, return_timestamps=True, top_k=2)
    for a, b in zip(per_window, from_file):
        assert a["timestamp"] == b["timestamp"] and a["labels"][0]["label"] == b["labels"][0]["label"]
    full = pipe(decoded, candidate_labels=LABELS, chunk_length_s=2, fps=10, return_timestamps=True)
    mean = pipe(torch.from_numpy(decoded), candidate_labels=LABELS, chunk_length_s=2, fps=10)
    np.testing.assert_allclose(_scores(mean), np.mean([_scores(r["labels"]) for r in full], axis=0), atol=1e-6)
    segments = pipe([setup["path"]], candidate_labels=LABELS, chunk_length_s=2, aggregate="segments")[0]
    expected = merge_segments(full)
    assert [(s["start_s"], s["end_s"], s["label"]) for s in segments] == [
        (s["start_s"], s["end_s"], s["label"]) for s in expected]
    np.testing.assert_allclose([s["score"] for s in segments], [s["score"] for s in expected], atol=1e-5)
    assert segments[0]["start_s"] == 0 and segments[-1]["end_s"] == 6


def test_bad_window_options_are_clear_errors(setup):
    pipe, decoded = setup["pipe"], setup["decoded"]
    cases = [
        (dict(chunk_length_s=0), "chunk_length_s must be > 0"),
        (dict(chunk_length_s=-2), "chunk_length_s must be > 0"),
        (dict(chunk_length_s=2, stride_length_s=3), "longer than chunk_length_s"),
        (dict(return_timestamps=True), "pass chunk_length_s"),
        (dict(chunk_length_s=2, aggregate="max"), "aggregate must be one of"),
        (dict(chunk_length_s=2, num_frames=0), "num_frames must be a positive integer"),
        (dict(num_frames=0), "num_frames must be a positive integer"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            pipe(setup["path"], candidate_labels=LABELS, **options)
    with pytest.raises(ValueError, match="has no clock; pass fps="):
        pipe(decoded, candidate_labels=LABELS, chunk_length_s=2)


def _same_results(a, b, atol=1e-5):
    """Two window results (lists of windows, or of per-video lists) are the same windows with the same scores."""
    if a and isinstance(a[0], list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same_results(x, y, atol)
        return
    assert [w["timestamp"] for w in a] == [w["timestamp"] for w in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose(_scores(x["labels"]), _scores(y["labels"]), atol=atol, rtol=0)


@pytest.fixture(scope="module")
def second_file(setup, tmp_path_factory):
    rng = np.random.default_rng(1)
    frames = np.repeat(rng.integers(0, 256, (9, 24, 40, 3), dtype=np.uint8), 5, axis=0)  # 45 frames, 4.5 s
    return write_video(tmp_path_factory.mktemp("second") / "second.mp4", frames, fps=10)


def test_windows_in_batches_of_4_with_2_workers_score_as_one_by_one(setup, second_file, tmp_path, monkeypatch):
    """Windows go through the pipeline's own stages: `batch_size` windows per forward, read by `num_workers`
    DataLoader workers; the scores are those of one window at a time in this process."""
    from xclip_hf.models.video_windows import VideoWindowStream

    pipe, path = setup["pipe"], setup["path"]
    call = dict(candidate_labels=LABELS, chunk_length_s=2, stride_length_s=1, return_timestamps=True)
    readers = tmp_path / "readers.txt"
    original_open = VideoWindowStream.open

    def recording_open(self):
        with open(readers, "a") as f:
            f.write(f"{os.getpid()}\n")
        return original_open(self)

    batches = []
    model = pipe.video_forward
    monkeypatch.setattr(VideoWindowStream, "open", recording_open)
    monkeypatch.setattr(pipe, "video_forward", lambda **kw: batches.append(kw["pixel_values"].shape[0]) or model(**kw))
    for videos in (path, [path, second_file, path]):
        one_by_one = pipe(videos, batch_size=1, **call)
        batches.clear()
        readers.unlink()
        batched = pipe(videos, batch_size=4, num_workers=2, **call)
        _same_results(batched, one_by_one)
        total = sum(len(r) for r in (batched if isinstance(videos, list) else [batched]))
        assert sum(batches) == total and max(batches) == 4  # the model saw batches of up to 4 windows
        pids = set(readers.read_text().split())
        assert str(os.getpid()) not in pids  # read in worker processes, beside the model
        assert len(pids) == (2 if isinstance(videos, list) else 1)
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(FileNotFoundError) as in_process:
        pipe([path, missing], batch_size=4, **call)
    with pytest.raises(FileNotFoundError) as in_worker:
        pipe([path, missing], batch_size=4, num_workers=2, **call)
    assert str(in_worker.value) == str(in_process.value) and "missing.mp4" in str(in_process.value)
    mean = pipe([path, second_file], candidate_labels=LABELS, chunk_length_s=2, batch_size=4, num_workers=2)
    for got, video in zip(mean, [path, second_file]):
        want = pipe(video, candidate_labels=LABELS, chunk_length_s=2)
        np.testing.assert_allclose(_scores(got), _scores(want), atol=1e-5, rtol=0)


def test_temporal_views_are_chunks_batched_across_videos(setup, second_file):
    """Without windows the chunks are a video's temporal views (each with its spatial crops): batch_size 4 with 2
    workers gives the scores of one view at a time."""
    pipe = setup["pipe"]
    views = dict(candidate_labels=LABELS, num_temporal_clips=2, num_spatial_crops=3)
    videos = [setup["path"], second_file, setup["decoded"]]
    one_by_one = pipe(videos, batch_size=1, **views)
    for got, want in zip(pipe(videos, batch_size=4, num_workers=2, **views), one_by_one):
        assert [x["label"] for x in got] == [x["label"] for x in want]
        np.testing.assert_allclose(_scores(got), _scores(want), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options, message", [
    (dict(chunk_length_s=True), "chunk_length_s must be a number of seconds, got True"),
    (dict(chunk_length_s=2, stride_length_s=True), "stride_length_s must be a number of seconds, got True"),
    (dict(chunk_length_s=2, batch_size=0), "batch_size must be a positive integer, got 0"),
    (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
    (dict(chunk_length_s=2, fps=10), "fps=10.0 is the clock of frame arrays; a file has its own"),
    (dict(chunk_length_s=2, aggregate="segments", top_k=2), "top_k=2 does not apply to aggregate='segments'"),
])
def test_window_options_that_were_taken_silently_are_refused(setup, options, message):
    """Issue 22, defect 9: True was taken as 1 s, batch_size=0 as 1, fps= ignored for a file (files have their own
    clock), top_k ignored with segments (each segment carries one label): each is refused, naming the option."""
    with pytest.raises(ValueError, match=re.escape(message)):
        setup["pipe"](setup["path"], candidate_labels=LABELS, **options)


# ------------------------------------------------------------------ command line


@pytest.mark.slow
def test_cli_timeline_segments_json_and_plot(setup, tmp_path, capsys):
    from xclip_hf.cli import main

    model = setup["pipe"].model.name_or_path
    base = ["classify", setup["path"], "--labels", ",".join(LABELS), "--model", model, "--no-progress"]
    assert main(base + ["--chunk-length", "2", "--stride", "1", "--num-frames", "4"]) == 0
    table = capsys.readouterr().out
    expected = setup["pipe"](setup["path"], candidate_labels=LABELS, chunk_length_s=2, stride_length_s=1,
                             return_timestamps=True, num_frames=4)
    rows = [line for line in table.splitlines() if line.startswith("  ")]
    assert len(rows) == len(expected) == 5
    assert rows[0].split()[:3] == ["0.00", "-", "2.00"] and rows[0].endswith(expected[0]["labels"][0]["label"])

    png = tmp_path / "timeline.png"
    assert main(base + ["--chunk-length", "2", "--segments", "--json", "--plot", str(png)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["video"] == setup["path"] and result["segments"][0]["start_s"] == 0
    assert result["segments"][-1]["end_s"] == 6 and {s["label"] for s in result["segments"]} <= set(LABELS)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(base + ["--stride", "1"]) == 2
    assert "--chunk-length" in capsys.readouterr().err
    assert main(base + ["--chunk-length", "1", "--stride", "2"]) == 2
    assert "longer than chunk_length_s" in capsys.readouterr().err


def test_long_synthetic_video_and_the_demo_timeline(setup, tmp_path, capsys):
    import importlib.util
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xclip_hf.data.synthetic import write_long_video

    truth = write_long_video(tmp_path / "long.mp4", ["growing", "moving left", "growing"], segment_s=2.0, fps=6)
    assert [(t["start_s"], t["end_s"], t["label"]) for t in truth] == [
        (0, 2, "growing"), (2, 4, "moving left"), (4, 6, "growing")]
    assert len(pyav_decode_all(tmp_path / "long.mp4")) == 36
    with pytest.raises(ValueError, match="unknown"):
        write_long_video(tmp_path / "bad.mp4", ["flying"])

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("demo", os.path.join(root, "examples", "demo.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    figure = str(tmp_path / "demo.png")
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([0, 1])
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    height = plt.imread(figure).shape[0]
    classes = ["moving left", "moving right", "growing", "shrinking"]
    result = demo.timeline_demo(setup["pipe"].model.name_or_path, classes, str(tmp_path), figure)
    assert len(result["truth"]) == 6
    assert {t["label"] for t in result["truth"]} == set(classes)
    assert result["segments"][0]["start_s"] == 0 and result["segments"][-1]["end_s"] == 18
    assert 0.0 <= result["frame_accuracy"] <= 1.0
    assert "frame-level accuracy" in capsys.readouterr().out
    assert plt.imread(figure).shape[0] > height  # the timeline was appended below the demo's figure
