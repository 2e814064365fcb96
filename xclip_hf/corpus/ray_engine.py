"""`embed` on Ray Data: reading and decoding as Ray tasks, the model as a pool of actors, whole videos to the driver."""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..pipelines.video_chunks import VideoChunks, collate_chunks, error_message
from .loader import row_item

__all__ = ["RayOptions", "ray_options", "embedded_rows", "read_windows", "ModelActor"]

ENGINES = ("accelerate", "ray")
READ_RETRIES = 2  # a reading task whose worker dies is run again this often; then its videos are lost (error rows)
ACTOR_TASK_RETRIES = 3  # a model batch whose actor dies is retried this often (on the restarted actor); then lost
MAX_BLOCKS = 10_000  # input blocks of the video list: one video each up to this many
LOST = ("RayTaskLost: Ray lost this video's rows (its reading task or model actor failed past its retries; the Ray "
        "log above has the cause)")


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


def read_windows(batch: dict, produce: Callable) -> Iterator[dict]:
    """Ray Data reading step: each video of ``batch`` -> its window rows from ``produce``, failures as error rows."""
    import torch

    torch.set_num_threads(1)  # reading tasks decode and resize; the actors own the math threads
    for index, name, item in zip(batch["index"], batch["name"], batch["item"]):
        for seq, chunk in enumerate(VideoChunks([item], produce)):
            row = row_item(chunk, [str(name)])
            pixels = chunk.get("pixel_values") if row["error"] is None else None
            data, shape = _pack(pixels.float().numpy()) if pixels is not None else (b"", "")
            yield {"index": np.array([int(index)]), "seq": np.array([seq]), "last": np.array([bool(row["last"])]),
                   "name": np.array([str(name)]), "start_s": np.array([float(row["start_s"] or 0.0)]),
                   "end_s": np.array([np.nan if row["end_s"] is None else float(row["end_s"])]),
                   "error": np.array([row["error"] or ""]), "pixels": np.array([data], dtype=object),
                   "pixels_shape": np.array([shape])}


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
                  "pixel_values": None if error else torch.from_numpy(_unpack(data, shape, np.float32))}
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
    """Window rows in any order, some maybe twice (retried tasks) -> each video's rows in order once all arrived."""

    def __init__(self, names: list[str], columns, save_dtype: str):
        self.names, self.columns, self.save_dtype = names, list(columns), save_dtype
        self.open: dict[int, dict[int, dict]] = {}
        self.count: dict[int, int] = {}
        self.finished: set[int] = set()

    def add(self, batch: dict) -> Iterator[tuple[dict, dict | None]]:
        """Take a batch of embedded rows: ``(row, vectors)`` of each video it finished (a model failure raises)."""
        failed = [i for i, text in enumerate(batch["failure"]) if text]
        if failed:
            names = sorted({str(batch["name"][i]) for i in failed})
            text = str(batch["failure"][failed[0]])
            kind = ValueError if text.startswith("ValueError") else RuntimeError
            raise kind(f"the model failed on the processed videos {names[:3]}: {text}")
        for i in range(len(batch["index"])):
            index = int(batch["index"][i])
            if index in self.finished:
                continue
            seq = int(batch["seq"][i])
            self.open.setdefault(index, {})[seq] = {key: batch[key][i] for key in batch}
            if bool(batch["last"][i]):
                self.count[index] = seq + 1
            if len(self.open[index]) == self.count.get(index):
                yield from self._finish(index)

    def _finish(self, index: int) -> Iterator[tuple[dict, dict | None]]:
        rows = self.open.pop(index)
        self.finished.add(index)
        for seq in range(len(rows)):
            raw = rows[seq]
            end = float(raw["end_s"])
            row = {"index": index, "path": self.names[index], "start_s": float(raw["start_s"]),
                   "end_s": None if math.isnan(end) else end, "error": str(raw["error"]) or None,
                   "last": seq == len(rows) - 1}
            vectors = None if row["error"] else {c: _unpack(raw[c], str(raw[f"{c}_shape"]), self.save_dtype)
                                                 for c in self.columns}
            yield row, vectors

    def lost(self) -> Iterator[tuple[dict, dict | None]]:
        """One error row per video that never finished (its rows were dropped with a failed task)."""
        for index in range(len(self.names)):
            if index not in self.finished:
                self.finished.add(index)
                yield ({"index": index, "path": self.names[index], "start_s": 0.0, "end_s": None, "error": LOST,
                        "last": True}, None)


def _connect(address: str | None) -> bool:
    """Join the Ray cluster (already joined, ``address``, $RAY_ADDRESS or a new local one); True if this call did."""
    import ray

    if ray.is_initialized():
        return False
    local = address is None and not os.environ.get("RAY_ADDRESS")
    ray.init(address=address, logging_level=logging.WARNING, **({"include_dashboard": False} if local else {}))
    return True


def _pipeline(items, names, produce, model_ref, options: RayOptions, batch_size: int, columns, save_dtype: str):
    """The Ray Data plan: the videos -> reading tasks -> the actor pool (streaming)."""
    import ray.data

    rows = [{"index": i, "name": name, "item": item} for i, (name, item) in enumerate(zip(names, items))]
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
    with warnings.catch_warnings():  # the retry limits have no named parameter yet (Ray 2.60): remote args
        warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
        ds = ds.map_batches(read_windows, batch_size=1, batch_format="numpy", fn_kwargs={"produce": produce},
                            num_cpus=1, max_retries=READ_RETRIES)
        ds = ds.map_batches(ModelActor, batch_size=batch_size, batch_format="numpy",
                            fn_constructor_args=(model_ref, list(columns), save_dtype, options.device, options.threads),
                            compute=ray.data.ActorPoolStrategy(size=options.num_actors),
                            num_cpus=options.cpus_per_actor, num_gpus=options.gpus_per_actor or None,
                            max_restarts=-1, max_task_retries=ACTOR_TASK_RETRIES)
    ds.context.max_errored_blocks = -1  # a task failed past its retries: its videos become error rows, the run goes on
    ds.context.enable_progress_bars = False  # the driver shows its own bar (videos/s)
    return ds


def embedded_rows(items: list, names: list[str], produce: Callable, model, options: RayOptions, batch_size: int,
                  columns, save_dtype: str) -> Iterator[tuple[dict, dict | None]]:
    """``(row, vectors)`` of each window of ``items`` embedded on Ray, video by video, once each (lost: error row)."""
    import ray

    if not items:
        return
    started = _connect(options.address)
    try:
        video_side = getattr(model, "vision_model", model)  # the rows come from the video side alone
        try:
            model_ref = ray.put(video_side)
        except Exception as err:
            raise ValueError(f"engine='ray' sends the model to its actors by pickling it; {type(video_side).__name__} "
                             f"does not pickle ({error_message(err)}): use engine='accelerate'") from err
        vector_columns = [c for c in ("video_embeds", "frame_embeds", "video_context") if c in columns]
        ds = _pipeline(items, names, produce, model_ref, options, batch_size, vector_columns, save_dtype)
        videos = _Videos(names, vector_columns, save_dtype)
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            yield from videos.add(batch)
        yield from videos.lost()
    finally:
        if started:
            ray.shutdown()
