"""Hubness correction (`search --hubness`, `evaluate retrieval --hubness`): QB-Norm's Dynamic Inverted Softmax and the
dual softmax against independent numpy computations of their formulas, the corpus as QB-Norm's query bank (its own
row left out), the default path unchanged, recall on a clustered corpus with planted hubs, and bad arguments."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from _helpers_index import clustered_vectors, commit_rows


def _dis_loop(scores, bank, beta=20.0, k=1):
    """Independent: QB-Norm's DIS written from the paper, loop by loop (bank: probes x gallery, -inf = left out)."""
    scores, bank = np.asarray(scores, float), np.asarray(bank, float)
    activated = set()
    for row in bank:
        finite = [j for j in range(len(row)) if np.isfinite(row[j])]
        activated |= set(sorted(finite, key=lambda j: -row[j])[:k])
    out = scores.copy()
    for q in range(len(scores)):
        if int(np.argmax(scores[q])) in activated:
            for j in range(scores.shape[1]):
                denominator = sum(np.exp(beta * row[j]) for row in bank if np.isfinite(row[j]))
                out[q, j] = np.exp(beta * scores[q, j]) / denominator
    return out


def _dual_softmax_loop(scores, temperature=0.01):
    scores = np.asarray(scores, float)
    out = np.empty_like(scores)
    for j in range(scores.shape[1]):
        weights = np.exp((scores[:, j] - scores[:, j].max()) / temperature)
        out[:, j] = scores[:, j] * weights / weights.sum()
    return out


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_qb_norm_and_dual_softmax_match_the_formulas():
    from xclip_hf.corpus.hubness import dual_softmax, qb_norm

    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.2, 0.6, (9, 12))
    bank = rng.uniform(-0.2, 0.6, (7, 12))
    bank[2, 5] = -np.inf  # a pair left out (a probe's own row)
    bank[:, 3] += 0.3  # a hub: every probe's top-1
    scores[:4, 3] += 0.5  # queries whose top-1 is the hub (normalised); the others keep their scores
    for k in (1, 2):
        want = _dis_loop(scores, bank, k=k)
        got = qb_norm(scores, bank, k=k)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
        assert not np.allclose(got[:4], scores[:4]) and (got == scores).all(axis=1).any()
    np.testing.assert_allclose(dual_softmax(scores), _dual_softmax_loop(scores), rtol=1e-12, atol=1e-15)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """An embed output of 240 clustered float16 vectors (2 error rows) and 6 queries near some of them."""
    out = tmp_path_factory.mktemp("hubness") / "emb"
    vectors = clustered_vectors(240, width=16, centres=20)
    commit_rows(out, vectors, errors=(7, 100), shard_rows=100)
    rng = np.random.default_rng(3)
    queries = _unit(vectors[[1, 2, 50, 51, 120, 200]]) + 0.3 * rng.standard_normal((6, 16))
    return out, vectors, queries.astype(np.float32)


def test_search_with_qbnorm_is_the_formula_with_the_corpus_as_bank(small):
    """Every valid row is a probe (bank_size >= rows); a probe's own row is left out; top-5 of 238 rows recalls
    100 rows first, so rows are recalled until the corrected top-5 is that over every row."""
    from xclip_hf.corpus.search import search_vectors

    out, vectors, queries = small
    valid = np.setdiff1d(np.arange(240), [7, 100])
    v = _unit(vectors[valid].astype(np.float64))
    bank = v @ v.T
    np.fill_diagonal(bank, -np.inf)
    raw = _unit(queries) @ v.T
    want = _dis_loop(raw, bank)
    assert not np.allclose(want, raw)  # some queries are normalised
    hits = search_vectors(out, queries, top_k=5, hubness="qbnorm", bank_size=1000)
    for q, (ids, scores) in enumerate(hits):
        order = np.argsort(-want[q], kind="stable")[:5]
        assert ids.tolist() == valid[order].tolist()
        np.testing.assert_allclose(scores, want[q, order], rtol=2e-3)
    assert os.path.isfile(out / "_qbnorm" / "manifest.json")  # stored beside the embeddings, reused next time
    again = search_vectors(out, queries, top_k=5, hubness="qbnorm", bank_size=1000)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(hits, again))


def test_qbnorm_search_recalls_past_the_first_candidates(tmp_path):
    """A row far down the cosine ranking (past the 100 rows recalled first) but alone in the corpus (a small
    normaliser) tops the corrected ranking: the search widens its recall until no row left out can enter."""
    from xclip_hf.corpus.search import search_vectors

    rng = np.random.default_rng(2)
    e = np.eye(16)
    cluster = e[0] + 0.01 * rng.standard_normal((150, 16))  # near-duplicates: large normalisers
    far = _unit(rng.standard_normal((50, 16)) + 3 * e[rng.integers(4, 16, 50)])
    lonely = 0.6 * e[0] + 0.3 * e[2] + 0.7 * e[3]  # nearer the query than the cluster is, nothing near it
    query = e[0] + 0.2 * e[2]
    twins = query + 0.001 * rng.standard_normal((2, 16))  # the query's top-1, each the other's: activated
    vectors = np.concatenate([cluster, far, lonely[None], twins])
    commit_rows(tmp_path / "emb", vectors.astype(np.float16))
    v = _unit(vectors.astype(np.float16))
    bank = v @ v.T
    np.fill_diagonal(bank, -np.inf)
    raw = _unit(query[None]) @ v.T
    assert (raw[0] > raw[0, 200]).sum() >= 100  # not among the first rows recalled
    want = _dis_loop(raw, bank)
    ids, scores = search_vectors(tmp_path / "emb", query[None].astype(np.float32), top_k=3, hubness="qbnorm")[0]
    assert ids[0] == 200 and ids.tolist() == np.argsort(-want[0], kind="stable")[:3].tolist()


def test_stored_bank_follows_the_settings_and_the_rows(tmp_path):
    from xclip_hf.corpus.search import corpus_query_bank_of
    from xclip_hf.corpus.index import load_output

    out = tmp_path / "emb"
    commit_rows(out, clustered_vectors(40, width=16, centres=5))
    first = corpus_query_bank_of(load_output(out), bank_size=16)
    manifest = json.loads((out / "_qbnorm" / "manifest.json").read_text())
    assert first.probes == 16 and manifest["bank_size"] == 16 and manifest["rows"] == 40
    assert corpus_query_bank_of(load_output(out), bank_size=40).probes == 40  # other settings: computed again
    commit_rows(out, clustered_vectors(10, width=16, centres=5, start=1), first=40)  # embedded again: 50 rows
    grown = corpus_query_bank_of(load_output(out), bank_size=40)
    assert len(grown.log_normaliser) == 50 and json.loads((out / "_qbnorm" / "manifest.json").read_text())["rows"] == 50


def test_default_path_is_unchanged(small):
    from xclip_hf.corpus.search import VideoIndex, correct_scores, search_vectors
    from xclip_hf.corpus.index import load_output

    out, _, queries = small
    index = VideoIndex.from_dataset(out)
    scores, ids = index.search(torch.from_numpy(queries), 7)
    for q, (got_ids, got_scores) in enumerate(search_vectors(out, queries, top_k=7, hubness="none")):
        assert got_ids.tolist() == ids[q].tolist() and (got_scores == scores[q].double().numpy()).all()
    matrix = np.random.default_rng(0).standard_normal((3, 240))
    assert (correct_scores(matrix, load_output(out), "none") == matrix).all()


def _planted_hubs(n=2000, width=64, hubs=60, queries=300, shift=1.0):
    """A clustered corpus where ``hubs`` rows are near-duplicates of one generic direction g, and queries (noisy
    copies of non-hub rows, the text->video setting) shifted by ``shift`` g: (vectors, hub rows, queries, paired)."""
    rng = np.random.default_rng(5)
    vectors = _unit(clustered_vectors(n, width=width, centres=60))
    g = rng.standard_normal(width)
    g /= np.linalg.norm(g)
    hub_rows = rng.choice(n, hubs, replace=False)
    vectors[hub_rows] = g + 0.3 * rng.standard_normal((hubs, width)) / np.sqrt(width)
    paired = rng.choice(np.setdiff1d(np.arange(n), hub_rows), queries, replace=False)
    q = _unit(vectors[paired]) + rng.standard_normal((queries, width)) / np.sqrt(width) + shift * g
    return vectors.astype(np.float16), hub_rows, q.astype(np.float32), paired


def _recall(hits, paired, k):
    return np.mean([p in ids[:k].tolist() for (ids, _), p in zip(hits, paired)])


def test_qbnorm_improves_recall_on_a_corpus_with_planted_hubs(tmp_path):
    from xclip_hf.corpus.search import search_vectors

    vectors, hub_rows, queries, paired = _planted_hubs()
    commit_rows(tmp_path / "emb", vectors)
    plain = search_vectors(tmp_path / "emb", queries, top_k=5)
    corrected = search_vectors(tmp_path / "emb", queries, top_k=5, hubness="qbnorm")
    hub_share = [np.mean([ids[0] in set(hub_rows.tolist()) for ids, _ in h]) for h in (plain, corrected)]
    assert hub_share[0] > 0.3 and hub_share[1] < hub_share[0]  # the hubs take many top-1s, fewer after QB-Norm
    for k in (1, 5):
        assert _recall(corrected, paired, k) > _recall(plain, paired, k) + 0.03, k


def test_bad_arguments(small, tmp_path):
    from xclip_hf.corpus.search import search_vectors

    out, _, queries = small
    with pytest.raises(ValueError, match="hubness must be one of none, qbnorm, dual-softmax, got 'csls'"):
        search_vectors(out, queries, hubness="csls")
    with pytest.raises(ValueError, match="bank size must be an integer of at least 16, got 8"):
        search_vectors(out, queries, hubness="qbnorm", bank_size=8)
    with pytest.raises(ValueError, match="beta must be a positive number"):
        search_vectors(out, queries, hubness="qbnorm", qbnorm_beta=0)
    with pytest.raises(ValueError, match="at least two queries"):
        search_vectors(out, queries[:1], hubness="dual-softmax")
    commit_rows(tmp_path / "tiny", clustered_vectors(12, width=16, centres=3))
    with pytest.raises(ValueError, match="needs at least 16 videos with a vector, the embeddings hold 12"):
        search_vectors(tmp_path / "tiny", queries, hubness="qbnorm")


# ------------------------------------------------------------------------------------------ with a model and texts
@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """A tiny checkpoint; an embed output of 24 synthetic rows recorded as that model's; captions for 6 of them."""
    from _helpers_pipeline import make_our_checkpoint

    from xclip_hf import XClipModel
    from xclip_hf.jobs.identity import model_fingerprint

    root = tmp_path_factory.mktemp("hubness_texts")
    ckpt = make_our_checkpoint(root / "ckpt")
    model = XClipModel.from_pretrained(ckpt)
    vectors = clustered_vectors(24, width=model.config.projection_dim, centres=6)
    commit_rows(root / "emb", vectors, fingerprint=model_fingerprint(model))
    captions = ["cooking pasta", "riding a bike", "a cat", "dancing", "swimming", "playing guitar"]
    rows = [{"video": f"/corpus/v{i:07d}.mp4", "caption": c} for i, c in zip((0, 3, 5, 9, 14, 20), captions)]
    (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, ckpt, vectors, rows


def _cosines(ckpt, texts, vectors):
    """Independent: tokenizer + XClipModel.get_text_features, cosine in float64 with numpy."""
    from xclip_hf import XClipModel, XClipProcessor

    model, processor = XClipModel.from_pretrained(ckpt).eval(), XClipProcessor.from_pretrained(ckpt)
    with torch.no_grad():
        t = model.get_text_features(**processor.tokenizer(texts, return_tensors="pt", padding=True))
    return _unit(getattr(t, "pooler_output", t).double().numpy()) @ _unit(vectors).T


def test_search_videos_and_cli_options(texts, capsys):
    from xclip_hf import search_videos
    from xclip_hf.cli import main

    root, ckpt, vectors, rows = texts
    queries = [r["caption"] for r in rows]
    default = search_videos(root / "emb", queries, ckpt, top_k=24)
    assert search_videos(root / "emb", queries, ckpt, top_k=24, hubness="none") == default
    cos = _cosines(ckpt, queries, vectors)
    bank = _unit(vectors) @ _unit(vectors).T
    np.fill_diagonal(bank, -np.inf)
    want = _dis_loop(cos, bank)
    got = search_videos(root / "emb", queries, ckpt, top_k=3, hubness="qbnorm", bank_size=16)
    got_all = search_videos(root / "emb", queries, ckpt, top_k=24, hubness="qbnorm", bank_size=24)
    for q, hits in enumerate(got_all):
        order = np.argsort(-want[q], kind="stable")
        assert [h["path"] for h in hits] == [f"/corpus/v{i:07d}.mp4" for i in order]
        np.testing.assert_allclose([h["score"] for h in hits], want[q, order], rtol=1e-3)
    assert all(len(h) == 3 for h in got)
    dual = search_videos(root / "emb", queries, ckpt, top_k=24, hubness="dual-softmax")
    want_dual = _dual_softmax_loop(cos)
    for q, hits in enumerate(dual):
        assert [h["path"] for h in hits][:3] == [f"/corpus/v{i:07d}.mp4" for i in np.argsort(-want_dual[q])[:3]]

    assert main(["search", "--index", str(root / "emb"), "a cat", "--model", ckpt, "--hubness", "qbnorm",
                 "--bank-size", "24", "--json", "--top-k", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [h["path"] for h in printed] == [f"/corpus/v{i:07d}.mp4" for i in np.argsort(-want[2])[:2]]
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--index", str(root / "emb"), "a cat", "--model", ckpt, "--hubness", "csls"])
    assert exit_info.value.code == 2 and "invalid choice: 'csls'" in capsys.readouterr().err


def test_evaluate_retrieval_with_hubness(texts, tmp_path, capsys):
    from xclip_hf.cli import main
    from xclip_hf.evaluation.retrieval import evaluate_retrieval, retrieval_metrics

    root, ckpt, vectors, rows = texts
    plain = evaluate_retrieval(ckpt, root / "captions.jsonl", root / "emb")
    assert set(plain["results"]) == {"summary", "cosine"} and "hubness" not in plain["settings"]
    kept = [0, 3, 5, 9, 14, 20]  # the captioned videos are the candidates (and QB-Norm's bank)
    cos = _cosines(ckpt, [r["caption"] for r in rows], vectors[kept])
    relevant = np.eye(6, dtype=bool)
    report = evaluate_retrieval(ckpt, root / "captions.jsonl", root / "emb", hubness="dual-softmax")
    want_dual = retrieval_metrics(_dual_softmax_loop(cos), relevant)
    got = report["results"]["cosine+dual-softmax"]
    assert got["t2v_mean_rank"] == pytest.approx(want_dual["mean_rank"])
    assert got["t2v_R@1"] == pytest.approx(want_dual["R@1"])
    assert report["results"]["cosine"] == plain["results"]["cosine"]  # the uncorrected figures stay
    assert report["settings"]["hubness"]["method"] == "dual-softmax"
    with pytest.raises(ValueError, match="needs at least 16 videos with a vector, the embeddings hold 6"):
        evaluate_retrieval(ckpt, root / "captions.jsonl", root / "emb", hubness="qbnorm")

    words = ["cooking", "riding", "a cat", "dancing", "swimming"]  # 20 captions for 20 of the 24 videos
    many = [{"video": f"/corpus/v{i:07d}.mp4", "caption": f"{words[i % 5]} {words[(i // 5 + i) % 5]} {i}"}
            for i in range(20)]
    (tmp_path / "many.jsonl").write_text("".join(json.dumps(r) + "\n" for r in many))
    cos = _cosines(ckpt, [r["caption"] for r in many], vectors[:20])
    bank = _unit(vectors[:20]) @ _unit(vectors[:20]).T  # the evaluated videos are the bank, each leaves itself out
    np.fill_diagonal(bank, -np.inf)
    report = evaluate_retrieval(ckpt, tmp_path / "many.jsonl", root / "emb", hubness="qbnorm", bank_size=20)
    want = retrieval_metrics(_dis_loop(cos, bank), np.eye(20, dtype=bool))
    got = report["results"]["cosine+qbnorm"]
    assert got["t2v_mean_rank"] == pytest.approx(want["mean_rank"]) and got["t2v_R@5"] == pytest.approx(want["R@5"])
    assert report["settings"]["hubness"]["bank_probes"] == 20
    assert got["t2v_mean_rank"] != pytest.approx(report["results"]["cosine"]["t2v_mean_rank"])  # it changed something
    assert main(["evaluate", "retrieval", "--model", ckpt, "--captions", str(root / "captions.jsonl"), "--index",
                 str(root / "emb"), "--output", str(tmp_path), "--hubness", "dual-softmax"]) == 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["results"]["cosine+dual-softmax"]["t2v_mean_rank"] == pytest.approx(want_dual["mean_rank"])
