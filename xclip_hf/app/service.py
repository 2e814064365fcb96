"""What the web app does, without the web page: one loaded model shared by the classify and search tabs."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import re
import shutil
import tempfile
import threading
import weakref

import numpy as np

from ..video.fetch import FetchHints, URLRefused, fetch_video
from .access import AppAccess, has_scheme, local_video_path

__all__ = ["AppLimits", "AppService", "AppAccess", "parse_labels", "seen_frames", "MODES", "DEFAULT_MODEL"]

DEFAULT_MODEL = "microsoft/xclip-base-patch32"
MODES = ("auto", "whole video", "windows")
AUTO_WINDOWS = 3  # "auto" cuts windows when the video is longer than this many windows
KEEP_COPIES = 8  # local/URL videos copied for the page's player: the newest are kept
APP_HINTS = FetchHints(fetcher="this app", limit="the app's limit", size="start the app with a larger --max-upload-mb",
                       time="start the app with a larger --url-timeout",
                       private="start the app with --allow-private-urls to fetch such addresses")


@dataclasses.dataclass(frozen=True)
class AppLimits:
    """What the app accepts: the largest video file (MB) and the longest video (seconds)."""

    max_upload_mb: float = 200.0
    max_video_s: float = 600.0

    def __post_init__(self):
        for name in ("max_upload_mb", "max_video_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")


def parse_labels(text) -> list[str]:
    """Labels typed in the box: comma- or line-separated, blanks around and empty items dropped."""
    items = [item.strip() for item in re.split(r"[,\n]", text or "")]
    labels = [item for item in items if item]
    if not labels:
        raise ValueError("no labels: type at least one label (comma- or line-separated), e.g. \"cooking, dancing\"")
    return labels


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.3g} MB"


class AppService:
    """The model, its pipeline and (optionally) a search index, loaded once and shared by every request.

    Args:
        model: a model folder or hub id (or an `XClipModel`, then with ``processor``).
        index: a folder written by `xclip-hf embed` (enables search), or None.
        limits: `AppLimits`. access: `AppAccess` (default: no local paths, public http(s) URLs). device / dtype: as
            for the loader.
    """

    def __init__(self, model=DEFAULT_MODEL, index=None, *, processor=None, limits: AppLimits | None = None,
                 access: AppAccess | None = None, device=None, dtype=None):
        from ..models.loading import load_model_and_processor
        from ..pipelines import ZeroShotVideoClassificationPipeline

        self.limits = limits or AppLimits()
        self.access = access or AppAccess()
        self.model, self.processor = load_model_and_processor(model, processor=processor, need_text=True,
                                                              dtype=dtype, device=device)
        self.pipeline = ZeroShotVideoClassificationPipeline(model=self.model, processor=self.processor)
        self.model_name = os.fspath(model) if isinstance(model, (str, os.PathLike)) else (
            getattr(self.model, "name_or_path", "") or type(self.model).__name__)
        self.short_name = os.path.basename(os.path.normpath(self.model_name)) if os.path.isdir(self.model_name) \
            else self.model_name  # a local folder by its name, a hub id as it is
        self.num_frames = int(self.model.config.vision_config.num_frames)
        self.lock = threading.RLock()  # one model run at a time, whoever calls (the page's handlers hold it too)
        self.workdir = tempfile.mkdtemp(prefix="xclip_app_")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.workdir, True)
        self._copies: collections.deque = collections.deque()
        self._copies_lock = threading.Lock()  # requests run side by side (downloads); their copies share the deque
        self._numbers = itertools.count()
        self.index_dir = self.index = self.index_model = self.index_note = self.index_problem = None
        if index is not None:
            self._open_index(os.fspath(index))

    def close(self):
        """Remove the app's temporary copies of videos (also done when the service is garbage-collected)."""
        self._finalizer()

    # ------------------------------------------------------------------ videos
    def resolve_video(self, upload=None, source=None) -> tuple[str, str | None, object]:
        """The video to classify, from the typed ``source`` or the ``upload``: (path, player copy, `VideoLength`).

        Call it without holding `lock`. Raises ValueError naming a refused, missing, too large, too long or unreadable
        video (TimeoutError / ConnectionError for a URL).
        """
        from ..pipelines.video_inputs import is_url
        from ..video.reader import check_video_path, get_video_length

        text = (source or "").strip()
        player = None
        if text and (is_url(text) or has_scheme(text)):
            path = player = self._keep(self._download(text), move=True)
            name = repr(text)
        elif text:
            path = check_video_path(local_video_path(text, self.access), "video path")
            name = repr(text)
        elif upload:
            path = check_video_path(os.fspath(upload), "uploaded video")
            name = f"the uploaded video {os.path.basename(path)!r}"
        else:
            raise ValueError("no video: upload one, or type a local path or an http(s) URL")
        size, limit = os.path.getsize(path), self.limits.max_upload_mb * 1e6
        if size > limit:
            raise ValueError(f"{name} is {_megabytes(size)}, over the app's limit of {_megabytes(limit)} "
                             "(start the app with a larger --max-upload-mb)")
        info = get_video_length(path)  # the container's index: no frame is decoded here
        duration = info.num_frames / info.fps if info.fps > 0 else 0.0
        if duration > self.limits.max_video_s:
            raise ValueError(f"{name} is {duration:.1f} s long, over the app's limit of {self.limits.max_video_s:g} s "
                             "(start the app with a larger --max-video-s)")
        if text and player is None:
            player = self._keep(path, move=False)
        return path, player, info

    def _download(self, url: str) -> str:
        """``url`` downloaded into the app's folder under the access rules and the size limit."""
        if not self.access.urls:
            raise URLRefused(f"URL {url!r} refused: this app fetches no URLs (it was started with --no-urls)")
        return fetch_video(url, self.workdir, max_bytes=int(self.limits.max_upload_mb * 1e6),
                           timeout=self.access.url_timeout, allow_private=self.access.private_urls, hints=APP_HINTS)

    def _keep(self, path: str, move: bool) -> str:
        """A copy of ``path`` in the app's own folder (the page may show it); only the newest few are kept."""
        target = os.path.join(self.workdir, f"{next(self._numbers)}_{os.path.basename(path)}")
        (shutil.move if move else shutil.copyfile)(path, target)
        with self._copies_lock:
            self._copies.append(target)
            old = [self._copies.popleft() for _ in range(len(self._copies) - KEEP_COPIES)]
        for stale in old:
            if os.path.exists(stale):
                os.unlink(stale)
        return target

    # ------------------------------------------------------------------ classify
    def wants_windows(self, mode: str, duration_s: float, chunk_length_s: float) -> bool:
        """Windows for mode "windows", or for "auto" when the video is longer than a few windows."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return mode == "windows" or (mode == "auto" and duration_s > AUTO_WINDOWS * chunk_length_s)

    def classify(self, path: str, labels: list[str], *, top_k: int | None = None, template: str = "{}",
                 windows: bool = False, chunk_length_s: float | None = None,
                 stride_length_s: float | None = None) -> dict:
        """The pipeline's answer for one video file (whole, or windows with segments) and the frames the model saw."""
        from ..pipelines.segments import timeline_segments

        template = template if (template or "").strip() else "{}"
        common = dict(hypothesis_template=template)
        with self.lock:
            if not windows:
                predictions, seen = self.pipeline.classify_keeping_frames(path, labels, top_k=top_k, **common)
                return {"predictions": predictions, "frames": seen_frames(seen)}
            per_window, seen = self.pipeline.classify_keeping_frames(
                path, labels, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s, return_timestamps=True,
                **common)
        best = max(range(len(per_window)), key=lambda i: per_window[i]["labels"][0]["score"])
        shown = [{"timestamp": tuple(w["timestamp"]), "labels": w["labels"][:top_k]} for w in per_window]
        return {"windows": shown, "segments": timeline_segments(per_window), "best": best,
                "predictions": shown[best]["labels"], "all_windows": per_window, "frames": seen_frames(seen)}

    # ------------------------------------------------------------------ search
    def _open_index(self, index_dir: str) -> None:
        """Open the index and check its recorded fingerprint against the loaded model (search's own check)."""
        from ..corpus.search import ModelMismatchError, VideoIndex, check_index_model
        from ..jobs.store import read_job_config

        self.index = VideoIndex.from_dataset(index_dir)
        self.index_dir = index_dir
        config = read_job_config(index_dir) or {}
        self.index_model = config.get("model_source", config.get("model")) or None
        try:
            check_index_model(index_dir, self.model, name=self.model_name)
        except ModelMismatchError as err:
            self.index_problem = f"{err}; start the app with the model that made it"
        if config.get("model_fingerprint") is None:
            self.index_note = f"the index {index_dir!r} does not record which model made it"

    def video_file(self, path: str) -> str | None:
        """Where an indexed video is on this machine (as recorded, or relative to the index's folder), or None."""
        return next((os.path.abspath(c) for c in _beside_index(path, self.index_dir) if os.path.isfile(c)), None)

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        """`search_videos` over the index with the loaded model: ``[{"path", "start_s", "end_s", "score"}, ...]``."""
        from ..corpus.search import search_videos

        if self.index is None:
            raise ValueError("no index: start the app with --index DIR (a folder written by `xclip-hf embed`)")
        if self.index_problem:
            raise ValueError(self.index_problem)
        if not (query or "").strip():
            raise ValueError("no query: type what to look for, e.g. \"a person cooking\"")
        with self.lock:
            return search_videos(self.index_dir, query.strip(), self.model, processor=self.processor,
                                 top_k=int(top_k), index=self.index)


def seen_frames(seen: dict) -> list[tuple[np.ndarray, str]]:
    """The pipeline's kept frames as the page's gallery: uint8 (H, W, 3) images with their times."""
    times = seen["frame_times"]
    captions = [f"{t:.2f} s" for t in times] if times is not None else [f"frame {int(i)}" for i in seen["frame_indices"]]
    return list(zip(list(seen["frames"]), captions))


def _beside_index(path: str, index_dir: str) -> list[str]:
    """Where a path recorded in an index may be: as given, or relative to the index's parent folder."""
    return [path] if os.path.isabs(path) else [path, os.path.join(os.path.dirname(index_dir), path)]
