"""Per-video predictions of an evaluation on one process or many (`torchrun` / `accelerate launch`), resumable."""

from __future__ import annotations

import os
import sys

import numpy as np

from ..jobs.resumable import start_resumable_job

__all__ = ["JOB", "process_device", "is_main_process", "predictions_dir", "job_settings", "PredictionRun"]

JOB = "evaluate"  # the store's job name: _evaluate_config.json, _evaluate.lock
FOLDER = "predictions"  # under a report's output folder


def predictions_dir(output_dir, *parts) -> str | None:
    """The predictions folder under ``output_dir`` (``output_dir/predictions[/part...]``), or None without one."""
    return None if output_dir is None else os.path.join(os.fspath(output_dir), FOLDER, *map(str, parts))


def process_device(device=None):
    """Where this process's model runs: ``device``, or with several processes ``cuda:LOCAL_RANK`` for a bare type."""
    import torch

    from ..jobs import job_state

    state = job_state(device)
    if state.num_processes == 1:
        return device
    if device is None or (torch.device(device).index is None and torch.device(device).type == state.device.type):
        return state.device
    return device


def is_main_process() -> bool:
    """Whether this process writes the shared outputs (always, on one process)."""
    from ..jobs import job_state

    return job_state().is_main_process


def _features():
    from datasets import Features, List, Value

    return Features({"path": Value("string"), "scores": List(Value("float64")), "error": Value("string")})


def job_settings(pipe, class_names, options: dict, job: dict | None = None) -> dict:
    """What a predictions folder records: score-shaping settings, model fingerprint (compared), source, version."""
    from ..jobs.identity import model_fingerprint
    from ..version import package_version

    model = pipe.model
    frames = options.get("num_frames") or model.config.vision_config.num_frames
    template = options.get("hypothesis_template", "{}")
    return {"class_names": list(class_names), "template": template if isinstance(template, str) else list(template),
            "class_descriptions": options.get("class_descriptions"),
            "num_temporal_clips": options.get("num_temporal_clips", 1),
            "num_spatial_crops": options.get("num_spatial_crops", 1), "num_frames": int(frames),
            "dtype": str(model.dtype).replace("torch.", ""), **(job or {}),
            "model_fingerprint": model_fingerprint(model, whole=True),
            "model_source": str(getattr(model, "name_or_path", "") or ""), "code_version": package_version()}


def _committed_predictions(store) -> dict[str, tuple]:
    """Absolute path -> (scores or None, error or None) of every video an earlier run committed."""
    rows = store.chosen_rows(_features()).to_dict()
    return {os.path.abspath(p): (None if s is None else np.asarray(s, dtype=np.float64), e)
            for p, s, e in zip(rows["path"], rows["scores"], rows["error"])}


def _failed(committed: tuple) -> bool:
    """Whether an earlier run's (scores, error) is an error: the video is scored again."""
    return committed[1] is not None


class PredictionRun:
    """One `score_videos` call on this process: `start`, `add` / `stop` per video, `finish` (gather), `close`."""

    def __init__(self, state, videos: list[str], directory=None, settings: dict | None = None, shard_size: int = 64):
        if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
            raise ValueError(f"shard_size must be an integer >= 1, got {shard_size!r}")
        self.state, self.videos, self.settings, self.shard_size = state, list(videos), settings, shard_size
        self.directory = None if directory is None else os.fspath(directory)
        self.store = self.lock = None
        self.earlier: dict[str, tuple] = {}  # absolute path -> (scores or None, error or None), earlier runs
        self.new: list[tuple] = []  # (video, scores or None, error or None) scored by this process now
        self.buffer: list[tuple] = []  # rows of `new` not committed yet
        self.stopped = None  # (video, message, exception) with on_bad_video="raise"

    # ------------------------------------------------------------------ start
    def start(self) -> list[str]:
        """Take the lock and read what earlier runs committed; returns this process's share of the rest."""
        if self.directory is not None:
            self._lock_store()
        start = start_resumable_job(self.state, self.store, self.settings, self.videos, _committed_predictions,
                                    redo=_failed)
        self.earlier = start.done
        return start.mine

    def _done(self, video: str) -> bool:
        """Whether an earlier run committed `video` with scores (one that failed is tried again)."""
        found = self.earlier.get(os.path.abspath(video))
        return found is not None and not _failed(found)

    @property
    def resumed(self) -> int:
        """Videos whose predictions come from an earlier run."""
        return sum(map(self._done, self.videos))

    def _lock_store(self) -> None:
        """Open the predictions folder's store and take its lock (main process, for all)."""
        from ..jobs.lock import take_job_lock
        from ..jobs.store import ShardStore

        self.store = ShardStore(self.directory, self.state.process_index, job=JOB)
        self.store.check_owner()
        self.lock = take_job_lock(self.state, self.directory, job=JOB)

    # ------------------------------------------------------------------ scoring
    def add(self, video: str, scores: np.ndarray | None, error: str | None = None) -> None:
        """One scored video (its scores, or the error that made it bad)."""
        self.new.append((video, scores, error))
        self.buffer.append((video, scores, error))
        if len(self.buffer) >= self.shard_size:
            self._commit()

    def stop(self, video: str, message: str, err: BaseException) -> None:
        """``on_bad_video="raise"``: this process scores no more; `finish` raises on every process."""
        self.stopped = (video, message, err)

    def _commit(self) -> None:
        if self.store is not None and self.buffer:
            rows = {"path": [str(v) for v, _, _ in self.buffer],
                    "scores": [None if s is None else [float(x) for x in s] for _, s, _ in self.buffer],
                    "error": [e for _, _, e in self.buffer]}
            self.store.commit(rows, [str(v) for v, _, _ in self.buffer], _features())
        self.buffer = []

    # ------------------------------------------------------------------ end
    def finish(self) -> dict[str, tuple]:
        """Commit the last rows and gather every process's results: video -> (scores or None, error or None)."""
        from accelerate.utils import gather_object

        self._commit()
        stop = None if self.stopped is None else self.stopped[:2]
        gathered = gather_object([("result", item) for item in self.new] + ([("stop", stop)] if stop else []))
        results = {v: self.earlier[os.path.abspath(v)] for v in self.videos if os.path.abspath(v) in self.earlier}
        stops = {}
        for kind, item in gathered:
            if kind == "result":
                results[item[0]] = (item[1], item[2])
            else:
                stops[item[0]] = item[1]
        if stops:
            video = next(v for v in self.videos if v in stops)
            cause = self.stopped[2] if self.stopped and self.stopped[0] == video else None
            raise ValueError(f"video {video!r} could not be evaluated ({stops[video]}); pass on_bad_video='skip' "
                             "(--on-bad-video skip) to skip such files") from cause
        return results

    def close(self) -> None:
        """Release the predictions folder's lock (main process)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def note_resumed(self, progress) -> None:
        """Say on stderr (main process) how many videos an earlier run scored."""
        if self.resumed and progress is not False and self.state.is_main_process:
            print(f"evaluate: {self.resumed} of {len(self.videos)} video(s) scored by an earlier run in "
                  f"{self.directory!r}; scoring the rest", file=sys.stderr)
