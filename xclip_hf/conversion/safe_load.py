"""Read untrusted PyTorch checkpoint files without running pickled code.

`torch.save` files are pickles: unpickling one may import any module and call any function it names. Checkpoints of
the original X-CLIP code also pickle their training config (a yacs ``CfgNode``), which torch's weights-only loader
refuses. `load_checkpoint` therefore:

1. tries ``torch.load(weights_only=True)`` (torch's own allow-list: tensors and plain containers);
2. if that loader refuses the file, reads it again through `torch.load` with a restricted unpickler: the only
   globals it resolves are tensor-rebuild functions, ``OrderedDict``, ``torch.Size`` and dtypes; every other
   pickled class or function is replaced by an inert `NotUnpickled` stand-in and its module is never imported;
   object state is set only on stand-ins, tensors and OrderedDicts.
   The caller decides what a stand-in means (a stand-in for the ``config`` entry is harmless, one inside the
   weights is refused by `xclip_hf.conversion.original`);
3. unpickles fully (``weights_only=False``) only when the caller passes ``trust_pickle=True``.

torch still reads the archive, the storages and both file formats; only the resolution of globals is ours.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import types
import zipfile
from dataclasses import dataclass

import torch

__all__ = ["NotUnpickled", "LoadedCheckpoint", "load_checkpoint", "find_not_unpickled"]


class NotUnpickled:
    """Inert stand-in for a pickled global that was not imported: accepts any construction, state or items and
    keeps none of them. `global_name` says what the file asked for (e.g. ``yacs.config.CfgNode``, ``posix.system``)."""

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
    """A `pickle_module` for `torch.load` whose unpickler resolves only `_allowed_globals` (storages are resolved by
    torch itself); every other global becomes a `NotUnpickled` stand-in and is recorded in `seen`."""
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
            """BUILD (set an object's state) only on stand-ins, tensors and OrderedDicts, never on the allowed
            functions and classes themselves (that would change them for the whole process)."""
            inst = self.stack[-2]
            if not (isinstance(inst, (NotUnpickled, torch.Tensor)) or type(inst) is collections.OrderedDict):
                raise pickle.UnpicklingError(f"the file sets the state of {inst!r}, which a checkpoint never does")
            super().load_build()

        dispatch[pickle.BUILD[0]] = load_build

    module = types.ModuleType("xclip_hf_restricted_pickle")
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
    return module


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` read. `not_unpickled`: globals replaced by stand-ins (empty when torch's weights-only
    loader accepted the file or `trust_pickle` was set); `method`: how the file was read."""

    data: object
    not_unpickled: tuple[str, ...]
    method: str


def _refusal_reason(err: Exception) -> str:
    """The one-line reason of torch's weights-only refusal ("Unsupported global: GLOBAL yacs.config.CfgNode ...")."""
    text = str(err)
    match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if match:
        return f"it pickles the global {match.group(1)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def load_checkpoint(path, trust_pickle: bool = False) -> LoadedCheckpoint:
    """Read a `torch.save` file on the CPU without executing pickled code (see the module docstring).

    Raises FileNotFoundError for a missing file and ValueError, naming the file and the reason, for a truncated or
    unreadable one.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    mmap = zipfile.is_zipfile(path)  # zip-format files are mapped, not read into memory
    if trust_pickle:
        try:
            data = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        except Exception as err:
            raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint ({type(err).__name__}: {err})") from err
        return LoadedCheckpoint(data, (), "full unpickling (trust_pickle)")
    try:
        return LoadedCheckpoint(torch.load(path, map_location="cpu", weights_only=True, mmap=mmap), (),
                                "torch weights-only loader")
    except pickle.UnpicklingError as err:
        refusal = _refusal_reason(err)
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as a PyTorch checkpoint, is it truncated or not a torch.save file? "
                         f"({type(err).__name__}: {err})") from err
    seen: set[str] = set()
    try:
        data = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap,
                          pickle_module=_restricted_pickle_module(seen))
    except Exception as err:
        raise ValueError(
            f"{path}: torch's weights-only loader refused the file ({refusal}), and reading it with unknown pickled "
            f"objects left out failed too ({type(err).__name__}: {err}). The file is truncated or not a torch.save "
            "file, or it needs full unpickling: only if you trust its origin, pass --trust-pickle "
            "(trust_pickle=True), which can run code stored in the file."
        ) from err
    return LoadedCheckpoint(data, tuple(sorted(seen)), "restricted unpickler (unknown globals left out)")


def find_not_unpickled(obj, limit: int = 10) -> list[tuple[str, str]]:
    """(location, global name) of the `NotUnpickled` stand-ins inside nested dicts / lists / tuples of `obj`."""
    found, stack = [], [("", obj)]
    while stack and len(found) < limit:
        where, item = stack.pop()
        if isinstance(item, NotUnpickled):
            found.append((where or "<top level>", item.global_name))
        elif isinstance(item, dict):
            stack.extend((f"{where}[{k!r}]", v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
    return found
