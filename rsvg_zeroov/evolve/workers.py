"""Stage 3 without a refiner in worker processes: each sample's loading, evolving and mask writing
run in a process forked from the stage's, the records come back and are appended by the stage.

Why processes: the per-sample work is many small NumPy and torch calls that hold the GIL, so
threads hardly overlap (on 2 cores, 2 threads gave 0.92x and 0.96x one thread's samples/s); forked
processes do (1.19x and 1.34x the threads: BENCHMARKS.md, "Stage 3 in worker processes"). Forking
is cheap (the stage, its config and every cache are inherited, nothing is re-imported) and the
workers never touch a GPU.
Where the platform cannot fork (Windows; macOS is not offered it either: its system libraries are
not fork-safe), the stage keeps its threads. Outputs do not depend on the choice.

Each worker runs torch kernels on one thread and ignores Ctrl-C (the stage's process handles it
and stops the workers). An exception a worker raised for a sample comes back as itself when it can
be pickled, else as an exception of the same type name and message, so the failure the runner
records reads the same as with threads.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Sequence

_STAGE = None  # the EvolveStage a worker process works for (set in the worker by _adopt)


def can_fork() -> bool:
    """Whether worker processes can be forked here (Linux and other Unix, not macOS or Windows)."""
    return sys.platform != "darwin" and "fork" in mp.get_all_start_methods()


def use_processes(requested: bool | None, workers: int, refiner: str | None) -> bool:
    """Whether a stage with these settings works in processes: only without a refiner, with more than
    one worker, where the platform can fork; ``requested`` False forces threads, True asks for
    processes (ValueError where they cannot be used)."""
    possible = refiner is None and workers > 1 and can_fork()
    if requested and not possible:
        why = ("a refiner runs in the stage's own process" if refiner is not None else
               "one worker needs no pool" if workers <= 1 else "this platform cannot fork")
        raise ValueError(f"worker processes cannot be used here: {why}")
    return possible if requested is None else bool(requested)


def _adopt(stage) -> None:
    """Worker start-up (after the fork): fresh read buffers, one kernel thread, no SIGINT (each task
    starts its own timer: :func:`_whole`)."""
    global _STAGE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from .interaction import ThreadReaders

    torch.set_num_threads(1)
    stage._readers = ThreadReaders(stage.run, stage.config)
    _STAGE = stage


def _whole(samples: Sequence) -> tuple[list, dict, dict]:
    """In a worker: ``[(record, None) or (None, error)]`` for ``samples``, and the phase times."""
    from .stage import PhaseTimer

    stage = _STAGE
    stage.timer = PhaseTimer()
    out = []
    for sample in samples:
        try:
            out.append((stage._whole(sample), None))
        except Exception as exc:  # noqa: BLE001 - sent back, recorded by the stage's process
            out.append((None, _portable(exc)))
    return out, stage.timer.seconds, stage.timer.cpu_seconds


def _portable(exc: BaseException):
    """``exc`` if it survives pickling, else ``(type name, message)``."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling problem: send its name and text instead
        return (type(exc).__name__, str(exc))


def _restored(err):
    if isinstance(err, tuple):
        name, message = err
        return type(name, (RuntimeError,), {"__module__": __name__})(message)
    return err


class WorkerProcesses:
    """``workers`` processes forked from the stage's process on first use (after the stage's setup);
    :meth:`whole` runs a batch on them. A worker that dies (killed for memory, say) fails the batch
    with a clear error and the pool is started again for the next one."""

    def __init__(self, stage, workers: int):
        self.stage, self.workers = stage, workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            from .resample import emulation

            emulation()  # probed once here, inherited by every worker
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"),
                                             initializer=_adopt, initargs=(self.stage,))
        return self._pool

    def whole(self, batch: Sequence) -> list[tuple[object, BaseException | None]]:
        """``[(record, None) or (None, error)]`` in ``batch`` order; the phase times are added to the
        stage's timer."""
        if not batch:
            return []
        pool = self._executor()
        size = -(-len(batch) // (2 * self.workers))  # two chunks per worker: balanced, few round trips
        chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
        futures = [pool.submit(_whole, chunk) for chunk in chunks]
        outcomes: list = []
        broken = None
        for chunk, future in zip(chunks, futures):
            try:
                results, seconds, cpu = future.result()
            except BrokenProcessPool as exc:
                broken = exc
                outcomes += [(None, RuntimeError("a stage-3 worker process died (killed for memory?); "
                                                 "run again to redo this sample, or use --workers 1"))] * len(chunk)
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be sent back
                outcomes += [(None, exc)] * len(chunk)
                continue
            self.stage.timer.add(seconds, cpu)
            outcomes += [(rec, None if err is None else _restored(err)) for rec, err in results]
        if broken is not None:
            self.close()
        return outcomes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
