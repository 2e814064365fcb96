"""Score videos against class names through the zero-shot pipeline's `score` matrix, multi-view (Sec. 4.2), listing bad videos, resumable."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ScoredVideos", "build_pipeline", "is_pipeline", "pipeline_for", "score_videos", "ON_BAD_VIDEO"]

ON_BAD_VIDEO = ("skip", "raise")


@dataclass
class ScoredVideos:
    """Per-class scores of the videos that could be read, their positions in the input, and the bad videos."""

    scores: np.ndarray  # (N_ok, K) float64, averaged per-view softmax
    kept: list[int]  # input positions of the rows of `scores`
    bad_videos: list[dict] = field(default_factory=list)  # {"video", "error"}, each video once
    resumed: int = 0  # videos whose predictions an earlier run committed to `predictions_dir`


def build_pipeline(model, processor=None, device=None, dtype=None):
    """`pipelines.build_pipeline` on this process's device under torchrun / accelerate launch
    (`predictions.process_device`)."""
    from ..pipelines.zero_shot_video_classification import build_pipeline as build
    from .predictions import process_device

    return build(model, processor, process_device(device), dtype)


def is_pipeline(model) -> bool:
    """Whether `model` is already a zero-shot pipeline (anything with its `text_features`), used as given."""
    return hasattr(model, "text_features")


def pipeline_for(model, options):
    """`model` itself if it is a pipeline, else the pipeline built with `options`' processor, device and dtype."""
    return model if is_pipeline(model) else build_pipeline(model, options.processor, options.device, options.dtype)


def _score_chunk(pipe, chunk: list[str], batch_size: int, options: dict, num_workers: int = 0) -> list[tuple]:
    """(video, scores (K,) float64 or None, error or None) per video of `chunk`, through the pipeline's `score`; a
    failing batch is retried video by video (in this process) to find the bad one(s)."""
    from ..pipelines.failures import batch_then_each

    def batch(videos):
        return list(pipe.score(videos, batch_size=batch_size, num_workers=num_workers, **options).double().numpy())

    return batch_then_each(batch, lambda video: pipe.score([video], batch_size=1, **options)[0].double().numpy(), chunk)


def score_videos(pipe, videos: list[str], class_names: list[str], *, num_temporal_clips: int = 1,
                 num_spatial_crops: int = 1, num_frames: int | None = None, template: str = "{}",
                 batch_size: int = 1, on_bad_video: str = "skip", progress: bool | None = None,
                 predictions_dir=None, job_settings: dict | None = None, shard_size: int = 64,
                 num_workers: int = 0, descriptions=None) -> ScoredVideos:
    """Scores (N, K) of `videos` against `class_names` (the paper's bare label by default: `template="{}"`).

    A batch that fails is retried video by video; a video that still fails is listed in `bad_videos` with its
    error (`on_bad_video="skip"`) or raises a ValueError naming it (`"raise"`). If no video can be read at all the
    first error is raised (a model or setting problem, not bad videos). A video listed twice is scored once.

    `predictions_dir`: commit per-video predictions there in shards of `shard_size` videos and skip those an
    earlier run with the same settings and model committed (a folder of another model or other settings, or
    other `job_settings` such as the protocol's data files, is refused). `num_workers`: the pipeline's DataLoader
    workers, which decode and preprocess videos while the model runs (same scores as 0). `template` may be a list
    and `descriptions` a JSON file or mapping of class -> phrasings: a prompt ensemble (`models/prompt_ensembles`)."""
    from tqdm.auto import tqdm

    from ..jobs import job_state
    from .predictions import PredictionRun, job_settings as settings_of

    if on_bad_video not in ON_BAD_VIDEO:
        raise ValueError(f"on_bad_video must be one of {ON_BAD_VIDEO}, got {on_bad_video!r}")
    options = dict(candidate_labels=list(class_names), hypothesis_template=template,
                   num_temporal_clips=num_temporal_clips, num_spatial_crops=num_spatial_crops, num_frames=num_frames)
    if descriptions is not None:  # read once; the settings of a predictions folder record the phrasings
        from ..models.prompt_ensembles import phrasings_for

        options["class_descriptions"] = dict(zip(class_names, map(list, phrasings_for(class_names, descriptions))))
    options = {k: v for k, v in options.items() if v is not None}
    unique = list(dict.fromkeys(str(v) for v in videos))
    state = job_state(getattr(pipe, "device", None))
    settings = settings_of(pipe, class_names, options, job_settings) if predictions_dir is not None else None
    run = PredictionRun(state, unique, predictions_dir, settings, shard_size)
    try:
        mine = run.start()  # this process's share of the videos not done by an earlier run
        run.note_resumed(progress)
        step = max(1, int(batch_size)) * 4
        disable = True if state.num_processes > 1 and not state.is_main_process else (
            None if progress is None else not progress)
        desc = "evaluate" + (f" (process {state.process_index} of {state.num_processes})"
                             if state.num_processes > 1 else "")
        with tqdm(total=len(mine), unit="video", desc=desc, file=sys.stderr, disable=disable) as bar:
            for start in range(0, len(mine), step):
                chunk = mine[start:start + step]
                for video, row, err in _score_chunk(pipe, chunk, batch_size, options, num_workers):
                    if err is None:
                        run.add(video, row)
                        continue
                    message = f"{type(err).__name__}: {err}"
                    if on_bad_video == "raise":
                        run.stop(video, message, err)
                        break
                    run.add(video, None, message)
                bar.update(len(chunk))
                if run.stopped:
                    break
        done = run.finish()  # every process's results, gathered once (raises a stop on every process)
    finally:
        run.close()
    rows, kept = [], []
    for i, video in enumerate(videos):
        row, error = done[str(video)]
        if error is None:
            rows.append(row)
            kept.append(i)
    bad = [{"video": video, "error": done[video][1]} for video in unique if done[video][1] is not None]
    if videos and not kept:
        raise ValueError(f"none of the {len(videos)} videos could be evaluated; the first error: {bad[0]['error']}")
    scores = np.stack(rows) if rows else np.zeros((0, len(class_names)))
    return ScoredVideos(scores=scores, kept=kept, bad_videos=bad, resumed=run.resumed)
