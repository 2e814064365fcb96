"""Search at the scale where small tests hide defects: 10,240 rows with contexts and error rows interleaved.

The rows are written directly with `datasets` (random vectors, no model run), plus copies of two rows that
`embed_videos` made from real videos. Oracles are independent: float64 numpy cosines over the generated vectors
(recall); transformers' `XCLIPModel` (its text tower and prompt generator) with the score formula of its `forward`
in numpy, over the same stored vectors, and the zero-shot pipeline's logits on the real videos (re-rank).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _helpers_pipeline import make_published_checkpoint, write_videos

ROWS = 10_240
ERROR_EVERY = 7  # rows 0, 7, 14, ... are error rows (row 0 first: an error row sorts before every good one)
REAL_AT = (3, 61, 5_003, 10_201)  # where copies of the two real rows go (past the 50 re-rank candidates too)
QUERY = "riding a bike"


def _oracle_text(published, texts):
    """transformers' XCLIPModel text features (K, P) as float64, and the model."""
    from transformers import XCLIPModel, XCLIPProcessor

    oracle = XCLIPModel.from_pretrained(published).eval()
    tokens = XCLIPProcessor.from_pretrained(published).tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        text = oracle.get_text_features(**tokens)
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    return oracle, text.double().numpy()


def _list_array(values: np.ndarray, valid: np.ndarray):
    """Rows of ``values`` (N, W) or (N, T, W) as a pyarrow list<float32> / list<list<float32>>, null where not
    ``valid`` (error rows)."""
    import pyarrow as pa

    kept = values[valid].astype(np.float32)
    inner = pa.array(kept.reshape(-1))
    for size in reversed(kept.shape[2:]):  # the nested levels, innermost first
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, len(inner) + 1, size, dtype=np.int32)), inner)
    offsets = np.concatenate([[0], np.cumsum(np.where(valid, values.shape[1], 0))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), inner, mask=pa.array(~valid))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(dir, published checkpoint, generated arrays): 10,240 rows, every 7th an error row, random vectors pointing
    away from the query (cosine -0.72 .. -0.95) except the copies of the two real rows."""
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from xclip_hf import embed_videos
    from xclip_hf.jobs.identity import model_fingerprint
    from xclip_hf.jobs.store import CONFIG_NAME, row_features
    from xclip_hf.models.loading import load_model_and_processor

    root = tmp_path_factory.mktemp("scale")
    published = make_published_checkpoint(root / "published", seed=3)
    real = embed_videos(write_videos(str(root)), root / "real", published, save_context=True, progress=False)
    real_video = np.asarray(real["video_embeds"], dtype=np.float32)
    real_context = np.asarray(real["video_context"], dtype=np.float32)
    width, tokens = real_video.shape[1], real_context.shape[1]

    _, text = _oracle_text(published, [QUERY])
    direction = text[0] / np.linalg.norm(text[0])
    rng = np.random.default_rng(0)
    video = rng.standard_normal((ROWS, width))
    video -= np.outer(video @ direction, direction)  # orthogonal to the query ...
    video -= np.outer(rng.uniform(1.0, 3.0, ROWS) * np.linalg.norm(video, axis=1), direction)  # ... then away from it
    context = rng.standard_normal((ROWS, tokens, width))
    valid = np.arange(ROWS) % ERROR_EVERY != 0
    paths = np.array([f"/corpus/v{i:05d}.mp4" for i in range(ROWS)], dtype=object)
    for k, at in enumerate(REAL_AT):
        assert valid[at]
        video[at], context[at], paths[at] = real_video[k % 2], real_context[k % 2], real["path"][k % 2]
    video, context = video.astype(np.float32), context.astype(np.float32)

    table = pa.table({
        "path": pa.array(paths.tolist()), "start_s": pa.array(np.zeros(ROWS)),
        "end_s": pa.array(np.where(valid, 1.0, np.nan)),
        "video_embeds": _list_array(video, valid), "video_context": _list_array(context, valid),
        "error": pa.array([None if ok else "ValueError: cannot decode" for ok in valid], type=pa.string()),
    })
    features = row_features(width, "float32", frame_embeds=False, video_context=True)
    Dataset(InMemoryTable(table)).cast(features).save_to_disk(str(root / "big"))
    net = load_model_and_processor(published, need_text=False).model
    with open(root / "big" / CONFIG_NAME, "w") as f:
        json.dump({"model_fingerprint": model_fingerprint(net), "model_source": published}, f)
    return root / "big", published, video, context, valid, paths


def test_exact_and_faiss_recall_at_scale(corpus):
    from xclip_hf.corpus.search import FaissVideoIndex, VideoIndex

    directory, _, video, _, valid, _ = corpus
    queries = torch.from_numpy(np.random.default_rng(1).standard_normal((3, video.shape[1])).astype(np.float32))
    good = np.flatnonzero(valid)
    v = video[good].astype(np.float64)
    q = queries.double().numpy()
    cos = (q @ v.T) / (np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(v, axis=1)[None])
    want = good[np.argsort(-cos, axis=1)[:, :20]]
    want_scores = -np.sort(-cos, axis=1)[:, :20]
    row_cos = np.full((len(q), len(valid)), np.nan)
    row_cos[:, good] = cos
    for index in (VideoIndex.from_dataset(directory), FaissVideoIndex.from_dataset(directory, "Flat")):
        assert len(index) == valid.sum()
        scores, ids = index.search(queries, 20)
        for qi in range(len(q)):  # the copies of a real row tie: compare as sets, and each id with its own cosine
            assert set(ids[qi]) == set(want[qi])  # dataset row ids: error rows are never returned
            np.testing.assert_allclose(row_cos[qi, ids[qi]], scores[qi].numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(scores.numpy(), want_scores, atol=1e-5, rtol=0)


def _oracle_logits(published, video, context, rows):
    """transformers' prompt generator on the stored vectors of ``rows``, the logit of its forward in float64."""
    oracle, text = _oracle_text(published, [QUERY])
    with torch.no_grad():
        c = torch.from_numpy(text).float()[None].expand(len(rows), -1, -1)
        prompted = (c + oracle.prompts_generator(c, torch.from_numpy(context[rows]))).double().numpy()[:, 0]
    v = video[rows].astype(np.float64)
    cos = np.sum(v * prompted, axis=1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(prompted, axis=1))
    return oracle.logit_scale.exp().item() * cos


def test_rerank_at_scale_equals_oracle_and_pipeline(corpus):
    """Re-ranking 50 (then all 8,777) candidates of 10,240 rows with error rows interleaved: the hits are the
    oracle's, with its logits; the copies of the real rows score what the zero-shot pipeline gives their videos."""
    from datasets import load_from_disk

    from xclip_hf import search_videos
    from xclip_hf.models.text_features import build_label_set
    from xclip_hf.pipelines.zero_shot_video_classification import ZeroShotVideoClassificationPipeline

    directory, published, video, context, valid, paths = corpus
    good = np.flatnonzero(valid)
    _, text = _oracle_text(published, [QUERY])
    v = video[good].astype(np.float64)
    cosine = v @ text[0] / (np.linalg.norm(v, axis=1) * np.linalg.norm(text[0]))
    for top_k, candidates in ((10, None), (len(good), len(good))):
        hits = search_videos(directory, QUERY, published, top_k=top_k, rerank_candidates=candidates)
        shortlist = good[np.argsort(-cosine, kind="stable")[:candidates or 50]]
        logits = _oracle_logits(published, video, context, shortlist)
        best = np.argsort(-logits, kind="stable")[:top_k]
        assert sorted(h["path"] for h in hits) == sorted(paths[shortlist[best]].tolist())
        logit_of = dict(zip(paths[shortlist].tolist(), logits))  # the two copies of a real row have one logit
        np.testing.assert_allclose([h["score"] for h in hits], [logit_of[h["path"]] for h in hits], atol=1e-4, rtol=0)
        assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
        if top_k == 10:  # no near-ties among the best ten: the same order
            assert [h["path"] for h in hits] == paths[shortlist[best]].tolist()

    pipe = ZeroShotVideoClassificationPipeline(model=published)
    labels = build_label_set([QUERY])
    real = {paths[at] for at in REAL_AT}
    for path in real:
        (chunk,) = pipe.preprocess(path, label_set=labels)  # one chunk: the whole video, one view
        pixel_values = chunk["pixel_values"][:, 0]  # (1, views=1, T, C, H, W) -> (1, T, C, H, W)
        with torch.no_grad():
            logit = pipe.model(pixel_values=pixel_values, text_embeds=pipe.text_features(labels)).logits_per_video
        scores = [h["score"] for h in hits if h["path"] == path]
        assert len(scores) == 2  # both copies of this real row
        np.testing.assert_allclose(scores, float(logit), atol=1e-4, rtol=0)

    # a shuffled view of the dataset (an indices mapping) ranks the same rows
    view = load_from_disk(str(directory)).select(np.random.default_rng(2).permutation(ROWS).tolist())
    again = search_videos(view, QUERY, published, top_k=10)
    first = search_videos(directory, QUERY, published, top_k=10)
    assert [h["path"] for h in again] == [h["path"] for h in first]
    np.testing.assert_allclose([h["score"] for h in again], [h["score"] for h in first], atol=1e-6, rtol=0)
