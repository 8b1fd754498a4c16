"""Signaling faults put on purpose, to see what each one breaks: dropped, delayed or reordered messages.

``Phone(faults=Faults(drop=("ice",)))`` applies them to what the phone sends, ``serve(faults=...)`` (and
``nbcall serve --drop ice ...``) to what the server relays. :class:`Faults` decides (without I/O);
:class:`FaultyOutbox` carries the decisions out with a timer of the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["CANDIDATE_TYPES", "Faults", "FaultyOutbox", "candidate_type"]

CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
#: How long messages to reorder are gathered before they go, last first.
REORDER_WINDOW = 0.2


def candidate_type(message: dict[str, Any]) -> str | None:
    """The type (host, srflx, prflx, relay) of the candidate an ``ice`` message carries, if it says."""
    text = message.get("candidate", "")
    try:  # the seed's wire format: a JSON string of RTCIceCandidate.toJSON()
        text = json.loads(text).get("candidate", "") if isinstance(text, str) else ""
    except (ValueError, AttributeError):
        pass
    fields = str(text).split()
    return fields[fields.index("typ") + 1] if "typ" in fields[:-1] else None


@dataclass(frozen=True)
class Faults:
    """Faults on outgoing signaling: ``drop`` these message types, ``delay`` each message by seconds,
    ``reorder`` messages of these types (a burst goes last first), keep only ICE candidates of
    ``candidate_types``.

    Parameters
    ----------
    drop
        Message types never sent, such as ``("ice",)`` or ``("answer",)``.
    delay
        Seconds each message waits before it goes.
    reorder
        Message types whose bursts go out last first.
    candidate_types
        The ICE candidate types kept (``"host"``, ``"srflx"``, ``"prflx"``, ``"relay"``); None keeps all.

    Raises
    ------
    ValueError
        A negative ``delay``.
    """

    drop: tuple[str, ...] = ()
    delay: float = 0.0
    reorder: tuple[str, ...] = ()
    candidate_types: tuple[str, ...] | None = None

    @classmethod
    def of(cls, value: Faults | dict[str, Any] | None) -> Faults | None:
        """A :class:`Faults` from itself, a dict of its fields, or None (no faults).

        Parameters
        ----------
        value
            A :class:`Faults`, a dict of its fields, or None.

        Raises
        ------
        TypeError
            ``value`` is neither.
        ValueError
            The dict has a key that is not a field, or an unknown candidate type.
        """
        if value is None or isinstance(value, Faults):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"faults must be a Faults or a dict of its fields, not {value!r}")
        unknown = set(value) - {"drop", "delay", "reorder", "candidate_types"}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}: use drop, delay, reorder, candidate_types")
        return cls(
            drop=_types(value.get("drop", ()), "drop"),
            delay=float(value.get("delay", 0.0)),
            reorder=_types(value.get("reorder", ()), "reorder"),
            candidate_types=_candidates(value.get("candidate_types")),
        )

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError(f"faults delay must be >= 0 seconds, not {self.delay}")

    def why_dropped(self, message: dict[str, Any]) -> str | None:
        """Why ``message`` must not be sent, or None to send it."""
        kind = message.get("type")
        if kind in self.drop:
            return f"faults drop {kind!r} messages"
        if kind == "ice" and self.candidate_types is not None:
            typ = candidate_type(message)
            if typ not in self.candidate_types:
                return f"faults keep only {'/'.join(self.candidate_types)} candidates, this one is {typ}"
        return None


def _types(value: Iterable[str] | str, name: str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _candidates(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    kinds = _types(value, "candidate_types")
    bad = [k for k in kinds if k not in CANDIDATE_TYPES]
    if bad:
        raise ValueError(f"candidate_types {bad} are not candidate types: use {', '.join(CANDIDATE_TYPES)}")
    return kinds


class FaultyOutbox:
    """Sends messages through ``send`` with the faults applied; ``later(seconds, fn)`` runs ``fn`` later.

    ``on_drop(message, why)`` is told of each message the faults keep back for good.
    """

    def __init__(
        self,
        faults: Faults,
        send: Callable[[dict[str, Any]], None],
        later: Callable[[float, Callable[[], None]], None],
        on_drop: Callable[[dict[str, Any], str], None],
    ) -> None:
        self.faults = faults
        self._send = send
        self._later = later
        self._on_drop = on_drop
        self._burst: list[Callable[[], None]] = []

    def __call__(self, message: dict[str, Any], send: Callable[[], None] | None = None) -> None:
        """Send ``message`` with the faults applied; ``send``, when given, sends it (its own encoding, say)."""
        go = send or (lambda: self._send(message))
        why = self.faults.why_dropped(message)
        if why is not None:
            self._on_drop(message, why)
        elif message.get("type") in self.faults.reorder:
            self._burst.append(go)
            if len(self._burst) == 1:
                self._later(REORDER_WINDOW + self.faults.delay, self._flush_reversed)
        elif self.faults.delay:
            self._later(self.faults.delay, go)
        else:
            go()

    def _flush_reversed(self) -> None:
        burst, self._burst = self._burst, []
        for go in reversed(burst):
            go()
