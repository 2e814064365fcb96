"""Temporal localisation: the per-frame aggregation (pipelines/segments.py) vs numpy, the spurious boundary segment
of merge_segments, frame accuracy and segment mAP vs hand computations, the protocol end to end."""

from __future__ import annotations

import numpy as np
import pytest

LABELS = ["a", "b", "c"]


def _window(start, end, probs):
    return {"timestamp": (start, end), "labels": [{"label": l, "score": p} for l, p in zip(LABELS, probs)]}


def _two_actions():
    """'a' on [0, 4), 'b' on [4, 8); 2 s windows every 0.5 s; the window centred on the boundary is confidently
    wrong ('c'), the other straddling ones lean to the side they cover most."""
    windows = []
    for k in range(13):
        start = 0.5 * k
        end = start + 2.0
        if end <= 4.0:
            probs = [0.8, 0.1, 0.1]
        elif start >= 4.0:
            probs = [0.1, 0.8, 0.1]
        else:
            centre = start + 1.0
            probs = [0.05, 0.1, 0.85] if centre == 4.0 else ([0.6, 0.3, 0.1] if centre < 4.0 else [0.3, 0.6, 0.1])
        windows.append(_window(start, end, probs))
    return windows


def test_frame_scores_vs_numpy_loop():
    from xclip_hf.pipelines.segments import frame_scores, window_matrix

    windows = _two_actions()
    spans, labels, scores = window_matrix(windows, LABELS)
    times = np.arange(0, 8.0, 0.25)
    got = frame_scores(spans, scores, times)
    for i, t in enumerate(times):
        covering = [j for j, (s, e) in enumerate(spans) if s <= t < e]
        np.testing.assert_allclose(got[i], scores[covering].mean(0), atol=1e-12)
    assert labels == LABELS


def test_straddling_windows_make_no_spurious_segment():
    from xclip_hf.pipelines.segments import aggregate_segments
    from xclip_hf.video.windows import merge_segments

    windows = _two_actions()
    old = merge_segments(windows)
    assert [s["label"] for s in old] == ["a", "c", "b"]  # today's spurious 'c' between the two actions
    assert old[1]["end_s"] - old[1]["start_s"] == pytest.approx(0.5)
    times = np.arange(96) / 12
    new = aggregate_segments(windows, times, 8.0, LABELS, min_duration_s=1.0)
    assert [s["label"] for s in new] == ["a", "b"]
    assert new[0]["start_s"] == 0.0 and new[-1]["end_s"] == 8.0 and new[0]["end_s"] == new[1]["start_s"]
    assert abs(new[0]["end_s"] - 4.0) <= 0.25


def test_min_duration_gives_short_runs_to_the_better_neighbour():
    from xclip_hf.pipelines.segments import segments_from_frames

    times = np.arange(10) * 1.0
    per_frame = np.zeros((10, 3))
    per_frame[:4, 0] = 1.0
    per_frame[4, 2] = 1.0
    per_frame[4, 1] = 0.6  # the short 'c' frame: 'b' (right) scores higher there than 'a' (left)
    per_frame[5:, 1] = 1.0
    segs = segments_from_frames(times, per_frame, LABELS, end_s=10.0, min_duration_s=1.5)
    assert [(s["label"], s["start_s"], s["end_s"]) for s in segs] == [("a", 0.0, 3.5), ("b", 3.5, 10.0)]
    assert segs[1]["score"] == pytest.approx(np.mean([0.6] + [1.0] * 5))


def test_frame_accuracy_and_segment_map_by_hand():
    from xclip_hf.evaluation.localisation import average_precision, frame_accuracy, segment_map, tiou

    truth = [{"start_s": 0.0, "end_s": 4.0, "label": "a"}, {"start_s": 4.0, "end_s": 8.0, "label": "b"}]
    pred = [{"start_s": 0.0, "end_s": 3.0, "label": "a", "score": 0.9},
            {"start_s": 3.0, "end_s": 8.0, "label": "b", "score": 0.8}]
    assert frame_accuracy(pred, truth, fps=2) == pytest.approx(14 / 16)  # frames at 3.25, 3.75 wrong
    assert tiou(pred[0], truth[0]) == pytest.approx(0.75) and tiou(pred[1], truth[1]) == pytest.approx(0.8)
    # precision/recall by hand: hits [T, F, T] of 2 -> precision 1, 1/2, 2/3; envelope 1, 2/3, 2/3 -> AP 1*0.5 + 2/3*0.5
    assert average_precision([True, False, True], 2) == pytest.approx(0.5 + 1 / 3)
    videos_truth = {"v1": truth, "v2": [{"start_s": 0.0, "end_s": 2.0, "label": "a"}]}
    videos_pred = {"v1": pred, "v2": [{"start_s": 0.0, "end_s": 2.0, "label": "a", "score": 0.5},
                                      {"start_s": 0.0, "end_s": 2.0, "label": "a", "score": 0.4}]}  # a duplicate
    m = segment_map(videos_pred, videos_truth)
    # class a: ranked v1(0.9, tIoU .75), v2(0.5, 1.0), v2 dup (0.4, FP); class b: v1 (tIoU .8)
    ap_a_03 = average_precision([True, True, False], 2)
    assert m["mAP@0.3"] == pytest.approx(100 * np.mean([ap_a_03, 1.0]))
    assert m["mAP@0.7"] == pytest.approx(100 * np.mean([ap_a_03, 1.0]))
    assert m["mAP@0.5"] == m["mAP@0.3"]
    tight = segment_map({"v1": pred}, {"v1": truth}, thresholds=(0.76, 0.9))
    assert tight["mAP@0.76"] == pytest.approx(50.0) and tight["mAP@0.9"] == 0.0


@pytest.mark.slow
def test_localisation_protocol_end_to_end(tmp_path):
    from _helpers_evaluation import make_evalset

    from xclip_hf.data.synthetic import write_long_video
    from xclip_hf.evaluation.localisation import evaluate_localisation, frame_accuracy
    from xclip_hf.evaluation.runner import build_pipeline
    from xclip_hf.pipelines.segments import aggregate_segments
    from xclip_hf.video.reader import VideoFile

    s = make_evalset(tmp_path)
    video = str(tmp_path / "long.mp4")
    names = ["growing", "shrinking", "appearing"]
    truth = write_long_video(video, names, segment_s=2.0, fps=6, size=32, seed=1)
    (tmp_path / "segments.csv").write_text("video,start_s,end_s,label\n" + "".join(
        f"long.mp4,{t['start_s']},{t['end_s']},{t['label']}\n" for t in truth) + "missing.mp4,0,1,growing\n")
    report = evaluate_localisation(s["model"], tmp_path / "segments.csv", names, chunk_length_s=1.0,
                                   stride_length_s=0.5, aggregate="frames", output_dir=str(tmp_path / "out"))
    pipe = build_pipeline(s["model"])
    windows = pipe(video, candidate_labels=names, chunk_length_s=1.0, stride_length_s=0.5, return_timestamps=True)
    with VideoFile(video) as vf:
        segs = aggregate_segments(windows, vf.frame_times, vf.duration, names)
    assert report["results"]["summary"]["frame_accuracy"] == pytest.approx(100 * frame_accuracy(segs, truth, 6))
    # the pipeline's hook gives the same segments
    hooked = pipe(video, candidate_labels=names, chunk_length_s=1.0, stride_length_s=0.5, aggregate="frames")
    assert [(h["label"], h["start_s"], h["end_s"]) for h in hooked] == [(g["label"], g["start_s"], g["end_s"]) for g in segs]
    np.testing.assert_allclose([h["score"] for h in hooked], [g["score"] for g in segs], atol=1e-6)
    assert [(g["label"], g["start_s"], g["end_s"]) for g in segs] == [
        (g["label"], g["start_s"], g["end_s"]) for g in report["results"]["per_video"][video]["segments"]]
    assert report["bad_videos"]["count"] == 1 and report["bad_videos"]["videos"][0]["video"].endswith("missing.mp4")
    assert {"mAP@0.3", "mAP@0.5", "mAP@0.7"} <= set(report["results"]["summary"])
    assert "frame accuracy (%)" in (tmp_path / "out" / "report.md").read_text()
    # the default, segmentation: the pipeline's hook, the protocol and segment_windows on the same windows agree
    from xclip_hf.pipelines.segments import segment_windows

    expected = segment_windows(windows, vf.duration, names)
    hooked = pipe(video, candidate_labels=names, chunk_length_s=1.0, stride_length_s=0.5, aggregate="segmentation")
    default = evaluate_localisation(s["model"], tmp_path / "segments.csv", names, chunk_length_s=1.0,
                                    stride_length_s=0.5)
    key = lambda segs: [(g["label"], g["start_s"], g["end_s"]) for g in segs]  # noqa: E731
    assert key(hooked) == key(expected) == key(default["results"]["per_video"][video]["segments"])
    assert default["settings"]["aggregate"] == "segmentation"


def test_cli_localisation_rejects_bad_annotations(tmp_path, capsys):
    from xclip_hf.cli import main

    (tmp_path / "seg.csv").write_text("video,start_s,end_s,label\nv.mp4,3,2,a\n")
    (tmp_path / "m").mkdir()
    assert main(["evaluate", "localisation", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "seg.csv"),
                 "--chunk-length", "2", "--output", str(tmp_path / "o")]) == 1  # a bad file: a runtime failure
    assert "line 2: needs 0 <= start_s < end_s, got 3.0, 2.0" in capsys.readouterr().err


def _compositional_boundary():
    """'a' on [0, 4), 'b' on [4, 8); 2 s windows every 0.5 s; EVERY window across the boundary confidently names a
    third action 'c' (as "disappearing" then "growing" reads as "appearing")."""
    windows = []
    for k in range(13):
        start, end = 0.5 * k, 0.5 * k + 2.0
        probs = [0.8, 0.1, 0.1] if end <= 4.0 else ([0.1, 0.8, 0.1] if start >= 4.0 else [0.05, 0.1, 0.85])
        windows.append(_window(start, end, probs))
    return windows


def test_segmentation_leaves_straddling_windows_out():
    from xclip_hf.pipelines.segments import aggregate_segments, segment_windows

    windows = _compositional_boundary()
    frames = aggregate_segments(windows, np.arange(96) / 12, 8.0, LABELS)
    assert "c" in [s["label"] for s in frames]  # per-frame voting: the straddlers outvote the inside windows
    segs = segment_windows(windows, 8.0, LABELS)
    assert [(s["label"], s["start_s"], s["end_s"]) for s in segs] == [("a", 0.0, 4.0), ("b", 4.0, 8.0)]
    assert segs[0]["score"] == pytest.approx(0.8) and segs[1]["score"] == pytest.approx(0.8)


def _brute_force_best(spans, scores, end_s, min_duration_s):
    """The objective of `best_segmentation` maximised by enumerating every set of boundaries on the grid (numpy)."""
    import itertools

    gain = np.log(np.clip(scores, 1e-6, 1.0)) + np.log(scores.shape[1])
    grid = np.unique(np.concatenate([[0.0, end_s], spans.ravel()]))
    inner = grid[1:-1]
    best = -np.inf
    for mask in itertools.product([False, True], repeat=len(inner)):
        cuts = np.concatenate([[0.0], inner[np.array(mask, dtype=bool)], [end_s]])
        lengths = np.diff(cuts)
        interior = lengths[1:-1] if len(lengths) > 2 else lengths[:0]
        if np.any(interior < min_duration_s - 1e-9):
            continue
        total = 0.0
        for a, b in zip(cuts[:-1], cuts[1:]):
            inside = (spans[:, 0] >= a - 1e-9) & (spans[:, 1] <= b + 1e-9)
            total += gain[inside].sum(0).max() if inside.any() else 0.0
        best = max(best, total)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("min_duration_s", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("last_start", [6.0, 7.0])  # 7.0: a last window cut short by the end of the video
def test_best_segmentation_is_the_exact_optimum(seed, min_duration_s, last_start):
    from xclip_hf.pipelines.segments import best_segmentation

    rng = np.random.default_rng(seed)
    starts = np.arange(0.0, last_start + 0.5, 1.0)
    spans = np.stack([starts, np.minimum(starts + 2.0, 8.0)], 1)
    scores = rng.dirichlet(np.full(3, 0.4), size=len(spans))
    cuts = best_segmentation(spans, scores, 8.0, min_duration_s)
    gain = np.log(np.clip(scores, 1e-6, 1.0)) + np.log(3)
    total = 0.0
    for a, b, label in cuts:
        inside = (spans[:, 0] >= a - 1e-9) & (spans[:, 1] <= b + 1e-9)
        total += gain[inside, label].sum() if label >= 0 else 0.0
        assert label >= 0 or not inside.any()
    assert cuts[0][0] == 0.0 and cuts[-1][1] == 8.0
    assert all(x[1] == y[0] for x, y in zip(cuts, cuts[1:]))
    assert all(b - a >= min_duration_s - 1e-9 for a, b, _ in cuts[1:-1])
    assert total == pytest.approx(_brute_force_best(spans, scores, 8.0, min_duration_s), abs=1e-9)
