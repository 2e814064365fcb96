"""The start of a resumable job (embed, evaluate), the same on one process or many: check the output against the
job's settings, read what earlier runs committed, let the main process record the job and drop half-written shards
between two barriers, and split what is left between the processes (each item in exactly one share).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["JobStart", "start_resumable_job"]


@dataclass
class JobStart:
    """What a resumable job starts from: ``done`` (absolute path -> what an earlier run committed for it), the
    items still to do on all processes (``pending``) and this process's share of them (``mine``)."""

    done: dict
    pending: list
    mine: list


def _record(state, store, settings: dict) -> None:
    """Once every process has read the store: the main process records the job and drops half-written shards."""
    state.wait_for_everyone()  # every process has read the same shards before anyone writes
    if state.is_main_process:
        store.write_config(settings)
        store.remove_partial_shards()
    state.wait_for_everyone()


def start_resumable_job(state, store, settings: dict, items, read_done, redo=None) -> JobStart:
    """Start a job on the accelerate ``state`` whose output ``store`` (a `ShardStore`; None: nothing to resume)
    this run holds the lock of. ``read_done(store)`` gives absolute path -> what is committed; an item is pending
    when it is not committed or ``redo(committed)`` says so."""
    done = {}
    if store is not None:
        store.check(settings)
        done = read_done(store)
        _record(state, store, settings)
    pending = [item for item in items if (key := os.path.abspath(item)) not in done
               or (redo is not None and redo(done[key]))]
    with state.split_between_processes(pending) as mine:  # no padding: each item in one share
        return JobStart(done, pending, list(mine))
