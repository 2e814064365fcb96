"""One writer per job output: ``DIR/_embed.lock`` (``_evaluate.lock``) names its run; stale locks are taken over."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import uuid

__all__ = ["LOCK_NAME", "LOCK_FILES", "JobLock", "OutputLockedError", "lock_files", "take_job_lock"]


def lock_files(job: str = "embed") -> tuple[str, str]:
    """(lock file, guard file) names of a ``job``'s output directory."""
    return f"_{job}.lock", f"_{job}.lock.guard"


LOCK_NAME, GUARD_NAME = lock_files()
LOCK_FILES = (LOCK_NAME, GUARD_NAME)


class OutputLockedError(RuntimeError):
    """The output directory is being written by another run (the message names it)."""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) "
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _holder_alive(holder: dict) -> bool | None:
    """Whether the process named by a lock still runs: True/False on this host, None on another (cannot tell)."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    except OSError:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        if stat[0] in ("Z", "X"):  # exited, not yet reaped
            return False
        if holder.get("proc_start") is not None and stat[1] != holder["proc_start"]:
            return False  # the pid was reused by a process started later
    return True


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "an unreadable lock"
    return (f"pid {holder.get('pid')} on host {holder.get('host')!r}, started {holder.get('started')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


@contextlib.contextmanager
def _guard(directory: str, name: str = GUARD_NAME):
    """An exclusive flock of ``directory/name`` that serialises lock decisions (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: fresh locks are still atomic (os.link); take-overs are not serialised
        yield
        return
    fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _create(tmp: str, path: str, holder: dict) -> None:
    """Create ``path`` with the content of ``tmp``; FileExistsError if it exists (``os.link``, or exclusive create)."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(holder, f)


class JobLock:
    """The lock of one ``job`` output directory (embed, evaluate), held by this process (`acquire` / `release`)."""

    def __init__(self, directory: str, holder: dict, job: str = "embed"):
        self.directory, self.job = directory, job
        name, self.guard = lock_files(job)
        self.path = os.path.join(directory, name)
        self.holder = holder

    @classmethod
    def acquire(cls, directory, job: str = "embed") -> JobLock:
        """Take the lock of ``directory`` (created if needed); `OutputLockedError` naming the holder if it is held."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        stat = _proc_stat(os.getpid())
        mine = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "proc_start": stat[1] if stat else None, "token": uuid.uuid4().hex,
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]}
        lock = cls(directory, mine, job)
        tmp = os.path.join(directory, f".{os.path.basename(lock.path)}.{mine['token']}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(mine, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            with _guard(directory, lock.guard):
                holder = _read(lock.path)
                if holder is not None:
                    if _holder_alive(holder) is not False or not holder:
                        raise OutputLockedError(lock._refusal(holder))
                    os.replace(tmp, lock.path)  # a stale lock: its process is gone
                else:
                    try:
                        _create(tmp, lock.path, mine)
                    except FileExistsError:
                        raise OutputLockedError(lock._refusal(_read(lock.path) or {})) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return lock

    def _refusal(self, holder: dict) -> str:
        remote = holder and holder.get("host") != socket.gethostname()
        gone = (f"if that run is gone (it ran on another host, which this one cannot check), delete {self.path!r}"
                if remote or not holder else "or stop it")
        return (f"output directory {self.directory!r} is being written by another {self.job} run: {_describe(holder)} "
                f"(lock file {self.path!r}). Wait for it to finish or use another output directory; {gone}.")

    def release(self) -> None:
        """Remove the lock if it is still this run's."""
        with contextlib.suppress(FileNotFoundError), _guard(self.directory, self.guard):
            holder = _read(self.path)
            if holder and holder.get("token") == self.holder["token"]:
                os.remove(self.path)


def take_job_lock(state, directory, job: str = "embed") -> JobLock | None:
    """The job's lock, taken by the main process of accelerate ``state`` for all; every process learns a refusal."""
    from accelerate.utils import broadcast_object_list

    lock, failure = None, None
    if state.is_main_process:
        try:
            lock = JobLock.acquire(directory, job)
        except Exception as err:
            if state.num_processes == 1:
                raise
            failure = err
    if state.num_processes > 1:
        shared = [None if failure is None else (isinstance(failure, OutputLockedError), f"{failure}")]
        broadcast_object_list(shared, from_process=0)
        if failure is not None:
            raise failure
        if shared[0] is not None:
            locked, text = shared[0]
            raise (OutputLockedError if locked else RuntimeError)(text)
    return lock
