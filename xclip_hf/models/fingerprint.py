"""A key that changes when a module's weights change, for caches of text features."""

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
