"""Decoding at the cost of what is sampled: the exact reader feeds its decoder only the packets the sampled frames
need (drained, frames equal to a full decode), and the approximate `decode_mode="keyframes"` (off by default) reads
the nearest key frame where one lies within half the spacing of the sampled frames."""

import av
import numpy as np
import pytest

from _helpers_pipeline import LABELS, NUM_FRAMES, make_our_checkpoint
from _helpers_video import decode_long_index, long_index_frames, pyav_decode_all, write_h264_with_bframes
from xclip_hf.video.reader import VideoFile, _PyAVBackend, load_video
from xclip_hf.video.sampling import check_decode_mode, snap_to_key_frames, sparse_sample_indices


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("decode_mode")
    frames = long_index_frames(120, 144, 256)  # large enough for frame threading on long runs
    return {
        "bframes": write_h264_with_bframes(d / "b.mp4", frames, gop=250, bframes=3, scenecut=False),
        "gop12": write_h264_with_bframes(d / "g12.mp4", frames, gop=12, bframes=0, scenecut=False),
        "gop12_b": write_h264_with_bframes(d / "g12b.mp4", frames, gop=12, bframes=2, scenecut=False),
        "frames": frames,
    }


def _fewest_packets(path, wanted) -> int:
    """Packets a decoder needs for the sorted `wanted` frames (presentation order), one seek per run of frames that
    share a key frame: from the key frame's packet to the run's last packet in decode order (from the demuxer)."""
    with av.open(str(path)) as container:
        packets = [(p.pts, bool(p.is_keyframe)) for p in container.demux(video=0) if p.size]
    order = sorted(pts for pts, _ in packets)  # presentation order
    keys = sorted(order.index(pts) for pts, key in packets if key)
    where = {pts: i for i, (pts, _) in enumerate(packets)}  # decode order

    def key_before(i):
        return max(k for k in keys if k <= i)

    total, run = 0, []
    for index in list(wanted) + [None]:
        if run and (index is None or key_before(index) > run[-1] + 1):
            total += max(where[order[i]] for i in run) - where[order[key_before(run[0])]] + 1
            run = []
        if index is not None:
            run.append(index)
    return total


@pytest.mark.parametrize("name", ["bframes", "gop12", "gop12_b"])
def test_the_decoder_gets_only_the_packets_the_sampled_frames_need(files, name, monkeypatch):
    """Drained after the last wanted packet of each seek: exactly the fewest packets, frames equal to a full decode
    (without draining, the decoder's reorder and thread delay take more)."""
    path = files[name]
    oracle = pyav_decode_all(path)
    for count in (1, 3, 8):
        idx = sparse_sample_indices(len(oracle), count)
        for read in ("get_frames", "iter_frames"):
            with VideoFile(path, backend="pyav") as video:
                got = (video.get_frames(idx) if read == "get_frames"
                       else np.stack([frame for _, frame in video.iter_frames(idx)]))
                np.testing.assert_array_equal(got, oracle[idx])
                assert video._backend.packets_sent == _fewest_packets(path, np.unique(idx).tolist()), (count, read)
    if name != "gop12":  # B-frames: the decoder holds frames back for reordering
        monkeypatch.setattr(_PyAVBackend, "drain", False)
        idx = sparse_sample_indices(len(oracle), 3)
        with VideoFile(path, backend="pyav") as video:
            np.testing.assert_array_equal(video.get_frames(idx), oracle[idx])
            assert video._backend.packets_sent > _fewest_packets(path, idx.tolist())


@pytest.mark.parametrize("frame_threads", [True, False])
def test_one_open_file_read_again_after_draining_gives_full_decode_frames(files, frame_threads, monkeypatch):
    """Reads in any order on one open file (each seek flushes the drained decoder), slice and frame threading."""
    monkeypatch.setattr(_PyAVBackend, "frame_threads", frame_threads)
    path = files["gop12_b"]
    oracle = pyav_decode_all(path)
    rng = np.random.default_rng(0)
    with VideoFile(path, backend="pyav") as video:
        for _ in range(6):
            idx = rng.integers(0, len(oracle), size=rng.integers(1, 9))
            np.testing.assert_array_equal(video.get_frames(idx), oracle[idx])
        np.testing.assert_array_equal(np.stack([f for _, f in video.iter_frames(np.arange(0, 120, 7))]),
                                      oracle[np.arange(0, 120, 7)])


# ---------------------------------------------------------------- snapping to key frames (hand-computed tables)

KEYS_1S = [0, 30, 60, 86, 116, 128, 158, 171, 201, 231, 256, 286]  # a phone file's key frames (scene cuts too)
SPARSE_300 = [18, 56, 93, 131, 168, 206, 243, 281]  # 8 sparse frames of 300 (half spacing 18.5-19)


@pytest.mark.parametrize("indices, keys, expected", [
    (SPARSE_300, KEYS_1S, [30, 60, 86, 128, 171, 201, 231, 286]),
    (SPARSE_300, [0, 250], [0, 56, 93, 131, 168, 206, 250, 281]),  # GOP 250: only the frames near its 2 key frames
    (SPARSE_300, [0], [0, 56, 93, 131, 168, 206, 243, 281]),
    ([10, 20, 30], [15], [10, 20, 30]),  # exactly half the spacing away: kept (strictly closer snaps)
    ([10, 20, 30], [16], [10, 16, 30]),
    ([0, 0, 0, 1, 1, 2, 2, 2], [0, 2], [0, 0, 0, 1, 1, 2, 2, 2]),  # repeats of a short video: nothing closer
    ([40, 40, 40], [38], [40, 40, 40]),  # one distinct frame: no spacing, kept
    ([5, 50, 95], [], [5, 50, 95]),  # no key frame known
    ([95, 5, 50], [0, 100], [100, 0, 50]),  # any order: each frame maps alike
])
def test_snap_to_key_frames_table(indices, keys, expected):
    np.testing.assert_array_equal(snap_to_key_frames(indices, keys), expected)


def test_snapped_frames_stay_distinct_and_in_order():
    rng = np.random.default_rng(0)
    for _ in range(200):
        idx = np.sort(rng.choice(500, size=rng.integers(2, 17), replace=False))
        keys = np.sort(rng.choice(500, size=rng.integers(1, 40), replace=False))
        snapped = snap_to_key_frames(idx, keys)
        assert np.all(np.diff(snapped) > 0)
        moved = snapped != idx
        assert np.isin(snapped[moved], keys).all()
        gaps = np.diff(idx)
        half = np.minimum(np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]]) / 2
        assert np.all(np.abs(snapped - idx)[moved] < half[moved])


@pytest.mark.parametrize("bad", ["fast", "KEYFRAMES", None, 1])
def test_decode_mode_is_validated_with_a_clear_error(files, bad):
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    with pytest.raises(ValueError, match=r"decode_mode must be one of \('exact', 'keyframes'\)"):
        check_decode_mode(bad)
    with pytest.raises(ValueError, match="XClipVideoProcessor config: decode_mode must be one of"):
        XClipVideoProcessor(decode_mode=bad)
    if bad is not None:  # None means "the processor's own" in a call
        with pytest.raises(ValueError, match="decode_mode must be one of"):
            XClipVideoProcessor()(files["gop12"], decode_mode=bad)
        with pytest.raises(ValueError, match="decode_mode must be one of"):
            load_video(files["gop12"], lambda n: np.arange(3), decode_mode=bad)


# ---------------------------------------------------------------- the approximate mode, end to end


def test_keyframes_mode_is_off_by_default_and_saved_in_the_config(tmp_path):
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor

    assert XClipVideoProcessor().decode_mode == "exact"
    XClipVideoProcessor(decode_mode="keyframes").save_pretrained(tmp_path)
    assert XClipVideoProcessor.from_pretrained(tmp_path).decode_mode == "keyframes"


def test_keyframes_mode_reads_key_frames_only_where_one_is_close(files):
    """GOP 12 (key frames 0, 12, ...): 8 sparse frames of 120 (15 apart) become key frames where one is closer than
    7.5 frames, in one packet each; GOP 250 (one key frame): only the first sample moves."""
    oracle = pyav_decode_all(files["gop12"])
    sparse = sparse_sample_indices(120, 8)  # 7, 22, 37, 52, 67, 82, 97, 112
    frames, indices, _ = load_video(files["gop12"], lambda n: sparse_sample_indices(n, 8)[None],
                                    decode_mode="keyframes")
    np.testing.assert_array_equal(indices[0], [12, 24, 36, 48, 72, 84, 96, 108])
    np.testing.assert_array_equal(frames[0], oracle[indices[0]])
    assert [decode_long_index(f) for f in frames[0]] == indices[0].tolist()
    _, exact, _ = load_video(files["gop12"], lambda n: sparse_sample_indices(n, 8)[None])
    np.testing.assert_array_equal(exact[0], sparse)  # the default: the sampled frames
    with VideoFile(files["gop12"], backend="pyav") as video:
        video.get_frames(indices[0])
        assert video._backend.packets_sent == 8  # one per sampled frame, instead of the runs from each key frame
    _, one_key, _ = load_video(files["bframes"], lambda n: sparse_sample_indices(n, 8)[None], decode_mode="keyframes")
    np.testing.assert_array_equal(one_key[0], [0, *sparse[1:]])


def test_processor_and_windows_in_keyframes_mode_see_the_key_frames(files):
    from xclip_hf.models.video_processing_xclip import XClipVideoProcessor
    from xclip_hf.models.video_windows import VideoWindowStream

    oracle = pyav_decode_all(files["gop12_b"])
    processor = XClipVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, num_frames=8)
    got = processor(files["gop12_b"], decode_mode="keyframes", return_tensors="pt")["pixel_values"]
    snapped = snap_to_key_frames(sparse_sample_indices(120, 8), range(0, 120, 12))
    want = processor(oracle[snapped], do_sample_frames=False, return_tensors="pt")["pixel_values"]
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    with VideoWindowStream(files["gop12_b"], processor, num_frames=4, chunk_length_s=1,
                           decode_mode="keyframes") as stream:  # 30 fps: windows of 30 frames, samples 7.5 apart
        for window, pixels in stream:
            start = int(round(window.start_s * 30))
            planned = sparse_sample_indices(30, 4) + start
            np.testing.assert_array_equal(window.indices, snap_to_key_frames(planned, range(0, 120, 12)))
            want = processor.process_clips(
                __import__("torch").from_numpy(oracle[window.indices]).permute(0, 3, 1, 2)[None])
            np.testing.assert_array_equal(pixels.numpy(), want.numpy())


def test_pipeline_and_cli_decode_mode_option(files, tmp_path, capsys):
    import json

    from transformers import pipeline

    from xclip_hf.cli import main

    model = make_our_checkpoint(tmp_path / "model")
    pipe = pipeline("zero-shot-video-classification", model=model, device="cpu")
    oracle = pyav_decode_all(files["gop12"])
    sparse = sparse_sample_indices(120, NUM_FRAMES)  # 20, 60, 100
    snapped = snap_to_key_frames(sparse, range(0, 120, 12))  # 24, 60, 96

    def scores(result):
        return [{item["label"]: item["score"] for item in result}[label] for label in LABELS]

    exact = scores(pipe(files["gop12"], candidate_labels=LABELS))
    np.testing.assert_allclose(exact, scores(pipe(oracle[sparse], candidate_labels=LABELS)), atol=1e-6)
    approximate = scores(pipe(files["gop12"], candidate_labels=LABELS, decode_mode="keyframes"))
    np.testing.assert_allclose(approximate, scores(pipe(oracle[snapped], candidate_labels=LABELS)), atol=1e-6)
    assert not np.allclose(approximate, exact, atol=1e-6)
    with pytest.raises(ValueError, match="decode_mode must be one of"):
        pipe(files["gop12"], candidate_labels=LABELS, decode_mode="lowres")
    for mode, want in (("keyframes", approximate), (None, exact)):
        flags = ["--decode-mode", mode] if mode else []
        assert main(["classify", files["gop12"], "--labels", ",".join(LABELS), "--model", model, "--json",
                     "--no-progress", *flags]) == 0
        np.testing.assert_allclose(scores(json.loads(capsys.readouterr().out)[0]["predictions"]), want, atol=1e-6)
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", files["gop12"], "--labels", ",".join(LABELS), "--model", model, "--decode-mode", "fast"])
    assert exit_info.value.code == 2 and "--decode-mode: invalid choice: 'fast'" in capsys.readouterr().err
