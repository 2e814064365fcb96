"""Few-shot protocol: K-shot lists exactly K per class, identical for a seed and different for another, the exact
training commands, and the evaluation table."""

from __future__ import annotations

import shlex

import pytest


def _train_file(tmp_path, per_class=(5, 6, 7)):
    lines = [f"videos/c{c}_{i}.mp4 {c}" for c, n in enumerate(per_class) for i in range(n)]
    (tmp_path / "videos").mkdir()
    for line in lines:
        (tmp_path / line.split()[0]).write_bytes(b"x")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.csv").write_text("id,name\n0,a\n1,b\n2,c\n")
    return tmp_path / "train.txt", str(tmp_path / "labels.csv")


def _read(path):
    return [line.rsplit(" ", 1) for line in open(path).read().splitlines()]


def test_k_shot_lists_exact_seeded_and_commands(tmp_path):
    from xclip_hf.evaluation.few_shot import prepare_few_shot, write_k_shot_lists

    train, labels = _train_file(tmp_path)
    lists = write_k_shot_lists(train, labels, [2, 4], tmp_path / "a", seed=0)
    again = write_k_shot_lists(train, labels, [2, 4], tmp_path / "b", seed=0)
    other = write_k_shot_lists(train, labels, [2, 4], tmp_path / "c", seed=1)
    for k, path in lists.items():
        rows = _read(path)
        assert sorted(int(label) for _, label in rows) == sorted([0, 1, 2] * k)  # exactly K per class
        assert len({video for video, _ in rows}) == len(rows) and all(v.startswith("/") for v, _ in rows)
        assert all(f"/c{label}_" in video for video, label in rows)  # each video keeps its own label
        assert open(path).read() == open(again[k]).read()
    assert any(open(lists[k]).read() != open(other[k]).read() for k in lists)
    with pytest.raises(ValueError, match="class 0 .* has 5 videos, fewer than k=6"):
        write_k_shot_lists(train, labels, [6], tmp_path / "d")

    plan = prepare_few_shot(train, tmp_path / "val.txt", labels, [2], str(tmp_path / "run"),
                            ["--model_name_or_path", "some/model"], seed=3)
    cmd = plan["commands"][2]
    assert cmd[1:3] == ["-m", "xclip_hf.training.run_video_classification"]  # the package's, from any folder
    assert cmd[cmd.index("--train_file") + 1] == plan["lists"][2]
    for flag, value in (("--learning_rate", "2e-06"), ("--num_train_epochs", "50"), ("--seed", "3"),
                        ("--per_device_train_batch_size", "64"), ("--num_temporal_clips", "1"),
                        ("--output_dir", plan["models"][2]), ("--model_name_or_path", "some/model")):
        assert cmd[cmd.index(flag) + 1] == value
    assert " ".join(shlex.quote(a) for a in cmd) in open(plan["script"]).read()


def test_few_shot_evaluation_table(tmp_path):
    from _helpers_evaluation import make_evalset

    from xclip_hf.evaluation.closed_set import evaluate_closed_set
    from xclip_hf.evaluation.few_shot import evaluate_few_shot

    s = make_evalset(tmp_path)
    report = evaluate_few_shot({2: s["model"], 4: s["model"]}, s["root"] / "val.txt", str(s["root"] / "labels.csv"),
                               output_dir=str(tmp_path / "out"))
    single = evaluate_closed_set(s["model"], s["root"] / "val.txt", str(s["root"] / "labels.csv"))
    table = report["results"]["splits"]
    assert list(table) == ["K=2", "K=4"]
    assert table["K=2"]["top1"] == table["K=4"]["top1"] == single["results"]["summary"]["top1"]
    assert "| K=2 |" in (tmp_path / "out" / "report.md").read_text()


def test_cli_few_shot_writes_lists_and_commands_first(tmp_path, capsys):
    from xclip_hf.cli import main

    train, labels = _train_file(tmp_path)
    out = tmp_path / "out"
    assert main(["evaluate", "few-shot", "--model", str(tmp_path),
                 "--data", str(train), "--train-file", str(train), "--labels", labels, "--k", "2", "3",
                 "--output", str(out)]) == 0
    assert "no trained model yet" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["commands.sh", "train_2shot_seed0.txt", "train_3shot_seed0.txt"]


def test_cli_few_shot_decoding_workers_give_the_same_scores(tmp_path):
    """`evaluate few-shot --num-workers 2` (as closed-set) scores every video of the trained K-shot model as
    in-process reading does."""
    import shutil

    from _helpers_evaluation import assert_same_scores, make_evalset, stored_scores

    from xclip_hf.cli import main

    s = make_evalset(tmp_path / "set")
    val, labels = str(s["root"] / "val.txt"), str(s["root"] / "labels.csv")
    scores = {}
    for workers in ("0", "2"):
        out = tmp_path / f"workers{workers}"
        shutil.copytree(s["model"], out / "model_1shot_seed0")  # the model `--train` would have written
        assert main(["evaluate", "few-shot", "--model", s["model"], "--train-file", val, "--data", val,
                     "--labels", labels, "--k", "1", "--output", str(out), "--no-progress",
                     "--num-workers", workers]) == 0
        scores[workers] = stored_scores(out / "predictions" / "1shot")
    assert len(scores["0"]) == len(s["videos"])
    assert_same_scores(scores["2"], scores["0"])
