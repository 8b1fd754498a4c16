"""The server's limits in one place, and the token bucket that enforces the message rate.

:class:`Limits` holds every limit with its documented default; :func:`nbcall.server.serve` takes
its keyword defaults from :data:`DEFAULT_LIMITS`, and the command line reads them from ``serve()``'s
signature, so the numbers are written once. The token bucket has no I/O: its caller gives the time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "RATE_ABUSE_WINDOW", "Limits", "TokenBucket"]

#: Seconds over which ``max_refused`` rate-limited messages close a connection.
RATE_ABUSE_WINDOW = 10.0


@dataclass(frozen=True)
class Limits:
    """What one server allows; ``None`` disables a limit (see :func:`nbcall.server.serve` for each)."""

    # Who may connect.
    max_connections: int | None = 10_000  #: further handshakes get HTTP 503
    open_timeout: float | None = 10  #: seconds for the TLS and WebSocket handshakes
    # What each connection may send.
    max_message_size: int | None = 64 * 1024  #: bytes; larger messages get a ``too-big`` reply
    max_frame_size: int | None = 2**20  #: bytes; larger frames close the connection with 1009
    max_rate: float | None = 50  #: messages per second per connection...
    max_burst: int = 200  #: ...with bursts of this many
    max_refused: int | None = 100  #: refusals for rate within RATE_ABUSE_WINDOW that close with 1008
    # What each connection must keep up with.
    max_pending_bytes: int | None = 2**20  #: unwritten bytes after which a slow reader is dropped
    ping_interval: float | None = 20  #: seconds between keepalive pings
    ping_timeout: float | None = 20  #: seconds a pong may take
    close_timeout: float | None = 10  #: seconds a closing handshake may take
    # Rooms (docs/rooms.md).
    max_room_size: int | None = 6  #: members of one room: a browser's full mesh costs each one upload and CPU
    invitation_ttl: float | None = 60  #: seconds an invitation into a room waits for its answer
    room_grace: float | None = 30  #: seconds a member whose connection is gone stays a member

    def __post_init__(self) -> None:
        for name in ("max_connections", "open_timeout", "max_message_size", "max_rate", "max_refused",
                     "max_pending_bytes", "invitation_ttl", "room_grace"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None (no limit), got {value!r}")
        if self.max_burst < 1:
            raise ValueError(f"max_burst must be at least 1, got {self.max_burst!r}")
        if self.max_room_size is not None and self.max_room_size < 2:
            raise ValueError(
                f"max_room_size must be at least 2 (a room needs two members) or None, got {self.max_room_size!r}"
            )
        frame, message = self.max_frame_size, self.max_message_size
        if frame is not None and message is not None and message > frame:
            raise ValueError(
                f"max_frame_size ({frame}) must be at least max_message_size ({message}) "
                "so that oversize messages get an error reply instead of a closed connection"
            )


DEFAULT_LIMITS = Limits()


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` tokens per second; :meth:`take` spends one.

    Time comes from the caller (any monotonic clock in seconds), so tests need no sleeping.
    The server keeps one per connection for messages (``max_rate``, ``max_burst``); the
    protocol keeps one per rate-limited connection that counts its refusals (``max_refused``).
    """

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one at time ``now``; return whether there was."""
        tokens = self.tokens + (now - self.updated) * self.rate
        self.updated = now
        if tokens >= 1.0:
            self.tokens = min(tokens, self.capacity) - 1.0
            return True
        self.tokens = tokens
        return False

    def __repr__(self) -> str:
        return f"<TokenBucket {self.tokens:.1f}/{self.capacity} +{self.rate}/s>"
