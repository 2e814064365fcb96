"""`xclip-hf` command line: classify (table, JSON, labels file, errors) and info (variant, parameters, FLOPs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xclip_hf.cli import main

from _helpers_pipeline import LABELS, make_our_checkpoint, write_videos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {"model": make_our_checkpoint(root / "model"), "videos": write_videos(str(root)), "root": root}


def test_classify_json_and_table(setup, capsys):
    videos = setup["videos"]
    code = main(["classify", *videos, "--labels", ",".join(LABELS), "--model", setup["model"], "--top-k", "3",
                 "--json", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    results = json.loads(out)
    assert [r["video"] for r in results] == videos
    for r in results:
        assert len(r["predictions"]) == 3
        scores = [p["score"] for p in r["predictions"]]
        assert scores == sorted(scores, reverse=True)
        assert all(p["label"] in LABELS for p in r["predictions"])

    code = main(["classify", *videos, "--labels", ",".join(LABELS), "--model", setup["model"], "--no-progress"])
    table = capsys.readouterr().out
    assert code == 0
    best = results[0]["predictions"][0]
    assert videos[0] in table and f"1  {best['label']}" in table and f"{best['score']:.4f}" in table
    assert table.count("\n  ") >= 2 * len(LABELS)  # one row per label per video


def test_classify_labels_file_and_errors(setup, tmp_path, capsys):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("\n".join(LABELS[:3]) + "\n\n")
    mp4 = setup["videos"][0]
    assert main(["classify", mp4, "--labels-file", str(labels_file), "--model", setup["model"], "--json",
                 "--no-progress"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert {p["label"] for p in results[0]["predictions"]} == set(LABELS[:3])

    missing = str(tmp_path / "missing.mp4")
    assert main(["classify", mp4, missing, "--labels", "a,b", "--model", setup["model"]]) == 1  # a file: runtime
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["classify", mp4, "--labels", "a,,b", "--model", setup["model"]]) == 2
    assert "empty label" in capsys.readouterr().err
    assert main(["classify", mp4, "--labels", "a,b,a", "--model", setup["model"]]) == 2
    assert "duplicates" in capsys.readouterr().err

    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"not a video at all" * 50)
    code = main(["classify", mp4, str(corrupt), "--labels", "a,b", "--model", setup["model"], "--json",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    results = json.loads(captured.out)
    assert "predictions" in results[0] and "broken.mp4" in results[1]["error"]
    assert "1 of 2" in captured.err


def test_info_variant_and_checkpoint(setup, capsys):
    assert main(["info", "xclip-base-patch32", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["variant"] == "xclip-base-patch32" and summary["num_frames"] == 8
    assert abs(summary["gflops_per_view"] - 39) / 39 < 0.01  # paper Tab. 1: 39 GFLOPs for B/32-8f
    assert 100e6 < summary["parameters"] < 250e6

    assert main(["info", "--model", setup["model"]]) == 0
    text = capsys.readouterr().out
    assert "xclip-tiny" in text and "FLOPs per view" in text and "parameters" in text

    assert main(["info", str(setup["root"] / "no-such-model")]) == 1
    assert "no-such-model" in capsys.readouterr().err


@pytest.mark.slow
def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "xclip_hf.cli", "info", "xclip-tiny"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "xclip-tiny" in proc.stdout


@pytest.mark.parametrize("command", ["embed", "search"])
def test_no_progress_hides_the_weight_loading_bar(setup, tmp_path, monkeypatch, capsys, command):
    """On a terminal transformers draws its "Loading weights" bar; `--no-progress` hides it in embed and search."""
    import io

    from xclip_hf import embed_videos

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    video = setup["videos"][0]
    index = tmp_path / "index"
    if command == "search":
        embed_videos([video], index, setup["model"], progress=False)
    outputs = iter(range(10))

    def stderr_of(*extra):
        argv = (["embed", video, "--model", setup["model"], "--output", str(tmp_path / f"out{next(outputs)}"),
                 "--num-workers", "0"] if command == "embed" else ["search", str(index), "cooking", "--model",
                                                                   setup["model"]])
        terminal = Terminal()
        with monkeypatch.context() as m:
            m.setattr(sys, "stdout", Terminal())
            m.setattr(sys, "stderr", terminal)
            assert main(argv + list(extra)) == 0
        return terminal.getvalue()

    assert "Loading weights" in stderr_of()  # the control: on a terminal the bar is drawn
    assert "Loading weights" not in stderr_of("--no-progress")
