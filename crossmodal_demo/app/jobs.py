"""Stoppable long jobs (indexing, evaluation), one registry per app, keyed by the visitor's session.

The session id is stamped on the server from Gradio's request, never taken from the client, so a visitor
can stop only their own jobs. A job checks its flag at every progress step (between batches or queries):
work committed before the stop is kept, nothing is half-written.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from crossmodal_demo.errors import Cancelled

ProgressFn = Callable[[int, int, str], None]


class Jobs:
    """Running jobs per session: ``track`` one, ``cancel`` them from another event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, set[threading.Event]] = {}

    @contextmanager
    def track(self, session: str) -> Iterator[threading.Event]:
        """Register a job of ``session`` for its duration; yields the flag that :meth:`cancel` sets."""
        flag = threading.Event()
        with self._lock:
            self._flags.setdefault(session, set()).add(flag)
        try:
            yield flag
        finally:
            with self._lock:
                flags = self._flags.get(session, set())
                flags.discard(flag)
                if not flags:
                    self._flags.pop(session, None)

    def cancel(self, session: str) -> int:
        """Ask every running job of ``session`` to stop at its next step; returns how many were asked."""
        with self._lock:
            flags = list(self._flags.get(session, ()))
        for f in flags:
            f.set()
        return len(flags)


def stoppable(progress: ProgressFn | None, flag: threading.Event, what: str) -> ProgressFn:
    """A progress callback that raises :class:`Cancelled` once ``flag`` is set (``what``: "indexing" …)."""

    def step(done: int, total: int, desc: str) -> None:
        if flag.is_set():
            raise Cancelled(f"Stopped {what} after {done} of {total}; everything finished before the stop is kept.")
        if progress:
            progress(done, total, desc)

    return step
