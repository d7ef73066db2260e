"""Progress of long steps: a tqdm bar on a terminal, a few log lines otherwise.

    with progress.bar(total=20, desc="null-text") as bar:
        for i in range(20):
            ...
            bar.update()

The library never prints: where stderr is not a terminal (a service, a notebook log, CI) the bar is
replaced by INFO records of the ``rsvg_zeroov.progress`` logger at 0 %, every 25 % and the end.
A counter opened while another is open (a sample's answer tokens or diffusion steps inside a
stage's loop over samples) logs at DEBUG, so a long run's log stays readable; on its own (one
image through ``ground.py`` or the API) it logs at INFO. ``RSVG_ZEROOV_PROGRESS=0`` silences both; ``=1`` forces the bar.

An interface follows the counters with :func:`observe` (the interactive page's progress bar), in
whichever of the three modes.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

# The callbacks of the observe() blocks the current thread (context) is in.
_OBSERVERS: ContextVar[tuple] = ContextVar("rsvg_zeroov_progress_observers", default=())

log = logging.getLogger(__name__)


def _mode() -> str:
    env = os.environ.get("RSVG_ZEROOV_PROGRESS")
    if env == "0":
        return "off"
    if env == "1" or sys.stderr.isatty():
        return "bar"
    return "log"


class _LogBar:
    """The subset of tqdm's interface the library uses, reported through logging."""

    open = 0  # counters not yet closed (nesting depth)

    def __init__(self, total: int | None, desc: str, level: int = logging.INFO):
        self.total, self.desc, self.n, self._next, self.level = total, desc, 0, 0.0, level
        self._closed = False
        _LogBar.open += 1
        if total != 0:
            log.log(level, "%s: started%s", desc, f" ({total} steps)" if total else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self.n / self.total >= self._next + 0.25 and self.n < self.total:
            self._next = int(self.n / self.total * 4) / 4
            log.log(self.level, "%s: %d/%d", self.desc, self.n, self.total)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _LogBar.open -= 1
        if self.n or self.total:
            log.log(self.level, "%s: done (%d%s)", self.desc, self.n, f"/{self.total}" if self.total else "")
            self.n, self.total = 0, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _NoBar(_LogBar):
    def __init__(self, total: int | None, desc: str):
        self.total, self.desc, self.n = total, desc, 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass


@contextmanager
def observe(callback: Callable[[str, int, int | None], None]):
    """Inside the block, every counter :func:`bar` opens in this thread also calls
    ``callback(desc, steps so far, total)`` after each update. An exception the callback raises
    propagates into the work (how an interface stops it)."""
    token = _OBSERVERS.set(_OBSERVERS.get() + (callback,))
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


class _Observed:
    """A counter whose updates also go to the :func:`observe` callbacks."""

    def __init__(self, inner, total: int | None, desc: str, callbacks: tuple):
        self.inner, self.total, self.desc, self.callbacks, self.n = inner, total, desc, callbacks, 0

    def update(self, n: int = 1) -> None:
        self.inner.update(n)
        self.n += n
        for callback in self.callbacks:
            callback(self.desc, self.n, self.total)

    def set_postfix_str(self, text: str) -> None:
        self.inner.set_postfix_str(text)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: int | None = None, desc: str = "", leave: bool = False):
    """A progress counter for ``total`` steps (None: unknown), usable as a context manager.

    ``leave``: keep the finished bar on the terminal (outer loops); inner loops vanish when done.
    """
    callbacks = _OBSERVERS.get()
    counter = _bar(total, desc, leave)
    return _Observed(counter, total, desc, callbacks) if callbacks else counter


def _bar(total: int | None, desc: str, leave: bool):
    mode = _mode()
    if mode == "off":
        return _NoBar(total, desc)
    if mode == "log":  # a bar inside another (a sample's steps in a stage's loop) only at DEBUG
        return _LogBar(total, desc, logging.INFO if not _LogBar.open else logging.DEBUG)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=leave, dynamic_ncols=True, file=sys.stderr)
