"""Open-set rejection and multi-label (`xclip-hf calibrate`, the pipeline's `calibration=` / `multi_label=`): the
split-conformal quantile against numpy, its coverage on synthetic exchangeable scores, the pipeline's "unknown" and
per-label decisions against numpy, the refusals, and the CLI."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from _helpers_evaluation import make_evalset
from _helpers_pipeline import LABELS


# ----------------------------------------------------------------------------------------------- the quantile
def _numpy_quantile(a, eps):
    """The ceil((n+1)(1-eps))/n empirical quantile by numpy's inverted CDF (the smallest a_i with F_n(a_i) >= q)."""
    n = len(a)
    return float(np.quantile(a, np.ceil((n + 1) * (1 - eps)) / n, method="inverted_cdf"))


def _counting_quantile(a, eps):
    """The smallest a_i with at least (n+1)(1-eps) values <= it (no quantile function involved)."""
    need = (len(a) + 1) * (1 - eps)
    return min(t for t in a if np.sum(np.asarray(a) <= t) >= need - 1e-9)


@pytest.mark.parametrize("n,eps", [(19, 0.05), (20, 0.05), (57, 0.05), (9, 0.1), (20, 0.1), (55, 0.1),
                                   (4, 0.2), (21, 0.2), (100, 0.2), (33, 0.3)])
def test_quantile_matches_numpy(n, eps):
    from xclip_hf.evaluation.calibration import conformal_quantile

    a = np.random.default_rng(n).uniform(0, 1, n)
    assert conformal_quantile(a, eps) == _numpy_quantile(a, eps) == _counting_quantile(a, eps)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.2, 0.3, 0.01])
def test_too_few_videos_for_eps_is_refused(eps):
    from xclip_hf.evaluation.calibration import conformal_quantile, minimum_calibration_size

    # the smallest n with ceil((n+1)(1-eps)) <= n, counted in integers (eps in hundredths)
    smallest = next(n for n in range(1, 1000) if math.ceil((n + 1) * (100 - round(eps * 100)) / 100) <= n)
    assert minimum_calibration_size(eps) == smallest
    conformal_quantile(np.linspace(0, 1, smallest), eps)
    with pytest.raises(ValueError, match=rf"eps={eps} needs at least {smallest} calibration videos, "
                                         rf"got {smallest - 1}"):
        conformal_quantile(np.linspace(0, 1, smallest - 1), eps)


@pytest.mark.parametrize("eps", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_eps_outside_0_1_is_refused(eps):
    from xclip_hf.evaluation.calibration import conformal_quantile

    with pytest.raises(ValueError, match="eps must be a number in \\(0, 1\\)"):
        conformal_quantile([0.1, 0.2, 0.3], eps)


# ----------------------------------------------------------------------------------------------- coverage
def _draw(rng, n, difficulty):
    """n exchangeable videos: labels uniform over K, softmax scores of noisy logits; the true logit gets a bump that
    shrinks with its class's `difficulty` (harder classes cover worse under one shared threshold)."""
    k = len(difficulty)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 2.5 * (1 - np.asarray(difficulty))[labels]
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return scores, labels


@pytest.mark.parametrize("eps,n", [(0.05, 19), (0.1, 20), (0.2, 14)])
def test_open_set_coverage_is_at_least_1_minus_eps(eps, n):
    """Mean coverage over 600 draws of (n calibration, 60 test) videos: within 3 sd of its exact expectation
    k/(n+1) >= 1 - eps, which a quantile of rank k-1 or k+1 would miss."""
    from xclip_hf.evaluation.calibration import fit_calibration
    from xclip_hf.pipelines.calibration import clears

    rng = np.random.default_rng(0)
    difficulty = [0.0, 0.2, 0.4, 0.6, 0.8]
    coverage = []
    for _ in range(600):
        cal, cal_labels = _draw(rng, n, difficulty)
        test, test_labels = _draw(rng, 60, difficulty)
        q = fit_calibration(cal, cal_labels, list("abcde"), eps)["threshold"]["nonconformity"]
        inside = clears(torch.from_numpy(test), q).numpy()
        coverage.append(inside[np.arange(60), test_labels].mean())
    k = -(-(n + 1) * (100 - round(eps * 100)) // 100)  # ceil((n+1)(1-eps)) in integers
    expected = k / (n + 1)
    assert expected >= 1 - eps and (k - 1) / (n + 1) < 1 - eps  # the rank is the smallest that guarantees it
    margin = 3 * np.std(coverage) / np.sqrt(len(coverage))
    assert np.mean(coverage) >= 1 - eps - margin
    assert abs(np.mean(coverage) - expected) < margin < 1 / (n + 1) / 2, (np.mean(coverage), expected, margin)


def test_label_conditional_coverage_holds_for_every_label():
    """Per-label thresholds cover each label's videos >= 1 - eps (within 3 sd), the hard ones too, where the one
    shared threshold falls short."""
    from xclip_hf.evaluation.calibration import fit_calibration
    from xclip_hf.pipelines.calibration import clears

    rng = np.random.default_rng(1)
    eps, difficulty = 0.1, [0.0, 0.2, 0.4, 0.6, 0.8]
    per_label, shared = [], []
    for _ in range(300):
        cal, cal_labels = _draw(rng, 150, difficulty)  # about 30 per label: enough for eps=0.1 (needs 9)
        test, test_labels = _draw(rng, 150, difficulty)
        fit = fit_calibration(cal, cal_labels, list("abcde"), eps)
        quantiles = [fit["label_thresholds"][c]["nonconformity"] for c in "abcde"]
        on = clears(torch.from_numpy(test), quantiles).numpy()[np.arange(150), test_labels]
        inside = clears(torch.from_numpy(test), fit["threshold"]["nonconformity"]).numpy()[np.arange(150), test_labels]
        per_label.append([on[test_labels == c].mean() for c in range(5)])
        shared.append([inside[test_labels == c].mean() for c in range(5)])
    per_label, shared = np.asarray(per_label), np.asarray(shared)
    margin = 3 * per_label.std(0) / np.sqrt(len(per_label))
    assert (per_label.mean(0) >= 1 - eps - margin).all(), per_label.mean(0)
    assert shared.mean(0)[-1] < 1 - eps - 0.05  # the data discriminates: one threshold under-covers the hard label


# ----------------------------------------------------------------------------------------------- the pipeline
@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    return make_evalset(tmp_path_factory.mktemp("calibration"))


@pytest.fixture(scope="module")
def pipe(evalset):
    from xclip_hf.evaluation.runner import build_pipeline

    return build_pipeline(evalset["model"])


@pytest.fixture(scope="module")
def scores(pipe, evalset):
    """(7, 5) float64 scores of the evaluation set's videos, through the pipeline's `score`."""
    return pipe.score(evalset["videos"], candidate_labels=LABELS).double().numpy()


@pytest.fixture(scope="module")
def record(pipe, evalset):
    from xclip_hf.evaluation.calibration import calibrate

    return calibrate(pipe, evalset["root"] / "val.txt", str(evalset["root"] / "labels.csv"), eps=0.2,
                     progress=False)


def test_calibrate_fits_the_quantile_of_the_held_out_list(record, scores, evalset, pipe):
    from xclip_hf.jobs.identity import model_fingerprint

    a = 1 - scores[np.arange(7), evalset["references"]]
    assert record["n"] == 7 and record["eps"] == 0.2
    assert record["threshold"]["nonconformity"] == pytest.approx(_numpy_quantile(a, 0.2), abs=1e-12)
    assert record["model_fingerprint"] == model_fingerprint(pipe.model, whole=True)
    assert record["labels"] == LABELS and record["template"] == "{}"
    assert record["scoring"] == {"num_temporal_clips": 1, "num_spatial_crops": 1, "num_frames": 3}
    for k, label in enumerate(LABELS):  # 2, 1, 2, 1, 1 videos per label: too few for eps=0.2 (needs 4)
        entry = record["label_thresholds"][label]
        assert entry["n"] == evalset["references"].count(k) and entry["nonconformity"] is None
        assert "needs at least 4" in entry["reason"]


def test_calibrate_refuses_a_list_too_small_for_eps(pipe, evalset):
    from xclip_hf.evaluation.calibration import calibrate

    with pytest.raises(ValueError, match=r"eps=0.1 needs at least 9 videos in '.*val.txt', got 7"):
        calibrate(pipe, evalset["root"] / "val.txt", str(evalset["root"] / "labels.csv"), eps=0.1, progress=False)


def _with_quantile(record, q):
    changed = copy.deepcopy(record)
    changed["threshold"].update(nonconformity=float(q), score=1 - float(q))
    return changed


def test_pipeline_answers_unknown_when_no_label_clears_the_threshold(pipe, evalset, scores, record):
    """q between two videos' top nonconformity: one answer is a label, one "unknown"; all match numpy."""
    top = np.sort(1 - scores.max(1))
    q = (top[2] + top[3]) / 2
    answers = pipe(evalset["videos"], candidate_labels=LABELS, calibration=_with_quantile(record, q))
    for row, answer in zip(scores, answers):
        inside = [LABELS[k] for k in np.argsort(-row) if 1 - row[k] <= q]
        assert answer["prediction_set"] == inside
        assert answer["label"] == (LABELS[row.argmax()] if inside else "unknown")
        assert answer["score"] == pytest.approx(row.max(), abs=1e-6)
        assert [s["label"] for s in answer["scores"]] == [LABELS[k] for k in np.argsort(-row)]
    labels = [a["label"] for a in answers]
    assert labels.count("unknown") == 4 and len(labels) == 7


def test_pipeline_multi_label_decisions_per_label(pipe, evalset, scores, record, tmp_path):
    """Per-label thresholds at each label's third-highest score: the labels on match numpy, some videos have several;
    thresholds above every score: no label is on."""
    from xclip_hf.evaluation.calibration import write_calibration

    changed = copy.deepcopy(record)
    thresholds = np.sort(scores, 0)[-3]
    for k, label in enumerate(LABELS):
        changed["label_thresholds"][label].update(nonconformity=1 - thresholds[k], score=thresholds[k])
    path = write_calibration(tmp_path / "cal.json", changed)
    answers = pipe(evalset["videos"], candidate_labels=LABELS, calibration=path, multi_label=True, top_k=2)
    counts = []
    for row, answer in zip(scores, answers):
        on = [LABELS[k] for k in np.argsort(-row) if 1 - row[k] <= 1 - thresholds[k]]
        assert answer["labels"] == on
        assert [s["decision"] for s in answer["scores"]] == [LABELS[k] in on for k in np.argsort(-row)[:2]]
        counts.append(len(on))
    assert max(counts) >= 2 and min(counts) < max(counts)
    for label in LABELS:
        changed["label_thresholds"][label].update(nonconformity=1 - scores.max() - 1e-3)
    answers = pipe(evalset["videos"], candidate_labels=LABELS, calibration=changed, multi_label=True)
    assert [answer["labels"] for answer in answers] == [[]] * 7


def test_pipeline_refuses_a_calibration_of_another_model_label_set_template_or_scoring(pipe, evalset, record):
    from xclip_hf.jobs.identity import short

    video = evalset["videos"][0]
    other = dict(record, model_fingerprint="sha256:" + "b" * 64, model_source="other-model")
    with pytest.raises(ValueError, match=f"fitted for model bbbbbbbbbbbb \\(other-model\\); this pipeline's model is "
                                         f"{short(record['model_fingerprint'])}"):
        pipe(video, candidate_labels=LABELS, calibration=other)
    with pytest.raises(ValueError, match=r"fitted for labels \[.*'dancing ballet'\]; the call has \['playing guitar'"):
        pipe(video, candidate_labels=LABELS[:4], calibration=record)
    with pytest.raises(ValueError, match=r"fitted with template '\{\}'; the call has 'a video of \{\}'"):
        pipe(video, candidate_labels=LABELS, hypothesis_template="a video of {}", calibration=record)
    with pytest.raises(ValueError, match="num_temporal_clips 1 there, 2 here"):
        pipe(video, candidate_labels=LABELS, num_temporal_clips=2, calibration=record)
    with pytest.raises(ValueError, match="num_frames 3 there, 4 here"):
        pipe(video, candidate_labels=LABELS, num_frames=4, calibration=record)
    assert pipe(video, candidate_labels=list(reversed(LABELS)), calibration=record)["label"]  # same set: fine


def test_texts_recorded_and_checked_with_prompt_ensembles_and_descriptions(pipe, evalset, scores):
    """A calibration fitted with two templates and class descriptions holds for exactly those texts."""
    from xclip_hf.evaluation.calibration import calibration_record, fit_calibration

    templates = ["a video of {}", "{}"]
    descriptions = {label: [label, f"someone {label}"] for label in LABELS}
    fit = fit_calibration(scores, evalset["references"], LABELS, 0.2)
    record = calibration_record(pipe, fit, LABELS, template=templates, descriptions=descriptions)
    assert record["texts"]["cooking pasta"] == ["a video of cooking pasta", "cooking pasta",
                                                "a video of someone cooking pasta", "someone cooking pasta"]
    video = evalset["videos"][0]
    call = dict(candidate_labels=LABELS, hypothesis_template=templates, calibration=record)
    assert pipe(video, class_descriptions=descriptions, **call)["scores"]
    with pytest.raises(ValueError, match=r"other texts for 5 label\(s\) \(class descriptions\): 'playing guitar' "
                                         r"was \['a video of playing guitar', 'playing guitar', 'a video of someone"):
        pipe(video, **call)
    with pytest.raises(ValueError, match=r"fitted with template \['a video of \{\}', '\{\}'\]; the call has "
                                         r"\['\{\}', 'a video of \{\}'\]"):
        pipe(video, **dict(call, hypothesis_template=templates[::-1]), class_descriptions=descriptions)


def test_pipeline_refuses_options_a_calibration_cannot_honour(pipe, evalset, record, tmp_path):
    video = evalset["videos"][0]
    with pytest.raises(ValueError, match="multi_label=True needs calibration="):
        pipe(video, candidate_labels=LABELS, multi_label=True)
    with pytest.raises(ValueError, match="has no per-label threshold for 5 label\\(s\\).*'cooking pasta'.*needs at "
                                         "least 4"):
        pipe(video, candidate_labels=LABELS, calibration=record, multi_label=True)
    with pytest.raises(ValueError, match="calibration= applies to whole-video answers"):
        pipe(video, candidate_labels=LABELS, calibration=record, chunk_length_s=0.5, fps=8)
    named = [*LABELS[:4], "unknown"]
    with pytest.raises(ValueError, match="candidate label 'unknown' cannot be told from the open-set answer"):
        pipe(video, candidate_labels=named, calibration=dict(record, labels=named, texts={n: [n] for n in named},
                                                             label_thresholds={n: {"nonconformity": 0.5}
                                                                               for n in named}))
    with pytest.raises(ValueError, match="calibration= applies to whole-video answers"):
        pipe.score([video], candidate_labels=LABELS, calibration=record)
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match=f"calibration file '{missing}' does not exist"):
        pipe(video, candidate_labels=LABELS, calibration=str(missing))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="calibration '.*bad.json': cannot be read as JSON"):
        pipe(video, candidate_labels=LABELS, calibration=str(tmp_path / "bad.json"))
    (tmp_path / "old.json").write_text(json.dumps({**record, "format": "something-else"}))
    with pytest.raises(ValueError, match="format 'something-else' is not 'xclip-hf-calibration-v1'"):
        pipe(video, candidate_labels=LABELS, calibration=str(tmp_path / "old.json"))
    with pytest.raises(ValueError, match="missing 'threshold'"):
        pipe(video, candidate_labels=LABELS, calibration={k: v for k, v in record.items() if k != "threshold"})
    with pytest.raises(ValueError, match="threshold.nonconformity must be a number in \\[0, 1\\], got 1.5"):
        pipe(video, candidate_labels=LABELS, calibration=_with_quantile(record, 1.5))


# ----------------------------------------------------------------------------------------------- the CLI
def test_cli_calibrate_then_classify(evalset, scores, tmp_path, capsys):
    from xclip_hf.cli import main

    cal = tmp_path / "cal.json"
    data, labels = str(evalset["root"] / "val.txt"), str(evalset["root"] / "labels.csv")
    assert main(["calibrate", "--model", evalset["model"], "--data", data, "--labels", labels, "--output", str(cal),
                 "--eps", "0.2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    record = json.loads(cal.read_text())
    assert f"score >= {record['threshold']['score']:.4f}" in out and "no per-label threshold for 5 label(s)" in out
    a = 1 - scores[np.arange(7), evalset["references"]]
    assert record["threshold"]["nonconformity"] == pytest.approx(_numpy_quantile(a, 0.2), abs=1e-12)

    videos = evalset["videos"][:3]
    assert main(["classify", *videos, "--labels", ",".join(LABELS), "--model", evalset["model"], "--calibration",
                 str(cal), "--json", "--no-progress"]) == 0
    results = json.loads(capsys.readouterr().out)
    q = record["threshold"]["nonconformity"]
    for row, result in zip(scores, results):
        inside = [LABELS[k] for k in np.argsort(-row) if 1 - row[k] <= q]
        assert result["predictions"]["prediction_set"] == inside
        assert result["predictions"]["label"] == (LABELS[row.argmax()] if inside else "unknown")
    assert main(["classify", *videos, "--labels", ",".join(LABELS), "--model", evalset["model"], "--calibration",
                 str(cal), "--no-progress"]) == 0
    assert "answer: " in capsys.readouterr().out


def test_cli_refusals(evalset, tmp_path, capsys):
    from xclip_hf.cli import main

    cal = tmp_path / "cal.json"
    data, labels = str(evalset["root"] / "val.txt"), str(evalset["root"] / "labels.csv")
    base = ["classify", evalset["videos"][0], "--model", evalset["model"], "--no-progress"]
    assert main([*base, "--labels", ",".join(LABELS), "--multi-label"]) == 2
    assert "--multi-label needs --calibration" in capsys.readouterr().err
    assert main(["calibrate", "--model", evalset["model"], "--data", data, "--labels", labels, "--output", str(cal),
                 "--eps", "0.1", "--no-progress"]) == 1
    assert "eps=0.1 needs at least 9 videos" in capsys.readouterr().err and not cal.exists()
    assert main(["calibrate", "--model", evalset["model"], "--data", data, "--labels", labels, "--output", str(cal),
                 "--eps", "0.2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main([*base, "--labels", ",".join(LABELS[:3]), "--calibration", str(cal)]) == 1
    assert f"calibration '{cal}' was fitted for labels" in capsys.readouterr().err
    assert main([*base, "--labels", ",".join(LABELS), "--calibration", str(cal), "--multi-label"]) == 1
    assert "has no per-label threshold" in capsys.readouterr().err
    assert main([*base, "--labels", ",".join(LABELS), "--calibration", str(cal), "--chunk-length", "1"]) == 2
    assert "--calibration applies to whole videos" in capsys.readouterr().err
    assert main([*base, "--labels", ",".join(LABELS), "--calibration", str(tmp_path / "none.json")]) == 1
    assert "none.json' does not exist" in capsys.readouterr().err
