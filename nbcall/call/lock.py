"""The lock of a phone or peer (:class:`~.adapter.CallAdapter`): what it defers runs once it is released.

Trait observers are user code: run with the lock held, an observer that waits for another thread (the
background loop updating the phone, a thread calling one of its methods) waits for a thread that waits for the
lock, a deadlock. So a trait changed under the lock notifies its observers after the release, in the order of
the changes, as ``traitlets``' ``hold_trait_notifications`` defers them to the end of its block.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["AdapterLock"]

logger = logging.getLogger("nbcall.call.lock")


class AdapterLock:
    """A reentrant lock whose holder may :meth:`defer` work until the lock is released (by every thread).

    Deferred work runs in the order it was deferred, one item at a time: the thread that releases the lock runs
    it, unless another thread is running deferred work already, which then runs this too. A thread therefore
    never waits for another's deferred work, and an item may take the lock itself (and defer more).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None
        self._depth = 0
        self._deferred: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._running = False
        self._running_lock = threading.Lock()

    def held(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def defer(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` once the lock is released (call with the lock held)."""
        self._deferred.append((callback, args))

    def __enter__(self) -> None:
        self._lock.acquire()
        self._owner = threading.get_ident()
        self._depth += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        released = self._depth == 0
        if released:
            self._owner = None
        self._lock.release()
        if released:
            self.run_deferred()

    def run_deferred(self) -> None:
        """Run what was deferred, unless another thread is doing so (it then runs it)."""
        while True:
            with self._running_lock:
                if self._running or not self._deferred:
                    return
                self._running = True
            try:
                while self._deferred:
                    callback, args = self._deferred.popleft()
                    try:
                        callback(*args)
                    except Exception:  # an observer's bug must not stop the others nor the phone
                        logger.exception("%r, run after the phone's lock was released, failed", callback)
            finally:
                with self._running_lock:
                    self._running = False
            # Work deferred after the last look but before ``_running`` was cleared: the loop takes it.
