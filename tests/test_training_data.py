"""Dataset loading: X-CLIP annotation files, labels csv, CSV/JSON tables, and their error messages."""

import json

import pytest

from xclip_hf.training.dataset import load_video_dataset, read_labels_file


@pytest.fixture
def tree(tmp_path):
    """Three (empty) video files in a root folder, a labels csv and annotation files in every format."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    for name in ("a/x 1.mp4", "a/y.mp4", "z.mp4"):
        (root / name).write_bytes(b"")  # loading only checks existence; decoding is lazy
    (tmp_path / "labels.csv").write_text("id,name\n0,moving left\n1,moving right\n2,growing, fast\n")
    (tmp_path / "train.txt").write_text("a/x 1.mp4 2\n\na/y.mp4 0\nz.mp4 1\n")
    (tmp_path / "train.csv").write_text("path,cls\na/x 1.mp4,growing, fast\na/y.mp4,moving left\n".replace("growing, fast", '"growing, fast"'))
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps({"video": v, "label": l}) for v, l in [("z.mp4", 1), ("a/y.mp4", 0)]))
    return tmp_path


def test_annotation_file_with_labels_csv(tree):
    ds, names = load_video_dataset(tree / "train.txt", tree / "labels.csv", video_root=tree / "root")
    assert names == ["moving left", "moving right", "growing, fast"]
    assert ds.features["label"].names == names
    assert ds["label"] == [2, 0, 1]
    assert ds["video"] == [str(tree / "root" / p) for p in ("a/x 1.mp4", "a/y.mp4", "z.mp4")]


def test_csv_with_label_names_and_jsonl_with_ids(tree):
    ds, names = load_video_dataset(tree / "train.csv", tree / "labels.csv", video_root=tree / "root", video_column="path", label_column="cls")
    assert ds["label"] == [2, 0]
    ds, _ = load_video_dataset(tree / "train.jsonl", tree / "labels.csv", video_root=tree / "root")
    assert ds["label"] == [1, 0] and ds["video"][0].endswith("z.mp4")
    # without a labels file, class names come from the string labels (sorted)
    ds, names = load_video_dataset(tree / "train.csv", video_root=tree / "root", video_column="path", label_column="cls")
    assert names == ["growing, fast", "moving left"] and ds["label"] == [0, 1]


def test_errors_name_the_input(tree):
    with pytest.raises(ValueError, match=r"do not exist, e\.g\. \[.*nothere\.mp4"):
        (tree / "bad.txt").write_text("nothere.mp4 0\n")
        load_video_dataset(tree / "bad.txt", tree / "labels.csv", video_root=tree / "root")
    with pytest.raises(ValueError, match="label 5 of .* is outside the 3 classes"):
        (tree / "bad.txt").write_text("z.mp4 5\n")
        load_video_dataset(tree / "bad.txt", tree / "labels.csv", video_root=tree / "root")
    with pytest.raises(ValueError, match="line 1: expected 'relative/path label_id'"):
        (tree / "bad.txt").write_text("z.mp4 left\n")
        load_video_dataset(tree / "bad.txt", tree / "labels.csv", video_root=tree / "root")
    with pytest.raises(ValueError, match="needs a labels file"):
        load_video_dataset(tree / "train.txt")
    with pytest.raises(ValueError, match="has no column 'video'"):
        load_video_dataset(tree / "train.csv", tree / "labels.csv", video_root=tree / "root")
    with pytest.raises(ValueError, match="'jumping' is not one of the classes"):
        (tree / "bad.csv").write_text("video,label\nz.mp4,jumping\n")
        load_video_dataset(tree / "bad.csv", tree / "labels.csv", video_root=tree / "root")


def test_labels_file_must_be_complete(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,name\n0,a\n2,c\n")
    with pytest.raises(ValueError, match="ids must be 0..1 without gaps"):
        read_labels_file(path)
    path.write_text("0,a\n1,b\n")
    with pytest.raises(ValueError, match="must start with the header 'id,name'"):
        read_labels_file(path)
