"""A job's processes: one process, or torchrun / accelerate launch, with a process group that always ends cleanly."""

from __future__ import annotations

import atexit
import datetime
import sys

__all__ = ["BARRIER_TIMEOUT_HOURS", "job_state", "end_process_group", "end_process_group_at_exit"]

BARRIER_TIMEOUT_HOURS = 12


def _cpu_only(device) -> bool:
    """Whether processes talk over gloo on CPU: an explicit CPU device, or no accelerator on this machine."""
    import torch

    if device is not None:
        return torch.device(device).type == "cpu"
    accelerator = getattr(torch, "accelerator", None)
    return not (accelerator.is_available() if accelerator is not None else torch.cuda.is_available())


def job_state(device=None):
    """accelerate's `PartialState` of this process (once; gloo on CPU; 12 h barriers), its group ended at exit."""
    from accelerate import PartialState

    state = PartialState(cpu=_cpu_only(device), timeout=datetime.timedelta(hours=BARRIER_TIMEOUT_HOURS))
    end_process_group_at_exit()
    return state


def end_process_group() -> None:
    """End this process's torch.distributed process group if one runs (harmless otherwise, and twice)."""
    torch = sys.modules.get("torch")  # never imports torch just for this
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


_REGISTERED: list = []


def end_process_group_at_exit() -> None:
    """Run `end_process_group` at interpreter exit (registered once per process)."""
    if not _REGISTERED:
        atexit.register(end_process_group)
        _REGISTERED.append(end_process_group)
