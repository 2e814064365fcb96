"""Where `embed`'s videos come from: files and URLs, a Hugging Face dataset, webdataset tar shards; each source is
a sequence or stream of `SourceItem` (id, opener) that the one window producer (`loader.window_rows`) reads."""

from __future__ import annotations

import collections.abc
import functools
import glob
import itertools
import os
from dataclasses import dataclass
from typing import Callable, Iterable

from ..utils.messages import one_line
from ..video.fetch import DEFAULT_URL_TIMEOUT
from .inputs import VIDEO_EXTENSIONS, expand_inputs, is_url

__all__ = ["SourceItem", "Source", "StreamRecipe", "StreamShare", "open_source", "files_source", "dataset_source",
           "webdataset_source", "item_id", "read_url", "DEFAULT_URL_TIMEOUT", "MAX_URL_BYTES", "STREAM_BLOCK"]

MAX_URL_BYTES = 2 * 10**9  # a download into memory stops here
STREAM_BLOCK = 32  # videos of a stream held in memory at a time (decoded by the DataLoader workers as one list)
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SourceItem:
    """One video of a source: ``id`` (its rows' ``path``, its done-list key) and ``opener`` (None: ``id`` is a
    local path), which returns a local path, the video's bytes or a seekable binary file object."""

    id: str
    opener: Callable[[], object] | None = None

    def open(self):
        """What the reader opens: a local path, bytes or a file object (raises naming the id when it cannot)."""
        return self.id if self.opener is None else self.opener()


def item_id(video) -> str:
    """The id of a `SourceItem`, or a plain path as given."""
    return video.id if isinstance(video, SourceItem) else os.fspath(video)


@dataclass(frozen=True)
class StreamRecipe:
    """How a parallel engine (Ray Data) reads a stream: ``kind`` "huggingface" (``data`` an `IterableDataset`) or
    "webdataset" (``data`` the shard paths/URLs), ``item(row)`` the `SourceItem` of one row of that reader, and
    ``refusal``: why the stream cannot be read in parallel ("" when it can)."""

    kind: str
    data: object
    item: Callable[[dict], SourceItem]
    refusal: str = ""


class Source:
    """The videos of one run: ``items`` (a sequence of `SourceItem`) or ``stream`` (a function giving a fresh
    iterator of them, and its ``recipe`` for Ray); ``length`` (None for a stream); ``ids``: "paths" (local paths and
    URLs, a path's key is absolute) or "ids" (keys as written); ``name`` names the source in messages."""

    def __init__(self, name: str, ids: str, items: collections.abc.Sequence | None = None,
                 stream: Callable[[], Iterable[SourceItem]] | None = None, recipe: StreamRecipe | None = None):
        if (items is None) == (stream is None):
            raise ValueError("a Source has items or a stream, not both")
        self.name, self.ids, self.items, self.stream, self.recipe = name, ids, items, stream, recipe

    @property
    def length(self) -> int | None:
        """How many items (None: a stream, read to learn)."""
        return None if self.items is None else len(self.items)

    def __iter__(self):
        """The items in order (a stream: from its start)."""
        return iter(self.items) if self.items is not None else iter(self.stream())

    def __repr__(self) -> str:
        return f"Source({self.name!r}, {self.length if self.length is not None else 'stream'})"


# ------------------------------------------------------------------------------------------------ URLs
def _url_hints():
    """How the fetcher's refusals name embed and its options."""
    from ..video.fetch import FetchHints

    return FetchHints(fetcher="xclip-hf embed", limit="embed's download limit",
                      time="pass a larger --url-timeout (url_timeout_s=), or download the files and pass their paths",
                      size="download the file and pass its local path")


def read_url(url: str, timeout_s: float = DEFAULT_URL_TIMEOUT, max_bytes: int = MAX_URL_BYTES):
    """A URL's video: the local path of a ``file://`` URL, else its bytes (http(s): the package's capped fetcher,
    within ``timeout_s`` seconds; other protocols: fsspec). Errors name the URL."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        from ..video.fetch import fetch_bytes

        return fetch_bytes(url, max_bytes=max_bytes, timeout=timeout_s, allow_private=True, hints=_url_hints())
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
        if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            return path
        size = fs.size(path)
        if size is not None and size > max_bytes:
            raise ValueError(f"it is {size / 1e6:.3g} MB, over embed's download limit of {max_bytes / 1e6:.3g} MB")
        with fs.open(path, "rb") as f:
            return f.read()
    except Exception as err:
        raise OSError(f"cannot read URL {url!r}: {type(err).__name__}: {one_line(err)}") from err


def _check_protocols(urls: Iterable[str]) -> None:
    """Refuse, before any work, URLs whose protocol fsspec cannot read here (e.g. s3:// without s3fs)."""
    first: dict[str, str] = {}
    for url in urls:
        first.setdefault(url.split("://", 1)[0].lower(), url)
    for protocol, url in sorted(first.items()):
        if protocol in ("http", "https", "file"):
            continue
        try:
            import fsspec

            fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as err:
            raise ValueError(f"cannot read {url!r}: fsspec has no {protocol}:// file system here ({one_line(err)})") \
                from err


def _given(value):
    """An opener's answer fixed in advance (bytes already read, a path)."""
    return value


def _failing(message: str):
    """An opener that fails: the item becomes an error row with ``message``."""
    raise ValueError(message)


def _url_item(url: str, timeout_s: float) -> SourceItem:
    """The item of a URL: its id the URL, read when the producer opens it."""
    return SourceItem(url, functools.partial(read_url, url, timeout_s))


# ------------------------------------------------------------------------------------------------ files and URLs
def files_source(videos=(), list_file=None, url_timeout_s: float = DEFAULT_URL_TIMEOUT) -> Source:
    """Local files, directories, globs and list files (`inputs.expand_inputs`), and fsspec URLs among them."""
    paths = expand_inputs(videos, list_file)
    _check_protocols(p for p in paths if is_url(p))
    items = [_url_item(p, url_timeout_s) if is_url(p) else SourceItem(p) for p in paths]
    return Source("the input files", "paths", items=items)


# ------------------------------------------------------------------------------------------------ datasets
def _load_dataset(dataset, split, streaming):
    """(a `datasets.Dataset` or `IterableDataset`, its name) from a dataset object, a ``save_to_disk`` folder, or
    what `datasets.load_dataset` reads (a local folder of data files, a hub id)."""
    import datasets

    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict,
                            datasets.IterableDatasetDict)):
        info = getattr(dataset, "info", None)
        name, ds = (getattr(info, "dataset_name", None) or "the dataset"), dataset
    else:
        name = os.fspath(dataset)
        saved = any(os.path.isfile(os.path.join(name, f)) for f in ("state.json", "dataset_dict.json"))
        try:
            ds = datasets.load_from_disk(name) if saved else datasets.load_dataset(name, split=split,
                                                                                   streaming=streaming)
        except Exception as err:
            raise ValueError(f"cannot load the dataset {name!r}: {type(err).__name__}: {one_line(err)}") from err
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = sorted(ds)
        if split is None and len(splits) != 1:
            raise ValueError(f"dataset {name!r} has the splits {', '.join(splits)}: choose one with --split (split=)")
        if (split or splits[0]) not in ds:
            raise ValueError(f"dataset {name!r} has no split {split!r} (its splits: {', '.join(splits)})")
        ds = ds[split or splits[0]]
    if streaming and isinstance(ds, datasets.Dataset):
        ds = ds.to_iterable_dataset()
    return ds, name


def _column_names(ds) -> list[str]:
    """The columns of a dataset (of a stream without declared features: those of its first row)."""
    if ds.column_names is not None:
        return list(ds.column_names)
    first = next(iter(ds), None)
    return [] if first is None else list(first)


def _check_columns(ds, name: str, video_column: str, id_column: str | None) -> None:
    """Refuse a dataset without the named columns, naming the columns it has and the option to use."""
    columns = _column_names(ds)
    for column, option, what in ((video_column, "--video-column (video_column=)", "the videos"),
                                 (id_column, "--id-column (id_column=)", "the ids")):
        if column is not None and column not in columns:
            raise ValueError(f"dataset {name!r} has no column {column!r} (its columns: "
                             f"{', '.join(columns) or 'none'}); name the column of {what} with {option}")


def _undecoded(ds, video_column: str):
    """The dataset with a `datasets.Video` column left as ``{"bytes", "path"}`` (our reader decodes it)."""
    from datasets import Video

    feature = (ds.features or {}).get(video_column)
    if isinstance(feature, Video) and feature.decode:
        ds = ds.cast_column(video_column, Video(decode=False))
    return ds


def video_cell(value, video_id: str, url_timeout_s: float = DEFAULT_URL_TIMEOUT):
    """A dataset cell of the video column -> what the reader opens: a local path or the video's bytes."""
    if isinstance(value, dict):  # datasets' Video feature undecoded, or any {"bytes", "path"} struct
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        return value
    if isinstance(value, str) and value:
        return read_url(value, url_timeout_s) if is_url(value) else value
    what = "no video (null or empty)" if not value else type(value).__name__
    raise ValueError(f"{video_id!r}: its video cell holds {what}, not a path, a URL or video bytes")


def _dataset_cell(ds, index: int, column: str, video_id: str, url_timeout_s: float):
    """Opener of row ``index`` of a `datasets.Dataset`: its video cell, read when the producer asks."""
    return video_cell(ds[index][column], video_id, url_timeout_s)


def _default_ids(ds, video_column: str) -> bool:
    """Whether rows without an id column are named by their video cell (a column of strings: paths or URLs)."""
    feature = (ds.features or {}).get(video_column)
    return getattr(feature, "dtype", None) in ("string", "large_string")


def _unique(ids: list[str], name: str) -> None:
    """Refuse a source whose ids repeat (rows of two videos would share one done-list key)."""
    seen: dict[str, int] = {}
    for index, value in enumerate(ids):
        if value in seen:
            raise ValueError(f"{name}: the id {value!r} names rows {seen[value]} and {index}; ids must be unique "
                             "(choose a column of unique ids with --id-column)")
        seen[value] = index


class _DatasetRows(collections.abc.Sequence):
    """The items of a `datasets.Dataset`: row i's id, and an opener that reads its video cell when asked."""

    def __init__(self, ds, ids: list[str], column: str, url_timeout_s: float):
        self.ds, self.ids, self.column, self.url_timeout_s = ds, ids, column, url_timeout_s

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        """Item ``index`` (a list for a slice)."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return SourceItem(self.ids[index], functools.partial(_dataset_cell, self.ds, index, self.column,
                                                             self.ids[index], self.url_timeout_s))


def _row_id(row: dict, index: int | None, video_column: str, id_column: str | None, name: str) -> str:
    """A row's id: its id cell, else its video cell when that is a path or URL, else its row number."""
    if id_column is None:
        value = row[video_column]
        if index is None and not (isinstance(value, str) and value):  # a row read in parallel: no row number
            raise ValueError(f"dataset {name!r}: a row has no path or URL in its {video_column!r} cell to name it; "
                             "name a column of unique ids with --id-column (id_column=)")
        return value if isinstance(value, str) and value else str(index)
    value = row[id_column]
    if value is None or value == "":
        where = "a row" if index is None else f"row {index}"
        raise ValueError(f"dataset {name!r}: {where} has no id (its {id_column!r} cell is empty)")
    return str(value)


def _stream_rows(ds, name: str, video_column: str, id_column: str | None, url_timeout_s: float):
    """The items of an `IterableDataset`, each holding its row's video cell (bytes in memory, or a path/URL)."""
    for index, row in enumerate(ds):
        yield _row_item(row, index, name, video_column, id_column, url_timeout_s)


def _row_item(row: dict, index, name: str, video_column: str, id_column: str | None, url_timeout_s: float):
    """The item of one dataset row (``index``: its row number, the id when there is no other)."""
    video_id = _row_id(row, index, video_column, id_column, name)
    return SourceItem(video_id, functools.partial(video_cell, row[video_column], video_id, url_timeout_s))


def _stream_recipe(ds, name: str, video_column: str, id_column: str | None, url_timeout_s: float) -> StreamRecipe:
    """The `StreamRecipe` of an `IterableDataset`: rows read by a parallel engine have no row numbers, so their
    ids come from the id column or from a video column of paths/URLs."""
    numbered = id_column is None and not _default_ids(ds, video_column)
    refusal = (f"dataset {name!r} names its rows by row number (no --id-column, and its {video_column!r} column "
               "is not declared a column of strings: paths or URLs), which tasks reading it in parallel cannot "
               "count: name a column of unique ids with --id-column (id_column=)") if numbered else ""
    return StreamRecipe("huggingface", ds, functools.partial(_row_item, index=None, name=name,
                                                             video_column=video_column, id_column=id_column,
                                                             url_timeout_s=url_timeout_s), refusal)


def dataset_source(dataset, video_column: str = "video", id_column: str | None = None, split: str | None = None,
                   streaming: bool = False, url_timeout_s: float = DEFAULT_URL_TIMEOUT) -> Source:
    """A Hugging Face dataset's videos: ``video_column`` holds paths, URLs or video bytes (a `datasets.Video`
    feature included), ``id_column`` the ids (default: the path/URL, or the row number for bytes)."""
    import datasets

    ds, name = _load_dataset(dataset, split, streaming)
    _check_columns(ds, name, video_column, id_column)
    ds = _undecoded(ds.select_columns([c for c in dict.fromkeys((video_column, id_column)) if c is not None]),
                    video_column)
    if isinstance(ds, datasets.IterableDataset):
        return Source(f"dataset {name!r}", "ids",
                      stream=functools.partial(_stream_rows, ds, name, video_column, id_column, url_timeout_s),
                      recipe=_stream_recipe(ds, name, video_column, id_column, url_timeout_s))
    if id_column is not None:
        cells = ds.select_columns([id_column]).with_format("arrow")[:][id_column].to_pylist()
        ids = [_row_id({id_column: v}, i, video_column, id_column, name) for i, v in enumerate(cells)]
    elif _default_ids(ds, video_column):
        cells = ds.with_format("arrow")[:][video_column].to_pylist()
        ids = [v if v else str(i) for i, v in enumerate(cells)]
    else:
        ids = [str(i) for i in range(len(ds))]
    _unique(ids, f"dataset {name!r}")
    return Source(f"dataset {name!r}", "ids", items=_DatasetRows(ds, ids, video_column, url_timeout_s))


# ------------------------------------------------------------------------------------------------ webdataset
def _webdataset(module: str):
    """A webdataset module, or an ImportError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(f"webdataset.{module}")
    except ImportError as err:
        raise ImportError(f"webdataset sources need the webdataset package: pip install \"xclip_hf[sources]\" "
                          f"({one_line(err)})") from err


def _shard_urls(shards) -> list[str]:
    """Shard paths and URLs, each once: brace patterns (``a-{000..009}.tar``) and ``::`` lists expanded as webdataset
    does, local globs matched; a missing local shard is an error naming it."""
    expand_urls = _webdataset("shardlists").expand_urls

    patterns = [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)
    if not patterns:
        raise ValueError("no webdataset shards: pass tar paths, brace patterns or URLs")
    urls: list[str] = []
    for pattern in patterns:
        for url in expand_urls(os.fspath(pattern)):
            if is_url(url):
                urls.append(url)
            elif _GLOB_CHARS & set(url) and not os.path.exists(url):
                found = sorted(glob.glob(url, recursive=True))
                if not found:
                    raise ValueError(f"webdataset shard pattern {url!r} matches no file")
                urls.extend(found)
            elif not os.path.isfile(url):
                raise ValueError(f"webdataset shard {url!r} does not exist (or is not a file)")
            else:
                urls.append(url)
    _check_protocols(u for u in urls if is_url(u))
    return list(dict.fromkeys(urls))


def _open_shard(url: str, timeout_s: float):
    """A shard as a binary stream: a local file, or an fsspec file read front to back (http: a timeout per read)."""
    if not is_url(url):
        return open(url, "rb")
    import fsspec

    options = {}
    if url.split("://", 1)[0].lower() in ("http", "https"):
        import aiohttp

        options = {"block_size": 0, "client_kwargs": {"timeout": aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s)}}
    return fsspec.open(url, "rb", **options).open()


def _member_choice(video_keys) -> list[str] | None:
    """The sample members that may hold the video, in order of preference (None: any one video extension)."""
    if video_keys is None:
        return None
    keys = [video_keys] if isinstance(video_keys, str) else list(video_keys)
    keys = [k.strip().lower().lstrip(".") for key in keys for k in key.replace(";", ",").split(",") if k.strip()]
    if not keys:
        raise ValueError("video_key (--video-key) names no member extension")
    return keys


def _sample_item(sample: dict, url: str, keys: list[str] | None) -> SourceItem:
    """A webdataset sample -> its item: id the sample key, the video member's bytes (an error row without one)."""
    key = sample["__key__"]
    members = sorted(k for k in sample if not k.startswith("__"))
    if keys is not None:
        chosen = [k for k in keys if k in sample][:1]
    else:
        chosen = [k for k in members if "." + k.rsplit(".", 1)[-1] in VIDEO_EXTENSIONS]
    where = f"webdataset sample {key!r} in shard {url!r}"
    if not chosen:
        wanted = f"--video-key {','.join(keys)}" if keys else f"video extensions {' '.join(VIDEO_EXTENSIONS)}"
        return SourceItem(key, functools.partial(
            _failing, f"{where} has no video member (its members: {', '.join(members) or 'none'}; {wanted})"))
    if len(chosen) > 1:
        return SourceItem(key, functools.partial(
            _failing, f"{where} has several video members ({', '.join(chosen)}): choose one with --video-key"))
    return SourceItem(key, functools.partial(_given, sample[chosen[0]]))


def _reader_sample(row: dict, keys) -> SourceItem:
    """A row of Ray's webdataset reader (``__key__``, ``__url__``, a column per member extension, None where the
    sample has no such member) -> its item, as `_sample_item` makes it."""
    sample = {k: v for k, v in row.items() if v is not None}
    return _sample_item(sample, str(sample.get("__url__", "?")), keys)


def _first_message(err: BaseException) -> str:
    """webdataset's errors carry the stream and URL in their args: the first argument's text."""
    return str(err.args[0]) if err.args else type(err).__name__


def _shard_items(url: str, keys, timeout_s: float):
    """The items of one shard, in tar order; an unreadable shard raises naming it and the samples read before."""
    tariterators = _webdataset("tariterators")
    try:
        stream = _open_shard(url, timeout_s)
    except Exception as err:
        raise ValueError(f"cannot open webdataset shard {url!r}: {type(err).__name__}: {_first_message(err)}") from err
    read = 0
    with stream:
        try:
            for sample in tariterators.group_by_keys(tariterators.tar_file_expander([{"url": url, "stream": stream}])):
                read += 1
                yield _sample_item(sample, url, keys)
        except Exception as err:
            raise ValueError(f"cannot read webdataset shard {url!r} (after {read} sample(s)): "
                             f"{type(err).__name__}: {_first_message(err)}") from err


def _tar_items(urls: list[str], keys, timeout_s: float):
    """The items of every shard, shard after shard."""
    for url in urls:
        yield from _shard_items(url, keys, timeout_s)


def webdataset_source(shards, video_key=None, url_timeout_s: float = DEFAULT_URL_TIMEOUT) -> Source:
    """webdataset tar shards (paths, brace patterns, fsspec URLs) read in order: one item per sample, id its key;
    ``video_key``: the member extension(s) holding the video (default: the sample's one video-extension member)."""
    urls = _shard_urls(shards)
    keys = _member_choice(video_key)
    name = f"webdataset {urls[0]!r}" + (f" (+{len(urls) - 1} shard(s))" if len(urls) > 1 else "")
    http = [u for u in urls if u.split("://", 1)[0].lower() in ("http", "https")]
    refusal = (f"Ray's webdataset reader opens shards through pyarrow file systems (local paths, file://, s3://, "
               f"gs://, hdfs://), not http(s) ({http[0]!r})") if http else ""
    return Source(name, "ids", stream=functools.partial(_tar_items, urls, keys, url_timeout_s),
                  recipe=StreamRecipe("webdataset", tuple(urls), functools.partial(_reader_sample, keys=keys),
                                      refusal))


# ------------------------------------------------------------------------------------------------ one entry point
def open_source(videos=(), list_file=None, *, dataset=None, video_column: str | None = None,
                id_column: str | None = None, split: str | None = None, streaming: bool = False, webdataset=None,
                video_key=None, url_timeout_s: float = DEFAULT_URL_TIMEOUT) -> Source:
    """The `Source` of an embedding run: a `Source` as it is, else exactly one of files/URLs (``videos``,
    ``list_file``), a Hugging Face ``dataset`` or ``webdataset`` shards, with the options of that kind only."""
    if isinstance(videos, Source):
        return videos
    if isinstance(url_timeout_s, bool) or not isinstance(url_timeout_s, (int, float)) or not url_timeout_s > 0:
        raise ValueError(f"url_timeout_s must be a positive number of seconds, got {url_timeout_s!r}")
    files = bool(list_file is not None or (videos if not isinstance(videos, (str, os.PathLike)) else [videos]))
    kinds = [k for k, given in (("video files", files), ("dataset", dataset is not None),
                                ("webdataset", webdataset is not None)) if given]
    if len(kinds) > 1:
        raise ValueError(f"one source per run: got {' and '.join(kinds)}")
    for option, value, kind in (("video_column", video_column, "dataset"), ("id_column", id_column, "dataset"),
                                ("split", split, "dataset"), ("streaming", streaming or None, "dataset"),
                                ("video_key", video_key, "webdataset")):
        if value is not None and kind not in kinds:
            raise ValueError(f"{option} applies to a {kind}= source only (--{kind}), not to "
                             f"{kinds[0] if kinds else 'video files'}")
    if dataset is not None:
        return dataset_source(dataset, video_column or "video", id_column, split, streaming, url_timeout_s)
    if webdataset is not None:
        return webdataset_source(webdataset, video_key, url_timeout_s)
    return files_source(videos, list_file, url_timeout_s)


class StreamShare:
    """One process's share of a stream, resumed: items not done (or redone: ``redo(done[key])``), every ``count``-th
    from ``rank``; counts the skipped and retried items of the whole stream; an id met twice is an error."""

    def __init__(self, source: Source, done: dict, key: Callable[[str], str], redo=None, rank: int = 0,
                 count: int = 1):
        self.source, self.done, self.key, self.redo = source, done, key, redo
        self.rank, self.count = rank, count
        self.skipped = self.retried = 0

    def __iter__(self):
        seen: set[str] = set()
        pending = 0
        for item in self.source:
            key = self.key(item.id)
            if key in seen:
                raise ValueError(f"{self.source.name}: the id {item.id!r} names two videos; ids must be unique")
            seen.add(key)
            if key in self.done and not (self.redo is not None and self.redo(self.done[key])):
                self.skipped += 1
                continue
            self.retried += key in self.done
            if pending % self.count == self.rank:
                yield item
            pending += 1

    def blocks(self, size: int = STREAM_BLOCK):
        """This share in lists of ``size`` items (a block's videos are in memory while it is embedded); when the
        stream fails part-way (an unreadable shard) the items read before come first, then the error."""
        iterator = iter(self)
        while True:
            block = []
            try:
                for item in itertools.islice(iterator, size):
                    block.append(item)
            except Exception as err:
                if block:
                    yield block
                raise err
            if not block:
                return
            yield block
