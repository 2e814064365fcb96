"""`embed` sources: a Hugging Face dataset (paths, bytes, Video feature, streaming), webdataset shards and URLs give
the vectors of the files themselves; ids kept, resume by id, and bad input (missing column, unreadable shard, slow
URL, non-video member) as clear errors or error rows."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import io
import os
import shutil
import threading
import time

import numpy as np
import pytest

from _helpers_embed import cli, setup, tar_shards  # noqa: F401 (setup: the module fixture)
from _helpers_pipeline import video_frames


@pytest.fixture(scope="module")
def reference(setup):
    """Vectors of the two test videos embedded from their folder: {file name: video_embeds}."""
    from xclip_hf import embed_videos

    root, ckpt, videos = setup
    folder = root / "folder"
    folder.mkdir()
    for video in videos:
        shutil.copy(video, folder)
    ds = embed_videos([str(folder)], root / "ref", ckpt, progress=False)
    assert ds["error"] == [None, None]
    return {os.path.basename(r["path"]): np.asarray(r["video_embeds"]) for r in ds}


def _same_vectors(ds, expected: dict, reference: dict):
    """Every row of ``ds`` is one id of ``expected`` (id -> file name) with that file's vectors, each id once."""
    assert sorted(ds["path"]) == sorted(expected)
    for row in ds:
        assert row["error"] is None, row["error"]
        np.testing.assert_allclose(row["video_embeds"], reference[expected[row["path"]]], atol=1e-5, rtol=0)


def _names(videos):
    return [os.path.basename(v) for v in videos]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """Files of a folder over HTTP, without a log line per request; ``/slow/...`` answers after 10 s."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(10)
        return super().do_GET()


@pytest.fixture
def http_root(tmp_path):
    """(base URL, folder) of an http.server serving a temporary folder."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def test_reader_decodes_bytes_from_memory_with_seeks(tmp_path):
    """`VideoFile` on a video's bytes (seeking to key frames in memory) reads the frames it reads from the path;
    an empty or undecodable one is an error naming the given name."""
    from xclip_hf.data.video_writer import write_video
    from xclip_hf.video.reader import VideoDecodeError, VideoFile

    for name, size in (("gop.mp4", (48, 64)), ("gop.webm", (45, 61))):
        path = write_video(str(tmp_path / name), video_frames(30, *size, seed=3), gop_size=4)
        data = open(path, "rb").read()
        for backend in ("pyav", "decord"):
            with VideoFile(path, backend=backend) as on_disk, VideoFile(data, backend=backend, name="id-7") as mem:
                assert mem.path == "id-7" and mem.num_frames == on_disk.num_frames == 30
                indices = np.array([25, 3, 17, 9, 29, 0])  # backwards too: each read seeks to a key frame
                np.testing.assert_array_equal(mem.get_frames(indices), on_disk.get_frames(indices))
                assert (mem.info.height, mem.info.width) == size
                np.testing.assert_array_equal(np.stack([f for _, f in mem.iter_frames([1, 8, 20])]),
                                              on_disk.get_frames(np.array([1, 8, 20])))
        with VideoFile(io.BytesIO(data)) as from_file_object:
            assert from_file_object.num_frames == 30
    with pytest.raises(VideoDecodeError, match="video 'id-8' is empty"):
        VideoFile(b"", name="id-8")
    with pytest.raises(VideoDecodeError, match="cannot open video 'id-9'"):
        VideoFile(b"not a video" * 50, name="id-9")


def test_datasets_give_the_vectors_of_the_files(setup, reference, tmp_path, capsys):
    """A saved dataset of paths (CLI), of bytes, of datasets' Video feature with bytes, and a streaming parquet
    folder (load_dataset) give the files' vectors, rows named by the id column (or the path)."""
    from datasets import Dataset, Features, Value, Video, load_from_disk

    from xclip_hf import embed_videos

    root, ckpt, videos = setup
    names = _names(videos)
    data = [open(v, "rb").read() for v in videos]

    paths = tmp_path / "paths"
    Dataset.from_dict({"file": videos, "label": [1, 2]}).save_to_disk(str(paths))
    status, err = cli(capsys, "embed", "--dataset", paths, "--video-column", "file", "--model", ckpt, "--output",
                      tmp_path / "out-paths", "--no-progress")
    assert status == 0, err
    _same_vectors(load_from_disk(str(tmp_path / "out-paths")), dict(zip(videos, names)), reference)

    raw = tmp_path / "bytes"
    Dataset.from_dict({"clip": data, "key": ["k-a", "k-b"]}).save_to_disk(str(raw))
    ds = embed_videos(dataset=str(raw), video_column="clip", id_column="key", output_dir=tmp_path / "out-bytes",
                      model=ckpt, progress=False)
    _same_vectors(ds, {"k-a": names[0], "k-b": names[1]}, reference)

    featured = tmp_path / "feature"
    Dataset.from_dict({"video": [{"bytes": d, "path": n} for d, n in zip(data, names)], "n": [0, 1]},
                      features=Features({"video": Video(), "n": Value("int64")})).save_to_disk(str(featured))
    ds = embed_videos(dataset=str(featured), output_dir=tmp_path / "out-feature", model=ckpt, progress=False)
    _same_vectors(ds, {"0": names[0], "1": names[1]}, reference)  # bytes without an id column: row numbers

    parquet = tmp_path / "parquet"
    parquet.mkdir()
    Dataset.from_dict({"video": data, "id": ["s-a", "s-b"]}).to_parquet(str(parquet / "train.parquet"))
    ds = embed_videos(dataset=str(parquet), id_column="id", streaming=True, output_dir=tmp_path / "out-stream",
                      model=ckpt, num_workers=2, progress=False)
    _same_vectors(ds, {"s-a": names[0], "s-b": names[1]}, reference)


def test_webdataset_shards_and_urls_give_the_vectors_of_the_files(setup, reference, http_root, capsys):
    """webdataset shards (brace pattern, the sample key as id) and an http.server URL list (the URL as id) give
    the files' vectors."""
    from datasets import load_from_disk

    from xclip_hf import embed_videos

    root, ckpt, videos = setup
    names = _names(videos)
    base, served = http_root
    samples = []
    for k in range(4):
        video = videos[k % 2]
        ext = os.path.splitext(video)[1].lstrip(".")
        samples.append({"__key__": f"clip{k:02d}", ext: open(video, "rb").read(), "json": b'{"k": %d}' % k})
    tar_shards(str(served / "wds"), samples, per_shard=3)
    ds = embed_videos(webdataset=str(served / "wds" / "shard-{000..001}.tar"), output_dir=served / "out-wds",
                      model=ckpt, num_workers=2, progress=False)
    _same_vectors(ds, {f"clip{k:02d}": names[k % 2] for k in range(4)}, reference)

    # the same shards over http (fsspec)
    ds = embed_videos(webdataset=f"{base}/wds/shard-{{000..001}}.tar", output_dir=served / "out-wds-http",
                      model=ckpt, progress=False)
    _same_vectors(ds, {f"clip{k:02d}": names[k % 2] for k in range(4)}, reference)

    for video in videos:
        shutil.copy(video, served)
    urls = [f"{base}/{n}" for n in names]
    listing = served / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    status, err = cli(capsys, "embed", "--list", listing, "--model", ckpt, "--output", served / "out-urls",
                      "--num-workers", "2", "--no-progress")
    assert status == 0, err
    _same_vectors(load_from_disk(str(served / "out-urls")), dict(zip(urls, names)), reference)


def test_resume_of_a_webdataset_source_gives_every_sample_once(setup, tmp_path, monkeypatch):
    """A run that dies after two committed shards, then a rerun: every sample once, the done ones skipped; a third
    run has nothing to do; ids are kept as written (not made paths)."""
    from xclip_hf.corpus.embed import run_embedding
    from xclip_hf.jobs.store import ShardStore

    root, ckpt, videos = setup
    data = open(videos[0], "rb").read()
    keys = [f"part/{k:02d}" for k in range(10)]
    shards = tar_shards(str(tmp_path / "wds"), [{"__key__": key, "mp4": data} for key in keys], per_shard=4)
    commit = ShardStore.commit
    calls = []

    def dying_commit(self, rows, done, features):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(list(done))
        return commit(self, rows, done, features)

    monkeypatch.setattr(ShardStore, "commit", dying_commit)
    with pytest.raises(KeyboardInterrupt):
        run_embedding(webdataset=shards, video_key="mp4", output_dir=tmp_path / "out", model=ckpt, shard_size=2,
                      batch_size=1, progress=False)
    monkeypatch.setattr(ShardStore, "commit", commit)
    assert sum(map(len, calls)) == 4
    ds, counts = run_embedding(webdataset=shards, video_key="mp4", output_dir=tmp_path / "out", model=ckpt,
                               shard_size=3, progress=False)
    assert (counts.skipped, counts.done, counts.failed) == (4, 6, 0)
    assert sorted(ds["path"]) == keys and ds["error"] == [None] * 10  # each sample once
    ds, counts = run_embedding(webdataset=shards, video_key="mp4", output_dir=tmp_path / "out", model=ckpt,
                               progress=False)
    assert (counts.skipped, counts.done) == (10, 0) and sorted(ds["path"]) == keys
    # a files run into this output is refused: its inputs are named by paths, these by ids
    with pytest.raises(ValueError, match="input_ids: 'ids' -> 'paths'"):
        run_embedding(videos, tmp_path / "out", ckpt, progress=False)


def test_bad_datasets_are_refused_naming_the_column(setup, tmp_path, capsys):
    """A missing video or id column, repeated ids, an unknown split and mixed sources are clear errors."""
    from datasets import Dataset, DatasetDict

    from xclip_hf import embed_videos

    root, ckpt, videos = setup
    saved = tmp_path / "ds"
    Dataset.from_dict({"file": videos, "label": [1, 2]}).save_to_disk(str(saved))
    status, err = cli(capsys, "embed", "--dataset", saved, "--model", ckpt, "--output", tmp_path / "o1")
    assert status == 1 and "has no column 'video' (its columns: file, label)" in err and "--video-column" in err
    with pytest.raises(ValueError, match=r"no column 'id' \(its columns: file, label\).*--id-column"):
        embed_videos(dataset=str(saved), video_column="file", id_column="id", output_dir=tmp_path / "o2",
                     model=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"no column 'clip' \(its columns: file, label\)"):
        embed_videos(dataset=str(saved), video_column="clip", streaming=True, output_dir=tmp_path / "o3", model=ckpt,
                     progress=False)
    with pytest.raises(ValueError, match="the id '1' names rows 0 and 1"):
        embed_videos(dataset=Dataset.from_dict({"video": videos, "n": [1, 1]}), id_column="n",
                     output_dir=tmp_path / "o4", model=ckpt, progress=False)
    two = tmp_path / "two"
    DatasetDict({"train": Dataset.from_dict({"video": videos}), "test": Dataset.from_dict({"video": videos})}
                ).save_to_disk(str(two))
    with pytest.raises(ValueError, match="has the splits test, train: choose one with --split"):
        embed_videos(dataset=str(two), output_dir=tmp_path / "o5", model=ckpt, progress=False)
    with pytest.raises(ValueError, match="one source per run: got video files and dataset"):
        embed_videos(videos, dataset=str(saved), output_dir=tmp_path / "o6", model=ckpt, progress=False)
    with pytest.raises(ValueError, match="video_key applies to a webdataset= source only"):
        embed_videos(videos, video_key="mp4", output_dir=tmp_path / "o7", model=ckpt, progress=False)
    with pytest.raises(ValueError, match="cannot load the dataset .*nowhere"):
        embed_videos(dataset=str(tmp_path / "nowhere"), output_dir=tmp_path / "o8", model=ckpt, progress=False)
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 9))  # refused before anything was written


def test_bad_shards_samples_and_urls(setup, tmp_path, http_root):
    """A tar sample without a video member or with a non-video one, a bad dataset cell and a URL that times out
    are error rows naming them; a missing shard is refused at once; a truncated shard stops the run naming it,
    keeps what it finished, and a rerun with the shard repaired gives every sample once."""
    from datasets import Dataset

    from xclip_hf import embed_videos
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    data = open(videos[0], "rb").read()
    shards = tar_shards(str(tmp_path / "wds"), [
        {"__key__": "good-1", "mp4": data},
        {"__key__": "notes", "txt": b"no video here"},
        {"__key__": "fake", "mp4": b"this is text, not an mp4 file" * 20},
        {"__key__": "good-2", "mp4": data}], per_shard=4)
    ds, counts = run_embedding(webdataset=shards, output_dir=tmp_path / "o1", model=ckpt, num_workers=2,
                               progress=False)
    rows = {r["path"]: r for r in ds}
    assert sorted(rows) == ["fake", "good-1", "good-2", "notes"] and (counts.done, counts.failed) == (2, 2)
    assert "sample 'notes'" in rows["notes"]["error"]
    assert "has no video member (its members: txt" in rows["notes"]["error"]
    assert "cannot open video 'fake'" in rows["fake"]["error"] and rows["fake"]["video_embeds"] is None

    with pytest.raises(ValueError, match=r"webdataset shard .*shard-001\.tar' does not exist"):
        embed_videos(webdataset=str(tmp_path / "wds" / "shard-{000..009}.tar"), output_dir=tmp_path / "o2",
                     model=ckpt, progress=False)

    # a truncated shard between two good ones
    keys = ["a0", "a1", "a2", "b0", "b1", "b2", "c0"]
    first, middle, last = tar_shards(str(tmp_path / "t"), [{"__key__": k, "mp4": data} for k in keys], per_shard=3)
    whole = open(middle, "rb").read()
    with open(middle, "wb") as f:
        f.write(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match=r"cannot read webdataset shard .*shard-001\.tar' \(after \d sample"):
        run_embedding(webdataset=[first, middle, last], output_dir=tmp_path / "o3", model=ckpt, shard_size=1,
                      progress=False)
    with open(middle, "wb") as f:
        f.write(whole)
    ds, counts = run_embedding(webdataset=[first, middle, last], output_dir=tmp_path / "o3", model=ckpt,
                               progress=False)
    assert counts.skipped >= 3 and counts.skipped + counts.done == 7 and counts.failed == 0
    assert sorted(ds["path"]) == keys

    # a dataset cell that is no video, and a URL that times out: error rows; the others embed
    base, served = http_root
    shutil.copy(videos[0], served / "a.mp4")
    table = Dataset.from_dict({"video": [f"{base}/a.mp4", f"{base}/slow/a.mp4", None]})
    start = time.perf_counter()
    ds, counts = run_embedding(dataset=table, url_timeout_s=1, output_dir=tmp_path / "o4", model=ckpt,
                               progress=False)
    assert time.perf_counter() - start < 9  # the slow URL was given up after its timeout
    rows = {r["path"]: r["error"] for r in ds}
    assert sorted(rows) == ["2", f"{base}/a.mp4", f"{base}/slow/a.mp4"] and rows[f"{base}/a.mp4"] is None
    assert f"URL '{base}/slow/a.mp4' took longer than embed's download limit of 1 s" in rows[f"{base}/slow/a.mp4"]
    assert "'2': its video cell holds no video" in rows["2"]


def test_url_protocols_are_checked_before_the_run(setup, tmp_path):
    """A URL whose protocol fsspec cannot read here is refused at once, naming it; file:// reads the local file."""
    from xclip_hf import embed_videos

    root, ckpt, videos = setup
    with pytest.raises(ValueError, match="cannot read 'nosuchproto://bucket/a.mp4': fsspec has no nosuchproto://"):
        embed_videos(["nosuchproto://bucket/a.mp4"], tmp_path / "o1", ckpt, progress=False)
    if importlib.util.find_spec("s3fs") is None:
        with pytest.raises(ValueError, match="cannot read 's3://bucket/a.mp4': fsspec has no s3:// .*s3fs"):
            embed_videos(["s3://bucket/a.mp4"], tmp_path / "o1", ckpt, progress=False)
    url = "file://" + os.path.abspath(videos[0])
    ds = embed_videos([url, "file:///nowhere/b.mp4"], tmp_path / "o2", ckpt, progress=False)
    rows = {r["path"]: r["error"] for r in ds}
    assert rows[url] is None and "/nowhere/b.mp4" in rows["file:///nowhere/b.mp4"]
