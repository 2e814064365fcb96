"""Read untrusted PyTorch checkpoint files without running pickled code, and bounded by what they really store."""

from __future__ import annotations

import collections
import itertools
import os
import pickle
import re
import types
import warnings
import zipfile
from dataclasses import dataclass

import torch

__all__ = ["NotUnpickled", "LoadedCheckpoint", "load_checkpoint", "find_not_unpickled", "CheckpointFootprint",
           "CheckpointSizeError", "checkpoint_footprint", "available_memory", "check_fits_in_memory", "format_bytes"]

# a file may declare at most this many times the tensor bytes it stores (+ MAX_EXPANSION_SLACK): tied weights
# declare one storage twice; stride-0 or overlapping views declare without limit
MAX_EXPANSION = 2
MAX_EXPANSION_SLACK = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first object of torch.save's legacy (non-zip) format


class CheckpointSizeError(ValueError):
    """A checkpoint that declares more than it stores, or needs more memory than is available; names the file."""


class NotUnpickled:
    """Inert stand-in for a pickled global that was not imported; `global_name` says what the file asked for."""

    global_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):  # a stand-in for a function may itself be "called" by REDUCE
        return type(self)()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass

    def __repr__(self):
        return f"<not unpickled: {self.global_name}>"

    def __reduce__(self):
        raise pickle.PicklingError(f"{self!r} is a placeholder and cannot be saved")


def _stand_in(global_name: str) -> type:
    return type(f"NotUnpickled[{global_name}]", (NotUnpickled,), {"global_name": global_name, "__slots__": ()})


def _allowed_globals() -> dict:
    """The globals a state dict needs: tensor rebuild functions, OrderedDict, torch.Size and the dtypes."""
    allowed = {"collections.OrderedDict": collections.OrderedDict, "torch.Size": torch.Size}
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"):
        allowed[f"torch._utils.{name}"] = getattr(torch._utils, name)
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[f"torch.{name}"] = getattr(torch, name)
    return allowed


def _restricted_pickle_module(seen: set[str]) -> types.ModuleType:
    """A `pickle_module` for `torch.load` resolving only `_allowed_globals`; others become recorded `NotUnpickled`."""
    allowed = _allowed_globals()
    stand_ins: dict[str, type] = {}

    class RestrictedUnpickler(pickle._Unpickler):  # the Python implementation: its opcode table can be narrowed
        dispatch = dict(pickle._Unpickler.dispatch)

        def find_class(self, module, name):
            full_name = f"{module}.{name}"
            if full_name in allowed:
                return allowed[full_name]
            seen.add(full_name)
            return stand_ins.setdefault(full_name, _stand_in(full_name))

        def load_build(self):
            """BUILD only on stand-ins, tensors and OrderedDicts, never on the allowed globals."""
            inst = self.stack[-2]
            if not (isinstance(inst, (NotUnpickled, torch.Tensor)) or type(inst) is collections.OrderedDict):
                raise pickle.UnpicklingError(f"the file sets the state of {inst!r}, which a checkpoint never does")
            super().load_build()

        dispatch[pickle.BUILD[0]] = load_build

    module = types.ModuleType("xclip_hf_restricted_pickle")
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
    return module


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, one decimal)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


@dataclass(frozen=True)
class CheckpointFootprint:
    """Declared elements and bytes of a file's tensors against its stored bytes, and the worst view (for messages)."""

    tensors: int
    parameters: int
    declared_bytes: int
    stored_bytes: int
    largest_view: tuple | None = None

    def check(self, path: str) -> None:
        """Raise `CheckpointSizeError` naming `path` and the figures when the tensors declare far more than stored."""
        if self.declared_bytes <= MAX_EXPANSION * self.stored_bytes + MAX_EXPANSION_SLACK:
            return
        where, shape, storage = self.largest_view
        raise CheckpointSizeError(
            f"{path}: refusing the file: its {self.tensors} tensors declare {self.parameters:,} elements "
            f"({format_bytes(self.declared_bytes)}) but the file stores only {format_bytes(self.stored_bytes)} of "
            f"tensor data: stride-0 or overlapping views, e.g. {where} of shape {tuple(shape)} over a storage of "
            f"{format_bytes(storage)}. Building a model from it would allocate the declared size."
        )


def _leaves(obj):
    """(location, item) of every item inside nested dicts / lists / tuples that is not one of these containers."""
    stack = [("", obj)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{where}[{k!r}]", v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
        else:
            yield where or "<top level>", item


def checkpoint_footprint(data) -> CheckpointFootprint:
    """The `CheckpointFootprint` of every tensor in `data` (views: nothing is read or allocated)."""
    tensors = parameters = declared = 0
    storages: dict[tuple[int, int], int] = {}
    largest, largest_excess = None, 0
    for where, tensor in _leaves(data):
        if not isinstance(tensor, torch.Tensor):
            continue
        storage = tensor.untyped_storage()
        nbytes = tensor.numel() * tensor.element_size()
        tensors, parameters, declared = tensors + 1, parameters + tensor.numel(), declared + nbytes
        storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        if nbytes - storage.nbytes() > largest_excess:
            largest, largest_excess = (where, tensor.shape, storage.nbytes()), nbytes - storage.nbytes()
    return CheckpointFootprint(tensors, parameters, declared, sum(storages.values()), largest)


def available_memory() -> int:
    """Bytes this process may still allocate: available memory, lowered by cgroup and ``ulimit -v`` limits."""
    import resource

    import psutil  # a dependency of accelerate

    candidates = [psutil.virtual_memory().available]
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f, open(usage_file) as g:
                candidates.append(max(int(f.read()) - int(g.read()), 0))
        except (OSError, ValueError):  # no such cgroup, or "max" (no limit)
            continue
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        candidates.append(max(soft - psutil.Process().memory_info().vms, 0))
    return min(candidates)


def check_fits_in_memory(path: str, needed_bytes: int, what: str) -> None:
    """Raise `CheckpointSizeError` naming `path` when `needed_bytes` (for `what`) exceed `available_memory()`."""
    available = available_memory()
    if needed_bytes > available:
        raise CheckpointSizeError(f"{path}: {what} needs {format_bytes(needed_bytes)} of memory, but only "
                                  f"{format_bytes(available)} is available here")


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` read: the data, stand-ins (`not_unpickled`), the reading `method`, the `footprint`."""

    data: object
    not_unpickled: tuple[str, ...]
    method: str
    footprint: CheckpointFootprint | None = None


def _refusal_reason(err: Exception) -> str:
    """The one-line reason of torch's weights-only refusal, without torch's advice around it."""
    text = str(err)
    match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if match:
        return f"it pickles the global {match.group(1)}"
    match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0] if lines else type(err).__name__


def _unreadable(err: Exception) -> str:
    """What torch's failure to rebuild the tensors of a file means."""
    if re.search(r"resize storage that is not resizable|storage has wrong byte size", str(err)):
        return ("refusing the file: it declares a tensor larger than the storage it holds (the file declares more "
                "than it stores)")
    return "cannot be read as a PyTorch checkpoint, is it truncated or damaged?"


def _check_format(path: str) -> bool:
    """Whether `path` is a zip-format torch.save file (True) or a legacy one; else `ValueError` naming it."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(_ZIP_MAGIC):
        raise ValueError(f"{path}: a damaged zip archive (torch.save's format), {os.path.getsize(path):,} bytes: its "
                         "directory at the end is missing; is the file truncated (an interrupted download or copy)?")
    if _LEGACY_MAGIC.to_bytes(10, "little") in head or str(_LEGACY_MAGIC).encode() in head:
        return False
    raise ValueError(f"{path}: not a torch.save file (neither its zip archive nor its legacy format; the file starts "
                     f"with {head[:8]!r}); a plain pickle is not read, as unpickling it could run code")


def _torch_load(path: str, mmap: bool, **kwargs):
    with warnings.catch_warnings():  # "Detected pickle protocol N": the restricted reading below handles any
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", mmap=mmap, **kwargs)


def _bounded(loaded: LoadedCheckpoint, path: str) -> LoadedCheckpoint:
    loaded.footprint = checkpoint_footprint(loaded.data)
    loaded.footprint.check(path)
    return loaded


def load_checkpoint(path, trust_pickle: bool = False) -> LoadedCheckpoint:
    """Read a `torch.save` file on the CPU without executing pickled code (weights-only, then restricted unpickling).

    Raises FileNotFoundError for a missing file, ValueError naming the file and the reason for a truncated or
    unreadable one, and `CheckpointSizeError` for one whose tensors declare far more than it stores.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    mmap = _check_format(path)  # zip-format files are mapped, not read into memory
    if trust_pickle:
        try:
            data = _torch_load(path, mmap, weights_only=False)
        except Exception as err:
            raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}: {err})") from err
        return _bounded(LoadedCheckpoint(data, (), "full unpickling (trust_pickle)"), path)
    try:
        return _bounded(LoadedCheckpoint(_torch_load(path, mmap, weights_only=True), (), "torch weights-only loader"),
                        path)
    except pickle.UnpicklingError as err:
        refusal = _refusal_reason(err)
    except CheckpointSizeError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: {_unreadable(err)} ({type(err).__name__}: {_refusal_reason(err)})") from err
    seen: set[str] = set()
    try:
        data = _torch_load(path, mmap, weights_only=False, pickle_module=_restricted_pickle_module(seen))
    except Exception as err:
        raise ValueError(
            f"{path}: torch's weights-only loader refused the file ({refusal}), and reading it with unknown pickled "
            f"objects left out failed too ({type(err).__name__}: {_refusal_reason(err)}). The file is truncated or "
            "damaged, or it needs full unpickling: only if you trust its origin, pass --trust-pickle "
            "(trust_pickle=True), which can run code stored in the file."
        ) from err
    return _bounded(LoadedCheckpoint(data, tuple(sorted(seen)), "restricted unpickler (unknown globals left out)"),
                    path)


def find_not_unpickled(obj, limit: int = 10) -> list[tuple[str, str]]:
    """(location, global name) of the `NotUnpickled` stand-ins inside nested dicts / lists / tuples of `obj`."""
    found = ((where, item.global_name) for where, item in _leaves(obj) if isinstance(item, NotUnpickled))
    return list(itertools.islice(found, limit))
