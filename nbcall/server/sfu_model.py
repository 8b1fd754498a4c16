"""An SFU room as :class:`~nbcall.server.sfu.SfuBridge` keeps it: its VideoRoom's locks, its members' handles and
subscriptions, and the stream lists of VideoRoom's requests. No I/O here, only the data.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

__all__ = ["SfuMember", "SfuRoom", "Want", "stream_members", "streams_of"]

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
        "streams",
        "subscribed",
        "subscriber",
        "token",
        "view",
    )  # fmt: skip

    def __init__(self, member_id: str, feed: int) -> None:
        self.id = member_id
        self.token = secrets.token_urlsafe(18)  # in the room's allowed list: only this server holds it
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


class SfuRoom:
    """An SFU room's VideoRoom: its number, pin and secret (never sent to a member), and its members."""

    __slots__ = ("created", "ended", "id", "initial", "janus_id", "members", "pin", "secret")

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.janus_id = secrets.randbelow(2**52) + 1
        self.pin = secrets.token_urlsafe(18)
        self.secret = secrets.token_urlsafe(18)
        self.members: dict[str, SfuMember] = {}
        self.initial: set[str] = set()  # tokens in the create request's allowed list
        self.created: asyncio.Task[None] | None = None
        self.ended = False


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
