"""Zero-shot protocols: the Kinetics-600 new-class derivation on hand-made label files with the known naming traps,
seeded class subsets, per-split figures and mean +- std over splits vs numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers_pipeline import LABELS


def _labels_csv(path, names):
    path.write_text("id,name\n" + "".join(f'{k},"{n}"\n' if "," in n else f"{k},{n}\n" for k, n in enumerate(names)))
    return str(path)


def _handmade_kinetics(tmp_path):
    """400 'old' classes, 600 'new-version' classes: 380 carried over (5 with the traps), 220 genuinely new,
    among them names that only LOOK like old ones (a qualifier on a name that is still there, a longer name)."""
    old = [f"action {i:03d}" for i in range(394)] + [
        "passing American football (in game)", "passing American football (not in game)", "hugging",
        "dying hair", "cooking_sausages", "Zumba"]
    carried = [f"action {i:03d}" for i in range(20, 394)]  # 20 old classes dropped
    carried += ["passing American football (in game)", "passing american football (not in game)",  # case trap
                "hugging (not baby)",  # qualifier added
                "cooking sausages",  # underscore trap
                "'zumba'",  # quotes + case trap
                "dyeing hair"]  # a true rename: only `renames` can pair it
    new = [f"new action {i:03d}" for i in range(214)] + [
        "hugging baby", "curling (sport)", "action 100 (sport)", "fencing (sport)", "passing soccer ball", "action"]
    assert len(carried) == 380 and len(new) == 220 and len(set(carried + new)) == 600
    return _labels_csv(tmp_path / "k400.csv", old), _labels_csv(tmp_path / "k600.csv", carried + new), new


def test_kinetics600_new_classes_traps(tmp_path):
    from xclip_hf.evaluation.labels import resolve_labels
    from xclip_hf.evaluation.zero_shot import kinetics600_new_classes, normalise_class_name

    k400_csv, k600_csv, new = _handmade_kinetics(tmp_path)
    k400, _ = resolve_labels(k400_csv)
    k600, _ = resolve_labels(k600_csv)
    naive = set(k600) - set(k400)
    assert len(naive) == 225  # what a plain set difference gives
    without_rename = kinetics600_new_classes(k400, k600)
    assert without_rename["count"] == 221 and "dyeing hair" in without_rename["new_classes"]  # the known pitfall
    derived = kinetics600_new_classes(k400, k600, renames={"dying hair": "dyeing hair"})
    assert derived["count"] == 220 and derived["new_classes"] == new  # K600 order kept
    rules = {n["kinetics600"]: n["rule"] for n in derived["normalised"]}
    assert rules == {"passing american football (not in game)": "case/underscore/quotes",
                     "cooking sausages": "case/underscore/quotes", "'zumba'": "case/underscore/quotes",
                     "hugging (not baby)": "qualifier added", "dyeing hair": "rename"}
    assert normalise_class_name("Passing_American  'Football'") == "passing american football"


def test_shipped_kinetics_lists_derivation_is_listed():
    """On the shipped lists every pairing beyond an exact match is listed; true renames are left to `renames`."""
    from xclip_hf.evaluation.labels import load_label_list
    from xclip_hf.evaluation.zero_shot import kinetics600_new_classes

    k400, k600 = load_label_list("kinetics400"), load_label_list("kinetics600")
    derived = kinetics600_new_classes(k400, k600)
    assert derived["exact_name_difference"] == len(set(k600) - set(k400))
    assert derived["count"] + derived["matched"] == 600
    assert {n["kinetics600"] for n in derived["normalised"]} >= {"hugging (not baby)", "passing american football (not in game)"}
    assert "hugging baby" in derived["new_classes"] and "curling (sport)" in derived["new_classes"]


def test_class_subsets_seeded():
    from xclip_hf.evaluation.zero_shot import class_subsets

    classes = [f"c{i}" for i in range(220)]
    a, b = class_subsets(classes, 3, 160, seed=0), class_subsets(classes, 3, 160, seed=0)
    assert a == b and all(len(s) == 160 == len(set(s)) for s in a)
    assert a[0] != a[1] and class_subsets(classes, 1, 160, seed=5)[0] != a[0]
    assert all(s == [c for c in classes if c in set(s)] for s in a)  # input order
    with pytest.raises(ValueError, match="cannot draw 300 classes from 220"):
        class_subsets(classes, 1, 300)


@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    from _helpers_evaluation import make_evalset  # the closed-set tests' synthetic set

    return make_evalset(tmp_path_factory.mktemp("zero_shot"))


@pytest.mark.slow
def test_split_figures_and_mean_std_vs_numpy(evalset, tmp_path):
    from transformers import XCLIPModel, XCLIPProcessor

    from xclip_hf.evaluation.zero_shot import evaluate_zero_shot

    root, refs = evalset["root"], evalset["references"]
    splits = {"split1": [0, 1, 2, 3], "split2": [2, 3, 4, 5, 6], "split3": [0, 6]}
    files = []
    for name, members in splits.items():
        (root / f"{name}.txt").write_text("".join(f"videos/v{i}.mp4 {refs[i]}\n" for i in members))
        files.append(root / f"{name}.txt")
    report = evaluate_zero_shot(evalset["model"], files, str(root / "labels.csv"), output_dir=str(tmp_path),
                                template="a video of {}", batch_size=2)
    # oracle: transformers' XCLIPModel, one view, the same template
    from xclip_hf.evaluation.runner import build_pipeline

    processor = build_pipeline(evalset["model"]).video_processor
    oracle = XCLIPModel.from_pretrained(evalset["model"]).eval()
    text = XCLIPProcessor.from_pretrained(evalset["model"]).tokenizer([f"a video of {l}" for l in LABELS],
                                                                      padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = np.stack([oracle(**text, pixel_values=processor(videos=[v], return_tensors="pt")["pixel_values"])
                          .logits_per_video[0].softmax(-1).numpy() for v in evalset["videos"]])
    top1 = {n: 100.0 * np.mean(probs[m].argmax(1) == np.asarray(refs)[m]) for n, m in splits.items()}
    rank = (probs > probs[np.arange(len(refs)), refs][:, None]).sum(1)
    top5 = {n: 100.0 * np.mean(rank[m] < 5) for n, m in splits.items()}
    for name in splits:
        assert report["results"]["splits"][name]["top1"] == pytest.approx(top1[name])
        assert report["results"]["splits"][name]["num_videos"] == len(splits[name])
    assert len(set(top1.values())) > 1  # the splits differ, so the std is not trivially 0
    summary = report["results"]["summary"]
    assert summary["top1"]["mean"] == pytest.approx(np.mean(list(top1.values())))
    assert summary["top1"]["std"] == pytest.approx(np.std(list(top1.values())))
    assert summary["top5"]["mean"] == pytest.approx(np.mean(list(top5.values())))
    assert report["settings"]["num_videos"] == 7  # the union, each scored once
    assert "| split1 |" in (tmp_path / "report.md").read_text()


def test_cli_zero_shot_k600_new_classes(evalset, tmp_path, capsys):
    """The K600 mode end to end on hand-made lists: the videos of new classes only, each subset its own names."""
    import json

    from xclip_hf.cli import main

    root = evalset["root"]
    k400 = _labels_csv(tmp_path / "k400.csv", ["swimming in a pool", "Dancing_Ballet"])
    k600_names = ["dancing ballet"] + LABELS[:4]  # 'dancing ballet' is old (a case/underscore trap): 4 new classes
    k600 = _labels_csv(tmp_path / "k600.csv", k600_names)
    lines = "".join(f"videos/v{i}.mp4 {k600_names.index(LABELS[r]) if LABELS[r] in k600_names else 0}\n"
                    for i, r in enumerate(evalset["references"]))
    (root / "k600_val.txt").write_text(lines)
    out = tmp_path / "out"
    status = main(["evaluate", "zero-shot", "--k600-new-classes", "--model", evalset["model"], "--data",
                   str(root / "k600_val.txt"), "--k400-labels", k400, "--k600-labels", k600, "--subset-size", "3",
                   "--num-subsets", "2", "--output", str(out), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    derived = report["results"]["new_classes"]
    assert derived["count"] == 3 and derived["new_classes"] == ["playing guitar", "riding a bike", "cooking pasta"]
    assert all(len(s) == 3 for s in report["results"]["subsets"]) and len(report["results"]["splits"]) == 2
    refs = [LABELS[r] for r in evalset["references"]]
    for name, subset in zip(report["results"]["splits"], report["results"]["subsets"]):
        assert report["results"]["splits"][name]["num_videos"] == sum(label in subset for label in refs)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["splits", "k600-new-classes"])
def test_cli_zero_shot_decoding_workers_give_the_same_scores(evalset, tmp_path, mode):
    """`evaluate zero-shot --num-workers 2` (as closed-set) scores every video as in-process reading does, in both
    modes (split files; the Kinetics-600 new classes, one predictions folder per subset)."""
    from _helpers_evaluation import assert_same_scores, stored_scores

    from xclip_hf.cli import main

    root = evalset["root"]
    if mode == "splits":
        args, folders = ["--data", str(root / "val.txt"), "--labels", str(root / "labels.csv")], [""]
    else:  # every video's class is new in the hand-made K600 list
        k400 = _labels_csv(tmp_path / "k400.csv", ["knitting"])
        k600 = _labels_csv(tmp_path / "k600.csv", LABELS)
        args = ["--k600-new-classes", "--data", str(root / "val.txt"), "--k400-labels", k400, "--k600-labels", k600,
                "--subset-size", "5", "--num-subsets", "2"]
        folders = ["subset0", "subset1"]
    scores = {}
    for workers in ("0", "2"):
        out = tmp_path / f"workers{workers}"
        assert main(["evaluate", "zero-shot", "--model", evalset["model"], *args, "--output", str(out),
                     "--no-progress", "--num-workers", workers]) == 0
        scores[workers] = [stored_scores(out / "predictions" / folder) for folder in folders]
    for got, want in zip(scores["2"], scores["0"]):
        assert len(want) == len(evalset["videos"])
        assert_same_scores(got, want)
