"""Corpus-scale feature extraction (`embed_videos`): one row of video embeddings (Eq. 6) per video or window, resumable, on many processes."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from dataclasses import dataclass

from ..utils.messages import one_line

__all__ = ["embed_videos", "EmbedCounts", "run_embedding"]

SAVE_DTYPES = ("float32", "float16")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_TIMEOUT_S = 600.0  # longest wait for one batch from a decoding worker (None: wait forever)


@dataclass
class EmbedCounts:
    """What a run did: videos embedded now, skipped (committed by an earlier run), failed now (error rows), and how
    many of those embedded or failed now were an earlier run's error rows (retried)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    retried: int = 0

    def summary(self, output_dir: str, rows: int) -> str:
        again = f" ({self.retried} earlier failure(s) retried)" if self.retried else ""
        return (f"{self.done} video(s) embedded, {self.skipped} skipped (already done), {self.failed} failed{again}; "
                f"{rows} row(s) in {output_dir!r}")


def _check_options(batch_size, num_workers, shard_size, save_dtype, dtype, num_frames, timeout_s=None):
    for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                             ("shard_size", shard_size, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if num_frames is not None and (not isinstance(num_frames, int) or isinstance(num_frames, bool) or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds (or None), got {timeout_s!r}")
    if save_dtype not in SAVE_DTYPES:
        raise ValueError(f"save_dtype must be one of {SAVE_DTYPES}, got {save_dtype!r}")
    if dtype not in COMPUTE_DTYPES and not hasattr(dtype, "is_floating_point"):
        raise ValueError(f"dtype must be one of {COMPUTE_DTYPES} or a torch dtype, got {dtype!r}")


def _video_features(model, pixel_values):
    """`get_video_features` of the model (the video tower alone for an XClipVisionModel)."""
    if hasattr(model, "get_video_features"):
        return model.get_video_features(pixel_values=pixel_values)
    return model(pixel_values=pixel_values)


class _RowBuffer:
    """Rows of finished videos waiting for the next shard, and rows of videos still being read."""

    def __init__(self, columns):
        self.columns = columns
        self.open: dict[int, list[dict]] = {}
        self.rows = {c: [] for c in columns}
        self.videos: list[str] = []

    def add(self, item: dict, vectors: dict | None) -> bool:
        """Add one window's row; returns True when it finished its video (the video's rows become committable)."""
        row = {"path": item["path"], "start_s": item["start_s"], "end_s": item["end_s"], "error": item["error"]}
        for column in self.columns:
            if column not in row:
                row[column] = None if vectors is None else vectors[column]
        self.open.setdefault(item["index"], []).append(row)
        if not item["last"]:
            return False
        for r in self.open.pop(item["index"]):
            for column in self.columns:
                self.rows[column].append(r[column])
        self.videos.append(item["path"])
        return True

    def take(self):
        rows, videos = self.rows, self.videos
        self.rows, self.videos = {c: [] for c in self.columns}, []
        return rows, videos


def _worker_failure(err: BaseException) -> bool:
    """Whether a DataLoader worker died (e.g. a decoder crash: segfault, abort) or stalled past the timeout."""
    return isinstance(err, RuntimeError) and ("DataLoader worker" in str(err) or "DataLoader timed out" in str(err))


class _Embedder:
    """The model side of a run: batches -> rows -> committed shards, surviving decoding workers that die or stall.

    When a worker dies, the videos the workers were reading (their in-flight markers; all unfinished ones if no
    marker names one) are retried one by one in a fresh worker; a video that kills its worker again becomes an
    error row, and the run goes on with the rest. Every round finishes at least one video, so it ends.
    """

    def __init__(self, net, device, columns, store, features, save_dtype, shard_size, bar):
        self.net, self.device, self.store, self.features, self.bar = net, device, store, features, bar
        self.save_dtype, self.shard_size = save_dtype, shard_size
        self.vector_columns = [c for c in ("video_embeds", "frame_embeds", "video_context") if c in columns]
        self.buffer = _RowBuffer(columns)
        self.finished: set[str] = set()
        self.ok = self.failed = 0

    def run(self, paths, num_workers, inflight_dir, loader_options):
        from ..pipelines import video_chunks
        from .loader import window_loader
        from .sources import item_id

        todo = list(paths)
        inflight_dir = inflight_dir if num_workers else None  # without workers a crash ends the process anyway
        while todo:
            loader = window_loader(todo, num_workers=num_workers, inflight_dir=inflight_dir, **loader_options)
            failure = self._consume(loader)
            if failure is None:
                return
            suspects = [p for p in video_chunks.inflight_paths(loader.dataset) if item_id(p) not in self.finished]
            if not suspects:  # no marker names the culprit (a worker killed between videos): try each alone
                suspects = [p for p in todo if item_id(p) not in self.finished]
            for suspect in suspects:
                alone = window_loader([suspect], num_workers=1, inflight_dir=inflight_dir, **loader_options)
                again = self._consume(alone)
                if again is not None:
                    video_chunks.inflight_paths(alone.dataset)
                    self._add({"index": -1, "path": item_id(suspect), "start_s": 0.0, "end_s": None, "last": True,
                               "error": f"DecoderCrash: the decoding worker died or stalled on this video ({again})"}, None)
            todo = [p for p in todo if item_id(p) not in self.finished]

    def _consume(self, loader):
        """Embed every batch of ``loader``; returns None, or the first line of a worker failure."""
        try:
            for batch in loader:
                self._embed_batch(batch, loader.dataset.videos)
        except RuntimeError as err:
            if not _worker_failure(err):
                raise
            self.buffer.open.clear()  # windows of videos that did not finish: those videos are read again
            return one_line(err)
        return None

    def _embed_batch(self, batch, paths):
        import torch

        from .loader import row_item

        vectors = {}
        if batch["pixel_values"] is not None:
            pixel_values = batch["pixel_values"].to(device=self.device, dtype=self.net.dtype)
            with torch.inference_mode():
                try:
                    out = _video_features(self.net, pixel_values)
                except ValueError as err:
                    names = sorted({row_item(batch["items"][i], paths)["path"] for i in batch["good"]})
                    raise ValueError(f"the model rejected the processed videos {names[:3]}: {err}") from err
            for column in self.vector_columns:
                array = getattr(out, column).float().cpu().numpy().astype(self.save_dtype)
                vectors[column] = dict(zip(batch["good"], array))
        for pos, item in enumerate(batch["items"]):
            row = row_item(item, paths)
            self._add(row, {c: vectors[c][pos] for c in self.vector_columns} if row["error"] is None else None)
        if len(self.buffer.videos) >= self.shard_size:
            self.flush()

    def _add(self, item, row_vectors):
        if not self.buffer.add(item, row_vectors):
            return
        self.finished.add(item["path"])
        if item["error"] is None:
            self.ok += 1
        else:
            self.failed += 1
            self.bar.write(f"{item['path']}: {item['error']}", file=sys.stderr)
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def take_rows(self, rows):
        """Add finished videos' ``(row, vectors)`` from another engine (Ray), committing each full shard."""
        for item, row_vectors in rows:
            self._add(item, row_vectors)
            if len(self.buffer.videos) >= self.shard_size:
                self.flush()

    def flush(self):
        if self.buffer.videos:
            rows, videos = self.buffer.take()
            self.store.commit(rows, videos, self.features)


def _load_embed_model(model, processor, dtype):
    """(model, video processor, fingerprint): the fingerprint is taken of the weights as stored, before the cast to
    the compute ``dtype`` (a bfloat16 run and a float32 search of one checkpoint agree)."""
    from ..models.loading import load_model_and_processor
    from ..jobs.identity import model_fingerprint

    net, video_processor = load_model_and_processor(model, processor=processor, need_text=False)
    fingerprint = model_fingerprint(net)
    if dtype not in (None, "auto"):
        net, video_processor = load_model_and_processor(net, processor=video_processor, need_text=False, dtype=dtype)
    return net, video_processor, fingerprint


def _job_settings(model, net, video_processor, fingerprint, frames, chunk_length_s, stride_length_s, save_dtype,
                  save_frame_embeds, save_context, input_ids: str = "paths") -> dict:
    """What the job config records: the row-shaping settings (compared on resume) and the `store.RECORDED_KEYS`;
    ``input_ids``: what the inputs' names are (`sources.Source.ids`)."""
    from ..version import package_version

    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else getattr(net, "name_or_path", "")
    return {"num_frames": frames, "sampling": video_processor.sampling, "chunk_length_s": chunk_length_s,
            "stride_length_s": stride_length_s, "save_dtype": save_dtype, "frame_embeds": bool(save_frame_embeds),
            "video_context": bool(save_context), "projection_dim": net.config.projection_dim,
            "model_fingerprint": fingerprint, "model_source": source, "code_version": package_version(),
            "input_ids": input_ids}


def run_embedding(videos=(), output_dir=None, model=None, *, list_file=None, processor=None, chunk_length_s=None,
                  stride_length_s=None, num_frames=None, batch_size=8, num_workers=0, dtype="auto",
                  save_dtype="float32", device=None, save_context=False, save_frame_embeds=False, shard_size=64,
                  decode_backend="auto", timeout_s=DEFAULT_TIMEOUT_S, retry_errors=True, progress=True,
                  engine="accelerate", ray_address=None, num_actors=None, cpus_per_actor=None, gpus_per_actor=None,
                  **source_options):
    """`embed_videos`, also returning the `EmbedCounts` of this run (summed over processes)."""
    from .sources import open_source
    from ..jobs import job_state
    from ..jobs.lock import take_job_lock
    from ..jobs.store import ShardStore
    from ..video.reader import BACKENDS
    from ..video.windows import check_window_lengths
    from .ray_engine import check_stream, ray_options

    if output_dir is None:
        raise ValueError("output_dir is required: the directory the dataset (and its resumable shards) is written to")
    if model is None:
        raise ValueError("model is required (a model directory, a hub id, or an XClipModel)")
    _check_options(batch_size, num_workers, shard_size, save_dtype, dtype, num_frames, timeout_s)
    if decode_backend not in BACKENDS:
        raise ValueError(f"decode_backend must be one of {BACKENDS}, got {decode_backend!r}")
    ray = ray_options(engine, device, ray_address, num_actors, cpus_per_actor, gpus_per_actor)
    if chunk_length_s is not None:
        chunk_length_s, stride_length_s = check_window_lengths(chunk_length_s, stride_length_s)
    elif stride_length_s is not None:
        raise ValueError("stride_length_s needs chunk_length_s (windows); without it each video is one row")
    source = open_source(videos, list_file, **source_options)
    if ray is not None and source.length is None:
        check_stream(source)  # before the lock and the model load
    ShardStore(output_dir).check_owner()  # before the lock and the (slow) model load

    state = job_state(device)
    if ray is not None and state.num_processes > 1:
        raise ValueError(f"engine='ray' runs from one driver process (Ray spreads the work), not under torchrun / "
                         f"accelerate launch ({state.num_processes} processes)")
    lock = take_job_lock(state, output_dir)
    try:
        return _run_locked(state, source, output_dir, model, processor, chunk_length_s, stride_length_s, num_frames,
                           batch_size, num_workers, dtype, save_dtype, device, save_context, save_frame_embeds,
                           shard_size, decode_backend, timeout_s, retry_errors, progress, ray)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(state, source, output_dir, model, processor, chunk_length_s, stride_length_s, num_frames, batch_size,
                num_workers, dtype, save_dtype, device, save_context, save_frame_embeds, shard_size, decode_backend,
                timeout_s, retry_errors, progress, ray=None):
    """The job, once this run holds the output's lock (``ray``: the `RayOptions` of a Ray run)."""
    import torch
    from accelerate.utils import gather_object
    from datasets import load_from_disk
    from tqdm.auto import tqdm

    from ..jobs.resumable import start_resumable_job
    from ..jobs.store import ShardStore, row_features
    from .loader import WindowPlan
    from .sources import StreamShare

    net, video_processor, fingerprint = _load_embed_model(model, processor, dtype)
    vision_config = getattr(net.config, "vision_config", net.config)
    frames = num_frames or vision_config.num_frames
    settings = _job_settings(model, net, video_processor, fingerprint, frames, chunk_length_s, stride_length_s,
                             save_dtype, save_frame_embeds, save_context, source.ids)
    features = row_features(net.config.projection_dim, save_dtype, save_frame_embeds, save_context)
    columns = list(features)

    store = ShardStore(output_dir, state.process_index)
    # done: input key (`store.key`) -> whether its committed rows hold an error (embedded again with retry_errors)
    def redo(failed):
        """Whether a committed input is embedded again: its rows are error rows and retry_errors is on."""
        return retry_errors and failed

    sized = source.length is not None  # else a stream: read in blocks, the job's share taken as it goes
    start = start_resumable_job(state, store, settings, source.items if sized else [], ShardStore.committed_inputs,
                                redo=redo, key=lambda item: store.key(item.id))
    pending, mine = start.pending, start.mine
    if not sized:
        mine = StreamShare(source, start.done, store.key, redo, state.process_index, state.num_processes)
    retried = sum(store.key(p.id) in start.done for p in pending)

    device = torch.device(device) if device is not None else state.device
    if ray is None:
        net = net.to(device)
    plan = WindowPlan(frames, chunk_length_s, stride_length_s, decode_backend)
    desc = "embedding" + (f" (process {state.process_index} of {state.num_processes})" if state.num_processes > 1 else "")
    bar = tqdm(total=len(mine) if sized else None, unit="video", desc=desc, file=sys.stderr,
               disable=(not progress) or (not state.is_main_process) or None)
    embedder = _Embedder(net, device, columns, store, features, save_dtype, shard_size, bar)
    loader_options = dict(processor=video_processor, plan=plan, batch_size=batch_size, timeout_s=timeout_s)
    if ray is not None:
        from .loader import window_rows
        from .ray_engine import StreamRows, embedded_rows
        from .sources import item_id

        produce = functools.partial(window_rows, processor=video_processor, plan=plan)
        if sized:
            embedder.take_rows(embedded_rows(mine, [item_id(m) for m in mine], produce, net, ray, batch_size,
                                             columns, save_dtype))
        else:  # Ray Data reads the stream: the reading tasks skip what is done (`mine.skipped` counts it)
            mine = StreamRows(source, start.done, redo, produce, net, ray, batch_size, columns, save_dtype)
            try:
                embedder.take_rows(mine)
            finally:  # Ray stopping part-way keeps the videos finished before
                embedder.flush()
    else:
        with tempfile.TemporaryDirectory(prefix="xclip-embed-") as inflight:
            if sized:
                embedder.run(mine, num_workers, inflight, loader_options)
            else:
                try:
                    for block in mine.blocks():
                        embedder.run(block, num_workers, inflight, loader_options)
                finally:  # a stream that fails part-way (an unreadable shard) keeps the videos it finished
                    embedder.flush()
    embedder.flush()
    bar.close()
    ok, failed = embedder.ok, embedder.failed

    per_process = gather_object([(ok, failed)])
    counts = EmbedCounts(done=sum(p[0] for p in per_process),
                         skipped=len(source.items) - len(pending) if sized else mine.skipped,
                         failed=sum(p[1] for p in per_process), retried=retried if sized else mine.retried)
    state.wait_for_everyone()  # all shards are committed
    dataset = store.merge(features, progress) if state.is_main_process else None
    state.wait_for_everyone()
    if dataset is None:
        dataset = load_from_disk(store.directory)
    return dataset, counts


def embed_videos(videos=(), output_dir=None, model=None, **kwargs):
    """Embed video files into a `datasets.Dataset` saved at ``output_dir`` (``datasets.load_from_disk`` opens it).

    Args:
        videos: paths, directories (their video files, recursively), glob patterns and URLs (http(s), file://,
            s3:// with s3fs, any fsspec protocol); ``list_file=`` adds a text file with one per line. Every input is
            embedded once, in any number of runs. Instead of files, one other source (`sources.open_source`):
            ``dataset=`` a Hugging Face dataset (a ``save_to_disk`` folder, a folder or hub id `load_dataset` reads,
            or a dataset object; ``split=``, ``streaming=True`` for an `IterableDataset`) whose ``video_column=``
            (default "video") holds paths, URLs or video bytes and ``id_column=`` the ids; or ``webdataset=`` tar
            shards (paths, brace patterns, fsspec URLs), id the sample key, ``video_key=`` the member extension(s)
            holding the video. ``url_timeout_s=``: longest download of one URL (default 60). Rows' ``path`` is
            the source's id (a path, a URL, the id cell or the sample key): a rerun skips the ids already done.
        output_dir: a new or empty directory, or an earlier run's with the same settings and model (resumed; the
            model compared by a fingerprint of its video side). One run writes an output at a time (a lock).
        model: a model directory or hub id (ours or the published microsoft/xclip-* format), or an ``XClipModel``;
            ``processor=`` (an ``XClipProcessor``/``XClipVideoProcessor``) when the model is an object.
        retry_errors: embed again the inputs whose rows in an earlier run were error rows (default); their new
            rows replace the error rows. False: keep them as they are.
        chunk_length_s, stride_length_s: one row per window of ``chunk_length_s`` seconds every ``stride_length_s``
            (default: the window length); without them one row per video (``start_s`` 0, ``end_s`` its duration).
        num_frames: frames per row (default: the model's). batch_size: windows per model forward.
        num_workers: DataLoader worker processes that decode beside the model; with workers, a video whose decoder
            crashes or stalls longer than ``timeout_s`` seconds (None: no limit) becomes an error row.
        dtype: compute dtype (``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``); save_dtype: ``"float32"``
            or ``"float16"`` for the stored vectors. device: default the process's accelerator (or CPU).
        save_context: also store ``video_context`` (needed to re-rank search results with the prompt generator);
            save_frame_embeds: also store ``frame_embeds``. shard_size: videos per committed shard.
        progress: show a progress bar (videos/s, ETA) and print the final counts to stderr.
        engine: ``"accelerate"`` (this process, or each process of torchrun / accelerate launch) or ``"ray"``: Ray
            Data reads and decodes in tasks and embeds in ``num_actors`` model actors (``cpus_per_actor``,
            ``gpus_per_actor`` each; default 1 actor, 1 CPU, no GPU) on the cluster at ``ray_address`` (default:
            $RAY_ADDRESS or a new local one; ``"auto"``: a running one); same output, identity and resume rules
            (``num_workers``, ``timeout_s`` and ``device`` are the accelerate engine's). A stream is read by Ray
            Data's reader of its kind, its reading tasks skipping the ids committed; its run is done when the
            stream ends.

    Returns:
        the merged ``datasets.Dataset`` (columns ``path, start_s, end_s, video_embeds, [frame_embeds],
        [video_context], error``), sorted by path and start time.
    """
    progress = kwargs.get("progress", True)
    dataset, counts = run_embedding(videos, output_dir, model, **kwargs)
    if progress:
        from ..jobs import job_state

        if job_state().is_main_process:
            print(f"xclip-hf embed: {counts.summary(os.fspath(output_dir), len(dataset))}", file=sys.stderr)
    return dataset
