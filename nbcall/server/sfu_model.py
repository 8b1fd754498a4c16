"""An SFU room as :class:`~nbcall.server.sfu.SfuBridge` keeps it: its Janus session, its VideoRoom's locks, its
members' handles and subscriptions, the stream lists of VideoRoom's requests, and each member's record of them
(:mod:`~nbcall.server.sfu_record`). No I/O here, only the data.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from .sfu_record import derive

if TYPE_CHECKING:
    from .janus import JanusSession

__all__ = [
    "SfuMember",
    "SfuRoom",
    "Want",
    "fingerprint_of",
    "new_id",
    "record_of",
    "restore_member",
    "stream_members",
    "streams_of",
]

#: A feed as a subscriber takes it: its member, and the mids of the publisher's streams it takes.
Want = tuple[str, frozenset[str]]


class SfuMember:
    """One member's part of an SFU room: its token, its feed, its handles and its subscription."""

    __slots__ = (
        "admitted",
        "answer",
        "busy",
        "feed",
        "fingerprint",
        "ice",
        "id",
        "live",
        "lock",
        "offered",
        "published",
        "publisher",
        "ready",
        "recorded",
        "streams",
        "subscribed",
        "subscriber",
        "token",
        "view",
    )  # fmt: skip

    def __init__(self, member_id: str, feed: int, token: str) -> None:
        self.id = member_id
        self.token = token  # in the room's allowed list: only this server holds it (made from the room key)
        self.feed = feed
        self.fingerprint = ""  # its publisher offer's DTLS fingerprint: another one is a new peer connection
        self.admitted: asyncio.Task[None] | None = None  # its token added to the room's allowed list
        self.publisher = 0  # handle IDs, 0 until attached
        self.subscriber = 0
        self.published = False  # its offer was published (the next one is a renegotiation)
        self.live = False  # its publisher's peer connection is up: others may subscribe to its feed
        self.ready = False  # it got its publisher answer: it may be offered a subscriber link
        self.streams: dict[str, str] = {}  # its publisher's active streams: mid -> "data", "audio" or "video"
        self.view: set[str] | None = None  # the members whose video it takes (None: all)
        self.subscribed: dict[int, Want] = {}  # feeds in its subscription -> their members and mids
        self.busy = False  # a subscription change is under way
        self.answer: asyncio.Future[dict[str, Any]] | None = None  # its answer to the offer it was sent
        self.offered: tuple[dict[str, Any], dict[str, Any]] | None = (
            None  # Janus's offer not sent yet, its data
        )
        self.lock = asyncio.Lock()  # its publisher offers, one at a time
        self.ice: list[dict[str, Any] | None] = []  # publisher candidates sent before its handle was attached
        self.recorded = ""  # the last record sent to it (sfu-record)


class SfuRoom:
    """An SFU room's Janus session and VideoRoom: its number, pin and secret (made from the room key, never sent to
    a member), and its members."""

    __slots__ = (
        "control",
        "created",
        "departed",
        "ended",
        "id",
        "initial",
        "janus_id",
        "key",
        "members",
        "pin",
        "publishing",
        "restored",
        "secret",
        "session",
        "settling",
    )  # fmt: skip

    def __init__(self, room_id: str, key: bytes, janus_id: int = 0) -> None:
        self.id = room_id
        self.key = key
        self.janus_id = janus_id or new_id()
        self.pin = derive(key, "pin", room_id, self.janus_id)
        self.secret = derive(key, "secret", room_id, self.janus_id)
        self.members: dict[str, SfuMember] = {}
        self.initial: set[str] = set()  # tokens in the create request's allowed list
        self.session: JanusSession | None = None  # the room's own session: the room lives as long as it does
        self.control = 0  # the session's handle that creates, edits and destroys the VideoRoom
        self.created: asyncio.Task[None] | None = None  # made, or claimed after a restart
        self.restored = 0  # the session ID a restart claims (0: a new room)
        self.settling = False  # restored, waiting for its members' records: subscriptions stay as they are
        #: Restored: the feeds that still published when the session was claimed (None: Janus did not say).
        self.publishing: set[int] | None = None
        #: Members announced gone after a restart (``room-left``), with why: told to those who come back later.
        self.departed: dict[str, str] = {}
        self.ended = False

    def token(self, member_id: str) -> str:
        """``member_id``'s token in the VideoRoom's ``allowed`` list."""
        return derive(self.key, "token", self.id, self.janus_id, member_id)


def fingerprint_of(sdp: str) -> str:
    """An SDP's first DTLS fingerprint line: each peer connection has its own."""
    return next((line for line in sdp.splitlines() if line.startswith("a=fingerprint:")), "")


def new_id() -> int:
    """A random number for a VideoRoom or a feed (Janus takes up to 2**53)."""
    return secrets.randbelow(2**52) + 1


def record_of(room: SfuRoom, member: SfuMember) -> dict[str, Any]:
    """What ``member`` reports after a restart (:mod:`~nbcall.server.sfu_record`): its room's session and
    VideoRoom, its handles, streams, subscription and ``sfu-view``."""
    assert room.session is not None
    return {
        "room": room.id,
        "member": member.id,
        "session": room.session.session_id,
        "videoroom": room.janus_id,
        "control": room.control,
        "feed": member.feed,
        "publisher": member.publisher,
        "subscriber": member.subscriber,
        "fingerprint": member.fingerprint,
        "streams": member.streams,
        "subscribed": [[feed, who, sorted(mids)] for feed, (who, mids) in member.subscribed.items()],
        "live": member.live,
        "ready": member.ready,
        "view": None if member.view is None else sorted(member.view),
    }


def restore_member(room: SfuRoom, record: dict[str, Any]) -> SfuMember | None:
    """The member ``record`` describes, as it was before the restart; ``None`` when the record is not of this
    room's session and VideoRoom (or is malformed: records are signed, so only a bug makes one)."""
    if record.get("session") != room.restored or record.get("videoroom") != room.janus_id:
        return None
    try:
        member = SfuMember(str(record["member"]), int(record["feed"]), room.token(str(record["member"])))
        member.publisher, member.subscriber = int(record["publisher"]), int(record["subscriber"])
        member.fingerprint = str(record["fingerprint"])
        member.streams = {str(mid): str(kind) for mid, kind in dict(record["streams"]).items()}
        member.subscribed = {
            int(feed): (str(who), frozenset(map(str, mids))) for feed, who, mids in record["subscribed"]
        }
        member.published = member.publisher != 0
        member.live, member.ready = bool(record["live"]), bool(record["ready"])
        view = record.get("view")
        member.view = None if view is None else {str(who) for who in view}
    except (KeyError, TypeError, ValueError):
        return None
    return member


def streams_of(these: dict[int, Want], but: dict[int, Want]) -> list[dict[str, Any]]:
    """The streams of ``these`` feeds not in ``but``, as VideoRoom's ``subscribe``/``unsubscribe`` list them: a
    whole feed when ``but`` has none of it, else each stream by its publisher's mid."""
    out: list[dict[str, Any]] = []
    for feed, (_, mids) in these.items():
        if feed not in but:
            out.extend({"feed": feed, "mid": mid} for mid in sorted(mids))
        else:
            out.extend({"feed": feed, "mid": mid} for mid in sorted(mids - but[feed][1]))
    return out


def stream_members(data: dict[str, Any], want: dict[int, Want]) -> list[dict[str, Any]]:
    """The media streams of a subscriber offer: each ``mid``, its kind, and the member whose feed it carries."""
    out = []
    for stream in data.get("streams") or []:
        if not isinstance(stream, dict) or "mid" not in stream:
            continue
        entry: dict[str, Any] = {"mid": str(stream["mid"]), "type": stream.get("type")}
        feed = stream.get("feed_id")
        if isinstance(feed, int) and feed in want:
            entry["feed"] = str(feed)
            entry["member"] = want[feed][0]
        out.append(entry)
    return out
