"""Shared by the evaluation tests: a tiny synthetic closed-set evaluation set, and the scores an evaluation stored."""

from __future__ import annotations

import os

import numpy as np

from _helpers_pipeline import LABELS, make_published_checkpoint, video_frames


def make_evalset(root):
    """A published-layout tiny checkpoint, 7 videos of different sizes/lengths, an annotation file and labels csv."""
    from xclip_hf.data.video_writer import write_video

    model_dir = make_published_checkpoint(root / "model", seed=4)
    os.makedirs(root / "videos")
    references = [0, 1, 2, 3, 4, 0, 2]
    lines = []
    for i, label in enumerate(references):
        name = f"videos/v{i}.mp4"
        tint = np.random.default_rng(i).uniform(0.2, 1.0, 3)  # differently tinted: the model tells them apart
        frames = (video_frames(9 + i, 40 + 2 * i, 56, seed=10 + i) * tint).clip(0, 255).astype(np.uint8)
        write_video(str(root / name), frames)
        lines.append(f"{name} {label}")
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    (root / "labels.csv").write_text("id,name\n" + "".join(f"{k},{n}\n" for k, n in enumerate(LABELS)))
    return {"root": root, "model": model_dir, "references": references,
            "videos": [str(root / f"videos/v{i}.mp4") for i in range(len(references))]}


def stored_scores(predictions) -> dict:
    """{video: scores} of the rows committed under an evaluation's predictions folder (videos that failed left out)."""
    from xclip_hf.jobs.store import ShardStore
    from xclip_hf.evaluation.predictions import JOB, _features

    rows = ShardStore(str(predictions), 0, job=JOB).chosen_rows(_features()).to_dict()
    return {path: np.asarray(scores) for path, scores, error in zip(rows["path"], rows["scores"], rows["error"])
            if error is None}


def assert_same_scores(got: dict, want: dict) -> None:
    """The same videos, scores within 1e-6."""
    assert sorted(got) == sorted(want) and want
    for video, scores in want.items():
        np.testing.assert_allclose(got[video], scores, atol=1e-6, rtol=0, err_msg=video)
