"""Progress of the transfer under way (a large message, or a file), as ``Phone`` and ``Peer`` report it.

A report is ``{"direction": "out"|"in", "peer", "name", "done", "total", "rate", "eta"}``: bytes done of
``total`` (None when the sender did not announce it), ``rate`` in bytes per second since the transfer began,
``eta`` the seconds left (None when unknown). The owner's ``progress`` trait holds the latest report and
becomes ``{}`` once the transfer is over; ``on_progress`` callbacks get every report that is published, at most
ten a second and always the last one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FIELDS", "PROGRESS_MIN", "ProgressReporter", "describe", "size_text"]

logger = logging.getLogger("nbcall.call.progress")

#: Sends and receptions at least this large report their progress (as js/progress.js does).
PROGRESS_MIN = 1024 * 1024
#: Reports are published at most this often, in seconds.
INTERVAL = 0.1

Report = dict[str, Any]
#: The fields of a report.
FIELDS = ("direction", "peer", "name", "done", "total", "rate", "eta")


class ProgressReporter:
    """Adds the rate and time left to reports, throttles them, and publishes them to a trait and callbacks."""

    def __init__(self, owner: str, publish: Callable[[Report], None]) -> None:
        self._owner = owner
        self._publish = publish
        self.callbacks: list[Callable[[Report], Any]] = []
        # When each transfer (direction, peer, name) was last published: two at once do not starve each other.
        self._published_at: dict[tuple[Any, ...], float] = {}
        self._started: dict[tuple[Any, ...], tuple[float, int]] = {}

    def report(self, progress: Report, *, force: bool = False) -> None:
        """Publish ``progress`` (a report without ``rate`` gets one computed); after the last, publish ``{}``."""
        if "rate" not in progress:
            progress = self._with_rate(progress)
        finished = progress.get("total") is not None and progress["done"] >= progress["total"]
        now, key = time.monotonic(), self._key(progress)
        if not (force or finished or now - self._published_at.get(key, 0.0) >= INTERVAL):
            return
        self._published_at[key] = now
        self._publish(progress)
        for callback in list(self.callbacks):
            try:
                callback(progress)
            except Exception:
                logger.exception("%s: on_progress callback %r failed", self._owner, callback)
        if finished:
            self._started.pop(key, None)
            self._published_at.pop(key, None)
            self._publish({})

    def _with_rate(self, progress: Report) -> Report:
        key, now, done = self._key(progress), time.monotonic(), int(progress["done"])
        started, first = self._started.get(key, (now, done))
        if done < first:  # a new transfer under the same name
            started, first = now, done
        self._started[key] = (started, first)
        elapsed = now - started
        rate = (done - first) / elapsed if elapsed > 0 else 0.0
        total = progress.get("total")
        eta = (total - done) / rate if total is not None and rate > 0 else None
        return {**progress, "rate": rate, "eta": eta}

    @staticmethod
    def _key(progress: Report) -> tuple[Any, ...]:
        return progress.get("direction"), progress.get("peer"), progress.get("name")


def size_text(n: float, gib_digits: int = 2) -> str:
    """A number of bytes for people: "12.0 MiB", "2.10 GiB" (``gib_digits`` decimals for GiB)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.{gib_digits if unit == 'GiB' else 1}f} {unit}"
    return f"{int(n)} B"


def describe(report: Report) -> str:
    """A report as the widgets show it: "↓ a.bin from B: 12.0 MiB of 50.0 MiB · 8.1 MiB/s · 5 s left"."""
    what = report.get("name") or "a message"
    if report["direction"] == "in":
        way = f"↓ {what} from {report['peer']}"
    else:
        way = f"↑ {what}" + (f" to {report['peer']}" if report.get("peer") else "")
    total = report.get("total")
    amount = (
        size_text(report["done"]) if total is None else f"{size_text(report['done'])} of {size_text(total)}"
    )
    eta = report.get("eta")
    left = "" if eta is None else f" · {'<1' if eta < 1 else round(eta)} s left"
    return f"{way}: {amount} · {size_text(report.get('rate', 0))}/s{left}"
