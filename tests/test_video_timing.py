"""Video timing: frame presentation times (pts), variable frame rate, window plans and whole-video durations."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from _helpers_video import INDEX_STEP, VFR_END, VFR_TIMES, index_frames, on_screen, write_timed_video
from xclip_hf.data.video_writer import write_video
from xclip_hf.video.reader import VideoFile, get_video_info
from xclip_hf.video.sampling import sparse_sample_by_time, sparse_sample_indices
from xclip_hf.video.timing import frame_times_at_rate
from xclip_hf.video.windows import iter_window_frames, plan_windows


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    root = tmp_path_factory.mktemp("vfr")
    return {"mp4": write_timed_video(root / "vfr.mp4", VFR_TIMES, VFR_END),
            "bframes": write_timed_video(root / "vfr_b.mp4", VFR_TIMES, VFR_END, bframes=2),
            "webm": write_timed_video(root / "vfr.webm", VFR_TIMES, VFR_END, codec="libvpx-vp9")}


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("container", ["mp4", "bframes", "webm"])
def test_frame_times_are_the_presentation_times(vfr, container, backend):
    with VideoFile(vfr[container], backend=backend) as video:
        times, duration = video.frame_times, video.duration
        assert video.info.duration == duration
    np.testing.assert_allclose(times, VFR_TIMES, rtol=0, atol=1e-6)  # decord reports float32 seconds
    if not (backend == "decord" and container == "bframes"):
        # (decord's FFmpeg 4 gives the last frame of this B-frame mp4 its decode-order duration, 0.05 s: 4.85)
        assert duration == pytest.approx(VFR_END, abs=1e-6)
    assert not times.flags.writeable


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_vfr_windows_report_the_frames_real_times(vfr, backend):
    """The issue's reproduction: 1 s windows report the times of the frames they hold and end at 5.0 s."""
    with VideoFile(vfr["mp4"], backend=backend) as video:
        windows = plan_windows(video.frame_times, video.duration, 1, num_frames=4)
        got = list(iter_window_frames(video, windows))
    np.testing.assert_allclose([w.timestamp for w in windows], [(k, k + 1) for k in range(5)], rtol=0, atol=1e-6)
    for window, frames in got:
        step = (window.end_s - window.start_s) / 4
        expected = [on_screen(VFR_TIMES, window.start_s + step * (j + 0.5)) for j in range(4)]
        shown = np.round(frames[..., 0].astype(float).mean((1, 2)) / INDEX_STEP).astype(int)
        assert shown.tolist() == expected == window.indices.tolist()
        held = np.asarray(VFR_TIMES)[window.indices]
        assert ((held >= window.start_s - 0.2) & (held < window.end_s)).all()  # shown inside the window


def test_embed_rows_use_presentation_times(vfr):
    """embed's rows (whole video and windows) take the reader's clock."""
    from xclip_hf import XClipVideoProcessor
    from xclip_hf.corpus.loader import WindowPlan, window_rows

    processor = XClipVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=4)
    (whole,) = window_rows(vfr["webm"], processor, WindowPlan(num_frames=4))
    assert whole["error"] is None and (whole["start_s"], whole["end_s"]) == (0.0, VFR_END)
    rows = list(window_rows(vfr["bframes"], processor, WindowPlan(4, 2.0, 1.5)))
    np.testing.assert_allclose([(r["start_s"], r["end_s"]) for r in rows], [(0, 2), (1.5, 3.5), (3, 5)], atol=1e-6)


def _index_plan(n, fps, chunk, stride, t):
    """Oracle: the plan of whole frames at a constant rate (window k: frames k*hop .. k*hop+length-1, segment
    middles; a tail window aligned to the last frame), as windows were planned before frame times."""
    length, hop = int(round(chunk * fps)), int(round(stride * fps))
    if n <= length:
        return [(0.0, n / fps, sparse_sample_indices(n, t).tolist())]
    starts = list(range(0, n - length + 1, hop))
    if starts[-1] + length < n:
        starts.append(n - length)
    return [(s / fps, (s + length) / fps, (sparse_sample_indices(length, t) + s).tolist()) for s in starts]


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_constant_rate_files_keep_their_plans(tmp_path, container, backend):
    """No change for constant frame rates: the plans on presentation times are the plans by frame index, also where
    the container rounds times (WebM: to milliseconds, so frame 2 at 30 fps is stored at 0.067 s, not 0.0667)."""
    for fps, n in ((10, 43), (30, 47), (Fraction(30000, 1001), 61)):
        path = write_video(tmp_path / f"cfr{float(fps):.0f}.{container}", index_frames(n, 32, 32), fps=fps)
        with VideoFile(path, backend=backend) as video:
            times, end = video.frame_times, video.duration
        rate = float(fps)
        np.testing.assert_allclose(times, np.arange(n) / rate, rtol=0, atol=1e-6)
        assert end == pytest.approx(n / rate, abs=1e-6)
        for frames_long, frames_hop, t in ((20, 10, 8), (15, 15, 4), (16, 5, 8), (7, 3, 3), (80, 40, 8)):
            chunk, stride = frames_long / rate, frames_hop / rate
            plan = plan_windows(times, end, chunk, stride, num_frames=t)
            expected = _index_plan(n, rate, chunk, stride, t)
            assert [w.indices.tolist() for w in plan] == [e[2] for e in expected], (fps, frames_long, frames_hop, t)
            np.testing.assert_allclose([w.timestamp for w in plan], [e[:2] for e in expected], rtol=0, atol=1e-6)


def test_sampling_by_time_is_the_index_rule_at_a_constant_rate():
    for n in (1, 3, 7, 8, 16, 17, 30, 64, 300):
        for t in (1, 3, 4, 8, 16):
            for fps in (1, 10, 29.97, 30):
                times = np.arange(n) / fps
                got = sparse_sample_by_time(times, 0.0, n / fps, t)
                np.testing.assert_array_equal(got, sparse_sample_indices(n, t), err_msg=f"{n} {t} {fps}")


def test_frame_times_at_rate_and_bad_clocks_are_clear_errors():
    times, end = frame_times_at_rate(4, 8)
    assert times.tolist() == [0, 0.125, 0.25, 0.375] and end == 0.5
    for fps in (None, 0, -1, float("nan"), "x"):
        with pytest.raises(ValueError, match="need a frame rate"):
            frame_times_at_rate(10, fps, name="clip.mp4")
    with pytest.raises(ValueError, match="no timestamps and no frame rate"):
        plan_windows(None, None, 1, name="clip.mp4")
    with pytest.raises(ValueError, match="sorted"):
        plan_windows([0.0, 0.5, 0.2], 1.0, 1, name="clip.mp4")


def test_get_video_info_reports_duration(vfr):
    info = get_video_info(vfr["webm"])
    assert info.num_frames == len(VFR_TIMES) and info.duration == pytest.approx(VFR_END)
