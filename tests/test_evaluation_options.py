"""xclip_hf.evaluation.options: one EvaluationOptions for every protocol; keywords still accepted, an unknown one a
TypeError naming it, an option a protocol cannot honour a ValueError, the shared options give the default's figures."""

from __future__ import annotations

import pytest

from xclip_hf.evaluation.closed_set import evaluate_closed_set
from xclip_hf.evaluation.few_shot import evaluate_few_shot
from xclip_hf.evaluation.localisation import evaluate_localisation
from xclip_hf.evaluation.options import EvaluationOptions, evaluation_options
from xclip_hf.evaluation.retrieval import evaluate_retrieval
from xclip_hf.evaluation.zero_shot import evaluate_kinetics600_new_classes, evaluate_zero_shot

CALLS = {
    "closed-set": lambda **kw: evaluate_closed_set("model", "val.txt", ["a", "b"], **kw),
    "zero-shot": lambda **kw: evaluate_zero_shot("model", ["split1.txt"], ["a", "b"], **kw),
    "k600": lambda **kw: evaluate_kinetics600_new_classes("model", "val.txt", **kw),
    "few-shot": lambda **kw: evaluate_few_shot({2: "model"}, "val.txt", ["a", "b"], **kw),
    "localisation": lambda **kw: evaluate_localisation("model", "segments.csv", chunk_length_s=1.0, **kw),
    "retrieval": lambda **kw: evaluate_retrieval("model", "captions.csv", "emb", **kw),
}
SHARED = dict(batch_size=2, num_workers=1, device="cpu")


@pytest.mark.parametrize("protocol", sorted(CALLS))
def test_unknown_option_is_a_type_error_naming_it(protocol):
    with pytest.raises(TypeError, match="'batchsize'"):
        CALLS[protocol](batchsize=2)


def test_keywords_override_the_options_object():
    base = EvaluationOptions(batch_size=4, template="a video of {}")
    merged = evaluation_options(base, {"batch_size": 2})
    assert (merged.batch_size, merged.template, base.batch_size) == (2, "a video of {}", 4)
    assert evaluation_options() == EvaluationOptions()
    with pytest.raises(ValueError, match="on_bad_video"):
        EvaluationOptions(on_bad_video="ignore")


@pytest.mark.parametrize("protocol, option", [("localisation", {"num_temporal_clips": 2}),
                                              ("retrieval", {"batch_size": 4}), ("k600", {"num_spatial_crops": 3}),
                                              ("few-shot", {"processor": object()})])
def test_an_option_a_protocol_cannot_honour_is_refused(protocol, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        CALLS[protocol](**option)


@pytest.fixture(scope="module")
def evalset(tmp_path_factory):
    from _helpers_evaluation import make_evalset

    return make_evalset(tmp_path_factory.mktemp("options"))


def _summary(report) -> dict:
    return report["results"]["summary"]


def test_classification_protocols_accept_the_shared_options(evalset):
    root, labels = evalset["root"], str(evalset["root"] / "labels.csv")
    options = EvaluationOptions(**SHARED)
    closed = lambda **kw: evaluate_closed_set(evalset["model"], root / "val.txt", labels, **kw)  # noqa: E731
    shared, default = closed(options=options), closed()
    assert shared["results"]["predictions"] == default["results"]["predictions"]
    assert _summary(shared) == _summary(default)
    zero = lambda **kw: evaluate_zero_shot(evalset["model"], [root / "val.txt"], labels, **kw)  # noqa: E731
    assert _summary(zero(options=options)) == _summary(zero())
    few = evaluate_few_shot({2: evalset["model"]}, root / "val.txt", labels, options=options)
    default = evaluate_few_shot({2: evalset["model"]}, root / "val.txt", labels)
    assert few["results"]["splits"]["K=2"]["top1"] == default["results"]["splits"]["K=2"]["top1"]


def test_localisation_and_retrieval_accept_the_shared_options(evalset, tmp_path):
    from xclip_hf.corpus.embed import embed_videos
    from xclip_hf.data.synthetic import write_long_video

    names = ["growing", "shrinking", "appearing"]
    truth = write_long_video(str(tmp_path / "long.mp4"), names, segment_s=2.0, fps=6, size=32, seed=1)
    (tmp_path / "segments.csv").write_text("video,start_s,end_s,label\n" + "".join(
        f"long.mp4,{t['start_s']},{t['end_s']},{t['label']}\n" for t in truth))
    run = lambda **kw: evaluate_localisation(evalset["model"], tmp_path / "segments.csv", names,  # noqa: E731
                                             chunk_length_s=1.0, stride_length_s=0.5, **kw)
    assert _summary(run(**SHARED)) == pytest.approx(_summary(run()))
    embed_videos(evalset["videos"], str(tmp_path / "emb"), evalset["model"], progress=False)
    (tmp_path / "captions.csv").write_text("video,caption\n" + "".join(
        f"{v},clip {i}\n" for i, v in enumerate(evalset["videos"])))
    run = lambda **kw: evaluate_retrieval(evalset["model"], tmp_path / "captions.csv", tmp_path / "emb",  # noqa: E731
                                          **kw)
    assert _summary(run(options=EvaluationOptions(device="cpu", template="a video of {}"))) == pytest.approx(
        _summary(run(template="a video of {}")))
