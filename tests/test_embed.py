"""`embed_videos` / `xclip-hf embed`: vectors, error rows, resumption after kill -9, two processes under torchrun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from _helpers_embed import child_env, cli, setup  # noqa: F401 (setup: the module fixture)


def _oracle_features(ckpt, path, indices):
    """Independent computation: decode the frames, run the video processor and XClipModel.get_video_features."""
    from xclip_hf import XClipModel, XClipVideoProcessor
    from xclip_hf.video.reader import read_video

    model = XClipModel.from_pretrained(ckpt).eval()
    processor = XClipVideoProcessor.from_pretrained(ckpt)
    frames = read_video(path, indices)
    pixels = processor(frames, do_sample_frames=False, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model.get_video_features(pixel_values=pixels)


def test_vectors_equal_get_video_features(setup, tmp_path):
    from xclip_hf import embed_videos
    from xclip_hf.video.sampling import sparse_sample_indices
    from xclip_hf.video.reader import get_video_info
    from xclip_hf.video.timing import frame_times_at_rate
    from xclip_hf.video.windows import plan_windows

    root, ckpt, videos = setup
    ds = embed_videos(videos, tmp_path / "whole", ckpt, batch_size=2, save_context=True, save_frame_embeds=True,
                      progress=False)
    assert len(ds) == 2 and set(ds["path"]) == set(videos) and ds["error"] == [None, None]
    for row in ds:
        info = get_video_info(row["path"])
        assert row["start_s"] == 0.0 and row["end_s"] == pytest.approx(info.num_frames / info.fps)
        want = _oracle_features(ckpt, row["path"], sparse_sample_indices(info.num_frames, 3))
        np.testing.assert_allclose(row["video_embeds"], want.video_embeds[0].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(row["frame_embeds"], want.frame_embeds[0].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(row["video_context"], want.video_context[0].numpy(), atol=1e-5, rtol=0)

    # windows: one row per window, each equal to the features of that window's frames
    path = videos[0]
    ds = embed_videos([path], tmp_path / "windows", ckpt, chunk_length_s=0.2, stride_length_s=0.1, batch_size=3,
                      progress=False)
    info = get_video_info(path)
    windows = plan_windows(*frame_times_at_rate(info.num_frames, info.fps), 0.2, 0.1, num_frames=3)  # constant rate
    got = [(r["start_s"], r["end_s"]) for r in ds]
    assert len(got) == len(windows)
    np.testing.assert_allclose(np.array(got), np.array([(w.start_s, w.end_s) for w in windows]), rtol=1e-6, atol=0)
    for row, window in zip(ds, windows):
        want = _oracle_features(ckpt, path, window.indices)
        np.testing.assert_allclose(row["video_embeds"], want.video_embeds[0].numpy(), atol=1e-5, rtol=0)


def test_bad_files_become_error_rows(setup, tmp_path, capsys):
    from datasets import load_from_disk

    root, ckpt, videos = setup
    missing, empty, corrupt = tmp_path / "missing.mp4", tmp_path / "empty.mp4", tmp_path / "corrupt.mp4"
    empty.write_bytes(b"")
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, [videos[0], missing, empty, corrupt, videos[1]])) + "\n")
    out = tmp_path / "out"
    status, err = cli(capsys, "embed", "--list", listing, "--model", ckpt, "--output", out, "--num-workers", "2",
                       "--save-dtype", "float16", "--no-progress")
    assert status == 1, err  # some inputs failed, the run still finished
    assert "2 video(s) embedded, 0 skipped (already done), 3 failed" in err
    ds = load_from_disk(str(out))
    rows = {r["path"]: r for r in ds}
    assert len(ds) == 5 and set(rows) == set(map(str, [videos[0], missing, empty, corrupt, videos[1]]))
    assert "not found" in rows[str(missing)]["error"] and str(missing) in rows[str(missing)]["error"]
    assert "empty" in rows[str(empty)]["error"]
    assert str(corrupt) in rows[str(corrupt)]["error"]
    for bad in (missing, empty, corrupt):
        assert rows[str(bad)]["video_embeds"] is None
    for good in videos:
        assert rows[good]["error"] is None and len(rows[good]["video_embeds"]) == 16
    assert ds.features["video_embeds"].feature.dtype == "float16"


@pytest.mark.slow
def test_crashing_or_stalling_decoder_becomes_an_error_row(setup, tmp_path, monkeypatch):
    """A decoder that kills its worker (segfault) or hangs costs one error row, not the run; the others embed."""
    from xclip_hf.corpus import embed as embed_module
    from xclip_hf.pipelines import video_chunks
    from xclip_hf.models import video_windows
    from xclip_hf.video.reader import VideoFile

    root, ckpt, videos = setup

    class FragileVideoFile(VideoFile):  # the workers are forked: they inherit this patch
        def __init__(self, path, *args, **kwargs):
            name = os.path.basename(str(path))
            if name.startswith("crash"):
                os.kill(os.getpid(), signal.SIGSEGV)
            if name.startswith("stall"):
                time.sleep(120)
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(video_windows, "VideoFile", FragileVideoFile)  # what the loader's workers open
    inputs = []
    for name in ("a.mp4", "crash.mp4", "b.mp4", "stall.mp4", "c.mp4", "d.mp4"):
        shutil.copy(videos[len(inputs) % 2], tmp_path / name)
        inputs.append(str(tmp_path / name))
    start = time.perf_counter()
    ds, counts = embed_module.run_embedding(inputs, tmp_path / "out", ckpt, batch_size=1, num_workers=2,
                                            timeout_s=3, progress=False)
    assert time.perf_counter() - start < 60  # the stalled worker was given up after its timeout
    rows = {os.path.basename(r["path"]): r for r in ds}
    assert sorted(rows) == sorted(os.path.basename(p) for p in inputs)  # each input exactly once
    assert (counts.done, counts.failed) == (4, 2)
    assert "DecoderCrash" in rows["crash.mp4"]["error"] and "DecoderCrash" in rows["stall.mp4"]["error"]
    assert "timed out" in rows["stall.mp4"]["error"]
    reference = {os.path.basename(r["path"]): r for r in embed_module.embed_videos(videos, tmp_path / "ref", ckpt,
                                                                                   progress=False)}
    for name, source in (("a.mp4", 0), ("b.mp4", 0), ("c.mp4", 0), ("d.mp4", 1)):
        assert rows[name]["error"] is None
        want = reference[os.path.basename(videos[source])]["video_embeds"]
        np.testing.assert_allclose(rows[name]["video_embeds"], want, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        embed_module.run_embedding(inputs, tmp_path / "bad", ckpt, timeout_s=0, progress=False)

    # no in-flight marker names the culprit (a worker killed between videos): every unfinished video is tried alone
    monkeypatch.setattr(video_chunks, "inflight_paths", lambda dataset: [])
    three = [inputs[0], inputs[1], inputs[2]]  # a, crash, b
    ds, counts = embed_module.run_embedding(three, tmp_path / "out2", ckpt, batch_size=1, num_workers=2,
                                            timeout_s=3, progress=False)
    rows = {os.path.basename(r["path"]): r for r in ds}
    assert sorted(rows) == ["a.mp4", "b.mp4", "crash.mp4"] and (counts.done, counts.failed) == (2, 1)
    assert "DecoderCrash" in rows["crash.mp4"]["error"] and rows["a.mp4"]["error"] is None


@pytest.mark.slow
def test_resume_after_kill_gives_each_input_once(setup, tmp_path):
    from datasets import load_from_disk

    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    inputs = []
    for k in range(40):  # copies: distinct inputs, cheap to write
        inputs.append(str(tmp_path / f"v{k:02d}.mp4"))
        shutil.copy(videos[0], inputs[-1])
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "xclip_hf.cli", "embed", *inputs, "--model", ckpt, "--output",
                             str(out), "--shard-size", "1", "--batch-size", "1", "--num-workers", "0", "--no-progress"],
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / "_shards"
    deadline = time.time() + 90
    while time.time() < deadline and not (shards.is_dir() and any(n.startswith("rank") for n in os.listdir(shards))):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = [n for n in os.listdir(shards) if n.startswith("rank")]
    assert committed, "no shard was committed before the kill"
    assert not (out / "state.json").exists(), "the run finished before it was killed: the test proved nothing"
    done_before = sum(len(json.load(open(shards / n / "videos.json"))) for n in committed)
    assert done_before < len(inputs)

    ds, counts = run_embedding(inputs, out, ckpt, shard_size=8, num_workers=0, progress=False)
    assert counts.skipped == done_before and counts.done == len(inputs) - done_before and counts.failed == 0
    assert sorted(ds["path"]) == sorted(inputs)  # each input exactly once: no duplicates, no gaps
    assert sorted(load_from_disk(str(out))["path"]) == sorted(inputs)
    assert not any(n.startswith(".tmp") for n in os.listdir(shards))

    # a third run has nothing left to do
    ds, counts = run_embedding(inputs, out, ckpt, progress=False)
    assert (counts.done, counts.skipped, counts.failed) == (0, len(inputs), 0) and len(ds) == len(inputs)


@pytest.mark.distributed
def test_two_processes_under_torchrun_match_one(setup, tmp_path):
    from datasets import load_from_disk

    root, ckpt, videos = setup
    inputs = []
    for k in range(5):
        inputs.append(str(tmp_path / f"v{k}{os.path.splitext(videos[k % 2])[1]}"))
        shutil.copy(videos[k % 2], inputs[-1])
    from xclip_hf.corpus.embed import run_embedding

    args = ["embed", *inputs, "--model", ckpt, "--chunk-length", "0.2", "--batch-size", "2", "--num-workers", "0",
            "--shard-size", "1", "--save-context", "--no-progress"]
    run_embedding(inputs, tmp_path / "one", ckpt, chunk_length_s=0.2, batch_size=3, save_context=True, progress=False)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "xclip_hf.cli", *args, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, env=child_env(), timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    shards = os.listdir(tmp_path / "two" / "_shards")
    assert any(n.startswith("rank0-") for n in shards) and any(n.startswith("rank1-") for n in shards)
    assert not (tmp_path / "two" / "_embed.lock").exists()  # rank 0 took the job's lock and released it
    a, b = load_from_disk(str(tmp_path / "one")), load_from_disk(str(tmp_path / "two"))
    key = lambda r: (r["path"], round(r["start_s"], 6), round(r["end_s"], 6))  # noqa: E731
    rows_a, rows_b = {key(r): r for r in a}, {key(r): r for r in b}
    assert len(rows_a) == len(a) == len(b) == len(rows_b) and set(rows_a) == set(rows_b)
    for k, r in rows_a.items():
        np.testing.assert_allclose(rows_b[k]["video_embeds"], r["video_embeds"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(rows_b[k]["video_context"], r["video_context"], atol=1e-5, rtol=0)


def test_bad_arguments(setup, tmp_path, capsys):
    from xclip_hf import embed_videos

    root, ckpt, videos = setup
    status, err = cli(capsys, "embed", "--model", ckpt, "--output", tmp_path / "x")
    assert status == 2 and "no input videos" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"busy.*already holds other files \(notes.txt\)"):
        embed_videos(videos, busy, ckpt, progress=False)
    with pytest.raises(ValueError, match="holds no video file"):
        embed_videos([tmp_path / "busy"], tmp_path / "y", ckpt, progress=False)
    with pytest.raises(ValueError, match="matches no file"):
        embed_videos([str(tmp_path / "*.mkv")], tmp_path / "y", ckpt, progress=False)
    with pytest.raises(ValueError, match="stride_length_s"):
        embed_videos(videos, tmp_path / "y", ckpt, chunk_length_s=1.0, stride_length_s=2.0, progress=False)
    # resuming with other settings would mix incomparable rows
    embed_videos(videos[:1], tmp_path / "run", ckpt, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(.*video_context: False -> True"):
        embed_videos(videos, tmp_path / "run", ckpt, save_context=True, progress=False)


def test_directory_inputs_follow_symlinked_directories(tmp_path):
    """A directory input descends into symlinked sub-directories (as a `**` glob does), each directory once,
    and a symlink loop ends."""
    from xclip_hf.corpus.inputs import expand_inputs

    top, elsewhere = tmp_path / "top", tmp_path / "elsewhere"
    (top / "sub").mkdir(parents=True)
    (elsewhere / "deeper").mkdir(parents=True)
    for path in (top / "a.mp4", top / "sub" / "b.mp4", elsewhere / "c.mp4", elsewhere / "deeper" / "d.webm"):
        path.write_bytes(b"")
    os.symlink(elsewhere, top / "linked")
    os.symlink(top, elsewhere / "deeper" / "loop")  # a cycle back to the top
    os.symlink(elsewhere, top / "sub" / "again")  # a second way into one directory
    found = [os.path.relpath(p, top) for p in expand_inputs([top])]
    assert found == ["a.mp4", "linked/c.mp4", "linked/deeper/d.webm", "sub/b.mp4"]


def test_list_file_names_are_kept_as_written(tmp_path):
    """List-file lines are paths exactly as written (leading and trailing spaces kept) minus the line ending;
    empty or blank lines and lines starting with '#' are skipped."""
    from xclip_hf.corpus.inputs import read_list_file

    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeff# my videos\n  two spaces.mp4\r\n\n   \nplain.mp4\ntrailing .mp4 \n ./#hash.mp4\n"
                        .encode("utf-8"))
    assert read_list_file(listing) == ["  two spaces.mp4", "plain.mp4", "trailing .mp4 ", " ./#hash.mp4"]
