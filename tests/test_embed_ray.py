"""`embed --engine ray` on a local Ray cluster: the one-process rows (of files, a dataset, a streaming dataset and
webdataset shards), one store shared with the accelerate engine, an actor killed mid-run, the driver killed and rerun
(over files and over a stream), bad files and samples and a crashing decoder as error rows."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from _helpers_embed import cli, kill_after_first_shard, setup, tar_shards  # noqa: E402,F401 (setup: the fixture)
from _helpers_pipeline import make_our_checkpoint  # noqa: E402

# the hooks below run inside Ray's workers, which cannot import this test module: they travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the module (its address: other drivers join it)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")  # never a running one
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _copies(source, directory, count, stem="v"):
    """``count`` copies of one video (distinct inputs, cheap to write)."""
    paths = []
    for k in range(count):
        paths.append(str(directory / f"{stem}{k:02d}{os.path.splitext(source)[1]}"))
        shutil.copy(source, paths[-1])
    return paths


def _rows(dataset):
    """Rows by (path, start) rounded: the same windows of two runs meet."""
    return {(r["path"], round(r["start_s"], 6)): r for r in dataset}


def _assert_same_rows(got, want, columns=("video_embeds",)):
    """Same rows (path, start, end, error or not) and vectors within 1e-5."""
    got, want = _rows(got), _rows(want)
    assert sorted(got) == sorted(want)
    for key, row in want.items():
        assert got[key]["end_s"] == (None if row["end_s"] is None else pytest.approx(row["end_s"]))
        assert (got[key]["error"] is None) == (row["error"] is None), (key, got[key]["error"], row["error"])
        for column in columns if row["error"] is None else ():
            np.testing.assert_allclose(got[key][column], row[column], atol=1e-5, rtol=0)


def _shard_videos(out):
    """Every input of every committed shard (a video committed twice appears twice)."""
    shards = out / "_shards"
    return [p for n in sorted(os.listdir(shards)) if n.startswith("rank")
            for p in json.load(open(shards / n / "videos.json"))]


def _pid_then_slow(pid_file, seconds, module, args):
    """Forward pre-hook of the model inside its actor: write the actor's pid, then take ``seconds``."""
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def _crash_on(name, produce, item):
    """A producer whose decoder kills its process (SIGSEGV) on inputs named ``name``."""
    if os.path.basename(str(item)).startswith(name):
        os.kill(os.getpid(), signal.SIGSEGV)
    yield from produce(item)


def test_ray_options_are_checked(setup, tmp_path, capsys):
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    for kwargs, message in (({"engine": "spark"}, "engine must be one of"),
                            ({"num_actors": 2}, "num_actors are options of engine='ray'"),
                            ({"engine": "ray", "num_actors": 0}, "num_actors must be an integer >= 1"),
                            ({"engine": "ray", "cpus_per_actor": 0}, "cpus_per_actor must be a number > 0"),
                            ({"engine": "ray", "gpus_per_actor": -1}, "gpus_per_actor must be a number >= 0"),
                            ({"engine": "ray", "device": "cpu"}, "the actors' device follows gpus_per_actor")):
        with pytest.raises(ValueError, match=message):
            run_embedding(videos, tmp_path / "out", ckpt, progress=False, **kwargs)
    assert not (tmp_path / "out").exists()
    status, err = cli(capsys, "embed", *videos, "--model", ckpt, "--output", tmp_path / "o", "--num-actors", "2")
    assert status == 2 and "--num-actors needs --engine ray" in err
    status, err = cli(capsys, "embed", *videos, "--model", ckpt, "--output", tmp_path / "o", "--engine", "ray",
                      "--device", "cpu")
    assert status == 2 and "--device is the accelerate engine's" in err


@pytest.mark.slow  # a Ray job starts in ~8 s
def test_ray_rows_equal_one_process_rows_and_bad_files_are_error_rows(setup, cluster, tmp_path, capsys):
    """`embed --engine ray` (windows, every vector column) gives the one-process rows within 1e-5; a missing, an
    empty and a corrupt file are error rows as there."""
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    missing, empty, corrupt = tmp_path / "missing.mp4", tmp_path / "empty.mp4", tmp_path / "corrupt.mp4"
    empty.write_bytes(b"")
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    inputs = [videos[0], str(missing), str(empty), str(corrupt), videos[1]]
    options = ["--chunk-length", "0.2", "--batch-size", "3", "--save-context", "--save-frame-embeds", "--no-progress"]
    status, err = cli(capsys, "embed", *inputs, "--model", ckpt, "--output", tmp_path / "ray", "--engine", "ray",
                      "--num-actors", "1", "--shard-size", "2", *options)
    assert status == 1, err  # some inputs failed, the run finished
    assert "2 video(s) embedded, 0 skipped (already done), 3 failed" in err
    want, _ = run_embedding(inputs, tmp_path / "one", ckpt, chunk_length_s=0.2, batch_size=2, save_context=True,
                            save_frame_embeds=True, num_workers=0, progress=False)
    from datasets import load_from_disk

    got = load_from_disk(str(tmp_path / "ray"))
    assert len(got) == len(want) > 5  # windows
    _assert_same_rows(got, want, ("video_embeds", "frame_embeds", "video_context"))
    errors = {r["path"]: r["error"] for r in got if r["error"] is not None}
    assert sorted(errors) == sorted(map(str, (missing, empty, corrupt)))
    assert "not found" in errors[str(missing)] and "empty" in errors[str(empty)]
    assert str(corrupt) in errors[str(corrupt)]
    assert json.load(open(tmp_path / "ray" / "_embed_config.json")) == \
        json.load(open(tmp_path / "one" / "_embed_config.json"))  # one job config for both engines


def test_ray_refuses_streams_it_cannot_read_in_parallel(setup, tmp_path):
    """A stream whose rows are named by row number (bytes, no id column) and http(s) webdataset shards are refused
    on Ray before any work (the lock, the model), naming the source and the way out."""
    from datasets import Dataset

    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    saved = tmp_path / "bytes"
    Dataset.from_dict({"clip": [open(v, "rb").read() for v in videos[:2]]}).save_to_disk(str(saved))
    with pytest.raises(ValueError, match=r"engine='ray' cannot read dataset .* names its rows by row number .* "
                                         r"--id-column"):
        run_embedding(dataset=str(saved), video_column="clip", streaming=True, output_dir=tmp_path / "o1",
                      model=ckpt, engine="ray", progress=False)
    with pytest.raises(ValueError, match=r"engine='ray' cannot read webdataset .*not http\(s\)"):
        run_embedding(webdataset="http://127.0.0.1:9/shard-{000..001}.tar", output_dir=tmp_path / "o2", model=ckpt,
                      engine="ray", progress=False)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.slow  # a Ray job starts in ~8 s
def test_ray_reads_a_dataset_of_bytes(setup, cluster, tmp_path):
    """A saved Hugging Face dataset of video bytes (ids from a column) on Ray gives the one-process rows."""
    from datasets import Dataset

    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    saved = tmp_path / "bytes"
    Dataset.from_dict({"clip": [open(v, "rb").read() for v in videos[:2]], "key": ["k-a", "k-b"]}).save_to_disk(
        str(saved))
    options = dict(dataset=str(saved), video_column="clip", id_column="key", progress=False)
    got, _ = run_embedding(output_dir=tmp_path / "ray", model=ckpt, engine="ray", num_actors=1, **options)
    want, _ = run_embedding(output_dir=tmp_path / "one", model=ckpt, **options)
    assert sorted(got["path"]) == ["k-a", "k-b"]
    _assert_same_rows(got, want)


@pytest.mark.slow  # a Ray job starts in ~8 s
def test_ray_reads_a_streaming_dataset_as_one_process_does(setup, cluster, tmp_path):
    """A streaming Hugging Face dataset (a parquet folder of bytes, ids from a column) read by Ray Data gives the
    one-process rows within 1e-5 (windows), a corrupt sample an error row as there; a rerun skips every id done
    and retries the error row."""
    from datasets import Dataset

    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    data = [open(v, "rb").read() for v in videos]
    Dataset.from_dict({"video": [data[0], b"not a video" * 40, data[1]], "id": ["s-a", "s-bad", "s-b"]}).to_parquet(
        str(parquet / "train.parquet"))
    options = dict(dataset=str(parquet), id_column="id", streaming=True, chunk_length_s=0.2, progress=False)
    got, counts = run_embedding(output_dir=tmp_path / "ray", model=ckpt, engine="ray", batch_size=3, **options)
    want, _ = run_embedding(output_dir=tmp_path / "one", model=ckpt, **options)
    assert (counts.done, counts.skipped, counts.failed) == (2, 0, 1)
    assert len(got) == len(want) > 3  # windows
    _assert_same_rows(got, want)
    assert [r["error"] is not None for r in got if r["path"] == "s-bad"] == [True]
    again, counts = run_embedding(output_dir=tmp_path / "ray", model=ckpt, engine="ray", **options)
    assert (counts.done, counts.skipped, counts.failed, counts.retried) == (0, 2, 1, 1)
    assert sorted(_shard_videos(tmp_path / "ray")) == ["s-a", "s-b", "s-bad", "s-bad"]  # only the error row again
    _assert_same_rows(again, want)


@pytest.mark.slow  # a Ray job starts in ~8 s
def test_ray_reads_webdataset_shards_as_one_process_does(setup, cluster, tmp_path, capsys):
    """webdataset shards (a brace pattern, `--webdataset` on the command line) read by Ray Data give the
    one-process rows, a sample without a video member and one of corrupt bytes error rows as there; an unreadable
    shard stops the run naming the source, and the lock is released."""
    from datasets import load_from_disk

    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    data = [open(v, "rb").read() for v in videos]
    shards = tar_shards(str(tmp_path / "wds"), [
        {"__key__": "w-a", "mp4": data[0]}, {"__key__": "w-text", "txt": b"no video here"},
        {"__key__": "w-b", "webm": data[1], "json": b"{}"}, {"__key__": "w-bad", "mp4": b"not a video" * 40},
        {"__key__": "w-c", "mp4": data[0]}], per_shard=2)
    pattern = str(tmp_path / "wds" / "shard-{000..002}.tar")
    status, err = cli(capsys, "embed", "--webdataset", pattern, "--model", ckpt, "--output", tmp_path / "ray",
                      "--engine", "ray", "--batch-size", "2", "--no-progress")
    assert status == 1, err  # some samples failed, the run finished
    assert "3 video(s) embedded, 0 skipped (already done), 2 failed" in err
    want, _ = run_embedding(webdataset=pattern, output_dir=tmp_path / "one", model=ckpt, progress=False)
    got = load_from_disk(str(tmp_path / "ray"))
    _assert_same_rows(got, want)
    errors = {r["path"]: r["error"] for r in got if r["error"] is not None}
    assert sorted(errors) == ["w-bad", "w-text"] and "has no video member" in errors["w-text"]

    with open(shards[1], "r+b") as f:  # the middle shard's tar headers destroyed
        f.write(b"\xff" * 1024)
    with pytest.raises(RuntimeError, match=r"Ray stopped reading webdataset .*run the same command again"):
        run_embedding(webdataset=pattern, output_dir=tmp_path / "broken", model=ckpt, engine="ray", progress=False)
    assert not (tmp_path / "broken" / "_embed.lock").exists() and not (tmp_path / "broken" / "state.json").exists()


@pytest.mark.slow  # a Ray job starts in ~8 s
def test_ray_and_accelerate_resume_each_other_or_refuse(setup, cluster, tmp_path):
    """An accelerate output resumed by Ray and a Ray output resumed by accelerate: each input once, the same rows;
    other settings or another model are refused in both directions before anything is written."""
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    inputs = _copies(videos[0], tmp_path, 2, "a") + _copies(videos[1], tmp_path, 2, "b")
    reference, _ = run_embedding(inputs, tmp_path / "ref", ckpt, num_workers=0, progress=False)
    first, second = tmp_path / "acc-then-ray", tmp_path / "ray-then-acc"
    run_embedding(inputs[::2], first, ckpt, num_workers=0, progress=False)
    ds, counts = run_embedding(inputs, first, ckpt, engine="ray", progress=False)
    assert (counts.done, counts.skipped, counts.failed) == (2, 2, 0)
    run_embedding(inputs[::2], second, ckpt, engine="ray", shard_size=1, progress=False)
    ds2, counts2 = run_embedding(inputs, second, ckpt, num_workers=0, progress=False)
    assert (counts2.done, counts2.skipped, counts2.failed) == (2, 2, 0)
    for out, merged in ((first, ds), (second, ds2)):
        assert sorted(_shard_videos(out)) == sorted(inputs)  # each input committed once
        _assert_same_rows(merged, reference)

    other = make_our_checkpoint(tmp_path / "other", seed=1)
    for out, engine in ((first, "ray"), (second, "accelerate")):
        before = sorted(os.listdir(out / "_shards"))
        with pytest.raises(ValueError, match=r"other settings \(save_dtype: 'float32' -> 'float16'\)"):
            run_embedding(inputs, out, ckpt, engine=engine, save_dtype="float16", progress=False)
        with pytest.raises(ValueError, match="holds rows of another model"):
            run_embedding(inputs, out, other, engine=engine, progress=False)
        assert sorted(os.listdir(out / "_shards")) == before


@pytest.mark.slow
def test_actor_killed_mid_run_loses_and_duplicates_nothing(setup, cluster, tmp_path):
    """The model actor killed by SIGKILL after the first committed shard: Ray restarts it, the job ends with every
    input once, no error row, the one-process vectors."""
    from xclip_hf import XClipModel, XClipProcessor
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    inputs = _copies(videos[0], tmp_path, 6)
    out, pid_file = tmp_path / "out", tmp_path / "actor.pid"
    model, processor = XClipModel.from_pretrained(ckpt).eval(), XClipProcessor.from_pretrained(ckpt)
    model.vision_model.register_forward_pre_hook(functools.partial(_pid_then_slow, str(pid_file), 0.3))
    killed = {}

    def kill_after_first_shard():
        deadline = time.time() + 120
        while not (pid_file.exists() and (out / "_shards").is_dir()
                   and any(n.startswith("rank") for n in os.listdir(out / "_shards"))):
            if time.time() > deadline or (out / "state.json").exists():
                return
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        import psutil

        assert "ModelActor" in " ".join(psutil.Process(pid).cmdline())  # never anything but our actor
        killed.update(pid=pid, finished=(out / "state.json").exists())
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_shard)
    killer.start()
    ds, counts = run_embedding(inputs, out, model, processor=processor, engine="ray", chunk_length_s=0.2,
                               batch_size=1, shard_size=1, progress=False)
    killer.join()
    assert killed and not killed["finished"], "the run finished before the kill: the test proved nothing"
    assert int(pid_file.read_text()) != killed["pid"]  # a restarted actor embedded the rest
    assert (counts.done, counts.failed) == (len(inputs), 0)
    assert sorted(_shard_videos(out)) == sorted(inputs)  # every input committed exactly once
    reference, _ = run_embedding(inputs[:1], tmp_path / "ref", ckpt, chunk_length_s=0.2, num_workers=0,
                                 progress=False)
    want = [r["video_embeds"] for r in reference]
    for path in inputs:
        got = [r["video_embeds"] for r in ds if r["path"] == path]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_driver_killed_then_rerun_gives_each_input_once(setup, cluster, tmp_path):
    """The driver (`xclip-hf embed --engine ray` joining the cluster) killed by SIGKILL after its first shard; the
    rerun takes over its lock, skips what it committed and ends with every input once."""
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    inputs = _copies(videos[0], tmp_path, 16)
    out = tmp_path / "out"
    kill_after_first_shard(["embed", *inputs, "--model", ckpt, "--output", out, "--engine", "ray", "--ray-address",
                            cluster, "--chunk-length", "0.1", "--shard-size", "1", "--batch-size", "1", "--no-progress"],
                           out, wait_s=150)
    assert not (out / "state.json").exists(), "the run finished before it was killed: the test proved nothing"
    done_before = len(_shard_videos(out))
    assert 0 < done_before < len(inputs)

    ds, counts = run_embedding(inputs, out, ckpt, engine="ray", chunk_length_s=0.1, shard_size=8, progress=False)
    assert (counts.skipped, counts.done, counts.failed) == (done_before, len(inputs) - done_before, 0)
    assert sorted(_shard_videos(out)) == sorted(inputs)  # no duplicates, no gaps
    assert sorted(set(ds["path"])) == sorted(inputs)
    assert not any(n.startswith(".tmp") for n in os.listdir(out / "_shards")) and not (out / "_embed.lock").exists()


@pytest.mark.slow
def test_driver_killed_over_a_stream_then_rerun_gives_each_sample_once(setup, cluster, tmp_path):
    """Over webdataset shards (a stream: no known length), the driver killed by SIGKILL after its first shard; the
    rerun skips the committed samples by id without embedding them again and ends with every sample once."""
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    keys = [f"k{k:02d}" for k in range(16)]
    data = open(videos[0], "rb").read()
    tar_shards(str(tmp_path / "wds"), [{"__key__": key, "mp4": data} for key in keys], per_shard=4)
    pattern, out = str(tmp_path / "wds" / "shard-{000..003}.tar"), tmp_path / "out"
    kill_after_first_shard(["embed", "--webdataset", pattern, "--model", ckpt, "--output", out, "--engine", "ray",
                            "--ray-address", cluster, "--chunk-length", "0.1", "--shard-size", "1", "--batch-size",
                            "1", "--no-progress"], out, wait_s=150)
    assert not (out / "state.json").exists(), "the run finished before it was killed: the test proved nothing"
    done_before = _shard_videos(out)
    assert 0 < len(done_before) < len(keys)

    ds, counts = run_embedding(webdataset=pattern, output_dir=out, model=ckpt, engine="ray", chunk_length_s=0.1,
                               shard_size=8, progress=False)
    assert (counts.skipped, counts.done, counts.failed) == (len(done_before), len(keys) - len(done_before), 0)
    assert sorted(_shard_videos(out)) == keys  # no duplicates, no gaps
    assert sorted(set(ds["path"])) == keys and ds["error"] == [None] * len(ds)
    assert not any(n.startswith(".tmp") for n in os.listdir(out / "_shards")) and not (out / "_embed.lock").exists()


@pytest.mark.slow
def test_a_decoder_that_kills_its_task_becomes_an_error_row(setup, cluster, tmp_path):
    """A reading task killed by its decoder on every try: that video is one error row, the others are embedded."""
    from xclip_hf import XClipModel, XClipProcessor
    from xclip_hf.corpus.loader import WindowPlan, window_rows
    from xclip_hf.corpus.ray_engine import LOST, RayOptions, embedded_rows

    root, ckpt, videos = setup
    inputs = [videos[0], *_copies(videos[0], tmp_path, 1, "crash"), videos[1]]
    model, processor = XClipModel.from_pretrained(ckpt).eval(), XClipProcessor.from_pretrained(ckpt)
    produce = functools.partial(_crash_on, "crash", functools.partial(
        window_rows, processor=processor.video_processor, plan=WindowPlan(3)))
    rows = list(embedded_rows(inputs, inputs, produce, model, RayOptions(), 2, ["video_embeds"], "float32"))
    assert all(row["last"] for row, _ in rows)  # whole videos: one row each
    by_path = {row["path"]: (row, vectors) for row, vectors in rows}
    assert sorted(by_path) == sorted(inputs) and len(rows) == 3
    assert by_path[inputs[1]][0]["error"] == LOST and by_path[inputs[1]][1] is None
    for path in (videos[0], videos[1]):
        assert by_path[path][0]["error"] is None and by_path[path][1]["video_embeds"].shape == (16,)


def _crash_on_id(name, produce, item):
    """A producer whose decoder kills its process (SIGSEGV) on the source item of id ``name``."""
    from xclip_hf.corpus.sources import item_id

    if item_id(item) == name:
        os.kill(os.getpid(), signal.SIGSEGV)
    yield from produce(item)


@pytest.mark.slow
def test_a_decoder_that_kills_its_task_over_a_stream_becomes_an_error_row(setup, cluster, tmp_path):
    """Over webdataset shards (one reading task for three samples), a decoder that kills its task: Ray runs the
    task again, that sample becomes one error row and the others are embedded, each once."""
    from xclip_hf import XClipModel, XClipProcessor
    from xclip_hf.corpus.loader import WindowPlan, window_rows
    from xclip_hf.corpus.ray_engine import RayOptions, StreamRows
    from xclip_hf.corpus.sources import open_source

    root, ckpt, videos = setup
    data = open(videos[0], "rb").read()
    tar_shards(str(tmp_path / "wds"), [{"__key__": key, "mp4": data} for key in ("a", "crash", "b")], per_shard=3)
    model, processor = XClipModel.from_pretrained(ckpt).eval(), XClipProcessor.from_pretrained(ckpt)
    produce = functools.partial(_crash_on_id, "crash", functools.partial(
        window_rows, processor=processor.video_processor, plan=WindowPlan(3)))
    source = open_source(webdataset=str(tmp_path / "wds" / "shard-000.tar"))
    rows = list(StreamRows(source, {}, None, produce, model, RayOptions(), 2, ["video_embeds"], "float32"))
    by_path = {row["path"]: (row, vectors) for row, vectors in rows}
    assert sorted(by_path) == ["a", "b", "crash"] and len(rows) == 3
    assert by_path["crash"][0]["error"].startswith("DecoderCrash: the reading task died while decoding this video")
    assert by_path["crash"][1] is None
    for key in ("a", "b"):
        assert by_path[key][0]["error"] is None and by_path[key][1]["video_embeds"].shape == (16,)


def _reject(module, args):
    """Forward pre-hook of a model that refuses every batch."""
    raise ValueError("this model refuses every video")


@pytest.mark.slow  # a Ray job starts in ~8 s
def test_a_model_failure_stops_the_run_naming_the_videos(setup, cluster, tmp_path):
    """The model raising inside its actor stops the run (as in one process) with the error and the videos' names;
    what was committed stays for a rerun."""
    from xclip_hf import XClipModel, XClipProcessor
    from xclip_hf.corpus.embed import run_embedding

    root, ckpt, videos = setup
    model, processor = XClipModel.from_pretrained(ckpt).eval(), XClipProcessor.from_pretrained(ckpt)
    model.vision_model.register_forward_pre_hook(_reject)
    with pytest.raises(ValueError, match=r"the model failed on the processed videos \[.*clip_a.mp4.*this model "
                                         "refuses every video"):
        run_embedding(videos[:1], tmp_path / "out", model, processor=processor, engine="ray", progress=False)
    assert not (tmp_path / "out" / "_embed.lock").exists()
