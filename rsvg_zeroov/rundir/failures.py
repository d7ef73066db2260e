"""``RUN/failures.jsonl`` and the run lock: what every process of a run (all ranks) shares.

The lock is ``flock`` on the run directory itself, so no lock file is ever left behind.
"""
from __future__ import annotations

import fcntl
import json
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from . import RunDir, atomic_write_bytes


@contextmanager
def locked(run: RunDir, name: str = "run") -> Iterator[None]:
    """An exclusive lock on the run directory, shared by every process of the run (all ranks).

    ``flock`` on the directory itself, so no lock file is left behind. Re-entrant within a process
    (``name`` is only a label): the threads of one process queue on a process-wide lock first.
    """
    run.root.mkdir(parents=True, exist_ok=True)
    key = str(run.root.resolve())
    with _LOCK_GUARD:
        if key in _HELD:  # this thread already holds the run's lock
            yield
            return
        fd = os.open(run.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _HELD.add(key)
            try:
                yield
            finally:
                _HELD.discard(key)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


_LOCK_GUARD = threading.RLock()
_HELD: set[str] = set()


def record_failure(run: RunDir, sid: str, stage: str, exc: BaseException) -> None:
    msg = f"{type(exc).__name__}: {exc}"
    with locked(run):
        run.append_failure(sid, stage, msg)


def prune_failures(run: RunDir, stage: str, done: Callable[[str], bool]) -> None:
    """Drop this stage's failure records whose sample now has valid outputs (a successful retry)."""
    with locked(run):
        records = run.read_failures()
        keep = [r for r in records if not (r.get("stage") == stage and done(r.get("sample_id", "")))]
        if len(keep) != len(records):
            atomic_write_bytes(run.failures, "".join(json.dumps(r) + "\n" for r in keep).encode())
