"""The synthetic temporal-order dataset: real mp4 files, X-CLIP annotation files, motion in the right direction."""

import csv
import math
import os
import re

import av
import numpy as np
import pytest

from xclip_hf.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic_dataset, main, render_video
from xclip_hf.data.video_writer import write_video


def _decode(path):
    """All frames of a video as uint8 (T, H, W, 3), decoded with PyAV (independent of our reader)."""
    with av.open(path) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _object_track(frames):
    """Per frame: (area, centroid x, centroid y) of the pixels far from the background colour (the median)."""
    background = np.median(frames.reshape(-1, 3), axis=0)
    mask = np.abs(frames.astype(np.float32) - background).sum(-1) > 90
    out = []
    for m in mask:
        ys, xs = np.nonzero(m)
        out.append((m.mean(), xs.mean() if len(xs) else np.nan, ys.mean() if len(ys) else np.nan))
    return np.array(out)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_videos_per_class=3, seed=0,
                                      size=48, min_frames=12, max_frames=20, splits=(1, 1, 1))


def test_files_and_annotations(dataset):
    with open(dataset.labels_file, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "name"]
    assert rows[1:] == [[str(i), name] for i, name in enumerate(SYNTHETIC_CLASSES)]
    for split_file in (dataset.train_file, dataset.val_file, dataset.test_file):
        lines = open(split_file).read().splitlines()
        assert len(lines) == len(SYNTHETIC_CLASSES)  # one video per class per split
        for line in lines:
            relative, label = line.split(" ")
            assert not os.path.isabs(relative) and relative.endswith(".mp4")
            assert 0 <= int(label) < len(SYNTHETIC_CLASSES)
            frames = _decode(os.path.join(dataset.root, relative))
            assert frames.shape[1:] == (48, 48, 3) and 12 <= len(frames) <= 20


def _video_of(dataset, name):
    label = list(SYNTHETIC_CLASSES).index(name)
    for line in open(dataset.train_file).read().splitlines():
        relative, lab = line.split(" ")
        if int(lab) == label:
            return _decode(os.path.join(dataset.root, relative))
    raise AssertionError(name)


def test_motion_goes_the_way_the_label_says(dataset):
    track = {name: _object_track(_video_of(dataset, name)) for name in SYNTHETIC_CLASSES}
    assert track["moving left"][-1, 1] < track["moving left"][0, 1] - 10
    assert track["moving right"][-1, 1] > track["moving right"][0, 1] + 10
    assert track["moving up"][-1, 2] < track["moving up"][0, 2] - 10
    assert track["moving down"][-1, 2] > track["moving down"][0, 2] + 10
    assert track["growing"][-1, 0] > 3 * track["growing"][0, 0]
    assert track["shrinking"][0, 0] > 3 * track["shrinking"][-1, 0]
    assert track["appearing"][0, 0] < 0.002 < track["appearing"][-1, 0]
    assert track["disappearing"][-1, 0] < 0.002 < track["disappearing"][0, 0]
    for name, sign in (("rotating clockwise", 1), ("rotating counterclockwise", -1)):
        angles = np.unwrap(np.arctan2(track[name][:, 2] - 24, track[name][:, 1] - 24))
        assert sign * (angles[-1] - angles[0]) > math.pi / 4  # y points down: a growing angle is clockwise


def test_seeded_and_varied(tmp_path):
    a = generate_synthetic_dataset(tmp_path / "a", 2, seed=1, classes=["growing"], size=32, min_frames=8, max_frames=30, splits=(1, 0, 0))
    b = generate_synthetic_dataset(tmp_path / "b", 2, seed=1, classes=["growing"], size=32, min_frames=8, max_frames=30, splits=(1, 0, 0))
    relative = [line.split()[0] for line in open(a.train_file).read().splitlines()]
    assert relative == [line.split()[0] for line in open(b.train_file).read().splitlines()]
    for name in relative:  # same seed -> the same files, byte for byte (one encoder thread, bitexact muxing)
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    videos = [_decode(os.path.join(a.root, name)) for name in relative]
    frames = [render_video("growing", np.random.default_rng(5), size=32, num_frames=9) for _ in range(2)]
    assert np.array_equal(frames[0], frames[1])  # the rendering itself is exact
    assert videos[0].shape != videos[1].shape or not np.array_equal(videos[0], videos[1])
    assert np.abs(np.median(videos[0][0].reshape(-1, 3), 0) - np.median(videos[1][0].reshape(-1, 3), 0)).sum() > 0
    c = generate_synthetic_dataset(tmp_path / "c", 2, seed=2, classes=["growing"], size=32, min_frames=8, max_frames=30, splits=(1, 0, 0))
    assert (tmp_path / "c" / relative[0]).read_bytes() != (tmp_path / "a" / relative[0]).read_bytes()  # another seed


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_writer_same_frames_same_bytes(tmp_path, suffix):
    frames = np.random.default_rng(0).integers(0, 256, size=(6, 20, 24, 3), dtype=np.uint8)
    first = write_video(tmp_path / f"a{suffix}", frames, fps=12)
    second = write_video(tmp_path / f"b{suffix}", frames, fps=12)
    assert open(first, "rb").read() == open(second, "rb").read()
    with av.open(first) as container:  # the encoder ran on one thread, whatever the machine's core count
        assert container.streams.video[0].frames in (0, 6) and len(_decode(first)) == 6
    if suffix != ".webm":
        assert b"threads=1 " in open(first, "rb").read()  # x264 writes its settings into the stream
        assert re.search(rb"Lavf\d", open(first, "rb").read()) is None  # bitexact muxing: no FFmpeg version


def test_reversed_test_pairs_are_exact_reverses(tmp_path):
    data = generate_synthetic_dataset(tmp_path, 4, seed=0, classes=["growing", "moving left", "shrinking"], size=32,
                                      min_frames=14, max_frames=18, splits=(2, 0, 2), reversed_test_pairs=True)
    rows = [line.split() for line in open(data.test_file).read().splitlines()]
    videos = {(int(label), path.rsplit("_", 1)[1]): _decode(os.path.join(data.root, path)) for path, label in rows}
    for index in ("0002.mp4", "0003.mp4"):
        growing, shrinking = videos[(0, index)], videos[(2, index)]
        assert np.array_equal(shrinking, growing[::-1])  # decoded frame for frame: lossless, same frames backwards
        assert len(growing) % 16 != 0  # 8-frame middle-of-segment sampling takes the same frames from both
    train = [line.split()[0] for line in open(data.train_file).read().splitlines()]
    shrinking_train = [_decode(os.path.join(data.root, p)) for p in train if "shrinking" in p]
    growing_train = [_decode(os.path.join(data.root, p)) for p in train if "growing" in p]
    assert not any(a.shape == b[::-1].shape and np.abs(a.astype(int) - b[::-1]).mean() < 4
                   for a in shrinking_train for b in growing_train)  # training videos stay independent
    assert len(videos) == 6  # "moving left" has no partner here: its own test videos


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="'jumping'"):
        generate_synthetic_dataset(tmp_path, 3, classes=["moving left", "jumping"])
    with pytest.raises(ValueError, match="num_videos_per_class=2 is too small"):
        generate_synthetic_dataset(tmp_path, 2)


def test_cli(tmp_path, capsys):
    data = main([str(tmp_path / "cli"), "--num-videos-per-class", "3", "--classes", "moving left", "moving right",
                 "--size", "32", "--min-frames", "8", "--max-frames", "8"])
    assert "wrote 2 classes" in capsys.readouterr().out
    assert len(open(data.train_file).read().splitlines()) == 2
