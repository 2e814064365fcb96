"""`search_videos` / `xclip-hf search`: exact cosine recall, re-ranking equal to the pipeline's logits, bad arguments;
`score_matrix`: every (query, row) score, whose top-k is `search_videos`'."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _helpers_pipeline import make_our_checkpoint, make_published_checkpoint, write_videos


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from xclip_hf import embed_videos

    root = tmp_path_factory.mktemp("search")
    ckpt = make_our_checkpoint(root / "ckpt")
    videos = write_videos(str(root))
    windows = embed_videos(videos, root / "windows", ckpt, chunk_length_s=0.1, progress=False)
    return root, ckpt, videos, windows


def _cosines(ckpt, ds, text):
    """Independent: tokenizer + XClipModel.get_text_features, cosine in float64 with numpy."""
    from xclip_hf import XClipModel, XClipProcessor

    model, processor = XClipModel.from_pretrained(ckpt).eval(), XClipProcessor.from_pretrained(ckpt)
    tokens = processor.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        t = model.get_text_features(**tokens).pooler_output[0].double().numpy()
    v = np.asarray(ds["video_embeds"], dtype=np.float64)
    return v @ t / (np.linalg.norm(v, axis=1) * np.linalg.norm(t))


def test_search_returns_nearest_rows_by_cosine(setup, capsys):
    from xclip_hf import search_videos
    from xclip_hf.cli import main

    root, ckpt, videos, ds = setup
    cos = _cosines(ckpt, ds, "cooking pasta")
    hits = search_videos(root / "windows", "cooking pasta", ckpt, top_k=len(ds))
    order = np.argsort(-cos)
    assert [(h["path"], h["start_s"]) for h in hits] == [(ds[int(i)]["path"], ds[int(i)]["start_s"]) for i in order]
    np.testing.assert_allclose([h["score"] for h in hits], cos[order], atol=1e-5, rtol=0)

    assert main(["search", "--index", str(root / "windows"), "cooking pasta", "--model", ckpt, "--top-k", "2",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == [{k: h[k] for k in ("path", "start_s", "end_s", "score")} for h in hits[:2]]


def test_float16_index_is_exact():
    from xclip_hf.corpus.search import VideoIndex

    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(20000, 32, generator=gen).half()
    queries = torch.randn(3, 32, generator=gen)
    vectors[1234] = (queries[0] * 3 + 0.01).half()  # a planted near-duplicate of query 0
    index = VideoIndex(vectors, np.arange(20000) + 7)
    scores, ids = index.search(queries, 5)
    v = vectors.double().numpy()
    q = queries.double().numpy()
    cos = (q @ v.T) / (np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(v, axis=1)[None])
    want = np.argsort(-cos, axis=1)[:, :5]
    assert ids[0, 0] == 1234 + 7
    np.testing.assert_array_equal(ids, want + 7)
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(cos, want, 1), atol=1e-6, rtol=0)


def test_faiss_index_matches_exact_cosine(setup, capsys, monkeypatch):
    """The optional datasets FAISS index ("Flat") returns the rows and cosines of an independent float64 cosine;
    an approximate factory (HNSW) finds a planted near-duplicate; without faiss, a clear error."""
    pytest.importorskip("faiss")  # CI installs it (the [test] extra)
    import builtins

    from xclip_hf import search_videos
    from xclip_hf.cli import main
    from xclip_hf.corpus.search import FaissVideoIndex

    root, ckpt, videos, ds = setup
    cos = _cosines(ckpt, ds, "cooking pasta")
    order = np.argsort(-cos)
    hits = search_videos(root / "windows", "cooking pasta", ckpt, top_k=len(ds), faiss_factory="Flat")
    assert [(h["path"], h["start_s"]) for h in hits] == [(ds[int(i)]["path"], ds[int(i)]["start_s"]) for i in order]
    np.testing.assert_allclose([h["score"] for h in hits], cos[order], atol=1e-5, rtol=0)
    assert main(["search", "--index", str(root / "windows"), "cooking pasta", "--model", ckpt, "--top-k", "2", "--json",
                 "--faiss", "Flat"]) == 0
    assert [h["path"] for h in json.loads(capsys.readouterr().out)] == [h["path"] for h in hits[:2]]

    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(5000, 32, generator=gen)
    query = torch.randn(1, 32, generator=gen)
    vectors[777] = query[0] * 2 + 0.01
    scores, ids = FaissVideoIndex(vectors.numpy(), np.arange(5000) + 3, "HNSW32").search(query, 3)
    assert ids[0, 0] == 777 + 3 and scores[0, 0] == pytest.approx(1.0, abs=1e-4)

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        FaissVideoIndex.from_dataset(root / "windows")


def test_rerank_scores_equal_pipeline_logits(setup, tmp_path):
    """Published-format checkpoint: re-ranked scores == the zero-shot pipeline's logits == transformers' XCLIPModel."""
    from transformers import XCLIPModel

    from xclip_hf import embed_videos, search_videos
    from xclip_hf.models.text_features import build_label_set
    from xclip_hf.pipelines.zero_shot_video_classification import ZeroShotVideoClassificationPipeline

    root, _, videos, _ = setup
    published = make_published_checkpoint(tmp_path / "published", seed=3)
    embed_videos(videos, tmp_path / "ctx", published, save_context=True, batch_size=2, progress=False)
    query = "riding a bike"
    hits = search_videos(tmp_path / "ctx", query, published, top_k=5)
    assert len(hits) == 2

    pipe = ZeroShotVideoClassificationPipeline(model=published)
    labels = build_label_set([query])
    oracle = XCLIPModel.from_pretrained(published).eval()
    tokens = pipe.tokenizer([query], return_tensors="pt")
    for hit in hits:
        (chunk,) = pipe.preprocess(hit["path"], label_set=labels)  # one chunk: the whole video, one view
        pixel_values = chunk["pixel_values"][:, 0]
        with torch.no_grad():
            logit = pipe.model(pixel_values=pixel_values, text_embeds=pipe.text_features(labels)).logits_per_video
            reference = oracle(pixel_values=pixel_values, **tokens).logits_per_video
        assert hit["score"] == pytest.approx(float(logit), abs=1e-5)
        assert hit["score"] == pytest.approx(float(reference), abs=1e-4)
    assert hits[0]["score"] >= hits[1]["score"]


def test_search_bad_arguments(setup, tmp_path):
    from xclip_hf import XClipModel, search_videos

    root, ckpt, videos, ds = setup
    vision_only = tmp_path / "vision_only"
    XClipModel.from_pretrained(ckpt).vision_model.save_pretrained(vision_only)
    with pytest.raises(ValueError, match="vision_only.*has no text tower"):
        search_videos(root / "windows", "dancing", str(vision_only))
    with pytest.raises(ValueError, match="does not exist"):
        search_videos(tmp_path / "nowhere", "dancing", ckpt)
    with pytest.raises(ValueError, match="not a dataset written by"):
        search_videos(ckpt, "dancing", ckpt)
    with pytest.raises(ValueError, match="non-empty texts"):
        search_videos(root / "windows", "  ", ckpt)
    with pytest.raises(ValueError, match="top_k"):
        search_videos(root / "windows", "dancing", ckpt, top_k=0)


def test_queries_are_independent_and_repeats_allowed(setup, capsys):
    """Search queries are not candidate labels: repeats and near-repeats ("dancing", "Dancing": the same tokens)
    each get their own result list, equal to searching them alone."""
    from xclip_hf import search_videos
    from xclip_hf.cli import main

    root, ckpt, videos, ds = setup
    queries = ["dancing", "Dancing", "cooking pasta", "dancing"]
    results = search_videos(root / "windows", queries, ckpt, top_k=3)
    assert len(results) == 4
    for query, hits in zip(queries, results):
        alone = search_videos(root / "windows", query, ckpt, top_k=3)
        assert [h["path"] for h in hits] == [h["path"] for h in alone]
        np.testing.assert_allclose([h["score"] for h in hits], [h["score"] for h in alone], atol=1e-6, rtol=0)
    cos = _cosines(ckpt, ds, "Dancing")
    np.testing.assert_allclose([h["score"] for h in results[1]], -np.sort(-cos)[:3], atol=1e-5, rtol=0)
    capsys.readouterr()
    assert main(["search", str(root / "windows"), "dancing", "Dancing", "--model", ckpt, "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"dancing", "Dancing"}


def test_empty_faiss_factory_is_refused(setup, capsys):
    from xclip_hf import search_videos
    from xclip_hf.cli import main

    root, ckpt, videos, ds = setup
    for factory in ("", "  "):
        with pytest.raises(ValueError, match="faiss_factory must be a FAISS index factory string"):
            search_videos(root / "windows", "dancing", ckpt, faiss_factory=factory)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # the CLI refuses it as a bad argument (exit status 2)
        main(["search", str(root / "windows"), "dancing", "--model", ckpt, "--faiss", ""])
    assert exit_.value.code == 2 and "--faiss" in capsys.readouterr().err


def test_score_matrix_top_k_equals_search_videos(setup, tmp_path):
    """`score_matrix`: every (query, row) score; its per-query top-k is `search_videos`' result (cosine, and re-ranked
    with every row a candidate); with `rerank_candidates` only the best rows by cosine carry the prompt logits, the
    others exp(logit_scale) * cosine; a row without a vector scores -inf."""
    from xclip_hf import XClipModel, embed_videos, search_videos
    from xclip_hf.corpus.search import score_matrix

    root, ckpt, videos, ds = setup
    queries = ["cooking pasta", "dancing", "cooking pasta"]

    def assert_top_k(matrix, dataset, hits, k):
        for row, q_hits in zip(matrix, hits):
            order = np.argsort(-row, kind="stable")[:k]
            assert [(dataset[int(i)]["path"], dataset[int(i)]["start_s"]) for i in order] == \
                [(h["path"], h["start_s"]) for h in q_hits]
            assert row[order].tolist() == [h["score"] for h in q_hits]

    cosine = score_matrix(root / "windows", queries, ckpt)  # the dataset stored no video_context: cosine
    assert cosine.shape == (3, len(ds)) and len(ds) > 4
    np.testing.assert_allclose(cosine[1], _cosines(ckpt, ds, "dancing"), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(cosine[0], cosine[2])
    assert_top_k(cosine, ds, search_videos(root / "windows", queries, ckpt, top_k=4), 4)

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    ctx = embed_videos([*videos, str(broken)], tmp_path / "ctx", ckpt, chunk_length_s=0.1, save_context=True,
                       progress=False)
    full = score_matrix(tmp_path / "ctx", queries, ckpt)
    bad = [i for i, p in enumerate(ctx["path"]) if p == str(broken)]
    assert len(bad) == 1 and np.isneginf(full[:, bad]).all() and np.isfinite(np.delete(full, bad, 1)).all()
    assert_top_k(full, ctx, search_videos(tmp_path / "ctx", queries, ckpt, top_k=3, rerank_candidates=len(ctx)), 3)
    plain = score_matrix(tmp_path / "ctx", queries, ckpt, rerank=False)
    partial = score_matrix(tmp_path / "ctx", queries, ckpt, rerank_candidates=2)
    want = plain * XClipModel.from_pretrained(ckpt).logit_scale.detach().exp().item()
    best = np.argsort(-plain, axis=1)[:, :2]
    np.put_along_axis(want, best, np.take_along_axis(full, best, 1), 1)
    np.testing.assert_allclose(partial, want, atol=1e-5, rtol=0)
    finite = np.isfinite(full)
    assert np.abs(partial[finite] - full[finite]).max() > 1e-3  # the prompts do change the other rows' scores
    with pytest.raises(ValueError, match="rerank_candidates must be a positive integer"):
        score_matrix(tmp_path / "ctx", queries, ckpt, rerank_candidates=0)
