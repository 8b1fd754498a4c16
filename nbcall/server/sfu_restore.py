"""SFU rooms after a server restart: the room's Janus session claimed again, its members' handles taken up where
they were, from the records the members report (docs/rooms.md, "An SFU room across a restart").

:class:`SfuRestore` is the part of :class:`~nbcall.server.sfu.SfuBridge` that re-establishes a room the server
does not know, which its members re-create by registering with their credentials (see
:class:`~nbcall.server.room_restart.RoomRestart`) and their records (``sfu``). The first member's record names
the room's session: the bridge claims it (Janus kept it for its ``reclaim_session_timeout``, its media flowing
meanwhile) and takes each member up from its record, asking nobody to publish again. Until every member named in
a subscription is back (or the room's grace has passed), subscriptions stay as they are; then feeds of members
that did not come back are kicked and leave the others' subscriptions, and the others are told that they left
(``room-left``). What Janus said while no server listened is lost, so the claim asks it which feeds still
publish: a member whose feed went meanwhile (it hung up) is waited for by nobody. When the session cannot be
claimed (it expired, Janus restarted), the room starts again on a new VideoRoom and its members are told to
publish again (``sfu-restart``); so is a member back without a record that holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .janus import JanusSession, JanusUnreachable, RequestFailed, SessionLost
from .messages import SfuSignal, encode_message
from .room_model import REJOIN_WINDOW, Notices
from .sfu_model import SfuMember, SfuRoom, new_id, record_of, restore_member
from .sfu_record import derive, seal, unseal

__all__ = ["SfuRestore"]

logger = logging.getLogger("nbcall.server.sfu")

#: Seconds between looks at a restored room whose members are not all back.
SETTLE_EVERY = 0.1


class SfuRestore:
    """Mixin of :class:`~nbcall.server.sfu.SfuBridge`: its rooms taken up again after a restart."""

    # The bridge's state and the helpers of its own used here.
    _key: Callable[[], bytes]
    _reports: dict[str, dict[str, dict[str, Any] | None]]
    _handles: dict[int, tuple[SfuRoom, SfuMember, str]]
    _send: Callable[[Notices], None]

    if TYPE_CHECKING:

        @property
        def where(self) -> str: ...
        async def _open(self, room: SfuRoom, claim: int = 0) -> JanusSession: ...
        async def _create(self, room: SfuRoom) -> None: ...
        def _add_member(self, room: SfuRoom, member_id: str) -> None: ...
        def _new_feed(self, room: SfuRoom) -> int: ...
        def _pump(self, room: SfuRoom, member: SfuMember) -> None: ...
        def _say(self, room: SfuRoom, member: SfuMember, msg_type: str, **fields: Any) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def _take_report(self, signal: SfuSignal) -> None:
        """A member rejoined its room with the record ``sfu-restore`` carries (``None``: it had none)."""
        text = (signal.value or {}).get("record")
        record = unseal(self._key(), text, signal.room, signal.member) if text is not None else None
        if text is not None and record is None:
            logger.info(
                "%r's SFU record for room %r does not hold: it publishes again", signal.member, signal.room
            )
        self._reports.setdefault(signal.room, {})[signal.member] = record

    def _new_room(self, room_id: str, said: dict[str, dict[str, Any] | None], grace: float | None) -> SfuRoom:
        """An SFU room this bridge does not know: restored from the first record that names its session, or new."""
        record = next((record for record in said.values() if record is not None), None)
        if record is None:
            return SfuRoom(room_id, self._key())
        try:
            room = SfuRoom(room_id, self._key(), int(record["videoroom"]))
            room.restored, room.control = int(record["session"]), int(record["control"])
        except (KeyError, TypeError, ValueError):
            return SfuRoom(room_id, self._key())
        room.settling = True
        room.created = self._spawn(self._claim(room, REJOIN_WINDOW if grace is None else grace))
        return room

    def _join(self, room: SfuRoom, member_id: str, said: dict[str, dict[str, Any] | None]) -> None:
        """``member_id`` is in ``room`` now: taken up from its record when it came back with one that holds, told
        to publish again when it came back without, a new member otherwise. A member back after the others were
        told who left hears it too; if it was among them, its feed is gone (kicked, or it hung up): it publishes
        again."""
        if member_id in said:
            record = said[member_id]
            announced = room.departed.pop(member_id, None) is not None
            usable = record is not None and room.restored and not announced
            member = restore_member(room, record) if usable and record is not None else None
            if member is not None:
                room.members[member_id] = member
                for handle, role in ((member.publisher, "publisher"), (member.subscriber, "subscriber")):
                    if handle:
                        self._handles[handle] = (room, member, role)
            else:
                self._add_member(room, member_id)
                self._restart(
                    room, room.members[member_id], "its links to the SFU were not kept after the restart"
                )
            for who, why in sorted(room.departed.items()):  # it missed their room-left while away
                self._send([(member_id, encode_message("room-left", room=room.id, id=who, reason=why))])
            return
        self._add_member(room, member_id)

    async def _claim(self, room: SfuRoom, grace: float) -> None:
        """Claim ``room``'s session again; when it is gone, start the room again on a new VideoRoom."""
        started = time.monotonic()
        try:
            room.session = await self._open(room, claim=room.restored)
        except (JanusUnreachable, RequestFailed) as exc:
            logger.warning(
                "could not claim SFU room %r's session on %s after the restart (%s): the room starts again on a "
                "new VideoRoom and its members publish again",
                room.id,
                self.where,
                exc,
            )
            named = set(_named(room))  # who the records said was in the room: each must come back
            await self._start_again(room, f"the SFU session of the room could not be claimed after the server "
                                          f"restart ({exc})")  # fmt: skip
            self._spawn(self._await_named(room, named, started + grace, grace))
            return
        participants = await self._participants(room)
        if participants is not None:
            room.publishing = {feed for feed, publishes in participants.items() if publishes}
        logger.info("claimed SFU room %r's session on %s after the restart", room.id, self.where)
        self._spawn(self._settle(room, started + grace, grace))

    async def _start_again(self, room: SfuRoom, why: str) -> None:
        """``room`` on a new session and VideoRoom: every member publishes again, told why (``sfu-restart``)."""
        old, old_secret = room.janus_id, room.secret
        room.settling, room.restored, room.control = False, 0, 0
        room.janus_id = new_id()
        room.pin, room.secret = (
            derive(room.key, "pin", room.id, room.janus_id),
            derive(room.key, "secret", room.id, room.janus_id),
        )
        for member in room.members.values():
            self._reset(room, member)
            member.token = room.token(member.id)
        room.initial = {member.token for member in room.members.values()}
        await self._create(room)
        if room.session is not None:  # the old VideoRoom, empty now that its session expired, goes too
            try:
                await room.session.message(
                    room.control, {"request": "destroy", "room": old, "secret": old_secret}
                )
            except (RequestFailed, SessionLost, asyncio.TimeoutError):
                pass
        for member in list(room.members.values()):
            self._restart(room, member, why)

    def _restart(self, room: SfuRoom, member: SfuMember, why: str) -> None:
        self._say(room, member, "sfu-restart", reason=f"{why}: publish again")

    async def _await_named(self, room: SfuRoom, named: set[str], deadline: float, grace: float) -> None:
        """The room started again: whoever the records named that is not back by ``deadline`` left."""
        while not room.ended and time.monotonic() < deadline and named - room.members.keys():
            await asyncio.sleep(SETTLE_EVERY)
        why = f"it did not come back within {grace:g} s of the server restart"
        self._depart(room, dict.fromkeys(named - room.members.keys(), why))

    def _depart(self, room: SfuRoom, departed: dict[str, str]) -> None:
        """Tell ``room``'s members that the ``departed`` members left while the server restarted (and why), and
        keep it for those who come back later."""
        if room.ended:
            return
        for who, why in sorted(departed.items()):
            logger.info("%r left SFU room %r: %s", who, room.id, why)
            room.departed[who] = why
            left = encode_message("room-left", room=room.id, id=who, reason=why)
            self._send([(member_id, left) for member_id in room.members])

    async def _settle(self, room: SfuRoom, deadline: float, grace: float) -> None:
        """Once every member named in a restored subscription is back (or gone from Janus, or at ``deadline``),
        subscriptions follow the room again, feeds of members that did not come back are kicked, and the others
        are told that those left."""
        while not room.ended and time.monotonic() < deadline and _awaited(room):
            await asyncio.sleep(SETTLE_EVERY)
        room.settling = False
        if room.ended:
            return
        departed = {who: feed for who, feed in _named(room).items() if who not in room.members}
        await self._sweep(room)
        self._depart(
            room,
            {
                who: "its link to the SFU closed while the server restarted"
                if room.publishing is not None and feed not in room.publishing
                else f"it did not come back within {grace:g} s of the server restart"
                for who, feed in departed.items()
            },
        )
        for member in list(room.members.values()):
            self._record(room, member)
            self._pump(room, member)

    async def _participants(self, room: SfuRoom) -> dict[int, bool] | None:
        """The feeds in ``room``'s VideoRoom, each with whether it publishes (None: Janus did not say)."""
        session = room.session
        if session is None or session.lost is not None:
            return None
        try:
            data, _ = await session.message(
                room.control, {"request": "listparticipants", "room": room.janus_id}
            )
        except (RequestFailed, SessionLost, asyncio.TimeoutError) as exc:
            logger.debug("could not list SFU room %r's participants on %s: %s", room.id, self.where, exc)
            return None
        return {
            participant["id"]: bool(participant.get("publisher"))
            for participant in data.get("participants") or []
            if isinstance(participant, dict) and isinstance(participant.get("id"), int)
        }

    async def _sweep(self, room: SfuRoom) -> None:
        """Kick the participants in ``room``'s VideoRoom that are no member's feed (members that did not come
        back, or came back and published again)."""
        feeds = {member.feed for member in room.members.values() if member.publisher}
        session, participants = room.session, await self._participants(room)
        if session is None or participants is None:
            return
        try:
            for feed in participants.keys() - feeds:
                await session.message(
                    room.control,
                    {"request": "kick", "room": room.janus_id, "secret": room.secret, "id": feed},
                )
        except (RequestFailed, SessionLost, asyncio.TimeoutError) as exc:
            logger.debug("could not sweep SFU room %r on %s: %s", room.id, self.where, exc)

    def _reset(self, room: SfuRoom, member: SfuMember) -> list[int]:
        """``member`` starts again, with no links and a new feed: its handles as they were."""
        handles = [handle for handle in (member.publisher, member.subscriber) if handle]
        for handle in handles:
            self._handles.pop(handle, None)
        if member.answer is not None and not member.answer.done():
            member.answer.cancel()
        member.publisher = member.subscriber = 0
        member.published = member.live = member.ready = False
        member.subscribed, member.streams, member.fingerprint = {}, {}, ""
        member.feed = self._new_feed(room)
        return handles

    def _record(self, room: SfuRoom, member: SfuMember) -> None:
        """Send ``member`` its record (``sfu-record``) when it changed: what it reports after a restart."""
        if room.settling or room.session is None or room.ended:
            return
        text = seal(self._key(), record_of(room, member))
        if text != member.recorded:
            member.recorded = text
            self._say(room, member, "sfu-record", record=text)


def _named(room: SfuRoom) -> dict[str, int]:
    """The members the restored subscriptions in ``room`` name, with their feeds."""
    return {who: feed for member in room.members.values() for feed, (who, _) in member.subscribed.items()}


def _awaited(room: SfuRoom) -> bool:
    """Whether a member some restored subscription names is not back in ``room``, though its feed still
    published in Janus when the session was claimed (or Janus did not say)."""
    return any(
        who not in room.members and (room.publishing is None or feed in room.publishing)
        for who, feed in _named(room).items()
    )
