"""xclip_hf.evaluation, closed-set protocol: multi-view scores vs transformers' XCLIPModel run view by view, the
figures vs numpy, bad videos skipped and listed, the shipped label lists, the report."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from _helpers_evaluation import make_evalset
from _helpers_pipeline import LABELS

VIEWS = dict(num_temporal_clips=2, num_spatial_crops=3)


@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    return make_evalset(tmp_path_factory.mktemp("evaluation"))


def _oracle_scores(model_dir, video_processor, videos, labels):
    """transformers' XCLIPModel on the same processed views, one view at a time; softmax averaged here."""
    from transformers import XCLIPModel, XCLIPProcessor

    oracle = XCLIPModel.from_pretrained(model_dir).eval()
    tokenizer = XCLIPProcessor.from_pretrained(model_dir).tokenizer
    text = tokenizer(labels, padding=True, return_tensors="pt")
    rows = []
    for video in videos:
        views = video_processor(videos=[video], return_tensors="pt", **VIEWS)["pixel_values"][0]
        probs = []
        with torch.no_grad():
            for view in views:
                logits = oracle(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                                pixel_values=view[None].double().float()).logits_per_video[0]
                probs.append(torch.softmax(logits.double(), -1).numpy())
        rows.append(np.mean(probs, axis=0))
    return np.stack(rows)


@pytest.mark.slow
def test_multi_view_closed_set_matches_xclipmodel_view_by_view(evalset, tmp_path):
    from xclip_hf.evaluation import evaluate_closed_set
    from xclip_hf.evaluation.runner import build_pipeline, score_videos

    pipe = build_pipeline(evalset["model"])
    scored = score_videos(pipe, evalset["videos"], LABELS, batch_size=2, **VIEWS)
    expected = _oracle_scores(evalset["model"], pipe.video_processor, evalset["videos"], LABELS)
    assert scored.kept == list(range(len(evalset["videos"]))) and not scored.bad_videos
    np.testing.assert_allclose(scored.scores, expected, atol=1e-6, rtol=0)
    assert (scored.scores.argmax(1) == expected.argmax(1)).all()
    assert np.ptp(expected.argmax(1)) > 0  # not one class for every video

    report = evaluate_closed_set(pipe, evalset["root"] / "val.txt", str(evalset["root"] / "labels.csv"),
                                 output_dir=str(tmp_path), batch_size=2, **VIEWS)
    refs = np.asarray(evalset["references"])
    top1 = 100.0 * np.mean(expected.argmax(1) == refs)
    ranks = (expected > expected[np.arange(len(refs)), refs][:, None]).sum(1)
    summary = report["results"]["summary"]
    assert summary["top1"] == pytest.approx(top1) and summary["top5"] == pytest.approx(100.0 * np.mean(ranks < 5))
    per_class = [100.0 * np.mean(expected.argmax(1)[refs == k] == k) for k in range(len(LABELS))]
    assert list(report["results"]["per_class_accuracy"].values()) == pytest.approx(per_class)
    assert summary["mean_class_accuracy"] == pytest.approx(np.mean(per_class))
    confusion = np.zeros((5, 5), int)
    for r, p in zip(refs, expected.argmax(1)):
        confusion[r, p] += 1
    assert report["results"]["confusion_matrix"] == confusion.tolist()
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["results"]["summary"]["top1"] == pytest.approx(top1)
    assert on_disk["settings"]["views"] == "2x3"
    # one model identity: the report's is the whole-model fingerprint its predictions folder records
    recorded = json.loads((tmp_path / "predictions" / "_evaluate_config.json").read_text())["model_fingerprint"]
    assert on_disk["model"]["fingerprint"] == recorded and recorded.startswith("sha256:")
    assert f"fingerprint `{recorded[7:19]}`" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "report.md").read_text().count("| top-1 (%) |") == 1
    assert (tmp_path / "confusion.png").stat().st_size > 0


@pytest.mark.slow
def test_decoding_workers_give_the_same_scores(evalset):
    """num_workers=2 (videos decoded in DataLoader workers while the model runs) scores as in-process reading does,
    rows in input order, a bad video still listed."""
    from xclip_hf.evaluation.runner import build_pipeline, score_videos

    pipe = build_pipeline(evalset["model"])
    # batch_size=1: chunks of 4 videos, so the first 4 are read by the workers, the last chunk is retried one by one
    videos = evalset["videos"][:5] + [str(evalset["root"] / "missing.mp4")]
    alone = score_videos(pipe, videos, LABELS, batch_size=1, **VIEWS)
    workers = score_videos(pipe, videos, LABELS, batch_size=1, num_workers=2, **VIEWS)
    assert workers.kept == alone.kept == list(range(5))
    assert [b["video"] for b in workers.bad_videos] == [videos[-1]]
    np.testing.assert_allclose(workers.scores, alone.scores, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_corrupt_and_empty_videos_are_listed_and_the_rest_evaluated(evalset, tmp_path):
    from xclip_hf.evaluation import evaluate_closed_set
    from xclip_hf.evaluation.runner import build_pipeline

    root = evalset["root"]
    (root / "videos" / "empty.mp4").write_bytes(b"")
    (root / "videos" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    (root / "with_bad.txt").write_text((root / "val.txt").read_text() + "videos/empty.mp4 1\nvideos/corrupt.mp4 2\n")
    pipe = build_pipeline(evalset["model"])
    report = evaluate_closed_set(pipe, root / "with_bad.txt", str(root / "labels.csv"), output_dir=str(tmp_path),
                                 batch_size=3)
    clean = evaluate_closed_set(pipe, root / "val.txt", str(root / "labels.csv"), batch_size=3)
    bad = report["bad_videos"]
    assert bad["count"] == 2
    assert sorted(os.path.basename(b["video"]) for b in bad["videos"]) == ["corrupt.mp4", "empty.mp4"]
    assert report["results"]["summary"]["num_videos"] == len(evalset["videos"])
    assert report["results"]["summary"]["top1"] == clean["results"]["summary"]["top1"]
    assert "empty.mp4" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="empty.mp4"):
        evaluate_closed_set(pipe, root / "with_bad.txt", str(root / "labels.csv"), on_bad_video="raise")


def test_shipped_label_lists():
    from xclip_hf.evaluation.labels import LABEL_LISTS, load_label_list, resolve_labels

    sizes = {"kinetics400": 400, "kinetics600": 600, "ucf101": 101, "hmdb51": 51}
    for name, size in sizes.items():
        names = load_label_list(name)
        assert len(names) == size == len(set(names)) and all(n.strip() == n and n for n in names)
    assert set(LABEL_LISTS) == set(sizes)
    assert resolve_labels("k400")[0][:2] == ["abseiling", "air drumming"] and resolve_labels("K400")[1] == "kinetics400"
    assert load_label_list("ucf101")[0] == "ApplyEyeMakeup" and load_label_list("hmdb51")[-1] == "wave"
    with pytest.raises(ValueError, match="unknown label list 'kinetics700'"):
        load_label_list("kinetics700")


def test_paper_figure_lookup_and_markdown():
    from xclip_hf.evaluation.report import build_report, find_paper_figures, paper_figure, to_markdown

    figures = find_paper_figures()
    model = {"variant": "xclip-base-patch32", "num_frames": 16, "source": "m", "fingerprint": "sha256:" + "0" * 64}
    assert paper_figure(figures, "closed-set", "kinetics400", model) == {"table": "Tab. 1", "top1": 81.1, "top5": 95.5, "views": "4x3"}
    b16 = dict(model, variant="xclip-base-patch16", num_frames=32)
    assert paper_figure(figures, "zero-shot", "hmdb51", b16) == {"table": "Tab. 3", "top1": 44.6, "top1_std": 5.2}
    assert paper_figure(figures, "few-shot", "ucf101", b16, shots=4)["top1"] == 83.4
    assert paper_figure(figures, "closed-set", "kinetics400", dict(model, variant="xclip-tiny")) is None
    with pytest.raises(ValueError, match="cannot read the paper's figures '.*nope.json'"):
        find_paper_figures("nope.json")
    report = build_report("closed-set", {"views": "4x3"}, model, {"summary": {"top1": 80.0, "top5": 94.0}}, [],
                          paper_figure(figures, "closed-set", "kinetics400", model))
    md = to_markdown(report)
    assert "| top-1 (%) | 80.0 | 81.1 |" in md and "| top-5 (%) | 94.0 | 95.5 |" in md


def test_cli_closed_set_writes_the_report(evalset, tmp_path, capsys):
    from xclip_hf.cli import main

    out = tmp_path / "out"
    status = main(["evaluate", "closed-set", "--model", evalset["model"], "--data", str(evalset["root"] / "val.txt"),
                   "--labels", str(evalset["root"] / "labels.csv"), "--output", str(out), "--no-progress",
                   "--num-temporal-clips", "2", "--num-spatial-crops", "3", "--batch-size", "2", "--num-workers", "2"])
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert "top1" in capsys.readouterr().out and report["settings"]["views"] == "2x3"
    assert main(["evaluate", "closed-set", "--model", evalset["model"], "--data", str(evalset["root"] / "val.txt"),
                 "--labels", "kinetics700", "--output", str(out)]) == 2
    assert "unknown label list 'kinetics700'" in capsys.readouterr().err
