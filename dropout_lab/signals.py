"""Ctrl-C (SIGINT) and SIGTERM (kill, Slurm) as a request to stop: the training loop finishes its
current step, keeps the last epoch's checkpoint and closes the run as interrupted."""

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Raised inside the loop once a stop was requested (train.train_epoch)."""


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT/SIGTERM set (``event.signum``: which one), the previous handlers
    put back on exit. Outside the main thread, where Python cannot install handlers, the event
    is never set."""
    event = threading.Event()
    event.signum = None
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    def handler(signum, _frame):
        event.signum = signum
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def signal_name(signum: int) -> str:
    """SIGINT, SIGTERM: the name a run's error line gives."""
    return signal.Signals(signum).name
