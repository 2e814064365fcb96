"""Video decoding that reads only the sampled frames (paper Sec. 4.2): PyAV (default) or decord, upright uint8 RGB.

Every decoder failure is one `VideoDecodeError` naming the file and the frame.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
import re
import sys
import threading
from dataclasses import dataclass

import numpy as np

from .fd2 import Fd2Capture
from .orientation import Orientation
from .sampling import check_decode_mode, snap_to_key_frames
from .timing import frame_clock

__all__ = ["VideoInfo", "VideoFile", "VideoInput", "VideoDecodeError", "VideoPathError", "check_video_path", "decode_error", "open_video", "get_video_info", "VideoLength", "get_video_length", "read_video", "load_video", "BACKENDS"]

BACKENDS = ("auto", "decord", "pyav")
AUTO_ORDER = ("pyav", "decord")  # what "auto" tries, first to last


class VideoDecodeError(ValueError):
    """A video file could not be opened or decoded; ``path`` and ``frame`` (index being read, or None) name where."""

    def __init__(self, message: str, path: str | None = None, frame: int | None = None):
        super().__init__(message)
        self.path = path
        self.frame = frame


_LOG_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # decord's "[12:00:00] src/file.cc:218: "


def _first_line(exc: BaseException, with_type: bool = True) -> str:
    """``Type: first line of the message`` without decord's log prefixes, at most 300 characters."""
    text = _LOG_PREFIX.sub("", str(exc)).strip().splitlines()
    line = text[0][:300] if text else ""
    return f"{type(exc).__name__}: {line}".rstrip(": ") if with_type else line


def decode_error(path: str, exc: BaseException, frame=None, action: str = "decode") -> VideoDecodeError:
    """The one place that turns any decoder exception into a `VideoDecodeError` naming the file and frame.

    ``frame``: the index being read, a ``(first, last)`` span (decord), or None; wrapped errors pass through.
    """
    if isinstance(exc, VideoDecodeError):
        return exc
    if isinstance(frame, tuple):
        where, frame = (f" at frame {frame[0]}" if frame[0] == frame[1] else f" reading frames {frame[0]}..{frame[1]}"), frame[0]
    else:
        where = f" at frame {frame}" if frame is not None else ""
    error = VideoDecodeError(f"cannot {action} video {path!r}{where}: {_first_line(exc)}", path=path, frame=frame)
    error.__cause__ = exc
    return error


_DECORD_LOG = Fd2Capture(_LOG_PREFIX)  # decord's C++ logger writes to fd 2 itself, during any call


def _quiet_decord(decord) -> None:
    """Silence the FFmpeg log of decord (its errors reach us as exceptions, wrapped by `decode_error`)."""
    try:
        decord.logging.set_level(decord.logging.QUIET)
    except Exception:  # pragma: no cover - older decord without logging control
        pass


@dataclass(frozen=True)
class VideoInfo:
    """Frame count, frame rate, displayed size, duration (end of the last frame, or None) and backend of a file."""

    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    backend: str
    duration: float | None = None


class VideoPathError(FileNotFoundError, ValueError):
    """An unreadable video path (missing, not a regular file, empty): a `FileNotFoundError` and a `ValueError`."""


def check_video_path(path, where: str | None = None) -> str:
    """The one check of a video path (exists, regular file, not empty); else `VideoPathError` naming it."""
    prefix = f"{where}: " if where else ""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{prefix}video path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoPathError(f"{prefix}video file not found (does not exist): {path!r}")
    if not os.path.isfile(path):
        kind = "a directory" if os.path.isdir(path) else "not a regular file"
        raise VideoPathError(f"{prefix}video path is not a regular file ({kind}): {path!r}")
    if os.path.getsize(path) == 0:
        raise VideoPathError(f"{prefix}video file is empty (0 bytes): {path!r}")
    return path


class VideoInput:
    """Where a video's bytes are: a checked file path, or a seekable binary file object (bytes are wrapped in one)
    read from memory; ``name`` names it in messages (the path, or the caller's name for the object)."""

    def __init__(self, video, name: str | None = None):
        if isinstance(video, (bytes, bytearray, memoryview)):
            video = io.BytesIO(video)
        if hasattr(video, "read"):
            self.path, self.file = None, video
            self.name = str(name or getattr(video, "name", None) or "<video in memory>")
            if not (hasattr(video, "seek") and (not hasattr(video, "seekable") or video.seekable())):
                raise ValueError(f"video {self.name!r}: a file object must be seekable (the decoder seeks to key "
                                 "frames); pass its bytes instead")
            if video.seek(0, io.SEEK_END) == 0:
                raise VideoDecodeError(f"video {self.name!r} is empty (0 bytes)", path=self.name)
        else:
            self.path, self.file = check_video_path(video), None
            self.name = self.path

    def open(self):
        """What the decoders open: the path, or the file object rewound to its start."""
        if self.file is None:
            return self.path
        self.file.seek(0)
        return self.file


def _check_indices(indices, num_frames: int, path: str) -> np.ndarray:
    """Indices as a 1-D int64 array inside ``[0, num_frames)``; ValueError otherwise."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"frame indices for {path!r} must be a non-empty 1-D sequence, got shape {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"frame indices for {path!r} must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.min() < 0 or idx.max() >= num_frames:
        raise ValueError(f"frame indices {idx.min()}..{idx.max()} are outside {path!r}, which has {num_frames} frames")
    return idx


class _DecordBackend:
    """decord reader: random access by frame index through ``get_batch`` (frames upright, log lines captured)."""

    name = "decord"

    def __init__(self, source: VideoInput, num_threads: int = 1):
        import decord

        _quiet_decord(decord)
        self.path = path = source.name
        self.position = None  # (first, last) frame index of the batch being read
        captured: list[str] = []
        try:
            with _DECORD_LOG.captured(captured):
                self._vr = decord.VideoReader(source.open(), ctx=decord.cpu(0), num_threads=num_threads)
        except Exception as exc:
            noise = " ".join(line.strip() for line in "".join(captured).splitlines() if line.strip())
            if source.file is not None:
                noise = ""  # reading from memory, its log echoes the bytes
            noise = _LOG_PREFIX.sub("", noise)
            raise RuntimeError(f"{_first_line(exc, with_type=False)}{' (' + noise[:300] + ')' if noise else ''}") from exc
        self.num_frames = len(self._vr)
        if self.num_frames < 1:
            raise ValueError(f"video has no frames: {path!r}")
        self.fps = float(self._vr.get_avg_fps())
        spans = np.asarray(self._quiet(self._vr.get_frame_timestamp, list(range(self.num_frames))), np.float64)
        last = spans[-1, 1] - spans[-1, 0]  # (start, end) seconds of each frame, float32 in decord
        self.frame_times, self.duration = frame_clock(self.num_frames, spans[:, 0], last, self.fps)
        keys = np.asarray(self._quiet(self._vr.get_key_indices), dtype=np.int64)
        self.key_frames = np.unique(keys[(keys >= 0) & (keys < self.num_frames)])
        self._size = None

    def _quiet(self, call, *args):
        """``call(*args)`` with decord's log lines kept off the terminal."""
        with _DECORD_LOG.captured([]):
            return call(*args)

    def _frame_size(self) -> tuple[int, int]:
        """(height, width), read from the first frame on first use (decord has no size accessor)."""
        if self._size is None:
            shape = self._quiet(self._vr.__getitem__, 0).shape
            self._quiet(self._vr.seek, 0)
            self._size = (int(shape[0]), int(shape[1]))
        return self._size

    @property
    def height(self) -> int:
        return self._frame_size()[0]

    @property
    def width(self) -> int:
        return self._frame_size()[1]

    def _batch(self, indices: list) -> np.ndarray:
        """uint8 RGB frames ``(len(indices), H, W, 3)`` from ``get_batch``, checked."""
        self.position = (indices[0], indices[-1])
        frames = self._quiet(self._vr.get_batch, indices).asnumpy()
        if frames.shape[0] != len(indices) or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"decord returned frames of shape {frames.shape} for {len(indices)} indices of "
                             f"{self.path!r}")
        return frames

    def get_frames(self, indices: np.ndarray) -> np.ndarray:
        """Decode the frames at ``indices`` (any order, repeats allowed)."""
        uniq, inverse = np.unique(indices, return_inverse=True)
        return self._batch([int(i) for i in uniq])[inverse]

    def iter_frames(self, wanted: np.ndarray, chunk: int = 16):
        """Yield ``(index, frame)`` for sorted unique ``wanted``, ``get_batch`` on consecutive chunks."""
        for start in range(0, wanted.size, chunk):
            part = wanted[start:start + chunk].tolist()
            yield from zip(part, self._batch(part))

    def close(self):
        self._vr = None


_CONVERTERS = threading.local()  # one PyAV frame converter per thread (see _PyAVBackend._to_rgb)


def _in_dataloader_worker() -> bool:
    """Whether this process is a torch DataLoader worker (without importing torch when it is not loaded)."""
    data = sys.modules.get("torch.utils.data")
    return data is not None and data.get_worker_info() is not None


class _PyAVBackend:
    """PyAV reader: packet index (no decoding), then key-frame seeks + forward decoding of the wanted frames."""

    name = "pyav"
    # drop non-reference frames that are not wanted (see _decode_from)
    skip_nonref = True
    # frame threading for reads that decode long runs from each key frame (see _choose_threading; thresholds
    # measured with benchmarks/bench_decode.py, see README "Decoding")
    frame_threads = True
    FRAME_THREADING_MIN_RUN = 12
    FRAME_THREADING_MIN_PIXELS = 256 * 144
    frame_thread_count = 0  # threads of frame threading: 0 = FFmpeg's choice (one per core, plus one)
    # drain the decoder once a seek's wanted packets are sent (see _decode_from)
    drain = True

    def __init__(self, source: VideoInput):
        import av

        self.source = source
        self.path = path = source.name
        self.position = None  # frame index being read (the one after the last decoded frame)
        self.packets_sent = 0  # packets given to the decoder (skipped non-reference frames included)
        self._container = av.open(source.open(), mode="r")
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"file has no video stream: {path!r}")
        self._stream = self._container.streams.video[0]
        pts, keys, durations = [], [], []
        for packet in self._container.demux(self._stream):
            if packet.size == 0:
                continue  # flush packet
            stamp = packet.pts if packet.pts is not None else packet.dts
            pts.append(stamp)
            keys.append(bool(packet.is_keyframe))
            durations.append(packet.duration or 0)
        if not pts:
            self._container.close()
            raise ValueError(f"video has no frames: {path!r}")
        declared = int(self._stream.frames or 0)  # from the container's sample table (0 when unknown, e.g. webm)
        if declared > len(pts):
            self._container.close()
            raise ValueError(f"video file is truncated: {path!r} declares {declared} frames but only {len(pts)} can be read")
        self._by_pts = None not in pts
        self.num_frames = len(pts)
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.fps = float(rate) if rate else 0.0
        base = self._stream.time_base
        starts = last_duration = None
        if self._by_pts:
            order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
            self._pts = [pts[i] for i in order]
            self._pts_to_index = {p: i for i, p in enumerate(self._pts)}
            # a key frame at presentation index i lets decoding restart there
            self._key_positions = sorted(i for i, j in enumerate(order) if keys[j]) or [0]
            if base:
                starts, last_duration = self._pts, durations[order[-1]]
        else:
            self._key_positions = [0]
        self.key_frames = np.asarray(self._key_positions, dtype=np.int64)
        self.frame_times, self.duration = frame_clock(self.num_frames, starts, last_duration, self.fps, base)
        # Non-reference frames are (nearly always) B-frames: skipping pays only in streams that reorder frames
        self._skip_nonref = bool(self.skip_nonref and self._stream.codec_context.has_b_frames)
        self._coded_size = (int(self._stream.codec_context.height), int(self._stream.codec_context.width))
        # how frames are turned for display: from the ``rotate`` tag at once, else from the first decoded frame's
        # display matrix (PyAV exposes it on frames only); None until known
        self._orientation = Orientation.from_rotate_tag(self._stream.metadata)

    @property
    def height(self) -> int:
        return self._orientation_now().display_size(*self._coded_size)[0]

    @property
    def width(self) -> int:
        return self._orientation_now().display_size(*self._coded_size)[1]

    def _orientation_now(self) -> "Orientation":
        """The display orientation, from the first frame's display matrix if no frame was converted yet."""
        if self._orientation is None:
            import av

            if self.source.file is None:
                with av.open(self.source.path, mode="r") as container:
                    first = next(container.decode(container.streams.video[0]), None)
            else:  # one file object: its own container reads the first frame (every decode seeks first)
                self._container.seek(0)
                first = next(self._container.decode(self._stream), None)
            self._orientation = Orientation.of_frame(first) if first is not None else Orientation()
        return self._orientation

    def _decode_from(self, index: int, wanted=()):
        """Seek to the key frame at presentation ``index``, yield (frame_index, frame); unwanted B-frames skipped.

        ``wanted``: the frames this seek is for (see `_run`); once every one of their packets is sent, the decoder
        is drained instead of fed further (it would decode frames past them to fill its reorder and thread delay).
        """
        if self._by_pts and index > 0:
            self._container.seek(int(self._pts[index]), stream=self._stream, backward=True, any_frame=False)
        else:
            self._container.seek(0)
        codec = self._stream.codec_context
        self.position = index
        wanted_pts = {self._pts[i] for i in wanted} if self._by_pts else set()
        skipping = self._skip_nonref and bool(wanted_pts)
        unsent = set(wanted_pts) if self.drain else set()
        counter = 0
        try:
            for packet in self._container.demux(self._stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if skipping:
                    codec.skip_frame = "DEFAULT" if (packet.size == 0 or stamp in wanted_pts) else "NONREF"
                self.packets_sent += packet.size > 0
                frames = codec.decode(packet)
                if unsent and packet.size:
                    unsent.discard(stamp)
                    if not unsent:  # all sent: drain (the next seek flushes the decoder)
                        codec.skip_frame = "DEFAULT"
                        frames += codec.decode(None)
                for frame in frames:
                    pos = self._pts_to_index.get(frame.pts) if (self._by_pts and frame.pts is not None) else None
                    if pos is None:  # no usable timestamp: count frames (skipping is off in that case)
                        pos = counter
                    counter = pos + 1
                    self.position = pos + 1
                    yield pos, frame
                if wanted_pts and self.drain and not unsent:
                    return
        finally:
            codec.skip_frame = "DEFAULT"

    def _run(self, wanted: list, k: int) -> list:
        """The frames from ``wanted[k]`` that one seek decodes: up to one with a key frame after its predecessor."""
        end = k + 1
        while end < len(wanted) and self._key_before(wanted[end]) <= wanted[end - 1] + 1:
            end += 1
        return wanted[k:end]

    def _to_rgb(self, frame) -> np.ndarray:
        """uint8 RGB (H, W, 3) of a decoded frame, upright, through the thread's one converter (not one per frame)."""
        if self._orientation is None:
            self._orientation = Orientation.of_frame(frame)
        reformatter = getattr(_CONVERTERS, "rgb", None)
        if reformatter is None:
            from av.video.reformatter import VideoReformatter

            reformatter = _CONVERTERS.rgb = VideoReformatter()  # reuses its context while the frame size stays
        # one swscale thread: a kept context with worker threads hangs a forked child (a DataLoader worker) that
        # uses or frees it, because threads do not survive fork
        return self._orientation.apply(reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray())

    def _key_before(self, index: int) -> int:
        """Presentation index of the last key frame at or before ``index``."""
        return self._key_positions[bisect.bisect_right(self._key_positions, index) - 1]

    def _choose_threading(self, wanted) -> None:
        """Frame threading for large frames decoded in long runs per seek (not in DataLoader workers), else slice."""
        codec = self._stream.codec_context
        small = self._coded_size[0] * self._coded_size[1] < self.FRAME_THREADING_MIN_PIXELS
        if codec.is_open or small or not self.frame_threads or not len(wanted) or _in_dataloader_worker():
            return
        decoded, seeks, start, previous = 0, 0, None, None
        for index in wanted:
            key = self._key_before(index)
            if start is None or key > previous + 1:  # the reader seeks to ``key`` (see get_frames / iter_frames)
                if start is not None:
                    decoded += previous - start + 1
                start, seeks = key, seeks + 1
            previous = index
        decoded += previous - start + 1
        if decoded / seeks >= self.FRAME_THREADING_MIN_RUN:
            codec.thread_type = "FRAME"
            codec.thread_count = self.frame_thread_count

    def get_frames(self, indices: np.ndarray) -> np.ndarray:
        """Decode the frames at ``indices`` (any order, repeats allowed)."""
        wanted = np.unique(indices).tolist()
        self._choose_threading(wanted)
        out: dict[int, np.ndarray] = {}
        unresolved = []
        k = 0
        while k < len(wanted):
            for pos, frame in self._decode_from(self._key_before(wanted[k]), self._run(wanted, k)):
                if pos < wanted[k]:
                    continue
                while k < len(wanted) and wanted[k] < pos:
                    unresolved.append(wanted[k])  # the seek landed past it: retried from the start below
                    k += 1
                if k < len(wanted) and wanted[k] == pos:
                    out[pos] = self._to_rgb(frame)
                    k += 1
                if k >= len(wanted) or self._key_before(wanted[k]) > pos + 1:
                    break  # done, or a key frame lies before the next wanted frame: seek to it
            else:
                unresolved.extend(wanted[k:])  # the decoder ran out of frames
                break
        if unresolved:
            last = max(unresolved)
            for pos, frame in self._decode_from(0, unresolved):
                if pos in unresolved and pos not in out:
                    out[pos] = self._to_rgb(frame)
                if pos >= last:
                    break
        missing = [i for i in wanted if i not in out]
        if missing:
            raise ValueError(
                f"could not decode frames {missing[:5]}{'...' if len(missing) > 5 else ''} of {self.path!r} "
                f"(its index lists {self.num_frames} frames; the file may be truncated)"
            )
        return np.stack([out[i] for i in indices.tolist()])

    def iter_frames(self, wanted: np.ndarray):
        """Yield ``(index, frame)`` for sorted unique ``wanted`` in one forward pass, each frame decoded once."""
        wanted = wanted.tolist()
        self._choose_threading(wanted)
        k = 0
        while k < len(wanted):
            landed_past = False
            for pos, frame in self._decode_from(self._key_before(wanted[k]), self._run(wanted, k)):
                if pos < wanted[k]:
                    continue
                if pos > wanted[k]:
                    landed_past = True  # the seek landed past it (inexact index): rare, decoded from the start
                    break
                yield pos, self._to_rgb(frame)
                k += 1
                if k >= len(wanted) or self._key_before(wanted[k]) > pos + 1:
                    break  # done, or a key frame lies before the next wanted frame: seek to it
            else:
                if k < len(wanted):
                    self._raise_missing(wanted[k:])
            if landed_past:
                for pos, frame in self._decode_from(0, wanted[k:k + 1]):
                    if pos == wanted[k]:
                        yield pos, self._to_rgb(frame)
                        k += 1
                        break
                else:
                    self._raise_missing(wanted[k:])

    def _raise_missing(self, missing):
        raise ValueError(
            f"could not decode frames {missing[:5]}{'...' if len(missing) > 5 else ''} of {self.path!r} "
            f"(its index lists {self.num_frames} frames; the file may be truncated)"
        )

    def close(self):
        if self._container is not None:
            self._container.close()
            self._container = None


def _open_backend(source: VideoInput, backend: str):
    """Open ``source`` with the requested backend; 'auto' tries the backends of ``AUTO_ORDER``. ValueError on failure."""
    path = source.name
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        reasons = []
        for name in AUTO_ORDER:
            try:
                return _open_backend(source, name)
            except ValueError as exc:
                reasons.append(str(exc).removeprefix(f"cannot open video {path!r}: "))
        raise VideoDecodeError(f"cannot open video {path!r}: " + "; ".join(reasons), path=path)
    errors = []
    if backend in ("auto", "decord"):
        try:
            return _DecordBackend(source)
        except ImportError as exc:
            errors.append(f"decord unavailable ({exc})")
        except Exception as exc:  # decord raises DECORDError/RuntimeError for unreadable files
            errors.append(f"decord: {_first_line(exc)}")
    if backend in ("auto", "pyav"):
        try:
            return _PyAVBackend(source)
        except ValueError as exc:
            errors.append(f"pyav: {exc}")
        except Exception as exc:
            errors.append(f"pyav: {_first_line(exc)}")
    raise VideoDecodeError(f"cannot open video {path!r}: " + "; ".join(errors), path=path)


class _FailedBackend:
    """Stands in for a closed backend while the fallback opens (keeps metadata; decoding raises)."""

    name = "none"
    position = None

    def __init__(self, closed):
        self.num_frames, self.fps = closed.num_frames, closed.fps
        self.frame_times, self.duration = closed.frame_times, closed.duration
        self.key_frames = closed.key_frames
        self.height = self.width = 0

    def get_frames(self, indices):
        raise RuntimeError("no decoder could read this file")

    def close(self):
        pass


class VideoFile:
    """An open video file that decodes only requested frames (``backend="auto"``: PyAV, decord when PyAV fails).

    ``path``: a file path, or the video's bytes / a seekable binary file object, decoded from memory (``name``, else
    the object's ``name``, names it in errors and in ``path``).
    """

    def __init__(self, path, backend: str = "auto", name: str | None = None):
        self._input = VideoInput(path, name)
        self.path = self._input.name
        self.requested_backend = backend
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        try:
            self._backend = _open_backend(self._input, backend)
        except Exception as exc:
            raise decode_error(self.path, exc, action="open") from exc

    @property
    def info(self) -> VideoInfo:
        """Metadata of the open file."""
        b = self._backend
        try:
            return VideoInfo(self.path, b.num_frames, b.fps, b.height, b.width, b.name, b.duration)
        except Exception as exc:  # the size may need the first frame (decord; PyAV's display matrix)
            raise decode_error(self.path, exc, frame=0, action="read") from exc

    @property
    def num_frames(self) -> int:
        return self._backend.num_frames

    @property
    def fps(self) -> float:
        """The container's average frame rate (frames per second; 0.0 when unknown)."""
        return self._backend.fps

    @property
    def frame_times(self) -> np.ndarray | None:
        """Presentation time of each frame in seconds from the first, read-only float64; None without a clock."""
        return self._backend.frame_times

    @property
    def duration(self) -> float | None:
        """Seconds from the first frame to the end of the last one (its time plus its duration)."""
        return self._backend.duration

    @property
    def key_frames(self) -> np.ndarray:
        """Sorted int64 indices of the key frames known to the decoder (frames it can start decoding at)."""
        return self._backend.key_frames

    def get_frames(self, indices) -> np.ndarray:
        """uint8 RGB frames ``(len(indices), H, W, 3)``; `VideoDecodeError` naming the file and frame on failure."""
        idx = _check_indices(indices, self.num_frames, self.path)
        try:
            return self._backend.get_frames(idx)
        except Exception as exc:
            decord_error = self._switch_to_pyav(exc)  # decord failed mid-way in auto mode: retry with PyAV
        with self._pyav_errors(decord_error):
            self._backend = _PyAVBackend(self._input)
            return self._backend.get_frames(idx)

    def _switch_to_pyav(self, exc: Exception) -> str:
        """After a decoder failure: raise `VideoDecodeError`, or (decord in auto mode) return its line for PyAV."""
        if self._backend.name != "decord" or self.requested_backend != "auto":
            raise decode_error(self.path, exc, frame=self._backend.position) from exc
        self._backend.close()
        self._backend = _FailedBackend(self._backend)
        return _first_line(exc)

    @contextlib.contextmanager
    def _pyav_errors(self, decord_error: str):
        """Failures of the PyAV fallback become `VideoDecodeError`, quoting decord's error too."""
        try:
            yield
        except Exception as exc:
            error = decode_error(self.path, exc, frame=self._backend.position)
            error.args = (f"{error} (decord failed too: {decord_error})",)
            raise error from exc

    def iter_frames(self, indices):
        """Stream ``(index, frame)`` for the sorted unique ``indices`` in one pass (auto mode: PyAV after decord)."""
        wanted = np.unique(_check_indices(indices, self.num_frames, self.path))
        done = 0
        try:
            for index, frame in self._backend.iter_frames(wanted):
                done += 1
                yield index, frame
            return
        except Exception as exc:
            decord_error = self._switch_to_pyav(exc)  # decord failed mid-way in auto mode: continue with PyAV
        with self._pyav_errors(decord_error):
            self._backend = _PyAVBackend(self._input)
            yield from self._backend.iter_frames(wanted[done:])

    def close(self):
        self._backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_video(path, backend: str = "auto") -> VideoFile:
    """Open a video for random frame access (PyAV; decord when PyAV cannot open it, or on request)."""
    return VideoFile(path, backend=backend)


def get_video_info(path, backend: str = "auto") -> VideoInfo:
    """Frame count, fps and size of a video file without decoding its frames."""
    with VideoFile(path, backend=backend) as video:
        return video.info


@dataclass(frozen=True)
class VideoLength:
    """Frame count, average frame rate and duration (seconds; None when unknown) of a video file."""

    path: str
    num_frames: int
    fps: float
    duration: float | None


def get_video_length(path, backend: str = "auto") -> VideoLength:
    """How long a video is, from its container (PyAV: the packet index), decoding no frame (its size may need one)."""
    with VideoFile(path, backend=backend) as video:
        return VideoLength(video.path, video.num_frames, video.fps, video.duration)


def read_video(path, indices=None, backend: str = "auto") -> np.ndarray:
    """Decode only the frames at ``indices`` (all frames if None) as uint8 RGB ``(T, H, W, 3)``."""
    with VideoFile(path, backend=backend) as video:
        if indices is None:
            indices = np.arange(video.num_frames)
        return video.get_frames(indices)


def load_video(path, sample_indices_fn, backend: str = "auto",
               decode_mode: str = "exact") -> tuple[np.ndarray, np.ndarray, VideoInfo]:
    """Open once, choose indices with ``sample_indices_fn(num_frames)``, decode them: (frames, indices, info).

    ``decode_mode="keyframes"``: each clip (last axis) `snap_to_key_frames` first (approximate); the indices returned
    are the frames read.
    """
    check_decode_mode(decode_mode)
    with VideoFile(path, backend=backend) as video:
        indices = np.asarray(sample_indices_fn(video.num_frames))
        if decode_mode == "keyframes":
            clips = indices.reshape(-1, indices.shape[-1]) if indices.ndim else indices.reshape(1, 1)
            indices = np.stack([snap_to_key_frames(clip, video.key_frames) for clip in clips]).reshape(indices.shape)
        flat = indices.reshape(-1)
        frames = video.get_frames(flat)
        return frames.reshape(indices.shape + frames.shape[1:]), indices, video.info
