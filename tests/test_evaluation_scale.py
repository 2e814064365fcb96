"""`xclip-hf evaluate` at scale: two processes under torchrun give one process's report (each video once, bad files
listed once, a process with no videos or only bad ones ends with the others), a run killed with SIGKILL resumes to
an uninterrupted run's report, and an output of another model or other settings is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from _helpers_pipeline import make_published_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = ("corrupt.mp4", "empty.mp4")


@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    """test_evaluation's 7 videos, plus a corrupt and a 0-byte file among them (9 entries: odd)."""
    from _helpers_evaluation import make_evalset

    s = make_evalset(tmp_path_factory.mktemp("scale"))
    root = s["root"]
    (root / "videos" / "empty.mp4").write_bytes(b"")
    (root / "videos" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    lines = (root / "val.txt").read_text().splitlines()
    lines[2:2] = ["videos/corrupt.mp4 1"]
    lines[7:7] = ["videos/empty.mp4 3"]
    (root / "mixed.txt").write_text("\n".join(lines) + "\n")
    s["labels"] = str(root / "labels.csv")
    return s


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
                TOKENIZERS_PARALLELISM="false")


def _report(folder):
    return json.loads((folder / "report.json").read_text())


def _stored(folder):
    """(path -> scores or error) of every row committed under `folder/predictions` (all copies), and row count."""
    from datasets import load_from_disk

    shards = folder / "predictions" / "_shards"
    rows, count = {}, 0
    for name in sorted(os.listdir(shards)):
        for row in load_from_disk(str(shards / name)):
            rows[row["path"]] = row["scores"] if row["error"] is None else row["error"]
            count += 1
    return rows, count


def _same_rows(two: dict, one: dict) -> None:
    """The stored rows of a two-process run equal the one-process run's: the same videos, the same scores
    (<= 1e-6), an error where it has one."""
    assert set(two) == set(one)
    for path, value in one.items():
        if isinstance(value, str):
            assert isinstance(two[path], str), path
        else:
            np.testing.assert_allclose(two[path], value, atol=1e-6, rtol=0)


def _same_results(a, b):
    """The report figures and predictions of two runs (scores may differ by float rounding of other batches)."""
    assert a["results"]["predictions"] == b["results"]["predictions"]
    assert a["results"]["confusion_matrix"] == b["results"]["confusion_matrix"]
    for key, value in a["results"]["summary"].items():
        assert b["results"]["summary"][key] == pytest.approx(value, abs=1e-9), key
    assert a["bad_videos"] == b["bad_videos"]


TORCHRUN_SCRIPT = """
import json, os, sys
from xclip_hf.cli import main
from xclip_hf.evaluation.closed_set import evaluate_closed_set
from xclip_hf.evaluation.zero_shot import evaluate_zero_shot

a = json.loads(sys.argv[1])
seen = {}
cli = ["evaluate", "closed-set", "--model", a["model"], "--data", a["mixed"], "--labels", a["labels"],
       "--no-progress", "--num-temporal-clips", "2", "--batch-size", "2", "--shard-size", "1"]
seen["first"] = main(cli + ["--output", a["two"]])
# rerun: the good videos are done; the two bad ones are tried again, one per process (a share of bad videos only)
seen["again"] = main(cli + ["--output", a["two"]])
# zero-shot: 5 videos, the second process's share is the two bad files
seen["zero_shot"] = evaluate_zero_shot(a["model"], a["splits"], a["labels"], output_dir=a["zs_two"], batch_size=2,
                                       progress=False)["results"]
# one video for two processes: the second has none
seen["single"] = evaluate_closed_set(a["model"], a["single"], a["labels"], progress=False)["results"]["predictions"]
try:  # each process stops at its own bad file; both raise the first one's error
    evaluate_closed_set(a["model"], a["mixed"], a["labels"], on_bad_video="raise", progress=False)
    seen["raise"] = None
except ValueError as err:
    seen["raise"] = str(err)
with open(os.path.join(a["out"], "rank%s.json" % os.environ["RANK"]), "w") as f:
    json.dump(seen, f)
"""


@pytest.mark.distributed
def test_two_processes_under_torchrun_match_one(evalset, tmp_path):
    from xclip_hf.evaluation.closed_set import evaluate_closed_set
    from xclip_hf.evaluation.zero_shot import evaluate_zero_shot

    root = evalset["root"]
    (root / "zs1.txt").write_text("videos/v0.mp4 0\nvideos/v1.mp4 1\nvideos/v2.mp4 2\n")
    (root / "zs2.txt").write_text("videos/v1.mp4 1\nvideos/corrupt.mp4 1\nvideos/empty.mp4 3\n")
    (root / "single.txt").write_text("videos/v3.mp4 3\n")
    splits = [str(root / "zs1.txt"), str(root / "zs2.txt")]
    args = {"model": evalset["model"], "mixed": str(root / "mixed.txt"), "labels": evalset["labels"],
            "two": str(tmp_path / "two"), "zs_two": str(tmp_path / "zs_two"), "splits": splits,
            "single": str(root / "single.txt"), "out": str(tmp_path)}
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(TORCHRUN_SCRIPT))
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), json.dumps(args)], capture_output=True, text=True, env=_env(), timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]

    one = evaluate_closed_set(evalset["model"], root / "mixed.txt", evalset["labels"], output_dir=str(tmp_path / "one"),
                              num_temporal_clips=2, batch_size=2, progress=False)
    _same_results(one, _report(tmp_path / "two"))
    assert one["bad_videos"]["count"] == 2 and sorted(os.path.basename(b["video"]) for b in one["bad_videos"]["videos"]) \
        == sorted(BAD)
    assert one["results"]["summary"]["num_videos"] == 7
    # each video scored by one process: rows of both processes, 9 videos once + the 2 bad ones tried again
    shards = os.listdir(tmp_path / "two" / "predictions" / "_shards")
    assert {n.split("-")[0] for n in shards} == {"rank0", "rank1"}
    rows_two, count = _stored(tmp_path / "two")
    rows_one, _ = _stored(tmp_path / "one")
    assert count == 9 + 2
    _same_rows(rows_two, rows_one)
    assert not (tmp_path / "two" / "predictions" / "_evaluate.lock").exists()  # rank 0 took the lock, released it

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    zero_shot = evaluate_zero_shot(evalset["model"], splits, evalset["labels"], output_dir=str(tmp_path / "zs_one"),
                                   batch_size=2, progress=False)
    single = evaluate_closed_set(evalset["model"], root / "single.txt", evalset["labels"], progress=False)
    for seen in ranks:  # every process reached the same end with the same results
        assert seen["first"] == seen["again"] == 0
        assert seen["zero_shot"] == zero_shot["results"]
        assert seen["single"] == single["results"]["predictions"]
        assert "corrupt.mp4" in seen["raise"] and "on_bad_video='skip'" in seen["raise"]
    assert _report(tmp_path / "zs_two")["bad_videos"] == zero_shot["bad_videos"]
    assert sorted(os.path.basename(b["video"]) for b in zero_shot["bad_videos"]["videos"]) == sorted(BAD)
    (rows_two, count), (rows_one, _) = _stored(tmp_path / "zs_two"), _stored(tmp_path / "zs_one")
    assert count == 5
    _same_rows(rows_two, rows_one)


@pytest.mark.slow
def test_resume_after_kill_counts_each_video_once(evalset, tmp_path):
    from xclip_hf.evaluation.closed_set import evaluate_closed_set

    root = evalset["root"]
    lines = []
    for k in range(24):  # copies: distinct inputs, cheap to write; the bad files among them
        shutil.copy(evalset["videos"][k % 7], tmp_path / f"c{k:02d}.mp4")
        lines.append(f"c{k:02d}.mp4 {evalset['references'][k % 7]}")
    shutil.copy(root / "videos" / "corrupt.mp4", tmp_path / "corrupt.mp4")
    shutil.copy(root / "videos" / "empty.mp4", tmp_path / "empty.mp4")
    lines[1:1], lines[20:20] = ["corrupt.mp4 1"], ["empty.mp4 2"]
    (tmp_path / "data.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "xclip_hf.cli", "evaluate", "closed-set", "--model",
                             evalset["model"], "--data", str(tmp_path / "data.txt"), "--labels", evalset["labels"],
                             "--output", str(out), "--shard-size", "1", "--no-progress"],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / "predictions" / "_shards"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (
            shards.is_dir() and any(n.startswith("rank") for n in os.listdir(shards))):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "report.json").exists(), "the run finished before it was killed: the test proved nothing"
    done_before = [p for n in os.listdir(shards) if n.startswith("rank")
                   for p in json.loads((shards / n / "videos.json").read_text())]
    assert 0 < len(done_before) < len(lines)
    bad_before = sum(os.path.basename(p) in BAD for p in done_before)  # tried again by the rerun

    resumed = evaluate_closed_set(evalset["model"], tmp_path / "data.txt", evalset["labels"], output_dir=str(out),
                                  progress=False)
    whole = evaluate_closed_set(evalset["model"], tmp_path / "data.txt", evalset["labels"], progress=False)
    _same_results(whole, resumed)
    assert _report(out)["results"] == resumed["results"]
    assert resumed["results"]["summary"]["num_videos"] == 24 and resumed["bad_videos"]["count"] == 2
    assert len({p["video"] for p in resumed["results"]["predictions"]}) == 24
    # the rerun scored only what the killed run had not committed (bad files, failed, are tried again)
    _, count = _stored(out)
    assert count == len(lines) + bad_before


def test_other_model_or_settings_are_refused(evalset, tmp_path, capsys):
    from xclip_hf.cli import main
    from xclip_hf.evaluation.closed_set import evaluate_closed_set

    root, out = evalset["root"], tmp_path / "out"
    first = evaluate_closed_set(evalset["model"], root / "val.txt", evalset["labels"], output_dir=str(out),
                                progress=False)
    other = make_published_checkpoint(tmp_path / "other", seed=5)
    with pytest.raises(ValueError, match="another model"):
        evaluate_closed_set(other, root / "val.txt", evalset["labels"], output_dir=str(out), progress=False)
    names = [line.split(",", 1)[1] for line in (root / "labels.csv").read_text().splitlines()[1:]]
    (tmp_path / "relabelled.csv").write_text("id,name\n" + "".join(f"{k},{n}\n" for k, n in enumerate(names[::-1])))
    with pytest.raises(ValueError, match="class_names"):
        evaluate_closed_set(evalset["model"], root / "val.txt", str(tmp_path / "relabelled.csv"), output_dir=str(out),
                            progress=False)
    with pytest.raises(ValueError, match="template: '{}' -> 'a video of {}'"):
        evaluate_closed_set(evalset["model"], root / "val.txt", evalset["labels"], output_dir=str(out),
                            template="a video of {}", progress=False)
    with pytest.raises(ValueError, match="data_file"):
        evaluate_closed_set(evalset["model"], root / "mixed.txt", evalset["labels"], output_dir=str(out),
                            progress=False)
    assert main(["evaluate", "closed-set", "--model", evalset["model"], "--data", str(root / "val.txt"), "--labels",
                 evalset["labels"], "--output", str(out), "--num-temporal-clips", "2", "--no-progress"]) != 0
    assert "num_temporal_clips: 1 -> 2" in capsys.readouterr().err
    assert _report(out)["results"] == first["results"]  # nothing was overwritten
    again = evaluate_closed_set(evalset["model"], root / "val.txt", evalset["labels"], output_dir=str(out),
                                progress=False)  # the refused runs released the lock; same settings resume
    assert again["results"] == first["results"]
