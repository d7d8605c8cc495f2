"""Ctrl-C and SIGTERM during training: finish the iteration, save, then stop (exit code 130)."""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While active, SIGINT/SIGTERM only set ``signum``; the loop stops at its next iteration boundary.

    A second signal, or one while ``deferred`` is off, raises KeyboardInterrupt at once. Installed only
    in the main thread (elsewhere signals cannot be caught: ``signum`` stays None); the previous
    handlers come back on exit.
    """

    def __init__(self, deferred: bool = True):
        self.signum: int | None = None
        self.deferred = deferred
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None or not self.deferred:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "stop signal (another process)"


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C/SIGTERM (sent to the whole process group) to the main process,
    which saves and then shuts them down; a worker dying first would fail the batch being fetched."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
