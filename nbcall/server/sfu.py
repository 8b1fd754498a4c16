"""The SFU bridge: nbcall's SFU rooms on Janus's VideoRoom plugin, driven through Janus's API.

:class:`SfuBridge` is the I/O half of SFU rooms (docs/rooms.md, "Rooms on an SFU"); the rules (who is in which
room, who may signal) stay in :class:`~nbcall.server.rooms.RoomRegistry` and
:class:`~nbcall.server.room_dispatch.RoomDispatch`. The server hands it two instructions from the protocol:
:class:`~nbcall.server.messages.SfuSync` (rooms changed: it brings Janus in line, making a VideoRoom for each new
SFU room, admitting each new member, removing those who left, destroying ended rooms) and
:class:`~nbcall.server.messages.SfuSignal` (a member's offer, answer or candidate). It answers through
``send`` (notices for members) and ``end_room``.

Each room has a Janus session of its own, and in it a private VideoRoom with a pin, a secret and an ``allowed``
list holding one token per member, all made from the room key: only this server (and a server restarted with
the same key) knows them, so only the members it admits join on Janus. For
each member it holds a publisher handle (joined with the pin and the member's token, under a feed ID chosen
here, its nbcall ID as display name) and, once another member's feed is up, one subscriber handle for all the
others' feeds (Janus's multistream), updated as feeds come and go. The Janus room comes from the server's own
records, never from a member's message.

A server with a room key that outlives it leaves its rooms' sessions to Janus when it stops, and Janus keeps them
(with their media) for its ``reclaim_session_timeout``; a restarted server, or the node taking a room over,
claims the session again from the members' signed records (:mod:`~nbcall.server.sfu_record`, taken up by
:class:`~nbcall.server.sfu_restore.SfuRestore`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

from .janus import JanusSession, JanusUnreachable, RequestFailed, SessionLost
from .messages import SfuSignal, encode_message
from .room_model import Notices, is_sfu_room
from .rooms import RoomRegistry
from .sfu_model import SfuMember, SfuRoom, Want, fingerprint_of, new_id, stream_members, streams_of
from .sfu_restore import SfuRestore

__all__ = ["ANSWER_TIMEOUT", "VIDEOROOM", "SfuBridge"]

logger = logging.getLogger("nbcall.server.sfu")

VIDEOROOM = "janus.plugin.videoroom"
#: Seconds a member has to answer an offer of its subscriber link.
ANSWER_TIMEOUT = 30.0


class SfuBridge(SfuRestore):
    """Drives Janus at ``url`` (API secret ``secret``) for the SFU rooms of one server.

    ``room_size``: the rooms' ``max_sfu_room_size`` (the VideoRoom's publisher limit). ``send`` delivers
    notices to members; ``end_room(room, reason)`` ends a room whose SFU failed. ``key()``: the room key, from
    which the rooms' locks are made and with which the members' records are signed; ``keep()``: whether rooms
    outlive this server (its key does), so that :meth:`aclose` leaves them to Janus for a restarted server.
    """

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        room_size: int | None,
        send: Callable[[Notices], None],
        end_room: Callable[[str, str], None],
        key: Callable[[], bytes],
        keep: Callable[[], bool] = lambda: False,
    ) -> None:
        self.url = url
        self._secret = secret
        self.room_size = room_size
        self._send = send
        self._end_room = end_room
        self._key = key
        self._keep = keep
        self._rooms: dict[str, SfuRoom] = {}
        #: Members back after a restart, by room: their records (``None``: none that holds).
        self._reports: dict[str, dict[str, dict[str, Any] | None]] = {}
        self._handles: dict[int, tuple[SfuRoom, SfuMember, str]] = {}  # handle -> its room, member and role
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def where(self) -> str:
        """Janus and its URL for people (no credentials, no query): ``Janus at ws://127.0.0.1:8188``."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        return f"Janus at {urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, '', ''))}"

    def janus_room(self, room_id: str) -> int | None:
        """The number of the VideoRoom of SFU room ``room_id`` (for diagnosis: its pin and tokens stay here)."""
        room = self._rooms.get(room_id)
        return None if room is None else room.janus_id

    def janus_state(self, room_id: str) -> dict[str, Any] | None:
        """Where SFU room ``room_id`` is in Janus (``session``, ``videoroom``, each member's feed in ``feeds``;
        ``settling`` while a restored room waits for its members), for diagnosis: its locks stay here."""
        if (room := self._rooms.get(room_id)) is None:
            return None
        feeds = {member.id: member.feed for member in room.members.values()}
        session = room.session.session_id if room.session is not None else 0
        return {"session": session, "videoroom": room.janus_id, "feeds": feeds, "settling": room.settling}

    def secrets(self) -> list[str]:
        """What must never reach a phone, a log or a trait: the API secret, every room's pin and secret, every
        member's token (for tests that check it)."""
        out = [self._secret] if self._secret else []
        for room in self._rooms.values():
            out += [room.pin, room.secret, *(member.token for member in room.members.values())]
        return out

    def start(self) -> None:
        """Check in the background that Janus answers; one that does not yet is logged (each room tries again)."""
        self._spawn(self._first_connect())

    async def _first_connect(self) -> None:
        try:
            session = await JanusSession.open(self.url, self._secret, lambda *_: None, lambda _: None)
            await session.destroy()
            logger.info("the SFU (%s) answers", self.where)
        except JanusUnreachable as exc:
            logger.warning(
                "the SFU (%s) does not answer: %s; SFU rooms fail until it does (mesh rooms and calls work)",
                self.where,
                exc,
            )

    async def aclose(self) -> None:
        """Stop everything: leave each room's session to Janus when rooms outlive this server (``keep()``), so
        that its media flows on and a restarted server claims it; else destroy the rooms. Idempotent."""
        if self._closed:
            return
        self._closed = True
        keep = self._keep()
        kept = [room.session for room in self._rooms.values() if keep and room.session is not None]
        if not keep:
            for room in list(self._rooms.values()):
                self._drop_room(room)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for task in list(self._tasks):
            task.cancel()
        for session in kept:
            await session.release()
        if kept:
            logger.info(
                "left %d SFU rooms' sessions to %s for a restarted server to claim", len(kept), self.where
            )

    # -- the protocol's instructions ------------------------------------------------------

    def sync(self, rooms: RoomRegistry) -> None:
        """Bring Janus in line with the SFU rooms of ``rooms``: new rooms and members in, departed ones out."""
        wanted = {room_id: rooms.members(room_id) for room_id in rooms.rooms if is_sfu_room(room_id)}
        reports, self._reports = self._reports, {}
        for room in [room for room_id, room in self._rooms.items() if room_id not in wanted]:
            self._drop_room(room)
        for room_id, members in wanted.items():
            said = reports.get(room_id, {})
            known = self._rooms.get(room_id)
            if known is None:
                room = self._rooms[room_id] = self._new_room(room_id, said, rooms.room_grace)
                for member_id in members:
                    self._join(room, member_id, said)
                if not room.restored:
                    room.initial = {member.token for member in room.members.values()}
                    room.created = self._spawn(self._create(room))
                continue
            gone = [member for member_id, member in known.members.items() if member_id not in members]
            for member in gone:
                self._drop_member(known, member)
            for member_id in members:
                if member_id not in known.members:
                    self._join(known, member_id, said)

    def signal(self, signal: SfuSignal) -> None:
        """A member's ``sfu-offer``, ``sfu-answer`` or ``sfu-ice`` (checked by the protocol), or its record after
        a restart (``sfu-restore``)."""
        if signal.kind == "sfu-restore":
            self._take_report(signal)
            return
        room = self._rooms.get(signal.room)
        member = room.members.get(signal.member) if room is not None else None
        if room is None or member is None or room.ended:
            self._error(
                signal.member, signal.kind, f"the SFU room {signal.room!r} is not set up on {self.where}"
            )
            return
        if signal.kind == "sfu-offer":
            assert signal.value is not None
            self._spawn(self._publish(room, member, signal.value))
        elif signal.kind == "sfu-view":
            video = (signal.value or {}).get("video")
            member.view = None if video is None else set(video)
            self._record(room, member)
            self._pump(room, member)
        elif signal.kind == "sfu-answer":
            if member.answer is None or member.answer.done():
                self._error(member.id, signal.kind, "no subscriber offer of the SFU is waiting for an answer")
            else:
                member.answer.set_result(signal.value or {})
        elif signal.role == "publisher" and not member.publisher:
            member.ice.append(signal.value)  # sent once its handle is attached
        else:
            handle = member.publisher if signal.role == "publisher" else member.subscriber
            if handle:
                self._spawn(self._trickle(room, handle, signal.value))

    # -- rooms and members ----------------------------------------------------------------

    async def _open(self, room: SfuRoom, claim: int = 0) -> JanusSession:
        """A session for ``room`` (or the session ``claim``, which had it before a restart), with its control
        handle."""
        session = await JanusSession.open(
            self.url, self._secret, self._event, lambda reason: self._lost(room, reason), claim=claim
        )
        if not room.control:
            try:
                room.control = await session.attach(VIDEOROOM)
            except (RequestFailed, SessionLost, asyncio.TimeoutError) as exc:
                await session.destroy()
                raise JanusUnreachable(f"its VideoRoom plugin did not answer: {exc}") from None
        return session

    def _session_of(self, room: SfuRoom) -> JanusSession:
        session = room.session
        if session is None or session.lost is not None:
            raise SessionLost(session.lost if session is not None else "no session")
        return session

    async def _create(self, room: SfuRoom) -> None:
        try:
            room.session = await self._open(room)
            await room.session.message(
                room.control,
                {
                    "request": "create",
                    "room": room.janus_id,
                    "description": "nbcall",
                    "secret": room.secret,
                    "pin": room.pin,
                    "is_private": True,
                    "publishers": self.room_size or 100,
                    "allowed": sorted(room.initial),
                },
            )
        except (JanusUnreachable, RequestFailed, SessionLost, asyncio.TimeoutError) as exc:
            if not room.ended:
                self._fail(room, f"the SFU ({self.where}) is unavailable: {exc}")
            raise
        if room.ended:  # it ended meanwhile: _destroy waited for this, and destroys it now
            return
        logger.info("SFU room %r is on %s", room.id, self.where)

    def _add_member(self, room: SfuRoom, member_id: str) -> None:
        member = room.members[member_id] = SfuMember(member_id, self._new_feed(room), room.token(member_id))
        if room.created is not None:  # a room made before: its token goes into the allowed list now
            member.admitted = self._spawn(self._admit(room, member))

    def _new_feed(self, room: SfuRoom) -> int:
        feeds = {member.feed for member in room.members.values()}
        feed = new_id()
        while feed in feeds:
            feed = new_id()
        return feed

    async def _admit(self, room: SfuRoom, member: SfuMember) -> None:
        assert room.created is not None
        await room.created
        await self._session_of(room).message(
            room.control,
            {"request": "allowed", "room": room.janus_id, "secret": room.secret, "action": "add",
             "allowed": [member.token]},
        )  # fmt: skip

    def _drop_member(self, room: SfuRoom, member: SfuMember) -> None:
        """``member`` left the room: its handles go (its feed leaves the others' subscriptions), its token too."""
        del room.members[member.id]
        self._forget(member)
        self._spawn(self._detach(room, member, revoke=True))
        for other in room.members.values():
            self._pump(room, other)

    def _drop_room(self, room: SfuRoom) -> None:
        """The room ended: its VideoRoom is destroyed (which ends every member's links to it)."""
        if room.ended:
            return
        room.ended = True
        self._rooms.pop(room.id, None)
        members = list(room.members.values())
        for member in members:
            self._forget(member)
        self._spawn(self._destroy(room, members))

    def _forget(self, member: SfuMember) -> None:
        for handle in (member.publisher, member.subscriber):
            self._handles.pop(handle, None)
        if member.answer is not None and not member.answer.done():
            member.answer.cancel()
        if member.admitted is not None:
            member.admitted.cancel()

    async def _detach(self, room: SfuRoom, member: SfuMember, *, revoke: bool) -> None:
        session = room.session
        if session is None or session.lost is not None:
            return
        try:
            async with member.lock:  # a publish under way finishes first
                for handle in (member.publisher, member.subscriber):
                    if handle:
                        await session.detach(handle)
            if revoke and not room.ended:
                await session.message(
                    room.control,
                    {"request": "allowed", "room": room.janus_id, "secret": room.secret, "action": "remove",
                     "allowed": [member.token]},
                )  # fmt: skip
        except (RequestFailed, SessionLost, asyncio.TimeoutError) as exc:
            logger.debug("could not detach %r's handles from %s: %s", member.id, self.where, exc)

    async def _destroy(self, room: SfuRoom, members: list[SfuMember]) -> None:
        if room.created is None:
            return
        await asyncio.wait([room.created])  # a create under way ends first: never leave its room behind
        session = room.session
        if session is None or session.lost is not None or room.created.exception() is not None:
            return
        try:
            await session.message(
                room.control, {"request": "destroy", "room": room.janus_id, "secret": room.secret}
            )
        except (RequestFailed, SessionLost, asyncio.TimeoutError) as exc:
            logger.debug("could not destroy SFU room %r on %s: %s", room.id, self.where, exc)
        await session.destroy()  # its handles (the members') go with it

    # -- a member's links -------------------------------------------------------------

    async def _publish(self, room: SfuRoom, member: SfuMember, offer: dict[str, Any]) -> None:
        """``member``'s publisher offer: join (the first time) and publish it; its answer goes back."""
        async with member.lock:
            try:
                if room.created is None or room.ended:
                    return
                await room.created
                if member.admitted is not None:
                    await member.admitted
                session = self._session_of(room)
                fingerprint = fingerprint_of(offer.get("sdp", ""))
                if member.publisher and fingerprint != member.fingerprint:
                    self._start_over(room, member)  # a new peer connection (a reload, a restart)
                member.fingerprint = fingerprint
                if not member.publisher:
                    member.publisher = await session.attach(VIDEOROOM)
                    self._handles[member.publisher] = (room, member, "publisher")
                    await session.message(
                        member.publisher,
                        {"request": "join", "ptype": "publisher", "room": room.janus_id, "pin": room.pin,
                         "token": member.token, "id": member.feed, "display": member.id},
                    )  # fmt: skip
                    while member.ice:
                        await session.trickle(member.publisher, member.ice.pop(0))
                request = "configure" if member.published else "publish"
                data, answer = await session.message(member.publisher, {"request": request}, offer)
            except (JanusUnreachable, SessionLost):
                return  # the room ends (see _lost and _create)
            except (RequestFailed, asyncio.TimeoutError) as exc:
                if not room.ended:
                    self._error(member.id, "sfu-offer", f"the SFU ({self.where}) refused the offer: {exc}")
                return
            if answer is None or room.ended or room.members.get(member.id) is not member:
                return
            member.published = True
            streams = {
                str(stream["mid"]): str(stream.get("type"))
                for stream in data.get("streams") or []
                if isinstance(stream, dict) and "mid" in stream and not stream.get("disabled")
            }
            changed, member.streams = streams != member.streams, streams
            sdp = json.dumps({"type": answer.get("type", "answer"), "sdp": answer.get("sdp", "")})
            self._say(room, member, "sfu-answer", role="publisher", sdp=sdp, feed=str(member.feed))
            member.ready = True
            self._record(room, member)
        self._pump(room, member)
        if changed and member.live:  # a renegotiation added or removed tracks: the others take them
            for other in room.members.values():
                if other is not member:
                    self._pump(room, other)

    def _start_over(self, room: SfuRoom, member: SfuMember) -> None:
        """``member`` offers from a new peer connection: its old links go, and it joins again under a new feed."""
        handles = self._reset(room, member)
        for other in room.members.values():
            if other is not member:
                self._pump(room, other)  # its old feed leaves their subscriptions
        for (
            handle
        ) in handles:  # in the background: Janus may take its time over a handle whose link just closed
            self._spawn(self._detach_one(room, handle))

    def _want(self, room: SfuRoom, member: SfuMember) -> dict[int, Want]:
        """The feeds ``member`` should receive: every other member's that is up, each stream of it but the video
        of members outside its view (``sfu-view``)."""
        view = member.view
        out: dict[int, Want] = {}
        for other in room.members.values():
            if other is member or not other.live:
                continue
            video = view is None or other.id in view
            mids = frozenset(mid for mid, kind in other.streams.items() if video or kind != "video")
            if mids:
                out[other.feed] = (other.id, mids)
        return out

    def _pump(self, room: SfuRoom, member: SfuMember) -> None:
        """Start bringing ``member``'s subscription in line with the feeds that are up, unless under way."""
        if (
            room.ended
            or room.settling
            or member.busy
            or not member.ready
            or room.members.get(member.id) is not member
        ):
            return
        want = self._want(room, member)
        if want == member.subscribed or (not member.subscriber and not want):
            return
        member.busy = True
        self._spawn(self._subscribe(room, member, want))

    async def _subscribe(self, room: SfuRoom, member: SfuMember, want: dict[int, Want] | None) -> None:
        """Join or update ``member``'s subscriber handle to ``want`` (``None``: Janus offered by itself); relay
        Janus's offers and the member's answers until none is left."""
        done = False
        try:
            if room.created is not None:
                await room.created
            session = self._session_of(room)
            if want is not None:
                if not member.subscriber:
                    member.subscriber = await session.attach(VIDEOROOM)
                    self._handles[member.subscriber] = (room, member, "subscriber")
                    body: dict[str, Any] = {"request": "join", "ptype": "subscriber", "room": room.janus_id,
                                            "pin": room.pin, "streams": streams_of(want, {})}  # fmt: skip
                else:
                    body = {"request": "update"}
                    if add := streams_of(want, member.subscribed):
                        body["subscribe"] = add
                    if drop := streams_of(member.subscribed, want):
                        body["unsubscribe"] = drop
                data, offer = await session.message(member.subscriber, body)
                member.subscribed = dict(want)
                if offer is None and member.offered is None:  # a data-only change: the link carries it
                    feeds = {str(feed): member_id for feed, (member_id, _) in want.items()}
                    self._say(room, member, "sfu-feeds", feeds=feeds)
                elif offer is not None:
                    member.offered = (data, offer)
            while member.offered is not None:  # Janus's offer (it may make one by itself: a feed left)
                (data, offer), member.offered = member.offered, None
                await self._offer(session, room, member, data, offer)
            done = True
        except (JanusUnreachable, SessionLost):
            return
        except asyncio.TimeoutError:
            if member.answer is not None:
                logger.info(
                    "%r did not answer its SFU subscriber offer within %g s", member.id, ANSWER_TIMEOUT
                )
        except RequestFailed as exc:  # a feed left meanwhile, for example: try again if things changed
            logger.info("%s refused %r's subscription: %s", self.where, member.id, exc)
            done = self._want(room, member) != want
        finally:
            member.busy = False
            member.answer = None
        if done:
            self._record(room, member)
            self._pump(room, member)

    async def _offer(
        self,
        session: JanusSession,
        room: SfuRoom,
        member: SfuMember,
        data: dict[str, Any],
        offer: dict[str, Any],
    ) -> None:
        """Send ``member`` Janus's subscriber ``offer``; start its link with the answer."""
        want = member.subscribed
        feeds = {str(feed): member_id for feed, (member_id, _) in want.items()}
        member.answer = asyncio.get_running_loop().create_future()
        sdp = json.dumps({"type": offer.get("type", "offer"), "sdp": offer.get("sdp", "")})
        self._say(
            room,
            member,
            "sfu-offer",
            role="subscriber",
            sdp=sdp,
            feeds=feeds,
            streams=stream_members(data, want),
        )
        answer = await asyncio.wait_for(member.answer, ANSWER_TIMEOUT)
        member.answer = None
        await session.message(member.subscriber, {"request": "start"}, answer)

    async def _trickle(self, room: SfuRoom, handle: int, candidate: dict[str, Any] | None) -> None:
        session = room.session
        if session is None:
            return
        try:
            await session.trickle(handle, candidate)
        except (RequestFailed, SessionLost, asyncio.TimeoutError) as exc:
            logger.debug("a candidate was not passed to %s: %s", self.where, exc)

    # -- Janus's events ---------------------------------------------------------------

    def _event(self, handle: int, event: dict[str, Any]) -> None:
        """An event of one of the members' handles (the session's own events end at :meth:`_lost`)."""
        entry = self._handles.get(handle)
        if entry is None:
            return
        room, member, role = entry
        kind = event.get("janus")
        if role == "publisher" and kind in ("webrtcup", "hangup"):
            # Its feed is up (the others may subscribe to it) or gone (its link to Janus closed).
            member.live = kind == "webrtcup"
            if kind == "hangup":
                member.published = False
            self._record(room, member)
            for other in room.members.values():
                if other is not member:
                    self._pump(room, other)
        elif role == "subscriber" and event.get("jsep") is not None:
            # An offer Janus made by itself (a feed's streams went away): relayed like the others.
            member.offered = (event.get("plugindata", {}).get("data", {}), event["jsep"])
            if not member.busy and not room.ended:
                member.busy = True
                self._spawn(self._subscribe(room, member, None))
        elif role == "subscriber" and kind == "hangup":
            # Its receiving link closed: a new one is offered at the next change of feeds.
            self._handles.pop(handle, None)
            member.subscriber, member.subscribed = 0, {}
            self._record(room, member)
            self._spawn(self._detach_one(room, handle))

    async def _detach_one(self, room: SfuRoom, handle: int) -> None:
        session = room.session
        if session is not None and session.lost is None:
            try:
                await session.detach(handle)
            except (SessionLost, asyncio.TimeoutError):
                pass

    def _lost(self, room: SfuRoom, reason: str) -> None:
        """``room``'s Janus session is gone (Janus stopped or restarted): the room ends, saying so."""
        if self._closed or room.ended:
            return
        logger.warning("lost the SFU (%s) of room %r: %s; the room ends", self.where, room.id, reason)
        self._fail(room, f"the SFU ({self.where}) stopped or restarted ({reason})", error=False)

    # -- telling members ----------------------------------------------------------------

    def _fail(self, room: SfuRoom, why: str, *, error: bool = True) -> None:
        """``room`` cannot go on: an ``error`` (``sfu-unavailable``) to each member, then ``room-ended``."""
        if room.ended:
            return
        if error:
            text = encode_message(
                "error", code="sfu-unavailable", message=f"{why}; the room ended", room=room.id,
                in_reply_to="room-invite",
            )  # fmt: skip
            self._send([(member_id, text) for member_id in room.members])
        self._end_room(room.id, why)
        self._drop_room(room)  # in case the registry no longer had it

    def _say(self, room: SfuRoom, member: SfuMember, msg_type: str, **fields: Any) -> None:
        if not room.ended and room.members.get(member.id) is member:
            self._send([(member.id, encode_message(msg_type, room=room.id, **fields))])

    def _error(self, member_id: str, in_reply_to: str, message: str) -> None:
        text = encode_message("error", code="sfu-unavailable", message=message, in_reply_to=in_reply_to)
        self._send([(member_id, text)])

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(_done)
        task.add_done_callback(self._tasks.discard)
        return task


def _done(task: asyncio.Task[Any]) -> None:
    """Log what a background task raised that nobody awaited (a bug: the expected failures are handled)."""
    expected = (JanusUnreachable, RequestFailed, SessionLost, asyncio.TimeoutError)
    if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(exc, expected):
        logger.error("error in the SFU bridge", exc_info=exc)
