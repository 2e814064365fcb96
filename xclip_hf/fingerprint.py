"""A cheap key that changes when a module's weights change, for caches of text features (pipeline label cache,
classifier class-text features)."""

from __future__ import annotations

from torch import nn

__all__ = ["weights_fingerprint"]


def weights_fingerprint(module: nn.Module) -> tuple:
    """Storage, dtype, device and version counter of every parameter and buffer of `module` (in-place optimizer
    steps and load_state_dict bump the version; `.to()` and reassigning `.data` change the storage)."""
    return tuple((t.data_ptr(), t.dtype, t.device, t._version)
                 for t in list(module.parameters()) + list(module.buffers()))
