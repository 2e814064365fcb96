"""The start of a resumable job (embed, evaluate) on one process or many: check, read what is done, record, split."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["JobStart", "start_resumable_job"]


@dataclass
class JobStart:
    """What a resumable job starts from: ``done`` (path -> committed), ``pending`` (all processes) and ``mine``."""

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


def start_resumable_job(state, store, settings: dict, items, read_done, redo=None, key=os.path.abspath) -> JobStart:
    """Start a job on accelerate ``state`` whose output ``store`` (a `ShardStore`, or None) this run has locked;
    ``key(item)`` is an item's key in ``read_done``'s answer."""
    done = {}
    if store is not None:
        store.check(settings)
        done = read_done(store)
        _record(state, store, settings)
    pending = [item for item in items if (name := key(item)) not in done
               or (redo is not None and redo(done[name]))]
    with state.split_between_processes(pending) as mine:  # no padding: each item in one share
        return JobStart(done, pending, list(mine))
