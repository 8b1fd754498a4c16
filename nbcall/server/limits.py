"""The server's limits, each defined once, and the token bucket that enforces the message rate.

:class:`Limits` is the one definition of every limit: its name, type, default, unit and help text
(the field's metadata). :func:`nbcall.server.serve` takes one keyword argument per field
(:func:`limit_keywords` writes them into its signature and docstring), ``nbcall serve`` has one
flag per field (:mod:`nbcall.server.cli`), and docs/limits.md lists them (a test keeps it in step).
The token bucket has no I/O: its caller gives the time.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_LIMITS",
    "GROUPS",
    "RATE_ABUSE_WINDOW",
    "Limits",
    "TokenBucket",
    "limit_keywords",
    "shown_default",
]

#: Seconds over which ``max_refused`` rate-limited messages close a connection.
RATE_ABUSE_WINDOW = 10.0

#: The groups the limits are listed in, in order (``serve()``'s docstring, ``nbcall serve --help``).
GROUPS = (
    "who may connect",
    "what each connection may send",
    "what each connection must keep up with",
    "rooms (docs/rooms.md)",
)
_WHO, _SENDING, _KEEPING_UP, _ROOMS = GROUPS


def _limit(default: float | None, unit: str, group: str, help: str) -> Any:
    """A field of :class:`Limits`: its default, the unit it counts in, its group and what it does."""
    return dataclasses.field(default=default, metadata={"unit": unit, "group": group, "help": help})


@dataclass(frozen=True)
class Limits:
    """What one server allows; ``None`` disables a limit. Each field's metadata has its ``unit``,
    ``group`` and ``help``."""

    max_connections: int | None = _limit(10_000, "N", _WHO, "further handshakes get HTTP 503")
    open_timeout: float | None = _limit(
        10.0, "SECONDS", _WHO, "time allowed for the TLS and WebSocket handshakes"
    )
    max_message_size: int | None = _limit(
        64 * 1024, "BYTES", _SENDING, "larger messages get a too-big error reply"
    )
    max_frame_size: int | None = _limit(
        2**20,
        "BYTES",
        _SENDING,
        "larger frames close the connection with 1009; keep it above max_message_size, so that oversize "
        "messages get a polite reply",
    )
    max_rate: float | None = _limit(
        50.0,
        "PER_SECOND",
        _SENDING,
        "messages per second per connection (a token bucket); more get a rate-limited error and are dropped",
    )
    max_burst: int = _limit(200, "N", _SENDING, "messages a connection may send at once above max_rate")
    max_refused: int | None = _limit(
        100,
        "N",
        _SENDING,
        f"rate-limited messages within {RATE_ABUSE_WINDOW:g} s after which the connection is closed with 1008",
    )
    max_pending_bytes: int | None = _limit(
        2**20,
        "BYTES",
        _KEEPING_UP,
        "bytes waiting to be written to a connection that does not read, after which it is closed with 1008 "
        "(too slow): the others see it left, a peer whose message was lost gets unavailable, and senders never "
        "wait for it; disabled, a client that never reads can grow the server's memory (trusted clients only)",
    )
    ping_interval: float | None = _limit(20.0, "SECONDS", _KEEPING_UP, "time between keepalive pings")
    ping_timeout: float | None = _limit(
        20.0,
        "SECONDS",
        _KEEPING_UP,
        "a client not answering a ping within this is closed with 1011 and reported left, at most "
        "ping_interval + ping_timeout + close_timeout (plus half the smaller of the first two) after it went silent",
    )
    close_timeout: float | None = _limit(
        10.0, "SECONDS", _KEEPING_UP, "time a closing handshake may take before the TCP connection is dropped"
    )
    id_grace: float | None = _limit(
        30.0,
        "SECONDS",
        _KEEPING_UP,
        "an ID registered with a secret whose connection is lost without a close frame is held this long for "
        "the phone with that secret: others asking for it get duplicate-id, messages to it unavailable (a close "
        "frame frees it at once; disabled: every ID is freed at once)",
    )
    max_room_size: int | None = _limit(
        6,
        "N",
        _ROOMS,
        "members of one room; invitations and acceptances beyond it get room-full (each browser of a full "
        "mesh sends a stream to every other member)",
    )
    max_sfu_room_size: int | None = _limit(
        25,
        "N",
        _ROOMS,
        "members of one SFU room (serve(sfu=...), nbcall serve --sfu): each member sends one stream to the SFU "
        "and receives the others' from it; invitations and acceptances beyond it get room-full",
    )
    invitation_ttl: float | None = _limit(
        60.0,
        "SECONDS",
        _ROOMS,
        "an invitation unanswered this long is withdrawn (room-declined to the inviter, room-cancelled to "
        "the invitee)",
    )
    room_grace: float | None = _limit(
        30.0,
        "SECONDS",
        _ROOMS,
        "a member whose connection is gone stays a member this long, so that a phone that reconnects keeps "
        "its place; then the others get room-left; a room re-created after a restart waits this long for its "
        "other members (0: no grace; None, from Python only: members stay until they leave or are reported lost)",
    )
    max_room_claims: int | None = _limit(
        100,
        "N",
        _ROOMS,
        "rooms one client address may re-create after a restart that no second member rejoined yet; further "
        "claims get too-many-claims",
    )

    def __post_init__(self) -> None:
        for name in ("max_connections", "open_timeout", "max_message_size", "max_rate", "max_refused",
                     "max_pending_bytes", "invitation_ttl", "max_room_claims"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None (no limit), got {value!r}")
        for name in ("id_grace", "room_grace"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be at least 0 (no grace) or None, got {value!r}")
        if self.max_burst < 1:
            raise ValueError(f"max_burst must be at least 1, got {self.max_burst!r}")
        for name in ("max_room_size", "max_sfu_room_size"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ValueError(
                    f"{name} must be at least 2 (a room needs two members) or None, got {value!r}"
                )
        frame, message = self.max_frame_size, self.max_message_size
        if frame is not None and message is not None and message > frame:
            raise ValueError(
                f"max_frame_size ({frame}) must be at least max_message_size ({message}) "
                "so that oversize messages get an error reply instead of a closed connection"
            )


DEFAULT_LIMITS = Limits()

F = TypeVar("F", bound=Callable[..., Any])


def limit_keywords(function: F) -> F:
    """Show ``function``'s ``**limits`` as one keyword argument per field of :class:`Limits`.

    Its signature (``help()``, ``inspect.signature``) lists each with its type and default, and
    its docstring gets a list of them, by group, with their help texts.
    """
    signature = inspect.signature(function)
    fields = dataclasses.fields(Limits)
    limits = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in fields
    ]
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    function.__signature__ = signature.replace(parameters=[*params, *limits])  # type: ignore[attr-defined]
    if function.__doc__ is not None:
        lines = []
        for group in GROUPS:
            lines += ["", f"    Limits: {group}:", ""]
            lines += [
                textwrap.fill(
                    f"* ``{f.name}`` ({shown_default(f)}): {f.metadata['help']}.",
                    width=100,
                    initial_indent="    ",
                    subsequent_indent="      ",
                )
                for f in fields
                if f.metadata["group"] == group
            ]
        function.__doc__ = function.__doc__.rstrip() + "\n" + "\n".join(lines) + "\n"
    return function


def shown_default(field: dataclasses.Field[Any]) -> str:
    """A field of :class:`Limits`'s default for people, with its unit: ``64 KiB``, ``50/s``, ``20 s``."""
    value, unit = field.default, field.metadata["unit"]
    if isinstance(value, float):
        value = f"{value:g}"
    elif unit == "BYTES" and isinstance(value, int) and value % 1024 == 0:
        value, unit = (f"{value // 2**20} MiB", "") if value % 2**20 == 0 else (f"{value // 1024} KiB", "")
    return f"{value}{_UNITS.get(unit, '')}"


_UNITS = {"SECONDS": " s", "BYTES": " bytes", "PER_SECOND": "/s"}


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
