"""`embed` on Ray Data: reading and decoding as Ray tasks, the model as a pool of actors, whole videos to the driver."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..pipelines.video_chunks import VideoChunks, collate_chunks, error_message
from ..utils.messages import one_line
from .loader import row_item
from .sources import STREAM_BLOCK

__all__ = ["RayOptions", "ray_options", "embedded_rows", "check_stream", "StreamRows", "Ledger", "read_windows",
           "read_stream_windows", "ModelActor"]

ENGINES = ("accelerate", "ray")
READ_RETRIES = 2  # a reading task whose worker dies is run again this often; then its videos are lost (error rows)
# a stream's reading task holds many videos; each try that dies marks the video it was decoding (`Ledger`), so it
# gets this many more tries, and past them the run stops
STREAM_READ_RETRIES = READ_RETRIES + 32
ACTOR_TASK_RETRIES = 3  # a model batch whose actor dies is retried this often (on the restarted actor); then lost
MAX_BLOCKS = 10_000  # input blocks of the video list: one video each up to this many
LOST = ("RayTaskLost: Ray lost this video's rows (its reading task or model actor failed past its retries; the Ray "
        "log above has the cause)")
CRASHED = "DecoderCrash: the reading task died while decoding this video ({} time(s)); the Ray log above has the cause"


@dataclass(frozen=True)
class RayOptions:
    """A Ray run's cluster and model pool (``num_actors`` of ``cpus_per_actor`` CPUs, ``gpus_per_actor`` GPUs)."""

    # address None: as ray.init() ($RAY_ADDRESS, a local `ray start` cluster, else a new one); "auto", "host:port"
    address: str | None = None
    num_actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0

    @property
    def device(self) -> str:
        """The actors' device: their GPU when they hold one, else the CPU."""
        return "cuda" if self.gpus_per_actor > 0 else "cpu"

    @property
    def threads(self) -> int:
        """Math threads of a CPU actor: its whole CPUs (at least one)."""
        return max(1, math.floor(self.cpus_per_actor))


def _number(name: str, value, low: float, integer: bool = False, strict: bool = False):
    """``value`` checked to be a number >= ``low`` (> with ``strict``; an integer with ``integer``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < low \
            or (strict and value == low):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} {'>' if strict else '>='} {low}, got {value!r}")
    return value


def ray_options(engine: str, device=None, ray_address=None, num_actors=None, cpus_per_actor=None,
                gpus_per_actor=None) -> RayOptions | None:
    """The checked `RayOptions` of ``engine="ray"`` (None for ``"accelerate"``, which refuses Ray options)."""
    given = {k: v for k, v in (("ray_address", ray_address), ("num_actors", num_actors),
                               ("cpus_per_actor", cpus_per_actor), ("gpus_per_actor", gpus_per_actor)) if v is not None}
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "accelerate":
        if given:
            raise ValueError(f"{', '.join(given)} are options of engine='ray' (this run uses engine='accelerate')")
        return None
    if device is not None:
        raise ValueError(f"device={device!r}: with engine='ray' the actors' device follows gpus_per_actor (> 0: "
                         "their GPU, else the CPU); drop device=")
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
        raise ValueError(f"ray_address must be a cluster address ('auto', 'host:port', 'ray://host:port'), got "
                         f"{ray_address!r}")
    options = RayOptions(ray_address, _number("num_actors", 1 if num_actors is None else num_actors, 1, integer=True),
                         _number("cpus_per_actor", 1.0 if cpus_per_actor is None else cpus_per_actor, 0, strict=True),
                         _number("gpus_per_actor", 0.0 if gpus_per_actor is None else gpus_per_actor, 0))
    try:
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(f"engine='ray' needs Ray Data ({err}): pip install 'xclip_hf[ray]' (or 'ray[data]')") from err
    return options


def _pack(array) -> tuple[bytes, str]:
    """An array as (its bytes, its shape ``"AxBxC"``): any shape, and error rows (``b"", ""``), in one Arrow column."""
    array = np.ascontiguousarray(array)
    return array.tobytes(), "x".join(str(n) for n in array.shape)


def _unpack(data: bytes, shape: str, dtype) -> np.ndarray:
    """The array `_pack` wrote (a copy the caller may write to)."""
    return np.frombuffer(data, dtype=dtype).reshape([int(n) for n in shape.split("x")]).copy()


def _window_rows(name: str, item, produce: Callable) -> Iterator[dict]:
    """The window rows of one video from ``produce`` (one row per Ray Data output), a failure as an error row."""
    for seq, chunk in enumerate(VideoChunks([item], produce)):
        row = row_item(chunk, [name])
        pixels = chunk.get("pixel_values") if row["error"] is None else None
        data, shape = _pack(pixels.float().numpy()) if pixels is not None else (b"", "")
        yield _one_row(name, seq, bool(row["last"]), float(row["start_s"] or 0.0),
                       np.nan if row["end_s"] is None else float(row["end_s"]), row["error"] or "", data, shape)


def _one_row(name, seq, last, start_s, end_s, error, data, shape, skip=False) -> dict:
    """One window row in Ray Data's numpy batch form (``skip``: a marker of a video committed earlier)."""
    return {"seq": np.array([seq]), "last": np.array([last]), "name": np.array([name]),
            "start_s": np.array([start_s]), "end_s": np.array([end_s]), "error": np.array([error]),
            "pixels": np.array([data], dtype=object), "pixels_shape": np.array([shape]), "skip": np.array([skip])}


def read_windows(batch: dict, produce: Callable) -> Iterator[dict]:
    """Ray Data reading step: each video of ``batch`` -> its window rows from ``produce``, failures as error rows."""
    import torch

    torch.set_num_threads(1)  # reading tasks decode and resize; the actors own the math threads
    for name, item in zip(batch["name"], batch["item"]):
        yield from _window_rows(str(name), item, produce)


_SKIP: dict = {}  # per worker process: the skip set of the run, fetched from the object store once


def _skip_set(skip) -> frozenset:
    """The ids to skip: ``skip`` itself, or the set behind its object reference (fetched once per process)."""
    import ray

    if not isinstance(skip, ray.ObjectRef):
        return skip
    if skip.hex() not in _SKIP:
        _SKIP.clear()
        _SKIP[skip.hex()] = ray.get(skip)
    return _SKIP[skip.hex()]


class Ledger:
    """Ray actor of a stream run: the ids whose decoding began and did not end; a try of a reading task that died
    leaves its video there, and the retried task makes that video an error row instead of decoding it again."""

    def __init__(self):
        self.open: dict[str, int] = {}

    def begin(self, name: str) -> int:
        """Note that ``name`` is being decoded; returns how many earlier tries died decoding it."""
        died = self.open.get(name, 0)
        self.open[name] = died + 1
        return died

    def end(self, name: str) -> None:
        """Note that ``name`` was decoded (or made an error row)."""
        self.open.pop(name, None)


def read_stream_windows(batch, produce: Callable, item_of: Callable, skip, ledger) -> Iterator[dict]:
    """Ray Data reading step of a stream: each row of the source's reader (a pyarrow batch) -> its `SourceItem`
    (``item_of``), then one skip marker when its id is in ``skip`` (committed), an error row when an earlier try
    died decoding it (``ledger``), else its window rows."""
    import ray
    import torch

    torch.set_num_threads(1)
    skip = _skip_set(skip)
    for source_row in batch.to_pylist():
        item = item_of(source_row)
        if item.id in skip:
            yield _one_row(item.id, 0, True, 0.0, np.nan, "", b"", "", skip=True)
            continue
        died = ray.get(ledger.begin.remote(item.id))  # recorded before decoding: a crash leaves it open
        if died:
            yield _one_row(item.id, 0, True, 0.0, np.nan, CRASHED.format(died), b"", "")
        else:
            yield from _window_rows(item.id, item, produce)
        ledger.end.remote(item.id)  # an actor runs one caller's calls in order: before this task's next begin


class ModelActor:
    """Ray Data model step (one actor of the pool): window rows -> their vectors (``columns``) in ``save_dtype``."""

    # a window of another processed shape than its batch becomes an error row (`collate_chunks`); a failure of the
    # model itself is sent as the batch's ``failure`` text, and the driver stops the run naming the videos

    def __init__(self, model, columns, save_dtype: str, device: str, threads: int):
        import ray
        import torch

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        if device == "cpu":
            torch.set_num_threads(threads)
        self.net = model.to(device).eval()
        self.forward = getattr(self.net, "get_video_features", self.net)
        self.device, self.columns, self.save_dtype = torch.device(device), list(columns), save_dtype

    def __call__(self, batch: dict) -> dict:
        import torch

        items = [{"video_name": str(name), "error": error or None,
                  "pixel_values": None if error or not shape else torch.from_numpy(_unpack(data, shape, np.float32))}
                 for name, error, data, shape in zip(batch["name"], batch["error"], batch["pixels"],
                                                     batch["pixels_shape"])]
        collated = collate_chunks(items)
        vectors, failure = {}, ""
        if collated["pixel_values"] is not None:
            pixel_values = collated["pixel_values"].to(device=self.device, dtype=self.net.dtype)
            try:
                with torch.inference_mode():
                    out = self.forward(pixel_values=pixel_values)
            except Exception as err:  # the model's own failure ends the run (as in one process), named by the driver
                failure = error_message(err)
            else:
                for column in self.columns:
                    array = getattr(out, column).float().cpu().numpy().astype(self.save_dtype)
                    vectors[column] = dict(zip(collated["good"], array))
        result = {k: v for k, v in batch.items() if k not in ("pixels", "pixels_shape")}
        result["failure"] = np.array([failure] * len(items))
        result["error"] = np.array([_error_text(item["error"]) for item in collated["items"]])
        for column in self.columns:
            packed = [_pack(vectors[column][pos]) if pos in vectors.get(column, {}) else (b"", "")
                      for pos in range(len(items))]
            result[column] = np.array([p[0] for p in packed], dtype=object)
            result[f"{column}_shape"] = np.array([p[1] for p in packed])
        return result


def _error_text(error) -> str:
    """An error row's text ("" for none): read errors arrive as text, the batch's own as exceptions."""
    if error is None:
        return ""
    return error if isinstance(error, str) else error_message(error)


class _Videos:
    """Window rows in any order, some maybe twice (retried tasks) -> each video's rows in order once all arrived;
    videos are told apart by name (their id), a stream's skip markers are counted."""

    def __init__(self, columns, save_dtype: str):
        self.columns, self.save_dtype = list(columns), save_dtype
        self.open: dict[str, dict[int, dict]] = {}
        self.count: dict[str, int] = {}
        self.finished: set[str] = set()
        self.skipped: set[str] = set()  # ids a stream's reading tasks skipped (committed earlier)
        self.again: set[str] = set()  # ids whose rows arrived after their video was taken

    def add(self, batch: dict) -> Iterator[tuple[dict, dict | None]]:
        """Take a batch of embedded rows: ``(row, vectors)`` of each video it finished (a model failure raises)."""
        failed = [i for i, text in enumerate(batch["failure"]) if text]
        if failed:
            names = sorted({str(batch["name"][i]) for i in failed})
            text = str(batch["failure"][failed[0]])
            kind = ValueError if text.startswith("ValueError") else RuntimeError
            raise kind(f"the model failed on the processed videos {names[:3]}: {text}")
        for i in range(len(batch["name"])):
            name = str(batch["name"][i])
            if bool(batch["skip"][i]):
                self.skipped.add(name)
                continue
            if name in self.finished:
                self.again.add(name)
                continue
            seq = int(batch["seq"][i])
            self.open.setdefault(name, {})[seq] = {key: batch[key][i] for key in batch}
            if bool(batch["last"][i]):
                self.count[name] = seq + 1
            if len(self.open[name]) == self.count.get(name):
                yield from self._finish(name)

    def _finish(self, name: str) -> Iterator[tuple[dict, dict | None]]:
        rows = self.open.pop(name)
        self.count.pop(name)
        self.finished.add(name)
        for seq in range(len(rows)):
            raw = rows[seq]
            end = float(raw["end_s"])
            row = {"index": name, "path": name, "start_s": float(raw["start_s"]),
                   "end_s": None if math.isnan(end) else end, "error": str(raw["error"]) or None,
                   "last": seq == len(rows) - 1}
            vectors = None if row["error"] else {c: _unpack(raw[c], str(raw[f"{c}_shape"]), self.save_dtype)
                                                 for c in self.columns}
            yield row, vectors

    def lost(self, names: list[str]) -> Iterator[tuple[dict, dict | None]]:
        """One error row per video of ``names`` that never finished (its rows were dropped with a failed task)."""
        for name in names:
            if name not in self.finished:
                self.finished.add(name)
                yield ({"index": name, "path": name, "start_s": 0.0, "end_s": None, "error": LOST, "last": True},
                       None)


def _connect(address: str | None) -> bool:
    """Join the Ray cluster (already joined, ``address``, $RAY_ADDRESS or a new local one); True if this call did."""
    import ray

    if ray.is_initialized():
        return False
    local = address is None and not os.environ.get("RAY_ADDRESS")
    ray.init(address=address, logging_level=logging.WARNING, **({"include_dashboard": False} if local else {}))
    return True


@contextlib.contextmanager
def _on_cluster(model, options: RayOptions):
    """On the Ray cluster (left at the end when this run joined it), with the model's video side in the object
    store: yields its reference."""
    import ray

    started = _connect(options.address)
    try:
        video_side = getattr(model, "vision_model", model)  # the rows come from the video side alone
        try:
            model_ref = ray.put(video_side)
        except Exception as err:
            raise ValueError(f"engine='ray' sends the model to its actors by pickling it; {type(video_side).__name__} "
                             f"does not pickle ({error_message(err)}): use engine='accelerate'") from err
        yield model_ref
    finally:
        if started:
            ray.shutdown()


def _pipeline(ds, read: Callable, read_kwargs: dict, read_format: str, model_ref, options: RayOptions,
              batch_size: int, columns, save_dtype: str, errored_blocks: int, read_retries: int = READ_RETRIES):
    """The Ray Data plan: input rows -> reading tasks (``read``, tried ``1 + read_retries`` times) -> the actor pool
    (streaming); ``errored_blocks``: how many failed tasks the run goes on past (-1: any)."""
    import ray.data

    with warnings.catch_warnings():  # the retry limits have no named parameter yet (Ray 2.60): remote args
        warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
        ds = ds.map_batches(read, batch_size=1, batch_format=read_format, fn_kwargs=read_kwargs, num_cpus=1,
                            max_retries=read_retries)
        ds = ds.map_batches(ModelActor, batch_size=batch_size, batch_format="numpy",
                            fn_constructor_args=(model_ref, list(columns), save_dtype, options.device, options.threads),
                            compute=ray.data.ActorPoolStrategy(size=options.num_actors),
                            num_cpus=options.cpus_per_actor, num_gpus=options.gpus_per_actor or None,
                            max_restarts=-1, max_task_retries=ACTOR_TASK_RETRIES)
    ds.context.max_errored_blocks = errored_blocks
    ds.context.enable_progress_bars = False  # the driver shows its own bar (videos/s)
    return ds


def _vector_columns(columns) -> list[str]:
    """The row columns that hold vectors, in the store's order."""
    return [c for c in ("video_embeds", "frame_embeds", "video_context") if c in columns]


def embedded_rows(items: list, names: list[str], produce: Callable, model, options: RayOptions, batch_size: int,
                  columns, save_dtype: str) -> Iterator[tuple[dict, dict | None]]:
    """``(row, vectors)`` of each window of ``items`` embedded on Ray, video by video, once each (lost: error row)."""
    import ray.data

    if not items:
        return
    with _on_cluster(model, options) as model_ref:
        rows = [{"name": name, "item": item} for name, item in zip(names, items)]
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
        # a task failed past its retries: its videos become error rows (`lost`), the run goes on
        ds = _pipeline(ds, read_windows, {"produce": produce}, "numpy", model_ref, options, batch_size,
                       _vector_columns(columns), save_dtype, errored_blocks=-1)
        videos = _Videos(_vector_columns(columns), save_dtype)
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            yield from videos.add(batch)
        yield from videos.lost(names)


def _stream_dataset(recipe):
    """The Ray Dataset of a stream source's rows, read by Ray Data's reader of its kind."""
    import ray
    import ray.data

    if recipe.kind == "huggingface":
        # the streaming reader behind ray.data.from_huggingface, called directly: from_huggingface first asks the
        # Hub for parquet files of a dataset of the same name (a network call; a public namesake would be read
        # instead of a local dataset), and its blocks of 4096 rows would hold that many videos' bytes
        try:  # not public API: a Ray that moved it gets a clear error, not a traceback from deep in Ray
            from ray.data._internal.datasource.huggingface_datasource import HuggingFaceDatasource
        except ImportError as err:
            raise ImportError(f"engine='ray' over a streaming Hugging Face dataset uses Ray Data's streaming reader "
                              f"of datasets, which this Ray ({ray.__version__}) does not have where Ray 2.60 keeps "
                              f"it ({err}); use engine='accelerate' or drop --streaming") from err

        return ray.data.read_datasource(HuggingFaceDatasource(recipe.data, batch_size=STREAM_BLOCK))
    return ray.data.read_webdataset(list(recipe.data), decoder=None, file_extensions=None)


def _cause(err: BaseException) -> BaseException:
    """The error a Ray task raised, under Ray's wrappers (``cause``, ``__cause__``)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = getattr(err, "cause", None) or err.__cause__
        if not isinstance(inner, BaseException):
            break
        err = inner
    return err


def _stream_batches(ds, name: str) -> Iterator[dict]:
    """The embedded batches of a stream's plan; Ray stopping it (a task failed past its retries: an unreadable
    shard, a worker that keeps dying) raises naming the source and the task's error."""
    iterator = iter(ds.iter_batches(batch_format="numpy", batch_size=None))
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            cause = _cause(err)
            raise RuntimeError(f"Ray stopped reading {name}: {type(cause).__name__}: {one_line(cause)}. The videos "
                               "finished before are committed; run the same command again to go on (it skips "
                               "them)") from err
        yield batch


def check_stream(source) -> None:
    """Refuse a stream `sources.Source` that Ray Data cannot read in parallel, saying why."""
    if source.recipe is None or source.recipe.refusal:
        why = source.recipe.refusal if source.recipe is not None else "no Ray Data reader reads it"
        raise ValueError(f"engine='ray' cannot read {source.name} in parallel: {why}; or use engine='accelerate'")


class StreamRows:
    """``(row, vectors)`` of each video of a stream `sources.Source` embedded on Ray, once each: Ray Data's reader
    of the source feeds the reading tasks, which skip the ids committed (``done``, unless ``redo(done[id])``);
    counts ``skipped`` and ``retried`` as `sources.StreamShare` does."""

    # The run is done when Ray's stream of the source ends: every id the source holds then has committed rows
    # (embedded now, an error row, or skipped as committed before). A task lost past its retries cannot be named
    # (its rows never reached the driver), so it stops the run, keeping what was committed; a rerun goes on.

    def __init__(self, source, done: dict, redo, produce: Callable, model, options: RayOptions, batch_size: int,
                 columns, save_dtype: str):
        check_stream(source)
        self.source, self.done, self.redo, self.produce = source, done, redo, produce
        self.model, self.options, self.batch_size = model, options, batch_size
        self.columns, self.save_dtype = _vector_columns(columns), save_dtype
        self.skipped = self.retried = 0

    def __iter__(self) -> Iterator[tuple[dict, dict | None]]:
        import ray

        skip = frozenset(k for k, failed in self.done.items() if not (self.redo is not None and self.redo(failed)))
        videos = _Videos(self.columns, self.save_dtype)
        with _on_cluster(self.model, self.options) as model_ref:
            ledger = ray.remote(num_cpus=0)(Ledger).remote()
            read_kwargs = {"produce": self.produce, "item_of": self.source.recipe.item, "skip": ray.put(skip),
                           "ledger": ledger}
            ds = _pipeline(_stream_dataset(self.source.recipe), read_stream_windows, read_kwargs, "pyarrow",
                           model_ref, self.options, self.batch_size, self.columns, self.save_dtype, errored_blocks=0,
                           read_retries=STREAM_READ_RETRIES)
            try:
                for batch in _stream_batches(ds, self.source.name):
                    for row, vectors in videos.add(batch):
                        self.retried += row["last"] and row["path"] in self.done
                        yield row, vectors
            finally:
                self.skipped = len(videos.skipped)
        if videos.again:
            warnings.warn(f"{len(videos.again)} id(s) of {self.source.name} (e.g. {sorted(videos.again)[0]!r}) sent "
                          "rows again after their video was taken (a retried Ray task, or an id repeated in the "
                          "source: ids must be unique); the first copy's rows were kept", stacklevel=2)
