"""Retrieval metrics on a hand-made similarity matrix with ties vs an independent loop, and retrieval from embed
vectors (cosine, re-ranked, and the rerank_candidates best re-ranked) vs transformers' XCLIPModel on the same
processed videos."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch


def _pessimistic_rank(row, correct):
    """Independent loop: sort wrong-first among equal scores, take the first correct position."""
    order = sorted(range(len(row)), key=lambda c: (-row[c], c in correct))
    return 1 + min(order.index(c) for c in correct)


def test_retrieval_metrics_with_ties_vs_numpy():
    from xclip_hf.evaluation.retrieval import retrieval_metrics, retrieval_ranks

    scores = np.array([
        [0.9, 0.1, 0.1, 0.0],   # correct 0: rank 1
        [0.5, 0.5, 0.2, 0.1],   # correct 1, tied with a wrong one: rank 2 (ties count against the query)
        [0.3, 0.3, 0.3, 0.3],   # all tied: worst rank 4
        [0.1, 0.2, 0.3, 0.4],   # correct 0: rank 4
        [0.2, 0.8, 0.8, 0.1],   # correct {1, 2} (two captions): best correct ranks 1
        [0.7, 0.1, 0.6, 0.6],   # correct {2, 3} tied with each other: rank 2 (only the wrong 0 is above)
    ])
    correct = [{0}, {1}, {3}, {0}, {1, 2}, {2, 3}]
    relevant = np.zeros_like(scores, dtype=bool)
    for q, cs in enumerate(correct):
        relevant[q, list(cs)] = True
    expected = np.array([_pessimistic_rank(list(row), cs) for row, cs in zip(scores, correct)])
    assert expected.tolist() == [1, 2, 4, 4, 1, 2]
    assert retrieval_ranks(scores, relevant).tolist() == expected.tolist()
    m = retrieval_metrics(scores, relevant, recall_at=(1, 2, 5))
    assert m["R@1"] == pytest.approx(100 * np.mean(expected <= 1))
    assert m["R@2"] == pytest.approx(100 * np.mean(expected <= 2)) and m["R@5"] == 100.0
    assert m["median_rank"] == np.median(expected) and m["mean_rank"] == pytest.approx(expected.mean())
    with pytest.raises(ValueError, match="query 1 has no correct candidate"):
        retrieval_ranks(scores[:2], np.eye(2, 4, dtype=bool) * [[1], [0]])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from _helpers_evaluation import make_evalset

    from xclip_hf.corpus.embed import embed_videos

    root = tmp_path_factory.mktemp("retrieval")
    evalset = make_evalset(root)
    (root / "videos" / "broken.mp4").write_bytes(b"not a video")
    embed_videos([*evalset["videos"], str(root / "videos" / "broken.mp4")], str(root / "emb"), evalset["model"],
                 save_context=True, progress=False, batch_size=2)
    texts = ["playing guitar", "riding a bike", "cooking pasta", "swimming in a pool", "dancing ballet"]
    rows = [{"video": f"videos/v{i}.mp4", "caption": texts[i % 5]} for i in range(7)]
    rows += [{"video": "videos/v0.mp4", "caption": "running jumping walking"},
             {"video": "videos/broken.mp4", "caption": "a video of people"}]
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {**evalset, "root": root, "rows": rows}


@pytest.fixture(scope="module")
def oracle(corpus):
    """Independent scores: transformers' XCLIPModel on the same processed (single-view) videos: (captions, videos)
    logits with the video-specific prompts, cosines, exp(logit_scale), and which video each caption describes."""
    from transformers import XCLIPModel, XCLIPProcessor

    from xclip_hf.evaluation.runner import build_pipeline

    rows = corpus["rows"][:-1]
    model = XCLIPModel.from_pretrained(corpus["model"]).eval()
    text = XCLIPProcessor.from_pretrained(corpus["model"]).tokenizer([r["caption"] for r in rows], padding=True,
                                                                     return_tensors="pt")
    processor = build_pipeline(corpus["model"]).video_processor
    pixels = torch.cat([processor(videos=[v], return_tensors="pt")["pixel_values"] for v in corpus["videos"]])
    with torch.no_grad():
        out = model(**text, pixel_values=pixels)
        text_features = model.get_text_features(**text)
    logits = out.logits_per_text.double().numpy()  # (captions, videos), with the video-specific prompts
    video_features = out.video_embeds  # normalised MIT output (paper Eq. 6)
    text_features = getattr(text_features, "pooler_output", text_features).double()
    cosine = ((text_features / text_features.norm(dim=-1, keepdim=True)) @ video_features.double().T).numpy()
    truth = np.array([int(os.path.basename(r["video"])[1]) for r in rows])
    relevant = np.zeros((len(rows), 7), dtype=bool)
    relevant[np.arange(len(rows)), truth] = True
    return {"rerank": logits, "cosine": cosine, "scale": float(model.logit_scale.detach().exp()),
            "relevant": relevant}


def _ranks(s, rel):
    best = np.where(rel, s, -np.inf).max(1, keepdims=True)
    return 1 + ((s >= best) & ~rel).sum(1)


def _assert_figures(got, matrix, relevant):
    t2v, v2t = _ranks(matrix, relevant), _ranks(matrix.T, relevant.T)
    assert got["t2v_R@1"] == pytest.approx(100 * np.mean(t2v <= 1))
    assert got["t2v_R@5"] == pytest.approx(100 * np.mean(t2v <= 5))
    assert got["t2v_mean_rank"] == pytest.approx(t2v.mean()) and got["v2t_mean_rank"] == pytest.approx(v2t.mean())
    assert got["v2t_num_queries"] == 7 and got["t2v_num_queries"] == 8
    return t2v


def test_retrieval_from_embeddings_vs_xclipmodel(corpus, oracle, tmp_path):
    from xclip_hf.evaluation.retrieval import evaluate_retrieval

    root = corpus["root"]
    report = evaluate_retrieval(corpus["model"], root / "captions.jsonl", root / "emb", output_dir=str(tmp_path),
                                rerank_candidates=7)
    assert report["bad_videos"]["count"] == 1 and report["bad_videos"]["videos"][0]["video"].endswith("broken.mp4")
    for name in ("rerank", "cosine"):
        t2v = _assert_figures(report["results"][name], oracle[name], oracle["relevant"])
        assert 1 < t2v.max() and t2v.min() == 1  # the figures are not trivial
    assert set(report["results"]) >= {"cosine", "rerank", "summary"}
    assert "t2v_R@1" in (tmp_path / "report.md").read_text()


def test_rerank_candidates_rerank_the_best_videos_by_cosine(corpus, oracle):
    """`rerank_candidates=2`: each caption's 2 best videos by cosine carry the prompt logits, the others
    exp(logit_scale) * cosine (once, the option had no effect: every video was re-ranked)."""
    from xclip_hf.evaluation.retrieval import evaluate_retrieval

    root = corpus["root"]
    report = evaluate_retrieval(corpus["model"], root / "captions.jsonl", root / "emb", rerank_candidates=2)
    partial = oracle["cosine"] * oracle["scale"]
    best = np.argsort(-oracle["cosine"], axis=1)[:, :2]
    np.put_along_axis(partial, best, np.take_along_axis(oracle["rerank"], best, 1), 1)
    _assert_figures(report["results"]["rerank"], partial, oracle["relevant"])
    everything = _ranks(oracle["rerank"], oracle["relevant"])
    assert report["results"]["rerank"]["t2v_mean_rank"] != pytest.approx(everything.mean())  # the test can fail


def test_cli_retrieval(corpus, tmp_path, capsys):
    from xclip_hf.cli import main

    root = corpus["root"]
    status = main(["evaluate", "retrieval", "--model", corpus["model"], "--captions", str(root / "captions.jsonl"),
                   "--index", str(root / "emb"), "--output", str(tmp_path), "--no-rerank"])
    assert status == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["results"]) == {"summary", "cosine"} and "t2v_R@1" in capsys.readouterr().out
