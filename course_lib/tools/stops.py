"""Stopping `course run` cleanly on SIGTERM or SIGINT (Ctrl-C): the kernel is shut down, the report written.

While a notebook executes, nbclient's event loop owns the signals; `Stop.kernel_hook` adds
handlers to that loop that record the signal and shut the kernel down (nbclient then ends the
notebook). Between notebooks, `on_signals`'s handler records the signal and the run stops
before the next notebook.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading

__all__ = ["SIGNALS", "Stop", "on_signals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stop:
    """Which signal stopped the run (`name`; None while it runs)."""

    def __init__(self):
        self.name = None

    def handle(self, signum, _frame=None) -> None:
        """Record the signal (the run stops before the next notebook)."""
        self.name = self.name or signal.Signals(signum).name

    def kernel_hook(self, client):
        """An nbclient `on_notebook_start` hook: a signal during the notebook shuts its kernel down."""
        def hook(**_kwargs) -> None:
            loop = asyncio.get_event_loop()
            for s in SIGNALS:
                with contextlib.suppress(RuntimeError, ValueError):  # not the main thread
                    loop.add_signal_handler(s, self._stop_kernel, s, client)
        return hook

    def _stop_kernel(self, signum, client) -> None:
        self.handle(signum)
        if client.km is not None:
            asyncio.ensure_future(client.km.shutdown_kernel(now=True))

    def reinstall(self) -> None:
        """Put this run's handlers back (nbclient's event loop resets them when a notebook ends)."""
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                signal.signal(s, self.handle)


@contextlib.contextmanager
def on_signals():
    """Install the SIGTERM and SIGINT handlers for the block (main thread only); yields the `Stop`."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}
    stop.reinstall()
    try:
        yield stop
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
