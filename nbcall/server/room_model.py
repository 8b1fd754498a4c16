"""A room as the server keeps it: its members, its invitations, its ID and its members' credentials.

:class:`~nbcall.server.rooms.RoomRegistry` holds these and enforces the rules; this module has the data and the
pure functions it needs: IDs nobody can guess, and credentials only the server's key makes or checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from .limits import DEFAULT_LIMITS

__all__ = [
    "ENDED_WITH_RESTART",
    "MAX_ENDED",
    "REJOIN_WINDOW",
    "ROOM_ID_PREFIX",
    "SFU_ROOM_PREFIX",
    "Invitation",
    "Notices",
    "Room",
    "is_sfu_room",
    "new_room_id",
    "proven_epoch",
    "room_credential",
    "sfu_room_id",
]

ROOM_ID_PREFIX = "r-"
#: An SFU room's ID starts with this instead (its mode outlives a server restart with its ID).
SFU_ROOM_PREFIX = "s-"

#: What a :class:`RoomRegistry` method returns: ``(peer ID, JSON text)`` pairs to send, in order.
Notices = list[tuple[str, str]]

#: How many ended rooms' IDs are remembered (never re-created): about 100 bytes each.
MAX_ENDED = 100_000
#: Seconds a room re-created after a restart waits for its other members when ``room_grace`` is None.
REJOIN_WINDOW = DEFAULT_LIMITS.room_grace or 30.0
#: Why a room could not be re-created by a server whose key changed (it had none of its own).
ENDED_WITH_RESTART = (
    "the room ended with the server restart: this server has no room key (--room-key or NBCALL_ROOM_KEY), so "
    "it cannot check that you were a member; invite the others into a new room"
)


def new_room_id() -> str:
    """A room ID nobody can guess: ``r-`` and 96 random bits in URL-safe base64 (18 characters)."""
    return ROOM_ID_PREFIX + secrets.token_urlsafe(12)


def sfu_room_id(room_id: str) -> str:
    """The ID of an SFU room made from a new room ID (``r-...`` becomes ``s-...``)."""
    return SFU_ROOM_PREFIX + room_id.removeprefix(ROOM_ID_PREFIX)


def is_sfu_room(room_id: str) -> bool:
    """Whether ``room_id`` names an SFU room (docs/rooms.md, "Rooms on an SFU")."""
    return room_id.startswith(SFU_ROOM_PREFIX)


def room_credential(key: bytes, room_id: str, member: str, epoch: int) -> str:
    """What proves ``member`` belongs to ``room_id`` at ``epoch``: ``EPOCH.`` and an HMAC-SHA256 under ``key``."""
    mac = hmac.new(key, f"{room_id}\0{member}\0{epoch}".encode(), hashlib.sha256).digest()
    return f"{epoch}.{base64.urlsafe_b64encode(mac[:18]).decode()}"


def proven_epoch(key: bytes, room_id: str, member: str, credential: object) -> int | None:
    """The epoch of ``room_id`` that ``credential`` proves ``member`` belonged to under ``key``, or ``None``."""
    if not isinstance(credential, str) or len(credential) > 100:
        return None
    epoch, dot, _ = credential.partition(".")
    if not dot or not epoch.isdigit() or len(epoch) > 9:
        return None
    expected = room_credential(key, room_id, member, int(epoch)).encode()
    return int(epoch) if hmac.compare_digest(expected, credential.encode("utf-8", "replace")) else None


class Invitation:
    """A pending invitation: who sent it, whether it links an existing 1:1 call, when it expires."""

    __slots__ = ("deadline", "inviter", "link")

    def __init__(self, inviter: str, link: bool) -> None:
        self.inviter = inviter
        self.link = link
        self.deadline: float | None = None  # stamped at the next tick


class Room:
    """One room: its members in the order they joined and its pending invitations."""

    __slots__ = ("claim", "epoch", "id", "invitations", "joined", "lost", "members", "proven", "recreated",
                 "rejoin_deadline")  # fmt: skip

    def __init__(self, room_id: str, members: list[str], *, joined: bool, epoch: int = 0) -> None:
        self.id = room_id
        self.members = members
        self.invitations: dict[str, Invitation] = {}  # invitee -> its invitation
        #: Someone ever joined (or the room was re-created): it no longer ends when invitations run out.
        self.joined = joined
        #: Part of every member's credential, one more each time a member is removed: a removed member's
        #: credential re-creates nothing (the others get new ones in room-left).
        self.epoch = epoch
        #: Re-created rooms: the epoch each member proved (a newer one removes the members who proved older).
        self.proven: dict[str, int] = {}
        #: Member -> the members that reported their link to it failed or closed (``room-link``).
        self.lost: dict[str, set[str]] = {}
        #: Re-created after a restart: its other members, with their credentials, may rejoin until the deadline.
        self.recreated = False
        self.rejoin_deadline: float | None = None
        #: The client address that re-created it, until a second member rejoins (an unproven claim).
        self.claim: str | None = None
