"""`jobs.resumable.start_resumable_job`: the one start that embed and evaluate share (check, read, record between
two barriers, split), seen with a stand-in process state and store."""

from __future__ import annotations

import contextlib
import os

from xclip_hf.jobs.resumable import start_resumable_job


class _State:
    """A stand-in accelerate state: process ``index`` of ``count``, recording barriers in ``log``."""

    def __init__(self, log, index=0, count=1):
        self.log, self.process_index, self.num_processes = log, index, count
        self.is_main_process = index == 0

    def wait_for_everyone(self):
        self.log.append("barrier")

    @contextlib.contextmanager
    def split_between_processes(self, items):
        yield items[self.process_index::self.num_processes]


class _Store:
    """A stand-in shard store recording what the protocol asks of it."""

    def __init__(self, log, done):
        self.log, self.done = log, done

    def check(self, settings):
        self.log.append(("check", settings["k"]))

    def write_config(self, settings):
        self.log.append("write_config")

    def remove_partial_shards(self):
        self.log.append("remove_partial_shards")


def _read(store):
    store.log.append("read")
    return store.done


def test_main_process_checks_reads_then_records_between_barriers():
    log = []
    store = _Store(log, {os.path.abspath("a.mp4"): False, os.path.abspath("b.mp4"): True})
    start = start_resumable_job(_State(log), store, {"k": 1}, ["a.mp4", "b.mp4", "c.mp4"], _read,
                                redo=lambda failed: failed)
    assert log == [("check", 1), "read", "barrier", "write_config", "remove_partial_shards", "barrier"]
    assert start.pending == ["b.mp4", "c.mp4"] and start.mine == ["b.mp4", "c.mp4"]
    assert start.done == store.done


def test_other_processes_only_read_and_get_their_share():
    log = []
    store = _Store(log, {os.path.abspath("a.mp4"): True})
    start = start_resumable_job(_State(log, index=1, count=2), store, {"k": 2}, ["a.mp4", "b.mp4", "c.mp4"], _read)
    assert log == [("check", 2), "read", "barrier", "barrier"]
    assert start.pending == ["b.mp4", "c.mp4"] and start.mine == ["c.mp4"]


def test_without_a_store_everything_is_pending_and_nothing_waits():
    log = []
    start = start_resumable_job(_State(log), None, {"k": 3}, ["a.mp4", "b.mp4"], _read)
    assert log == [] and start.done == {} and start.mine == ["a.mp4", "b.mp4"]
