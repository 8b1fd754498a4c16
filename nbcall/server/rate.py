"""The rate and slow-reader policy: what a connection that sends too fast or reads too slowly is told.

The server counts each connection's messages (a :class:`~nbcall.server.limits.TokenBucket` per
connection, ``max_rate`` and ``max_burst``); what a refusal produces is decided here, without I/O:
a ``rate-limited`` error, or a close once the refusals persist (``max_refused`` within
:data:`~nbcall.server.limits.RATE_ABUSE_WINDOW`), and, for a reader dropped for not reading, the
``unavailable`` notice to the sender whose message was lost.
"""

from __future__ import annotations

import logging
from typing import Generic

from ..exceptions import RateLimited, SignalingError
from .limits import DEFAULT_LIMITS, RATE_ABUSE_WINDOW, TokenBucket
from .messages import RELAYED_TYPES, Close, ConnT, Outgoing, encode_message, error_reply, parse_frame

__all__ = ["RatePolicy", "slow_reader_notice"]


class RatePolicy(Generic[ConnT]):
    """Answers to messages refused for rate; limits as in :class:`~nbcall.server.limits.Limits`."""

    def __init__(
        self,
        *,
        max_rate: float | None = DEFAULT_LIMITS.max_rate,
        max_burst: int = DEFAULT_LIMITS.max_burst,
        max_refused: int | None = DEFAULT_LIMITS.max_refused,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        if max_refused is not None and max_refused < 1:
            raise ValueError(f"max_refused must be positive or None, got {max_refused!r}")
        self.max_rate = max_rate
        self.max_burst = max_burst
        self.max_refused = max_refused
        self.logger = logger
        #: Refusals for rate, per connection refused at least once (rare: no bucket for the others).
        self.refusals: dict[ConnT, TokenBucket] = {}

    def refuse(self, conn: ConnT, peer_id: str | None, now: float) -> Outgoing[ConnT]:
        """``conn`` (registered as ``peer_id``, if at all) sent a message above ``max_rate`` at time ``now``.

        Returns a ``rate-limited`` error for it, or a :class:`Close` (1008) once more than
        ``max_refused`` of its messages were refused within :data:`RATE_ABUSE_WINDOW` seconds.
        """
        max_refused = self.max_refused
        if max_refused is not None:
            refusals = self.refusals.get(conn)
            if refusals is None:
                refusals = self.refusals[conn] = TokenBucket(
                    max_refused / RATE_ABUSE_WINDOW, max_refused, now
                )
            if not refusals.take(now):
                self.logger.warning(
                    "closing the connection of %r: more than %d messages refused for rate within %g s",
                    peer_id,
                    max_refused,
                    RATE_ABUSE_WINDOW,
                )
                return [
                    (conn, Close(1008, f"rate limit exceeded persistently (more than {max_refused} refused)"))
                ]
        self.logger.debug("rate-limited a message from %r", peer_id)
        rate = "?" if self.max_rate is None else f"{self.max_rate:g}"
        exc = RateLimited(
            f"more than {rate} messages per second (bursts of {self.max_burst}) from this "
            "connection; this message was dropped: slow down"
            + (
                ""
                if max_refused is None
                else f" (more than {max_refused} dropped within {RATE_ABUSE_WINDOW:g} s close the connection)"
            )
        )
        return [(conn, error_reply(exc))]

    def forget(self, conn: ConnT) -> None:
        """``conn`` is gone: forget its refusals."""
        if self.refusals:
            self.refusals.pop(conn, None)


def slow_reader_notice(reader: str, lost: str | bytes) -> str | None:
    """The ``unavailable`` notice for whoever sent ``lost`` to ``reader``, dropped for not reading.

    ``None`` when ``lost`` is not a relayed message (server news such as ``left``: nobody to tell).
    """
    # Rare path: parsing costs nothing here, and tells the sender which message was lost.
    try:
        msg_type = parse_frame(lost if isinstance(lost, str) else lost.decode()).get("type")
    except (SignalingError, UnicodeDecodeError):  # never: the server only queues valid JSON
        return None
    if msg_type not in RELAYED_TYPES:
        return None
    return encode_message(
        "unavailable",
        peer=reader,
        in_reply_to=msg_type,
        message=f"{reader!r} was disconnected because it stopped reading its messages; "
        f"this {msg_type!r} was not delivered",
    )
