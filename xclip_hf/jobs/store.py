"""Where a resumable job keeps its work: atomic shards of whole videos per process, a done-list, the merged dataset."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid

from .identity import short, what_differs
from .lock import lock_files

__all__ = ["ShardStore", "row_features", "read_job_config", "config_name", "input_key", "CONFIG_NAME",
           "SHARDS_DIR", "RECORDED_KEYS", "INPUT_IDS"]

logger = logging.getLogger(__name__)


def config_name(job: str = "embed") -> str:
    """The job config's file name in a ``job``'s output directory."""
    return f"_{job}_config.json"


CONFIG_NAME = config_name()
SHARDS_DIR = "_shards"
DONE_LIST = "videos.json"
_DATASET_FILES = ("state.json", "dataset_info.json")
# recorded in the job config but not compared as settings: the model is compared by fingerprint, not by name
RECORDED_KEYS = ("model", "model_source", "model_fingerprint", "code_version")
# the job setting that says what the inputs' names are: "paths" (local paths and URLs) or "ids" (a source's ids)
INPUT_IDS = "input_ids"
# settings added after outputs were written without them: the value those outputs had
_EARLIER_DEFAULTS = {INPUT_IDS: "paths"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def read_job_config(directory, job: str = "embed") -> dict | None:
    """The job config of an embed (or other ``job``) output directory (None if there is none)."""
    path = os.path.join(os.fspath(directory), config_name(job))
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def row_features(projection_dim: int, save_dtype: str, frame_embeds: bool, video_context: bool):
    """The `datasets.Features` of the rows (vectors as lists so that error rows can hold nulls)."""
    from datasets import Features, List, Value

    vector = List(Value(save_dtype))
    features = {"path": Value("string"), "start_s": Value("float64"), "end_s": Value("float64"),
                "video_embeds": vector}
    if frame_embeds:
        features["frame_embeds"] = List(vector)
    if video_context:
        features["video_context"] = List(vector)
    features["error"] = Value("string")
    return Features(features)


@contextlib.contextmanager
def _quiet_datasets():
    """No `datasets` progress bar while a shard is saved (one per commit would drown the run's own bar)."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def input_key(name: str, as_written: bool = False) -> str:
    """The done-list key of an input: a source's id or a URL as written, a local path made absolute."""
    return name if as_written or _URL.match(name) else os.path.abspath(name)


def _brief(value, limit: int = 120) -> str:
    """repr of a setting, cut to ``limit`` characters (a class list can be long)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...]"


class ShardStore:
    """The output directory of one embedding (or other ``job``) run, seen from process ``rank``."""

    def __init__(self, directory, rank: int = 0, job: str = "embed"):
        self.directory = os.fspath(directory)
        self.rank = int(rank)
        self.job = job
        self.config_path = os.path.join(self.directory, config_name(job))
        self.shards_dir = os.path.join(self.directory, SHARDS_DIR)
        self.ids_as_written = False  # inputs named by a source's ids, not paths (from the job's settings, `check`)
        self._next = None

    # ---------------------------------------------------------------- opening
    def check_owner(self) -> None:
        """Refuse an output path that is a file, or a directory holding anything but an earlier run of this job."""
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"output {self.directory!r} exists and is not a directory")
        if not os.path.isdir(self.directory):
            return
        locks = lock_files(self.job)
        names = [n for n in os.listdir(self.directory)
                 if n not in locks and not n.startswith(f".{locks[0]}.")]  # a lock left by a killed first run
        if names and not os.path.isfile(self.config_path):
            listing = ", ".join(sorted(names)[:5])
            raise ValueError(
                f"output directory {self.directory!r} already holds other files ({listing}) and was not written by "
                f"`xclip-hf {self.job}`; pass a new or empty directory (or the directory of an earlier {self.job} run "
                "to resume it)"
            )

    def check(self, settings: dict) -> None:
        """`check_owner`, and refuse an earlier run with other settings or another model (by fingerprint)."""
        self.check_owner()
        self.ids_as_written = settings.get(INPUT_IDS) == "ids"
        saved = read_job_config(self.directory, self.job)
        if saved is None:
            return
        changed = {k: (saved.get(k, _EARLIER_DEFAULTS.get(k)), v) for k, v in settings.items()
                   if k not in RECORDED_KEYS and saved.get(k, _EARLIER_DEFAULTS.get(k)) != v}
        if changed:
            diff = ", ".join(f"{k}: {_brief(old)} -> {_brief(new)}" for k, (old, new) in changed.items())
            raise ValueError(
                f"output directory {self.directory!r} holds an {self.job} run made with other settings ({diff}); rows of "
                "both would not be comparable: use another directory, or the same settings to resume"
            )
        recorded = saved.get("model_fingerprint")
        source = saved.get("model_source", saved.get("model"))
        if recorded is None:
            logger.warning(f"output directory {self.directory!r} was written before {self.job} recorded model "
                           f"fingerprints: cannot check that {settings.get('model_source')!r} is the model that wrote "
                           f"its rows (it recorded the name {source!r}); resuming")
        elif recorded != settings["model_fingerprint"]:
            raise ValueError(
                f"output directory {self.directory!r} holds rows of another model (written with {source!r}, "
                f"fingerprint {short(recorded)}; {settings.get('model_source')!r} has fingerprint "
                f"{short(settings['model_fingerprint'])}{what_differs(recorded, settings['model_fingerprint'])}): rows "
                "of two models are not comparable. Use another "
                "directory, or the model that wrote it"
            )
        if saved.get("code_version") not in (None, settings.get("code_version")):
            logger.warning(f"output directory {self.directory!r} was started by xclip_hf {saved['code_version']}; "
                           f"this is {settings.get('code_version')}: new rows come from this version")

    def write_config(self, settings: dict) -> None:
        """Record the job (main process, once, before any shard is written); an earlier run's record is kept."""
        os.makedirs(self.shards_dir, exist_ok=True)
        path = self.config_path
        if not os.path.isfile(path):
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(settings, f, indent=2)
            os.replace(tmp, path)

    def remove_partial_shards(self) -> None:
        """Drop shards that a killed run left half-written (main process, before any process writes)."""
        if os.path.isdir(self.shards_dir):
            for name in os.listdir(self.shards_dir):
                if name.startswith(".tmp-"):
                    shutil.rmtree(os.path.join(self.shards_dir, name), ignore_errors=True)

    def committed_shards(self) -> list[str]:
        """Names of the committed shards, sorted."""
        if not os.path.isdir(self.shards_dir):
            return []
        return sorted(n for n in os.listdir(self.shards_dir) if n.startswith("rank") and
                      os.path.isfile(os.path.join(self.shards_dir, n, DONE_LIST)))

    def shard_videos(self, name: str) -> list[str]:
        """The done-list of a shard: the inputs whose rows it holds."""
        with open(os.path.join(self.shards_dir, name, DONE_LIST), encoding="utf-8") as f:
            return json.load(f)

    def shard_failures(self, name: str) -> set[str]:
        """Inputs (their `key`) with an error row in a shard."""
        import pyarrow.compute as pc
        from datasets import load_from_disk

        table = load_from_disk(os.path.join(self.shards_dir, name)).data  # a saved shard has no indices mapping
        failed = pc.filter(table.column("path"), pc.is_valid(table.column("error")))
        return {self.key(p) for p in failed.to_pylist()}

    def _commit_order(self) -> list[str]:
        """Committed shards oldest first (commit time of the done-list, then name)."""
        def when(name):
            return os.stat(os.path.join(self.shards_dir, name, DONE_LIST)).st_mtime_ns, name

        return sorted(self.committed_shards(), key=when)

    def chosen_copies(self) -> dict[str, tuple[str, bool]]:
        """Per input: the shard whose rows count (the first copy without errors, else the newest) and its error flag."""
        chosen: dict[str, tuple[str, bool]] = {}
        for name in self._commit_order():
            failed = self.shard_failures(name)
            for key in {self.key(p) for p in self.shard_videos(name)}:
                if key not in chosen or chosen[key][1]:
                    chosen[key] = (name, key in failed)
        return chosen

    def committed_inputs(self) -> dict[str, bool]:
        """Inputs (their `key`) committed by any process of any earlier run -> whether their rows hold an error."""
        return {key: failed for key, (_, failed) in self.chosen_copies().items()}

    def key(self, name: str) -> str:
        """The done-list key of an input of this job (`input_key`)."""
        return input_key(name, self.ids_as_written)

    # ---------------------------------------------------------------- writing
    def _next_index(self) -> int:
        if self._next is None:
            mine = [n for n in os.listdir(self.shards_dir) if n.startswith(f"rank{self.rank}-")] \
                if os.path.isdir(self.shards_dir) else []
            self._next = 1 + max((int(n.rsplit("-", 1)[1]) for n in mine), default=-1)
        return self._next

    def commit(self, rows: dict, videos: list[str], features) -> str:
        """Save ``rows`` (column -> list) as the next shard of this process, atomically; returns its name."""
        from datasets import Dataset

        name = f"rank{self.rank}-{self._next_index():06d}"
        tmp = os.path.join(self.shards_dir, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
        with _quiet_datasets():
            Dataset.from_dict(rows, features=features).save_to_disk(tmp)
        with open(os.path.join(tmp, DONE_LIST), "w", encoding="utf-8") as f:
            json.dump(list(videos), f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.shards_dir, name))
        self._next += 1
        return name

    # ---------------------------------------------------------------- merging
    def chosen_rows(self, features):
        """The rows of every committed shard, each input once (`chosen_copies`), in commit order (a `Dataset`)."""
        from datasets import Dataset, concatenate_datasets, load_from_disk

        chosen = self.chosen_copies()
        parts = []
        for name in self._commit_order():
            videos = {self.key(p) for p in self.shard_videos(name)}
            part = load_from_disk(os.path.join(self.shards_dir, name))
            superseded = {key for key in videos if chosen[key][0] != name}  # rows replaced by another copy
            if superseded:
                part = part.filter(lambda p: self.key(p) not in superseded, input_columns="path")
            parts.append(part)
        return concatenate_datasets(parts) if parts else Dataset.from_dict({k: [] for k in features}, features=features)

    def merge(self, features, progress: bool = True):
        """Concatenate every committed shard (each input once, rows sorted by path and start) into ``DIR``."""
        from datasets import load_from_disk

        merged = self.chosen_rows(features)
        if len(merged):
            keys = list(zip(merged["path"], merged["start_s"]))
            merged = merged.select(sorted(range(len(keys)), key=keys.__getitem__))
        for name in os.listdir(self.directory):  # the previous merge, if any
            if name in _DATASET_FILES or (name.startswith("data-") and name.endswith(".arrow")):
                os.remove(os.path.join(self.directory, name))
        with contextlib.nullcontext() if progress else _quiet_datasets():
            merged.save_to_disk(self.directory)
        return load_from_disk(self.directory)
