"""Embed jobs that know their model and their writer: fingerprints (resume, search), error-row retry, the job lock."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from _helpers_embed import child_env, cli, setup  # noqa: F401 (setup: a module fixture)
from _helpers_pipeline import make_our_checkpoint


def _job(directory):
    with open(os.path.join(directory, "_embed_config.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------------ fingerprints
def test_fingerprint_follows_the_video_side_weights(setup):
    """Same weights (a second load, another spelling) -> same fingerprint; any change on the video side -> another;
    the text tower does not make the rows and does not count."""
    from xclip_hf import XClipModel
    from xclip_hf.jobs.identity import model_fingerprint

    root, ckpt, _ = setup
    a, b = XClipModel.from_pretrained(ckpt), XClipModel.from_pretrained(os.path.relpath(ckpt))
    first = model_fingerprint(a)
    assert first.startswith("sha256:") and model_fingerprint(b) == first
    assert model_fingerprint(a.vision_model) == first  # the video tower alone is the same video side
    with torch.no_grad():
        b.text_model.text_projection.weight.mul_(2.0)
    assert model_fingerprint(b) == first
    with torch.no_grad():
        b.vision_model.visual_projection.weight[0, 0] += 1e-3  # seen through the cache (version counter)
    assert model_fingerprint(b) != first
    assert model_fingerprint(a.to(torch.bfloat16)) != first  # weights are hashed as given


def test_resume_compares_fingerprints_not_names(setup, tmp_path, monkeypatch, caplog):
    """The same model named another way (relative path from another directory, an object, a bfloat16 run) resumes;
    new weights saved under the same path are refused; the job records fingerprint, source and code version."""
    import xclip_hf
    from xclip_hf import XClipModel, XClipProcessor
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    model_dir = tmp_path / "model"
    shutil.copytree(ckpt, model_dir)
    out = tmp_path / "out"
    run_embedding(videos[:1], out, str(model_dir), progress=False)
    monkeypatch.chdir(tmp_path)
    _, counts = run_embedding(videos, out, "./model", progress=False)  # a relative spelling, another cwd
    assert (counts.done, counts.skipped) == (1, 1)
    model = XClipModel.from_pretrained(model_dir)
    _, counts = run_embedding(videos, out, model, processor=XClipProcessor.from_pretrained(model_dir), progress=False)
    assert counts.skipped == 2
    _, counts = run_embedding(videos, out, "model", dtype="bfloat16", progress=False)  # fingerprint before the cast
    assert counts.skipped == 2

    make_our_checkpoint(model_dir, seed=1)  # new weights under the same path
    with pytest.raises(ValueError, match=r"holds rows of another model .*fingerprint"):
        run_embedding(videos, out, "./model", progress=False)
    job = _job(out)
    assert job["model_fingerprint"].startswith("sha256:") and job["code_version"] == xclip_hf.__version__
    assert job["model_source"] == str(model_dir) and job["num_frames"] == 3

    # an output written before fingerprints: resumed, with a warning that the model cannot be checked
    legacy = {k: v for k, v in job.items() if k not in ("model_fingerprint", "model_source", "code_version")}
    legacy["model"] = str(model_dir)
    with open(out / "_embed_config.json", "w") as f:
        json.dump(legacy, f)
    with caplog.at_level(logging.WARNING, logger="xclip_hf"):
        _, counts = run_embedding(videos, out, "./model", progress=False)
    assert counts.skipped == 2 and "before embed recorded model fingerprints" in caplog.text


def test_search_checks_the_model_fingerprint(setup, tmp_path, capsys, caplog):
    from xclip_hf import search_videos
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    out = tmp_path / "out"
    ds, _ = run_embedding(videos, out, ckpt, progress=False)
    other = make_our_checkpoint(tmp_path / "other", seed=5)  # same shapes, other weights: only the fingerprint differs
    assert len(search_videos(out, "dancing", ckpt)) == 2
    assert len(search_videos(ds, "dancing", ckpt)) == 2  # the dataset object finds its job through its files
    with pytest.raises(ValueError, match=r"out.*embedded with another model.*allow_model_mismatch"):
        search_videos(out, "dancing", other)  # a ModelMismatchError
    with pytest.raises(ValueError, match="embedded with another model"):
        search_videos(ds, "dancing", other)
    with caplog.at_level(logging.WARNING, logger="xclip_hf"):
        assert len(search_videos(out, "dancing", other, allow_model_mismatch=True)) == 2
    assert "searching anyway" in caplog.text
    status, err = cli(capsys, "search", out, "dancing", "--model", other)
    assert status != 0 and "embedded with another model" in err and "--allow-model-mismatch" in err
    status, _ = cli(capsys, "search", out, "dancing", "--model", other, "--allow-model-mismatch")
    assert status == 0

    job = _job(out)  # an index written before fingerprints: searched, with a clear warning
    del job["model_fingerprint"]
    with open(out / "_embed_config.json", "w") as f:
        json.dump(job, f)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xclip_hf"):
        assert len(search_videos(out, "dancing", other)) == 2
    assert "records no model fingerprint" in caplog.text


# ------------------------------------------------------------------------------------------------ retry
def test_error_rows_are_retried_on_rerun(setup, tmp_path, capsys):
    """A file that appears after the first run gets its vectors on the rerun and replaces its error row; one that
    is still missing keeps one error row; --no-retry-errors keeps the error rows as they are."""
    from datasets import load_from_disk

    root, ckpt, videos = setup
    late, gone = tmp_path / "late.mp4", tmp_path / "gone.mp4"
    inputs = [*videos, late, gone]
    out = tmp_path / "out"
    args = ["embed", *inputs, "--model", ckpt, "--output", out, "--num-workers", "0", "--no-progress"]
    status, err = cli(capsys, *args)
    assert status == 1 and "2 video(s) embedded, 0 skipped (already done), 2 failed" in err
    shutil.copy(videos[0], late)  # the transient failure goes away

    status, err = cli(capsys, *args)
    assert "1 video(s) embedded, 2 skipped (already done), 1 failed (2 earlier failure(s) retried)" in err
    rows = {r["path"]: r for r in load_from_disk(str(out))}
    assert len(load_from_disk(str(out))) == 4 and sorted(rows) == sorted(map(str, inputs))  # each input once
    assert rows[str(late)]["error"] is None
    np.testing.assert_allclose(rows[str(late)]["video_embeds"], rows[videos[0]]["video_embeds"], atol=1e-5, rtol=0)
    assert "not found" in rows[str(gone)]["error"] and rows[str(gone)]["video_embeds"] is None

    shutil.copy(videos[0], gone)
    status, err = cli(capsys, *args, "--no-retry-errors")
    assert "0 video(s) embedded, 4 skipped (already done), 0 failed;" in err
    assert "not found" in {r["path"]: r for r in load_from_disk(str(out))}[str(gone)]["error"]


# ------------------------------------------------------------------------------------------------ the lock
_WAIT_AND_EMBED = """
import os, sys, time
from xclip_hf.cli import main
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.002)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_two_embeds_into_one_output_one_refuses(setup, tmp_path):
    """Two real processes started at once on one output: one refuses at once naming the other (pid, host), the
    other finishes with every input once, and leaves no lock behind."""
    from datasets import load_from_disk

    root, ckpt, videos = setup
    inputs = []
    for k in range(4):
        inputs.append(str(tmp_path / f"v{k}.mp4"))
        shutil.copy(videos[0], inputs[-1])
    out, go = tmp_path / "out", tmp_path / "go"
    cmd = [sys.executable, "-c", _WAIT_AND_EMBED, str(go), "embed", *inputs, "--model", ckpt, "--output", str(out),
           "--num-workers", "0", "--shard-size", "1", "--no-progress"]
    procs = [subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    finished = {}
    deadline = time.time() + 180
    while len(finished) < 2 and time.time() < deadline:
        for k, proc in enumerate(procs):
            if k not in finished and proc.poll() is not None:
                finished[k] = time.time()
        time.sleep(0.01)
    results = [(proc.wait(), *proc.communicate()) for proc in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, [r[2][-2000:] for r in results]
    winner = next(k for k, r in enumerate(results) if r[0] == 0)
    loser = 1 - winner
    message = results[loser][2]
    assert f"pid {procs[winner].pid} on host {socket.gethostname()!r}" in message, message
    assert "is being written by another embed run" in message
    assert finished[loser] < finished[winner]  # refused at once, while the other was still working
    assert sorted(load_from_disk(str(out))["path"]) == sorted(inputs)
    assert not (out / "_embed.lock").exists()


def _write_lock(directory, **holder):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "_embed.lock"), "w") as f:
        json.dump({"host": socket.gethostname(), "started": "2024-01-01T00:00:00+00:00", "token": "x", **holder}, f)


def test_lock_of_a_live_run_refuses_and_a_stale_one_is_taken_over(setup, tmp_path):
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    live = tmp_path / "live"
    _write_lock(live, pid=os.getpid())
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=rf"pid {os.getpid()} on host {socket.gethostname()!r}"):
        run_embedding(videos, live, ckpt, progress=False)
    assert time.perf_counter() - start < 5  # at once: before the model is loaded
    assert json.load(open(live / "_embed.lock"))["pid"] == os.getpid()  # the live lock is left alone

    remote = tmp_path / "remote"
    _write_lock(remote, pid=1, host="another-host.example")
    with pytest.raises(RuntimeError, match=r"another-host.example.*delete"):
        run_embedding(videos, remote, ckpt, progress=False)

    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()  # a process that has exited: its lock is stale
    stale = tmp_path / "stale"
    _write_lock(stale, pid=exited.pid)
    ds, counts = run_embedding(videos, stale, ckpt, progress=False)
    assert counts.done == 2 and not (stale / "_embed.lock").exists()

    from xclip_hf.jobs.lock import _proc_stat

    reused = tmp_path / "reused"  # a live pid, but not the process that wrote the lock (started at another time)
    _write_lock(reused, pid=os.getpid(), proc_start=_proc_stat(os.getpid())[1] - 1)
    _, counts = run_embedding(videos, reused, ckpt, progress=False)
    assert counts.done == 2


@pytest.mark.distributed
def test_torchrun_ranks_share_the_job_lock(setup, tmp_path):
    """Under torchrun a held lock stops every rank at once (none waits at a barrier); rank 0's lock covers the job."""
    root, ckpt, videos = setup
    out = tmp_path / "out"
    _write_lock(out, pid=os.getpid())
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "xclip_hf.cli", "embed", *videos, "--model", ckpt, "--output", str(out),
                          "--num-workers", "0", "--no-progress"],
                         capture_output=True, text=True, env=child_env(), timeout=120)
    assert run.returncode != 0 and time.perf_counter() - start < 100
    assert run.stderr.count(f"pid {os.getpid()} on host") >= 2, run.stderr[-3000:]  # both ranks say why
