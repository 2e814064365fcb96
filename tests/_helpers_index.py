"""Shared by the index tests: clustered synthetic vectors (a Gaussian mixture with a low-dimensional spread per
cluster, not uniform noise) and embed outputs written through the real shard store (commit + merge)."""

from __future__ import annotations

import numpy as np


def clustered_vectors(n: int, width: int = 128, centres: int = 200, seed: int = 0, start: int = 0) -> np.ndarray:
    """(n, width) float16 draws of one fixed mixture (``seed``): unit centres in 16 groups, each cluster spread
    along its own 8 random directions, a little isotropic noise, random norms; ``start`` picks other draws."""
    setup = np.random.default_rng(seed)
    groups = setup.standard_normal((16, width))
    centre = setup.standard_normal((centres, width)) + 2.0 * groups[np.arange(centres) % 16]
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    bases = setup.standard_normal((centres, 8, width)) / np.sqrt(width)
    rng = np.random.default_rng([seed, start])
    k = rng.integers(0, centres, n)
    spread = rng.standard_normal((n, 8)) * (0.5 / np.sqrt(np.arange(1, 9)))
    x = centre[k] + np.einsum("nr,nrp->np", spread, bases[k]) + 0.05 / np.sqrt(width) * rng.standard_normal((n, width))
    return (x * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float16)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int, skip=()) -> np.ndarray:
    """Rows of the k largest cosines per query (float64 numpy; rows in ``skip``, e.g. error rows, left out)."""
    v = vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = queries.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    scores = q @ v.T
    scores[:, list(skip)] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def commit_rows(directory, vectors: np.ndarray, first: int = 0, errors=(), fingerprint: str = "sha256:" + "a" * 64,
                shard_rows: int = 5_000) -> None:
    """Commit rows ``/corpus/v{first + i}.mp4`` (one per vector; rows in ``errors`` are error rows) as shards of an
    embed output made with a model of ``fingerprint``, then merge the output (what `embed` does at its end)."""
    from xclip_hf.jobs.store import ShardStore, row_features

    features = row_features(vectors.shape[1], "float16", False, False)
    store = ShardStore(directory)
    store.write_config({"projection_dim": vectors.shape[1], "save_dtype": "float16", "model_fingerprint": fingerprint,
                        "model_source": "synthetic"})
    errors = set(errors)
    for begin in range(0, len(vectors), shard_rows):
        rows = range(begin, min(begin + shard_rows, len(vectors)))
        paths = [f"/corpus/v{first + i:07d}.mp4" for i in rows]
        store.commit({"path": paths, "start_s": [0.0] * len(paths), "end_s": [1.0] * len(paths),
                      "video_embeds": [None if i in errors else vectors[i] for i in rows],
                      "error": ["synthetic error row" if i in errors else None for i in rows]}, paths, features)
    store.merge(features, progress=False)
