"""Score a list of videos against a class list through the zero-shot pipeline's public API, skipping (and listing)
videos that cannot be read.

Multi-view (paper Sec. 4.2): `num_temporal_clips x num_spatial_crops` views per video, the softmax of each view
averaged over the views (the pipeline's `num_temporal_clips` / `num_spatial_crops`). Each file is opened and decoded
once for all of its temporal views: the video processor asks the reader for the sorted union of the clips' frame
indices in one pass (`reader.load_video`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ScoredVideos", "build_pipeline", "score_videos", "ON_BAD_VIDEO"]

ON_BAD_VIDEO = ("skip", "raise")


@dataclass
class ScoredVideos:
    """Per-class scores of the videos that could be read, their positions in the input, and the bad videos."""

    scores: np.ndarray  # (N_ok, K) float64, averaged per-view softmax
    kept: list[int]  # input positions of the rows of `scores`
    bad_videos: list[dict] = field(default_factory=list)  # {"video", "error"}


def build_pipeline(model, processor=None, device=None, dtype=None):
    """The zero-shot pipeline for a model given as a folder, hub id or object (through the one loader)."""
    from ..models.loading import load_model_and_processor
    from ..pipelines.zero_shot_video_classification import ZeroShotVideoClassificationPipeline

    loaded = load_model_and_processor(model, processor=processor, need_text=True, dtype=dtype, device=device)
    return ZeroShotVideoClassificationPipeline(model=loaded.model, processor=loaded.processor,
                                               device=loaded.model.device)


def _vector(result: list[dict], column: dict[str, int]) -> np.ndarray:
    row = np.zeros(len(column), dtype=np.float64)
    for item in result:
        row[column[item["label"]]] = item["score"]
    return row


def score_videos(pipe, videos: list[str], class_names: list[str], *, num_temporal_clips: int = 1,
                 num_spatial_crops: int = 1, num_frames: int | None = None, template: str = "{}",
                 batch_size: int = 1, on_bad_video: str = "skip", progress: bool | None = None,
                 num_workers: int = 0) -> ScoredVideos:
    """Scores (N, K) of `videos` against `class_names` (the paper's bare label by default: `template="{}"`).

    A batch that fails is retried video by video; a video that still fails is listed in `bad_videos` with its
    error (`on_bad_video="skip"`) or raises a ValueError naming it (`"raise"`). If no video can be read at all the
    first error is raised (a model or setting problem, not bad videos). `num_workers`: the pipeline's DataLoader
    workers, which decode and preprocess videos while the model runs (same scores as 0)."""
    from tqdm.auto import tqdm

    if on_bad_video not in ON_BAD_VIDEO:
        raise ValueError(f"on_bad_video must be one of {ON_BAD_VIDEO}, got {on_bad_video!r}")
    column = {name: k for k, name in enumerate(class_names)}
    options = dict(candidate_labels=list(class_names), hypothesis_template=template,
                   num_temporal_clips=num_temporal_clips, num_spatial_crops=num_spatial_crops, num_frames=num_frames)
    options = {k: v for k, v in options.items() if v is not None}
    rows, kept, bad = [], [], []
    step = max(1, int(batch_size)) * 4
    disable = None if progress is None else not progress
    with tqdm(total=len(videos), unit="video", desc="evaluate", file=sys.stderr, disable=disable) as bar:
        for start in range(0, len(videos), step):
            chunk = list(videos[start:start + step])
            try:
                results = pipe(chunk, batch_size=batch_size, num_workers=num_workers, **options)
                outcome = list(zip(range(start, start + len(chunk)), results, [None] * len(chunk)))
            except (ValueError, RuntimeError, OSError) as err:
                if len(chunk) == 1:
                    outcome = [(start, None, err)]
                else:  # find the bad one(s)
                    outcome = []
                    for i, video in enumerate(chunk, start=start):
                        try:
                            outcome.append((i, pipe([video], batch_size=1, **options)[0], None))
                        except (ValueError, RuntimeError, OSError) as single:
                            outcome.append((i, None, single))
            for i, result, err in outcome:
                if err is None:
                    rows.append(_vector(result, column))
                    kept.append(i)
                    continue
                message = f"{type(err).__name__}: {err}"
                if on_bad_video == "raise":
                    raise ValueError(f"video {videos[i]!r} could not be evaluated ({message}); pass "
                                     "on_bad_video='skip' (--on-bad-video skip) to skip such files") from err
                bad.append({"video": str(videos[i]), "error": message})
            bar.update(len(chunk))
    if videos and not kept:
        raise ValueError(f"none of the {len(videos)} videos could be evaluated; the first error: {bad[0]['error']}")
    scores = np.stack(rows) if rows else np.zeros((0, len(class_names)))
    return ScoredVideos(scores=scores, kept=kept, bad_videos=bad)
