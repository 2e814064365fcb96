"""A key that changes when a module's weights change, for caches of text features (pipeline label cache,
classifier class-text features).

Per parameter and buffer: storage address, offset, dtype, device, shape and version counter (``tensor._version``,
bumped by optimizer steps, ``load_state_dict``'s ``copy_`` and in-place ops under ``no_grad``), plus the module's
train/eval flag. A cache entry must hold the returned ``keepalive`` (the storages) as long as it holds the key: no
new tensor (after ``param.data = new_tensor`` or ``.to(...)``) can then be allocated at an address the key names,
so a stale entry can never match. Writes through ``param.data.<op>_()`` are not seen (``.data`` has its own
version counter).
"""

from __future__ import annotations

from torch import nn

__all__ = ["weights_key"]


def weights_key(module: nn.Module) -> tuple[tuple, tuple]:
    """``(key, keepalive)`` for the current weights of ``module``; keep ``keepalive`` alive with the key."""
    tensors = list(module.parameters()) + list(module.buffers())
    storages = tuple(t.untyped_storage() for t in tensors)
    key = (bool(module.training),) + tuple(
        (storage.data_ptr(), t.storage_offset(), t.dtype, t.device, tuple(t.shape), t._version)
        for t, storage in zip(tensors, storages)
    )
    return key, storages
