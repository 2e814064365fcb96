"""Frame sampling, video writing and decoding (decord + PyAV fallback) — paper Sec. 4.2 sparse sampling."""

import sys

import av
import numpy as np
import pytest

from _helpers_video import (
    INDEX_STEP,
    decode_long_index,
    index_frames,
    long_index_frames,
    no_hang,
    pyav_decode_all,
    write_gray_ffv1,
    write_h264_with_bframes,
    write_oriented_video,
    write_zero_frame_video,
)
from xclip_hf.data.video_writer import write_video
from xclip_hf.video.sampling import (
    dense_multiview_indices,
    dense_sample_indices,
    sparse_multiview_indices,
    sparse_sample_indices,
    temporal_clip_indices,
)
from xclip_hf.video.reader import get_video_info, load_video, open_video, read_video

# ---------------------------------------------------------------- sampling (hand-computed tables)

SPARSE_EVAL_T8 = {
    300: [18, 56, 93, 131, 168, 206, 243, 281],
    17: [1, 3, 5, 7, 9, 11, 13, 15],
    10: [0, 1, 3, 4, 5, 6, 8, 9],
    8: [0, 1, 2, 3, 4, 5, 6, 7],
    3: [0, 0, 0, 1, 1, 2, 2, 2],
    1: [0, 0, 0, 0, 0, 0, 0, 0],
}


@pytest.mark.parametrize("length", sorted(SPARSE_EVAL_T8))
def test_sparse_eval_indices_match_table(length):
    np.testing.assert_array_equal(sparse_sample_indices(length, 8), SPARSE_EVAL_T8[length])


def test_sparse_train_indices_are_one_random_frame_per_segment_and_seedable():
    seg = 300 / 8
    a = sparse_sample_indices(300, 8, random_offset=True, rng=123)
    b = sparse_sample_indices(300, 8, random_offset=True, rng=123)
    c = sparse_sample_indices(300, 8, random_offset=True, rng=124)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for i, idx in enumerate(a):
        assert np.floor(seg * i) <= idx < seg * (i + 1)
    draws = np.stack([sparse_sample_indices(300, 8, random_offset=True, rng=s) for s in range(200)])
    assert (draws.max(0) - draws.min(0) >= 30).all()  # each segment's frames are all reachable
    assert sparse_sample_indices(1, 8, random_offset=True, rng=0).tolist() == [0] * 8


def test_sparse_multiview_table():
    np.testing.assert_array_equal(
        sparse_multiview_indices(64, 4, 4),
        [[2, 18, 34, 50], [6, 22, 38, 54], [10, 26, 42, 58], [14, 30, 46, 62]],
    )
    np.testing.assert_array_equal(
        sparse_multiview_indices(30, 8, 2),
        [[0, 4, 8, 12, 15, 19, 23, 27], [2, 6, 10, 14, 17, 21, 25, 29]],
    )
    np.testing.assert_array_equal(sparse_multiview_indices(300, 8, 1)[0], SPARSE_EVAL_T8[300])


def test_dense_tables():
    np.testing.assert_array_equal(dense_sample_indices(100, 8, stride=2), np.arange(42, 57, 2))
    np.testing.assert_array_equal(dense_sample_indices(5, 4, stride=2), [0, 2, 4, 4])  # short video: clamped
    np.testing.assert_array_equal(dense_sample_indices(100, 4, stride=3, start=10), [10, 13, 16, 19])
    np.testing.assert_array_equal(
        dense_multiview_indices(100, 8, 3, stride=2),
        [np.arange(0, 15, 2), np.arange(42, 57, 2), np.arange(85, 100, 2)],
    )
    r = dense_sample_indices(100, 8, stride=2, random_start=True, rng=5)
    assert 0 <= r[0] <= 85 and np.all(np.diff(r) == 2)


def test_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0 frames"):
        sparse_sample_indices(0, 8)
    with pytest.raises(ValueError, match="num_frames"):
        sparse_sample_indices(10, 0)
    with pytest.raises(ValueError, match="mode"):
        temporal_clip_indices(10, 4, mode="uniform")
    with pytest.raises(ValueError, match="one temporal clip"):
        temporal_clip_indices(10, 4, num_clips=2, random_offset=True)
    with pytest.raises(ValueError, match="outside"):
        dense_sample_indices(10, 4, start=10)


# ---------------------------------------------------------------- writer


def test_write_video_codecs_and_odd_sizes(tmp_path):
    frames = index_frames(5, 61, 97)
    for name, codec in (("odd.mp4", "h264"), ("odd.webm", "vp9")):
        path = write_video(tmp_path / name, frames)
        decoded = pyav_decode_all(path)
        assert decoded.shape == (5, 61, 97, 3)
        with av.open(path) as c:
            assert c.streams.video[0].codec_context.name == codec
        assert np.abs(decoded[..., 0].astype(int).mean((1, 2)) - np.arange(5) * INDEX_STEP).max() < 3
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", frames.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "x.mp4", frames[..., :2])
    with pytest.raises(ValueError, match="codec"):
        write_video(tmp_path / "x.xyz", frames)


# ---------------------------------------------------------------- decoding


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    frames = index_frames(40, 64, 96)
    return {
        "frames": frames,
        "h264": write_h264_with_bframes(d / "bframes.mp4", frames, gop=7, bframes=3),
        "odd": write_video(d / "odd.mp4", index_frames(9, 61, 97)),
        "webm": write_video(d / "clip.webm", index_frames(12, 61, 97)),
        "one": write_video(d / "one.mp4", index_frames(1, 64, 96)),
        "three": write_video(d / "three.webm", index_frames(3, 32, 48)),
        "gray": write_video(d / "gray.mp4", (np.arange(6)[:, None, None] * 40 + np.zeros((6, 40, 64))).astype(np.uint8)),
        "long": write_video(d / "long.mp4", long_index_frames(300, 48, 96), fps=30),
        "dir": d,
    }


@pytest.mark.parametrize("key", ["h264", "odd", "webm"])
def test_decord_and_pyav_give_the_same_frames_as_full_decoding(videos, key):
    path = videos[key]
    oracle = pyav_decode_all(path)
    rng = np.random.default_rng(0)
    for _ in range(4):
        idx = rng.integers(0, len(oracle), size=rng.integers(1, 9))
        pyav = read_video(path, idx, backend="pyav")
        np.testing.assert_array_equal(pyav, oracle[idx])
        auto = read_video(path, idx, backend="auto").astype(int)
        if key == "webm":
            # odd height + 4:2:0 chroma: decord's and PyAV's YUV->RGB converters interpolate chroma
            # rows differently (measured: max 5 levels); even sizes and 4:4:4 files match exactly
            diff = np.abs(auto - oracle[idx])
            assert diff.max() <= 6 and diff.mean() < 1.0
        else:
            np.testing.assert_array_equal(auto, oracle[idx])
    if key == "h264":  # decord opens and reads this one itself
        idx = np.array([0, 13, 7, 39, 13])
        np.testing.assert_array_equal(read_video(path, idx, backend="decord"), oracle[idx])


def test_pyav_threading_choice_keeps_frames_exact(tmp_path):
    """Long decode runs (few key frames, or dense reads) of large enough frames use frame threading, seek-heavy
    sparse reads and small frames slice threading; with B-frames (non-reference frames skipped) both give the
    frames of a full decode, by get_frames and by iter_frames."""
    from xclip_hf.video.reader import VideoFile

    large, small = long_index_frames(120, 144, 256), long_index_frames(120, 64, 96)
    cases = [(large, 250, 8, "FRAME"), (large, 250, 40, "FRAME"), (large, 6, 8, "SLICE"), (large, 6, 60, "FRAME"),
             (small, 250, 8, "SLICE")]  # small frames: threads cost more than they give
    for frames, gop, count, threading in cases:
        path = write_h264_with_bframes(tmp_path / f"g{gop}_{frames.shape[2]}.mp4", frames, gop=gop, bframes=3,
                                       scenecut=False)
        oracle = pyav_decode_all(path)
        idx = sparse_sample_indices(len(oracle), count)
        with VideoFile(path, backend="pyav") as video:
            np.testing.assert_array_equal(video.get_frames(idx), oracle[idx])
            assert video._backend._stream.codec_context.thread_type.name == threading, (gop, count)
        with VideoFile(path, backend="pyav") as video:
            got = dict(video.iter_frames(np.unique(idx)))
            np.testing.assert_array_equal(np.stack([got[i] for i in idx]), oracle[idx])
            assert video._backend._stream.codec_context.thread_type.name == threading, (gop, count)


class _ThreadingOfWorker:
    """A one-item dataset: the decoder threading a DataLoader worker picks for a long read."""

    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 1

    def __getitem__(self, i):
        from xclip_hf.video.reader import VideoFile

        with VideoFile(self.path, backend="pyav") as video:
            video.get_frames(np.array([0, 30, 60, 90]))
            return video._backend._stream.codec_context.thread_type.name


def test_dataloader_workers_keep_slice_threading(tmp_path):
    """Frame threading only where the read runs alone: DataLoader workers are the parallelism already."""
    from torch.utils.data import DataLoader

    path = write_h264_with_bframes(tmp_path / "w.mp4", long_index_frames(100, 144, 256), gop=250, scenecut=False)
    assert _ThreadingOfWorker(path)[0] == "FRAME"  # in this process
    loader = DataLoader(_ThreadingOfWorker(path), batch_size=None, num_workers=1)
    assert list(loader) == ["SLICE"]


def _read_in_child(path, indices, queue):
    queue.put(read_video(path, indices, backend="pyav").sum())


def test_reading_after_fork_does_not_hang(tmp_path):
    """The reader keeps one frame converter per thread; a process forked after reading (a DataLoader worker) must
    get its own: the parent's converter's swscale threads do not exist in the child (it used to hang there)."""
    import multiprocessing as mp

    from xclip_hf.data.video_writer import write_video

    frames = (np.random.default_rng(0).random((6, 240, 320, 3)) * 255).astype(np.uint8)
    path = write_video(tmp_path / "v.mp4", frames)
    idx = np.array([0, 2, 5])
    want = read_video(path, idx, backend="pyav").sum()  # the parent converts frames first
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(path, idx, queue))
    child.start()
    child.join(30)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung and child.exitcode == 0
    assert queue.get(timeout=5) == want


def test_frames_are_the_requested_ones(videos):
    idx = sparse_sample_indices(40, 8)
    frames = read_video(videos["h264"], idx)
    assert frames.dtype == np.uint8 and frames.shape == (8, 64, 96, 3)
    red = frames[..., 0].astype(float).mean((1, 2))
    np.testing.assert_allclose(red, idx * INDEX_STEP, atol=3)


def test_long_video_info_and_sparse_load(videos):
    info = get_video_info(videos["long"])
    assert (info.num_frames, info.fps, info.height, info.width) == (300, 30.0, 48, 96)
    frames, indices, info2 = load_video(videos["long"], lambda n: sparse_sample_indices(n, 8))
    assert indices.tolist() == SPARSE_EVAL_T8[300] and info2.num_frames == 300
    assert [decode_long_index(f) for f in frames] == SPARSE_EVAL_T8[300]
    for backend in ("pyav", "decord"):
        got = read_video(videos["long"], [281, 18, 150], backend=backend)
        assert [decode_long_index(f) for f in got] == [281, 18, 150]


def test_short_videos_repeat_frames(videos):
    for key, n in (("one", 1), ("three", 3)):
        assert get_video_info(videos[key]).num_frames == n
        frames, indices, _ = load_video(videos[key], lambda length: sparse_sample_indices(length, 8))
        assert indices.tolist() == SPARSE_EVAL_T8[n]
        np.testing.assert_allclose(frames[..., 0].astype(float).mean((1, 2)), indices * INDEX_STEP, atol=3)


def test_grayscale_source_becomes_rgb(videos):
    frames = read_video(videos["gray"])
    assert frames.shape == (6, 40, 64, 3)
    assert np.abs(frames[..., 0].astype(int) - frames[..., 2]).max() <= 1
    np.testing.assert_allclose(frames.mean((1, 2, 3)), np.arange(6) * 40, atol=3)


def test_pyav_fallback_when_decord_is_missing(videos, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # import decord -> ImportError
    with open_video(videos["h264"]) as video:
        assert video.info.backend == "pyav"
        np.testing.assert_array_equal(video.get_frames([3, 1]), pyav_decode_all(videos["h264"])[[3, 1]])


def test_bad_files_give_value_errors_naming_the_file(videos):
    d = videos["dir"]
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 20)
    data = open(videos["long"], "rb").read()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    zero = write_zero_frame_video(d / "zero.mp4")
    cases = {
        str(d / "missing.mp4"): "not found",
        str(d / "empty.mp4"): "empty",
        str(d / "text.mp4"): "cannot open",
        str(d / "truncated.mp4"): "cannot open",
        zero: "cannot open",
        str(d): "not a regular file",
    }
    with no_hang(60):
        for path, message in cases.items():
            with pytest.raises(ValueError, match=message) as err:
                read_video(path, [0])
            assert path in str(err.value)
        with pytest.raises(ValueError, match="outside"):
            read_video(videos["three"], [3])
        with pytest.raises(ValueError, match="1-D"):
            read_video(videos["three"], [[0]])
        with pytest.raises(ValueError, match="backend"):
            read_video(videos["three"], [0], backend="opencv")


# ---------------------------------------------------------------- real-world encodings, every backend


@pytest.fixture(scope="module")
def real_world(tmp_path_factory):
    """Tiny files as cameras and encoders make them: B-frames, odd sizes (4:4:4 H.264, 4:2:0 VP9), grayscale
    sources (H.264 monochrome, which FFmpeg decodes as yuv420p; FFV1 gray, which decodes as gray8)."""
    d = tmp_path_factory.mktemp("real_world")
    gray = (np.arange(5)[:, None, None] * 50 + np.zeros((5, 47, 63))).astype(np.uint8)
    gray[:, :10, :20] = 255
    return {
        "bframes": (write_h264_with_bframes(d / "bf.mp4", index_frames(12, 48, 64), gop=5, bframes=3), None),
        "odd_h264": (write_video(d / "odd.mp4", index_frames(5, 47, 63)), index_frames(5, 47, 63)),
        "odd_vp9": (write_video(d / "odd.webm", index_frames(5, 47, 63)), index_frames(5, 47, 63)),
        "gray_h264": (write_video(d / "gray.mp4", gray), gray),
        "gray_ffv1": (write_gray_ffv1(d / "gray.mkv", gray), gray),
    }



@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("key", ["bframes", "odd_h264", "odd_vp9", "gray_h264", "gray_ffv1"])
def test_real_world_encodings_decode_to_rgb(real_world, key, backend):
    path, source = real_world[key]
    oracle = pyav_decode_all(path)  # PyAV's own RGB conversion of a full decode
    order = np.random.default_rng(1).permutation(len(oracle))
    got = read_video(path, order, backend=backend)
    assert got.dtype == np.uint8 and got.shape == oracle[order].shape
    diff = np.abs(got.astype(int) - oracle[order])
    if backend == "decord" and key == "odd_vp9":  # odd height, 4:2:0: chroma rows interpolated differently
        assert diff.max() <= 6 and diff.mean() < 1.0
    else:
        assert diff.max() == 0
    if source is not None and source.ndim == 3:  # grayscale: equal channels, the source's values
        assert np.abs(got[..., 0].astype(int) - got[..., 2]).max() <= 1
        assert np.abs(got[..., 1].astype(int) - source[order]).max() <= (0 if key == "gray_ffv1" else 4)
    elif source is not None:
        np.testing.assert_allclose(got[..., 0].mean((1, 2)), order * INDEX_STEP, atol=3)


# ---------------------------------------------------------------- orientation: display matrix, rotate tag

# (container, how the file says to turn it, np.rot90 quarter turns (counter-clockwise), where the top-left lands)
ORIENTATIONS = [
    ("mp4", dict(ccw_degrees=90), 1, ("bottom", "left")),
    ("mp4", dict(ccw_degrees=180), 2, ("bottom", "right")),
    ("mp4", dict(ccw_degrees=270), 3, ("top", "right")),
    ("mkv", dict(rotate_tag=90), -1, ("top", "right")),  # the tag is clockwise
    ("mkv", dict(rotate_tag=180), 2, ("bottom", "right")),
    ("mkv", dict(rotate_tag=270), 1, ("bottom", "left")),
]


def _corner_frames(num_frames, height, width):
    """Index frames with a yellow block in the top-left corner."""
    frames = index_frames(num_frames, height, width)
    frames[:, : height // 4, : width // 4] = (255, 255, 0)
    return frames


def _corner_of(frame):
    """Where the yellow block is: ('top' | 'bottom', 'left' | 'right')."""
    rows, cols = np.nonzero((frame[..., 0] > 200) & (frame[..., 1] > 200) & (frame[..., 2] < 80))
    height, width = frame.shape[:2]
    return ("top" if rows.mean() < height / 2 else "bottom", "left" if cols.mean() < width / 2 else "right")


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("container, options, turns, corner", ORIENTATIONS)
def test_rotated_videos_decode_upright(tmp_path, backend, container, options, turns, corner):
    """As FFmpeg's tools show them: a 64x96 (h x w) coded frame turned by the file's display matrix or rotate tag
    (96 x 64 displayed sizes are within what decord 0.6 reads: it fails on some small widths such as 48)."""
    path = write_oriented_video(tmp_path / f"rotated.{container}", _corner_frames(4, 64, 96), **options)
    coded = pyav_decode_all(path)  # oracle: PyAV's plain decode, as stored
    assert coded.shape[1:3] == (64, 96) and _corner_of(coded[0]) == ("top", "left")
    upright = np.rot90(coded, turns, axes=(1, 2))
    info = get_video_info(path, backend=backend)
    assert (info.height, info.width) == upright.shape[1:3]
    idx = np.array([0, 3, 1])
    got = read_video(path, idx, backend=backend)
    with open_video(path, backend=backend) as video:
        streamed = np.stack([frame for _, frame in video.iter_frames([0, 1, 3])])
    assert _corner_of(got[0]) == corner and _corner_of(streamed[0]) == corner
    for frames, want in ((got, upright[idx]), (streamed, upright[[0, 1, 3]])):
        diff = np.abs(frames.astype(int) - want)
        if backend == "pyav":
            assert diff.max() == 0
        else:  # decord turns 4:2:0 planes before converting: chroma lands on other samples
            assert diff.max() <= 8 and diff.mean() < 1.0


def test_portrait_size_mirror_and_auto_backend(tmp_path):
    """The issue's file: a 64x48 (w x h) stream with a 90 degree matrix is 48 wide and 64 high as displayed,
    before any frame is read; a mirroring matrix is applied (PyAV)."""
    portrait = write_oriented_video(tmp_path / "portrait.mp4", _corner_frames(3, 48, 64), ccw_degrees=90)
    info = get_video_info(portrait)
    assert (info.height, info.width, info.backend) == (64, 48, "pyav")
    np.testing.assert_array_equal(read_video(portrait, [2]), np.rot90(pyav_decode_all(portrait)[[2]], 1, axes=(1, 2)))
    mirrored = write_oriented_video(tmp_path / "mirror.mp4", _corner_frames(3, 64, 96), hflip=True)
    got = read_video(mirrored, [0, 1], backend="pyav")
    assert _corner_of(got[0]) == ("top", "right")
    np.testing.assert_array_equal(got, pyav_decode_all(mirrored)[[0, 1], :, ::-1])


# ---------------------------------------------------------------- decord's log lines


def test_decord_log_lines_stay_off_the_terminal(videos, monkeypatch, capfd):
    """decord's C++ logger writes to file descriptor 2 itself, during any call (the issue saw
    "video_reader.cc:312: Failed to seek file..." on the terminal). A decord whose open and reads succeed but
    log such lines: none reaches fd 2, while other output written meanwhile is given back."""
    import os

    import decord

    line = b"[01:02:03] /github/workspace/src/video/video_reader.cc:312: Failed to seek file to position: 0\n"

    class LoggingReader(decord.VideoReader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            os.write(2, line)

        def get_batch(self, indices):
            os.write(2, line + b"other output\n")
            return super().get_batch(indices)

    monkeypatch.setattr(decord, "VideoReader", LoggingReader)
    capfd.readouterr()
    oracle = pyav_decode_all(videos["h264"])
    np.testing.assert_array_equal(read_video(videos["h264"], [5, 0], backend="decord"), oracle[[5, 0]])
    with open_video(videos["h264"], backend="decord") as video:
        assert video.info.height == 64 and [i for i, _ in video.iter_frames([1, 2])] == [1, 2]
    text = videos["dir"] / "not_a_video.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(ValueError, match="cannot open") as err:  # real decord prints "ERROR opening" on fd 2
        read_video(text, [0], backend="decord")
    assert "ERROR opening" in str(err.value)  # ... into the error instead
    out = capfd.readouterr()
    assert "video_reader.cc" not in out.err and "ERROR opening" not in out.err
    assert out.err.count("other output") == 2  # one get_batch per read
    # threads reading at once share the capture (no waiting on each other), fd 2 comes back after the last one
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        reads = list(pool.map(lambda i: read_video(videos["h264"], [i], backend="decord"), range(8)))
    np.testing.assert_array_equal(np.concatenate(reads), oracle[:8])
    os.write(2, b"after the reads\n")
    out = capfd.readouterr()
    assert "video_reader.cc" not in out.err and out.err.count("other output") == 8 and "after the reads" in out.err
