"""Prompt ensembles and class descriptions: pipeline, classifier, CLI and evaluate against transformers' XCLIPModel
run template by template (the CLIP recipe applied by hand before its prompt generator), the label cache, the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

import xclip_hf  # noqa: F401  (registers the task)
from xclip_hf.pipelines import build_label_set

from _helpers_pipeline import LABELS, make_published_checkpoint, write_videos

TASK = "zero-shot-video-classification"
TEMPLATES = ["a video of {}.", "{}", "people {} outdoors"]
DESCRIPTIONS = {label: [label, f"a video of {label}", f"people {label} indoors"][: 1 + i % 3]
                for i, label in enumerate(LABELS)}  # one, two or three phrasings per class


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensembles")
    model = make_published_checkpoint(root / "published", seed=3)
    descriptions = root / "descriptions.json"
    descriptions.write_text(json.dumps(DESCRIPTIONS))
    return {"root": root, "model": model, "videos": write_videos(str(root)), "descriptions": str(descriptions)}


@pytest.fixture(scope="module")
def pipe(workdir):
    return pipeline(TASK, model=workdir["model"], device="cpu")


@pytest.fixture(scope="module")
def oracle(workdir):
    from transformers import XCLIPModel

    return XCLIPModel.from_pretrained(workdir["model"]).eval()


def _texts_per_label(templates, descriptions=None):
    """Each label's texts: every phrasing (or the label) with every template."""
    return [[t.format(p) for p in (descriptions[label] if descriptions else [label]) for t in templates]
            for label in LABELS]


def _oracle_text_features(oracle, tokenizer, texts):
    """Transformers' un-prompted projected text features of `texts`, one by one (no padding shared)."""
    rows = []
    for text in texts:
        ids = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            out = oracle.get_text_features(**ids)
        rows.append((out if torch.is_tensor(out) else out.pooler_output)[0])
    return torch.stack(rows)


def _clip_recipe(features):
    """CLIP's prompt ensemble of one label's (n, D) features: mean of the normalised rows, re-normalised; scaled by
    their mean norm (the scale X-CLIP's prompt generator sees for a single text)."""
    mean = (features / features.norm(dim=-1, keepdim=True)).mean(0)
    return mean / mean.norm() * features.norm(dim=-1).mean()


def _oracle_logits(oracle, pixel_values, text_embeds):
    """Transformers' XCLIPModel logits with its text projection's output replaced by `text_embeds` (K, D): its own
    prompt generator, normalisation and logit scale then run on them."""
    ids = torch.full((text_embeds.shape[0], 2), 1)
    ids[:, -1] = oracle.config.text_config.vocab_size - 1
    handle = oracle.text_projection.register_forward_hook(lambda module, args, out: text_embeds)
    try:
        with torch.no_grad():
            return oracle(input_ids=ids, pixel_values=pixel_values).logits_per_video
    finally:
        handle.remove()


def _pixel_values(pipe, video):
    return pipe.video_processor(videos=[video], return_tensors="pt")["pixel_values"].reshape(1, -1, 3, 32, 32)


@pytest.mark.parametrize("templates, described", [(TEMPLATES, False), (TEMPLATES[:2], True), (["{}"], True)])
def test_ensemble_matches_the_oracle_run_per_template(pipe, oracle, workdir, templates, described):
    descriptions = DESCRIPTIONS if described else None
    groups = _texts_per_label(templates, descriptions)
    ensembled = torch.stack([_clip_recipe(_oracle_text_features(oracle, pipe.tokenizer, g)) for g in groups])
    label_set = build_label_set(LABELS, templates, pipe.tokenizer, descriptions=descriptions)
    np.testing.assert_allclose(pipe.text_features(label_set).detach().numpy(), ensembled.numpy(), atol=1e-5, rtol=0)
    source = workdir["descriptions"] if described else None
    for video in workdir["videos"]:
        pixel_values = _pixel_values(pipe, video)
        want = _oracle_logits(oracle, pixel_values, ensembled)
        with torch.no_grad():
            got = pipe.model(pixel_values=pixel_values, text_embeds=pipe.text_features(label_set)).logits_per_video
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, rtol=0)
        scores = pipe.score(video, candidate_labels=LABELS, hypothesis_template=templates, class_descriptions=source)
        np.testing.assert_allclose(scores.numpy(), want.softmax(-1).numpy(), atol=1e-5, rtol=0)


def test_prompt_generator_runs_on_the_ensembled_features(pipe, oracle, workdir):
    """Ensembling before the prompt generator is not the mean of per-template logits, nor of unit features."""
    pixel_values = _pixel_values(pipe, workdir["videos"][0])
    got = pipe.score(workdir["videos"][0], candidate_labels=LABELS, hypothesis_template=TEMPLATES)[0]
    per_template = [_oracle_logits(oracle, pixel_values,
                                   _oracle_text_features(oracle, pipe.tokenizer, [t.format(x) for x in LABELS]))
                    for t in TEMPLATES]
    after = torch.stack(per_template).mean(0).softmax(-1)[0]
    groups = [_oracle_text_features(oracle, pipe.tokenizer, g) for g in _texts_per_label(TEMPLATES)]
    unit = torch.stack([torch.nn.functional.normalize((g / g.norm(dim=-1, keepdim=True)).mean(0), dim=0)
                        for g in groups])
    unit_scores = _oracle_logits(oracle, pixel_values, unit).softmax(-1)[0]
    assert (got - after).abs().max() > 1e-4 and (got - unit_scores).abs().max() > 1e-4


def test_one_template_in_a_list_is_the_single_template(pipe, workdir):
    video = workdir["videos"][1]
    single = pipe.score(video, candidate_labels=LABELS, hypothesis_template="a video of {}.")
    listed = pipe.score(video, candidate_labels=LABELS, hypothesis_template=["a video of {}."])
    assert torch.equal(single, listed)
    ensembled = pipe.score(video, candidate_labels=LABELS, hypothesis_template=TEMPLATES)
    assert (ensembled - single).abs().max() > 1e-4


def test_ensemble_recipe_on_plain_tensors():
    from xclip_hf.models.prompt_ensembles import ensemble_text_features

    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, 8, generator=g) * torch.tensor([1.0, 3.0, 0.5, 2.0, 4.0, 1.5])[:, None]
    out = ensemble_text_features(features, [1, 3, 2])
    assert torch.equal(out[0], features[0])  # a label with one text keeps its features
    for row, group in zip(out[1:], (features[1:4], features[4:6])):
        np.testing.assert_allclose(row.numpy(), _clip_recipe(group).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="groups of"):
        ensemble_text_features(features, [2, 2])


class _CountingTextEncoder:
    """Counts calls of `get_text_features` (one per text-encoder run)."""

    def __init__(self, model):
        self.calls, self._inner = 0, model.get_text_features
        model.get_text_features = self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._inner(*args, **kwargs)


def test_label_cache_keys_cover_every_template_and_description(workdir, tmp_path):
    video = workdir["videos"][0]
    pipe = pipeline(TASK, model=workdir["model"], device="cpu", label_cache_size=8)
    counter = _CountingTextEncoder(pipe.model)
    first = pipe.score(video, candidate_labels=LABELS, hypothesis_template=TEMPLATES)
    again = pipe.score(video, candidate_labels=LABELS, hypothesis_template=list(TEMPLATES))
    assert counter.calls == 1 and torch.equal(first, again)  # a hit
    pipe.score(video, candidate_labels=LABELS, hypothesis_template=TEMPLATES[:2])
    assert counter.calls == 2  # one template fewer: a miss
    pipe.score(video, candidate_labels=LABELS, hypothesis_template=TEMPLATES[:2], class_descriptions=DESCRIPTIONS)
    assert counter.calls == 3  # descriptions: a miss
    pipe.score(video, candidate_labels=LABELS, hypothesis_template=TEMPLATES[:2],
               class_descriptions=workdir["descriptions"])
    assert counter.calls == 3  # the same descriptions from the file: a hit
    other = {**DESCRIPTIONS, LABELS[0]: [LABELS[0], "a guitar is played"]}
    pipe.score(video, candidate_labels=LABELS, hypothesis_template=TEMPLATES[:2], class_descriptions=other)
    assert counter.calls == 4  # one phrasing changed: a miss
    pipe.score(video, candidate_labels=LABELS, hypothesis_template="{}")
    pipe.score(video, candidate_labels=LABELS, hypothesis_template=["{}"])
    assert counter.calls == 5  # one template, string or list: the same texts, the same entry


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_bad_templates_and_descriptions_name_the_file_and_class(pipe, workdir, tmp_path):
    video = workdir["videos"][0]
    cases = [
        ("list.json", json.dumps([["a"]]), "list.json.*must be a JSON object"),
        ("missing.json", {k: v for k, v in DESCRIPTIONS.items() if k != LABELS[2]},
         f"missing.json: no descriptions for class '{LABELS[2]}'"),
        ("empty.json", {**DESCRIPTIONS, LABELS[1]: []}, f"empty.json: class '{LABELS[1]}' has an empty list"),
        ("string.json", {**DESCRIPTIONS, LABELS[3]: "one phrasing"},
         f"string.json: class '{LABELS[3]}' must map to a list of strings"),
        ("number.json", {**DESCRIPTIONS, LABELS[4]: ["ok", 7]}, f"number.json: class '{LABELS[4]}', phrasing 1 is 7"),
        ("twice.json", {**DESCRIPTIONS, LABELS[0]: ["a", "a"]}, f"twice.json: class '{LABELS[0]}' lists \\['a'\\]"),
        ("broken.json", "{not json", "broken.json' is not valid JSON"),
    ]
    for name, content, message in cases:
        with pytest.raises(ValueError, match=message):
            pipe(video, candidate_labels=LABELS, class_descriptions=_write(tmp_path, name, content))
    with pytest.raises(ValueError, match="nowhere.json' cannot be read"):
        pipe(video, candidate_labels=LABELS, class_descriptions=str(tmp_path / "nowhere.json"))
    with pytest.raises(ValueError, match="class_descriptions: class 'x' has an empty list"):
        pipe(video, candidate_labels=LABELS, class_descriptions={**DESCRIPTIONS, "x": []})
    with pytest.raises(ValueError, match="hypothesis_template is an empty list"):
        pipe(video, candidate_labels=LABELS, hypothesis_template=[])
    with pytest.raises(ValueError, match="lists \\['\\{\\}'\\] more than once"):
        pipe(video, candidate_labels=LABELS, hypothesis_template=["{}", "a {}", "{}"])
    with pytest.raises(ValueError, match="'a video' has no '\\{\\}' placeholder"):
        pipe(video, candidate_labels=LABELS, hypothesis_template=["{}", "a video"])
    with pytest.raises(TypeError, match="hypothesis_template must be a string"):
        pipe(video, candidate_labels=LABELS, hypothesis_template=["{}", 3])
    same = {label: ["the same words"] for label in LABELS[:2]}
    with pytest.raises(ValueError, match="tokenize to the same ids"):
        pipe(video, candidate_labels=LABELS[:2], class_descriptions=same)


def test_classifier_set_class_texts_ensembles_and_round_trips(pipe, workdir, tmp_path):
    from xclip_hf.models.modeling_xclip_classification import XClipForVideoClassification

    model = XClipForVideoClassification.from_pretrained(workdir["model"]).eval()
    model.set_class_texts(pipe.tokenizer, TEMPLATES[:2], id2label=dict(enumerate(LABELS)),
                          descriptions=workdir["descriptions"])
    assert model.config.class_text_counts == [len(g) for g in _texts_per_label(TEMPLATES[:2], DESCRIPTIONS)]
    pixel_values = _pixel_values(pipe, workdir["videos"][1])
    groups = []
    for texts in _texts_per_label(TEMPLATES[:2], DESCRIPTIONS):  # our text tower, text by text, then the recipe
        ids = pipe.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            groups.append(_clip_recipe(model.xclip.get_text_features(**ids).pooler_output))
    with torch.no_grad():
        want = model.xclip(pixel_values=pixel_values, text_embeds=torch.stack(groups)).logits_per_video
        got = model(pixel_values).logits
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path / "classifier")
    loaded = XClipForVideoClassification.from_pretrained(tmp_path / "classifier").eval()
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values).logits, got)
    model.set_class_texts(pipe.tokenizer, "{}")  # back to one text per class: the ensemble is gone
    assert not hasattr(model.config, "class_text_counts") and model.class_input_ids.shape[0] == len(LABELS)
    with pytest.raises(ValueError, match="no descriptions for class"):
        model.set_class_texts(pipe.tokenizer, "{}", descriptions={LABELS[0]: ["x"]})


def test_cli_classify_repeated_templates_and_descriptions(workdir, capsys, pipe):
    from xclip_hf.cli import main

    video = workdir["videos"][0]
    argv = ["classify", video, "--labels", ",".join(LABELS), "--model", workdir["model"], "--json", "--no-progress",
            "--template", TEMPLATES[0], "--template", TEMPLATES[1], "--descriptions", workdir["descriptions"]]
    assert main(argv) == 0
    got = {p["label"]: p["score"] for p in json.loads(capsys.readouterr().out)[0]["predictions"]}
    want = pipe.score(video, candidate_labels=LABELS, hypothesis_template=TEMPLATES[:2],
                      class_descriptions=DESCRIPTIONS)[0]
    np.testing.assert_allclose([got[label] for label in LABELS], want.numpy(), atol=1e-6)
    bad = _write(workdir["root"], "cli_missing.json", {LABELS[0]: ["x"]})
    assert main(argv[:-1] + [bad]) == 2
    assert f"cli_missing.json: no descriptions for classes '{LABELS[1]}'" in capsys.readouterr().err


def test_evaluate_closed_set_with_an_ensemble(workdir, pipe, tmp_path, capsys):
    from xclip_hf.cli import main
    from xclip_hf.evaluation import evaluate_closed_set

    root = workdir["root"]
    (root / "val.txt").write_text("".join(f"{v} {i}\n" for i, v in enumerate(workdir["videos"])))
    (root / "labels.csv").write_text("id,name\n" + "".join(f"{k},{n}\n" for k, n in enumerate(LABELS)))
    scores = pipe.score(workdir["videos"], candidate_labels=LABELS, hypothesis_template=TEMPLATES,
                        class_descriptions=DESCRIPTIONS).numpy()
    report = evaluate_closed_set(workdir["model"], root / "val.txt", str(root / "labels.csv"),
                                 template=TEMPLATES, descriptions=workdir["descriptions"],
                                 output_dir=str(tmp_path / "api"), progress=False)
    top1 = 100.0 * np.mean(scores.argmax(1) == np.arange(len(scores)))
    assert report["results"]["summary"]["top1"] == pytest.approx(top1)
    assert [p["predicted"] for p in report["results"]["predictions"]] == scores.argmax(1).tolist()
    assert list(report["settings"]["template"]) == TEMPLATES
    assert report["settings"]["descriptions"] == workdir["descriptions"]
    recorded = json.loads((tmp_path / "api" / "predictions" / "_evaluate_config.json").read_text())
    assert recorded["template"] == TEMPLATES and recorded["class_descriptions"] == DESCRIPTIONS
    for descriptions in ({**DESCRIPTIONS, LABELS[0]: ["x"]}, None):  # resuming with other descriptions is refused
        with pytest.raises(ValueError, match="other settings.*class_descriptions"):
            evaluate_closed_set(workdir["model"], root / "val.txt", str(root / "labels.csv"), template=TEMPLATES,
                                descriptions=descriptions, output_dir=str(tmp_path / "api"), progress=False)
    out = tmp_path / "cli"
    assert main(["evaluate", "closed-set", "--model", workdir["model"], "--data", str(root / "val.txt"),
                 "--labels", str(root / "labels.csv"), "--output", str(out), "--no-progress",
                 *[a for t in TEMPLATES for a in ("--template", t)], "--descriptions", workdir["descriptions"]]) == 0
    cli_report = json.loads((out / "report.json").read_text())
    assert cli_report["results"]["summary"]["top1"] == pytest.approx(top1)
    assert cli_report["settings"]["template"] == TEMPLATES
