"""`xclip-hf index` / `corpus.index`: a FAISS index of an embed output (flat, IVF-PQ, HNSW) built block by block from
the memory-mapped vectors, searched with exact re-ranking; refused for another model's embeddings, detected when
the output gained shards after it was built; the CLI's bad arguments; `search_videos` through it.

Recall targets (recall@10 after exact re-ranking, 100 new queries from the same clustered mixture, 20,000
vectors of width 128, every 97th row an error row): flat >= 0.99 (it is an exact scan), ivfpq and hnsw >= 0.90
(they are tuned for 0.95 on their own tuning queries).
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from _helpers_embed import cli, setup  # noqa: F401  (the tiny checkpoint and videos fixture)
from _helpers_index import clustered_vectors, commit_rows, exact_top

faiss = pytest.importorskip("faiss")  # CI installs it (the [test] extra)

ROWS, ERRORS = 20_000, set(range(0, 20_000, 97))
TARGETS = {"flat": 0.99, "ivfpq": 0.90, "hnsw": 0.90}


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """FAISS on one thread: on a CPU shared with other work, its spinning OpenMP threads cost up to 20x."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """An embed output of 20,000 clustered vectors (4 shards, merged) and its exact top-10 for 100 new queries."""
    out = tmp_path_factory.mktemp("index") / "out"
    vectors = clustered_vectors(ROWS)
    commit_rows(out, vectors, errors=ERRORS)
    queries = clustered_vectors(100, start=10 ** 6)
    return out, vectors, queries, exact_top(vectors, queries, 10, skip=ERRORS)


@pytest.mark.parametrize("kind", ["flat", "ivfpq", "hnsw"])
def test_recall_of_each_kind_after_exact_reranking(corpus, kind):
    from xclip_hf.corpus.index import build_index, open_index

    out, vectors, queries, truth = corpus
    manifest = build_index(out, kind=kind, progress=False)
    assert manifest["kind"] == kind and manifest["vectors"] == ROWS - len(ERRORS)
    index = open_index(out)
    scores, rows = index.search(torch.from_numpy(queries.astype(np.float32)), 10)
    recall = np.mean([len(set(r) & set(t)) / 10 for r, t in zip(rows.tolist(), truth.tolist())])
    assert recall >= TARGETS[kind], (kind, recall)
    assert not set(rows.ravel().tolist()) & ERRORS  # error rows are never found
    # the scores are the exact cosines of the rows returned (re-ranked from the stored vectors), best first
    v = vectors[rows].astype(np.float64)
    q = queries.astype(np.float64)[:, None, :]
    cosines = (v * q).sum(-1) / (np.linalg.norm(v, axis=-1) * np.linalg.norm(q, axis=-1))
    np.testing.assert_allclose(scores.numpy(), cosines, atol=1e-5)
    assert (np.diff(scores.numpy(), axis=1) <= 1e-7).all()


def test_auto_picks_the_kind_for_the_memory_budget(corpus):
    """A budget the exact flat index (about 256 B per vector here) does not fit: IVF-PQ; a large one: flat."""
    from xclip_hf.corpus.index import build_index

    out = corpus[0]
    assert build_index(out, progress=False)["kind"] == "flat"
    small = build_index(out, memory_gb=4 / 1024, progress=False)  # 4 MiB: 80% of it < 20k x 256 B
    assert small["kind"] == "ivfpq" and small["measured"]["index_bytes"] < 0.8 * 4 * 2 ** 20
    with pytest.raises(ValueError, match="memory budget"):
        build_index(out, kind="flat", memory_gb=4 / 1024, progress=False)


def _small_output(path, fingerprint="sha256:" + "a" * 64, rows=3_000):
    commit_rows(path, clustered_vectors(rows, seed=1), fingerprint=fingerprint, shard_rows=1_000)
    return path


def test_index_refused_for_another_models_embeddings(tmp_path):
    from xclip_hf.corpus.index import INDEX_DIR, IndexMismatchError, build_index, open_index

    first = _small_output(tmp_path / "first")
    build_index(first, progress=False)
    open_index(first, model_fingerprint="sha256:" + "a" * 64)  # the model that wrote it: fine
    with pytest.raises(IndexMismatchError, match="another model's embeddings"):
        open_index(first, model_fingerprint="sha256:" + "c" * 64)
    other = _small_output(tmp_path / "other", fingerprint="sha256:" + "b" * 64)  # same rows, another model
    shutil.copytree(first / INDEX_DIR, other / INDEX_DIR)
    with pytest.raises(IndexMismatchError, match=r"aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        open_index(other)


def test_output_that_gained_shards_is_detected(tmp_path, caplog):
    from xclip_hf.corpus.index import StaleIndexError, build_index, open_index
    from xclip_hf.jobs.store import ShardStore, row_features

    out = _small_output(tmp_path / "out")
    build_index(out, progress=False)
    # a shard committed by a run that has not merged yet: the dataset searched is unchanged, a warning says so
    store = ShardStore(out)
    paths = ["/corpus/late.mp4"]
    store.commit({"path": paths, "start_s": [0.0], "end_s": [1.0], "video_embeds": [clustered_vectors(1)[0]],
                  "error": [None]}, paths, row_features(128, "float16", False, False))
    with caplog.at_level(logging.WARNING, logger="xclip_hf.corpus.index"):
        assert len(open_index(out)) == 3_000
    assert "3 shard(s)" in caplog.text and "4 shard(s) (1 new)" in caplog.text and str(out) in caplog.text
    # merged: the rows changed under the index
    commit_rows(out, clustered_vectors(500, seed=2), first=10_000)
    with pytest.raises(StaleIndexError) as err:
        open_index(out)
    text = str(err.value)
    assert str(out) in text and "3 shard(s) and 3000 row(s)" in text and "5 shard(s) (2 new) and 3501 row(s)" in text
    build_index(out, progress=False)  # rebuilt: fine again
    assert len(open_index(out)) == 3_501


@pytest.mark.parametrize("argv,status,needles", [
    (["index", "{tmp}/no-such-output"], 1, ["no-such-output", "does not exist"]),
    (["index", "{out}", "--kind", "annoy"], 2, ["--kind", "annoy"]),
    (["index", "{out}", "--memory-gb", "0"], 2, ["--memory-gb", "'0'"]),
    (["index", "{out}", "--memory-gb", "-2"], 2, ["--memory-gb", "'-2'"]),
    (["index", "{out}", "--recall", "1.5"], 2, ["--recall", "1.5"]),
])
def test_cli_errors_name_the_input(tmp_path, capsys, argv, status, needles):
    out = _small_output(tmp_path / "out", rows=200)
    argv = [a.format(tmp=tmp_path, out=out) for a in argv]
    try:
        code, err = cli(capsys, *argv)
    except SystemExit as exit_:
        code, err = exit_.code, capsys.readouterr().err
    assert code == status, err
    line = [line for line in err.splitlines() if line.startswith("xclip-hf index: error:")]
    assert len(line) == 1 and all(n in line[0] for n in needles), err


def test_cli_builds_and_reports(tmp_path, capsys):
    out = _small_output(tmp_path / "out")
    code, err = cli(capsys, "index", out, "--kind", "hnsw", "--no-progress")
    assert code == 0, err
    manifest = json.loads((out / "_faiss_index" / "manifest.json").read_text())
    assert manifest["kind"] == "hnsw" and manifest["factory"] == "HNSW32,SQ8" and manifest["vectors"] == 3_000
    assert manifest["model_fingerprint"] == "sha256:" + "a" * 64 and len(manifest["shards"]) == 3
    assert "3000 vectors" in err and "HNSW32,SQ8" in err


def test_search_through_the_index_equals_exact_search(setup, tmp_path, monkeypatch):  # noqa: F811
    """`search_videos` on an embed output with an index goes through FAISS (candidates forced below the row count)
    and returns what the exact search returns, with and without the prompt re-ranking of saved contexts."""
    from xclip_hf import embed_videos, search_videos
    from xclip_hf.corpus import index as disk
    from xclip_hf.corpus.search import VideoIndex

    _, ckpt, videos = setup
    out = tmp_path / "emb"
    dataset = embed_videos(videos, out, ckpt, chunk_length_s=0.05, save_context=True, progress=False)
    assert len(dataset) >= 8
    disk.build_index(out, progress=False)
    monkeypatch.setattr(disk, "CANDIDATES_PER_RESULT", 1)
    monkeypatch.setattr(disk, "MIN_CANDIDATES", 1)
    calls = []
    rerank = disk._rerank
    monkeypatch.setattr(disk, "_rerank", lambda *a, **k: calls.append(a[-1]) or rerank(*a, **k))
    queries = ["cooking pasta", "dancing ballet", "a dog"]
    for options in ({"rerank": False, "top_k": 3}, {"rerank": True, "top_k": 2, "rerank_candidates": 4}):
        through_index = search_videos(out, queries, ckpt, **options)
        exact = search_videos(out, queries, ckpt, index=VideoIndex.from_dataset(out), **options)
        for got, want in zip(through_index, exact):
            assert [(h["path"], h["start_s"]) for h in got] == [(h["path"], h["start_s"]) for h in want]
            np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in want], atol=1e-5)
    assert calls and max(calls) < len(dataset)  # FAISS gave the candidates, fewer than the rows
