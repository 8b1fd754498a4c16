"""The call machine's vocabulary: a phone's states, the actions the machine returns, and its record of each
peer connection (:class:`Link`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FREE", "IN_CALL", "STATES", "Action", "Changed", "Delivered", "Link", "ToEngine", "ToServer"]

#: Every state a phone can be in. ``ended`` and ``failed`` are final for a call; a new call may follow.
STATES = ("idle", "calling", "ringing", "connecting", "connected", "ended", "failed")
#: States in which a phone may start or take a call.
FREE = ("idle", "ended", "failed")
IN_CALL = ("calling", "ringing", "connecting", "connected")


@dataclass(frozen=True)
class ToServer:
    """Send ``message`` to the signaling server (``type``, ``from`` and ``to`` filled in)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class ToEngine:
    """Give the media engine a command of the widget protocol (docs/widget-protocol.md)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class Changed:
    """Fields of the phone that changed: ``state``, ``peer``, ``error``, ``online``, ``peers``, ``room``,
    ``members``, ``connections``, ``invitation``, ``room_mode`` or ``sfu_links``."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class Delivered:
    """A data message arrived through the signaling server (an SFU room's directed send): receive it as one
    from the data channel."""

    peer: str
    kind: Literal["str", "bytes", "json"]
    payload: bytes


Action = ToServer | ToEngine | Changed | Delivered


@dataclass
class Link:
    """The peer connection to one other phone, as the engine reported it."""

    peer: str
    role: Literal["caller", "callee"]
    #: The RTCPeerConnection's connectionState ("new" until the engine reports one).
    connection: str = "new"
    channel_open: bool = False
    #: ICE candidates our engine produced for this link, and those that came from the peer.
    sent_candidates: int = 0
    received_candidates: int = 0
