"""SIGTERM handled as Ctrl-C is: an exception in the main thread.

Python ends a process on SIGTERM at once, without running a ``finally`` block:
a command's worker processes would go on alone (the toy's pool workers,
blocked for ever on their task pipe) and what it was writing would stay half
written. Within :func:`terminated_raises`, SIGTERM raises :class:`Terminated`,
a KeyboardInterrupt, so every command cleans up on it exactly as on Ctrl-C: it
ends its workers, removes its temporary files, and exits with
:func:`exit_status` (143, or 130 for Ctrl-C). ``train`` installs its own
handlers while it trains (SIGTERM saves a checkpoint there).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt."""


def _raise(signum, _frame):
    raise Terminated(signum)


@contextlib.contextmanager
def terminated_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (in the main
    thread: elsewhere Python handles no signal, and nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def exit_status(err: KeyboardInterrupt) -> int:
    """The conventional exit status of a command stopped by ``err``: 128 + the signal."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)
