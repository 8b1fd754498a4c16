"""Rooms without I/O: who is in which room, who is invited, and what to tell whom.

:class:`RoomRegistry` keeps the rooms of docs/rooms.md by peer ID and enforces their rules.
Each method takes already-parsed values, raises a :class:`~nbcall.exceptions.RoomError` when a
rule refuses the request (nothing changes then), and returns the notices to send as
``(peer ID, JSON text)`` pairs. :class:`nbcall.server.protocol.SignalingProtocol` parses the messages,
checks what only it knows (who is online, who registered with ``"rooms": true``) and turns the
IDs into connections, dropping notices for phones that are offline or never asked for rooms.

Time enters only through :meth:`RoomRegistry.tick`: an invitation's ``invitation_ttl`` and a
departed member's ``room_grace`` start at the first tick after the invitation was made or the
connection was lost, so with a tick about once a second they end up to a second late, never early.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable

from ..exceptions import (
    AlreadyAMember,
    AlreadyInvited,
    InAnotherRoom,
    InvitationExpired,
    NotAMember,
    NotInvited,
    RoomFull,
)
from .limits import DEFAULT_LIMITS

__all__ = ["ROOM_ID_PREFIX", "Notices", "Room", "RoomRegistry", "new_room_id"]

ROOM_ID_PREFIX = "r-"

#: What a :class:`RoomRegistry` method returns: ``(peer ID, JSON text)`` pairs to send, in order.
Notices = list[tuple[str, str]]

_NEVER = float("inf")


def new_room_id() -> str:
    """A room ID nobody can guess: ``r-`` and 96 random bits in URL-safe base64 (18 characters)."""
    return ROOM_ID_PREFIX + secrets.token_urlsafe(12)


class Invitation:
    """A pending invitation: who sent it, whether it links an existing 1:1 call, when it expires."""

    __slots__ = ("deadline", "inviter", "link")

    def __init__(self, inviter: str, link: bool) -> None:
        self.inviter = inviter
        self.link = link
        self.deadline: float | None = None  # stamped at the next tick


class Room:
    """One room: its members in the order they joined and its pending invitations."""

    __slots__ = ("expected", "expected_deadline", "id", "invitations", "joined", "lost", "members")

    def __init__(self, room_id: str, members: list[str], *, joined: bool) -> None:
        self.id = room_id
        self.members = members
        self.invitations: dict[str, Invitation] = {}  # invitee -> its invitation
        #: Someone ever joined (or the room was re-created): it no longer ends when invitations run out.
        self.joined = joined
        #: Member -> the members that reported their link to it failed or closed (``room-link``).
        self.lost: dict[str, set[str]] = {}
        #: After a server restart: IDs the reporting members named, who may still re-register into it.
        self.expected: set[str] = set()
        self.expected_deadline: float | None = None


class RoomRegistry:
    """The rooms of one server and their rules, by peer ID; limits as in :class:`nbcall.server.limits.Limits`.

    ``new_id`` makes room IDs (tests may pass their own).
    """

    def __init__(
        self,
        *,
        max_room_size: int | None = DEFAULT_LIMITS.max_room_size,
        invitation_ttl: float | None = DEFAULT_LIMITS.invitation_ttl,
        room_grace: float | None = DEFAULT_LIMITS.room_grace,
        new_id: Callable[[], str] = new_room_id,
    ) -> None:
        if max_room_size is not None and max_room_size < 2:
            raise ValueError(f"max_room_size must be at least 2 or None, got {max_room_size!r}")
        for name, value in (("invitation_ttl", invitation_ttl), ("room_grace", room_grace)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None (no limit), got {value!r}")
        self.max_room_size = max_room_size
        self.invitation_ttl = invitation_ttl
        self.room_grace = room_grace
        self._new_id = new_id
        self._rooms: dict[str, Room] = {}
        self._room_of: dict[str, str] = {}  # member ID -> its room's ID
        self._invited_to: dict[str, dict[str, None]] = {}  # invitee ID -> IDs of rooms inviting it
        self._away: dict[str, float | None] = {}  # member whose connection is gone -> end of its grace
        self._expired: dict[tuple[str, str], float | None] = {}  # (invitee, room) expired -> when to forget
        #: When a list (a cluster node), ``(room ID, True)`` for each room made and ``(room ID, False)`` for each
        #: room ended, for the protocol to drain: the deployment's registry maps each room to its node.
        self.changes: list[tuple[str, bool]] | None = None

    # -- what the protocol asks ---------------------------------------------

    @property
    def active(self) -> bool:
        """Whether there is anything to do: a room, or an expired invitation still remembered."""
        return bool(self._rooms or self._expired)

    def room_of(self, peer_id: str) -> str | None:
        """The ID of the room ``peer_id`` is a member of, or ``None``."""
        return self._room_of.get(peer_id)

    def members(self, room_id: str) -> list[str]:
        """The members of ``room_id`` in the order they joined (empty for no such room)."""
        room = self._rooms.get(room_id)
        return [] if room is None else list(room.members)

    def invitees(self, room_id: str) -> list[str]:
        """The IDs with a pending invitation to ``room_id``."""
        room = self._rooms.get(room_id)
        return [] if room is None else list(room.invitations)

    @property
    def rooms(self) -> list[str]:
        """The IDs of every room, oldest first."""
        return list(self._rooms)

    def has(self, room_id: str) -> bool:
        """Whether ``room_id`` is a room of this registry."""
        return room_id in self._rooms

    def involves(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is a member of a room here or has an invitation to one."""
        return peer_id in self._room_of or peer_id in self._invited_to

    def is_away(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is a member whose connection is gone (within its grace)."""
        return peer_id in self._away

    # -- messages -------------------------------------------------------------

    def invite(self, sender: str, to: str, *, link: bool = False) -> Notices:
        """``sender`` invites ``to`` (online, with rooms, not ``sender``) into its room, or a new one."""
        room_id = self._room_of.get(sender)
        room = None if room_id is None else self._rooms[room_id]
        theirs = self._room_of.get(to)
        if room is not None and theirs == room.id:
            raise AlreadyAMember(f"{to!r} is already a member of room {room.id!r}", in_reply_to="room-invite")
        if theirs is not None:
            # The other room's ID is a credential: never name it to a non-member.
            raise InAnotherRoom(
                f"{to!r} is a member of another room; it must leave that room before it can be invited",
                in_reply_to="room-invite",
            )
        if room is not None and to in room.invitations:
            raise AlreadyInvited(
                f"{to!r} already has an invitation to room {room.id!r}; wait for its answer"
                + ("" if self.invitation_ttl is None else f" (invitations last {self.invitation_ttl:g} s)"),
                in_reply_to="room-invite",
            )
        if room is not None and self.max_room_size is not None:
            taken = len(room.members) + len(room.invitations)
            if taken + 1 > self.max_room_size:
                raise RoomFull(
                    f"room {room.id!r} is full: {len(room.members)} members and {len(room.invitations)} "
                    f"pending invitations, the limit is max_room_size={self.max_room_size}; wait for an "
                    "invitation to be answered or a member to leave",
                    in_reply_to="room-invite",
                )
        out: Notices = []
        if room is None:
            room = Room(self._new_id(), [sender], joined=False)
            self._rooms[room.id] = room
            self._changed(room.id, True)
            self._room_of[sender] = room.id
            out.append((sender, _message("room-state", room=room.id, members=room.members)))
        room.invitations[to] = Invitation(sender, link)
        self._invited_to.setdefault(to, {})[room.id] = None
        self._expired.pop((to, room.id), None)
        fields = {"link": True} if link else {}
        out.append(
            (
                to,
                _message("room-invitation", room=room.id, members=room.members, **fields, **{"from": sender}),
            )
        )
        return out

    def accept(self, sender: str, room_id: str) -> Notices:
        """``sender`` accepts its invitation into ``room_id``: it becomes the room's last member."""
        room = self._rooms.get(room_id)
        if room is None or sender not in room.invitations:
            if (sender, room_id) in self._expired:
                raise InvitationExpired(self._expired_text(room_id), in_reply_to="room-accept")
            raise NotInvited(
                f"you have no invitation to room {room_id!r}; only a phone invited by a member may accept",
                in_reply_to="room-accept",
            )
        mine = self._room_of.get(sender)
        if mine is not None:
            raise InAnotherRoom(
                f"you are a member of room {mine!r}; send room-leave for it before accepting room {room_id!r}",
                in_reply_to="room-accept",
            )
        if self.max_room_size is not None and len(room.members) >= self.max_room_size:
            raise RoomFull(
                f"room {room_id!r} is full: {len(room.members)} members, the limit is "
                f"max_room_size={self.max_room_size}; ask a member to invite you again later",
                in_reply_to="room-accept",
            )
        self._drop_invitation(room, sender)
        room.members.append(sender)
        room.joined = True
        self._room_of[sender] = room_id
        out: Notices = [(sender, _message("room-state", room=room_id, members=room.members))]
        joined = _message("room-joined", room=room_id, id=sender)
        out.extend((member, joined) for member in room.members if member != sender)
        return out

    def decline(self, sender: str, room_id: str, reason: str | None) -> Notices:
        """``sender`` refuses its invitation into ``room_id``: the inviter gets ``room-declined``."""
        room = self._rooms.get(room_id)
        invitation = None if room is None else room.invitations.get(sender)
        if room is None or invitation is None:
            expired = (sender, room_id) in self._expired
            raise NotInvited(
                self._expired_text(room_id)
                if expired
                else f"you have no invitation to room {room_id!r} to decline",
                in_reply_to="room-decline",
            )
        self._drop_invitation(room, sender)
        out: Notices = [
            (
                invitation.inviter,
                _message("room-declined", room=room_id, id=sender, reason=reason or "declined"),
            )
        ]
        out.extend(self._end_if_nobody_joined(room))
        return out

    def leave(self, sender: str, room_id: str, reason: str | None) -> Notices:
        """``sender`` leaves ``room_id``: the others get ``room-left``; the last one out ends the room."""
        room = self._member_room(sender, room_id, "room-leave")
        return self._remove(room, sender, reason or "left the room")

    def report_link(self, sender: str, room_id: str, peer: str) -> Notices:
        """``sender`` lost its link to ``peer``; once every other member has, ``peer`` is removed."""
        room = self._member_room(sender, room_id, "room-link")
        if peer not in room.members:
            raise NotAMember(f"{peer!r} is not a member of room {room_id!r}", in_reply_to="room-link")
        room.lost.setdefault(peer, set()).add(sender)
        return self._sweep_links(room)

    def check_relay(self, sender: str, to: str, room_id: str, msg_type: str) -> None:
        """Raise :class:`NotAMember` unless ``sender`` and ``to`` are both members of ``room_id``."""
        room_of = self._room_of
        if room_of.get(sender) != room_id:
            raise NotAMember(
                f"you are not a member of room {room_id!r}; send {msg_type!r} only to members of your "
                "room, or without 'room' for a 1:1 call",
                in_reply_to=msg_type,
            )
        if room_of.get(to) != room_id:
            raise NotAMember(
                f"{to!r} is not a member of room {room_id!r}; members: {', '.join(self._rooms[room_id].members)}",
                in_reply_to=msg_type,
            )

    def rejoin(self, sender: str, room_id: str, members: Iterable[str]) -> Notices:
        """``sender`` registered saying it is a member of ``room_id`` with ``members`` (see docs/rooms.md).

        A member (back within its grace) gets ``room-state`` with ``rejoined``; a room the server
        does not know (it restarted) is re-created with ``sender``, and the others it names may
        re-register into it until ``room_grace`` has passed, each announced with ``room-joined``.
        """
        mine = self._room_of.get(sender)
        if mine is not None and mine != room_id:
            raise InAnotherRoom(
                f"you are a member of room {mine!r}, not {room_id!r}; send room-leave for it first",
                in_reply_to="register",
            )
        self._away.pop(sender, None)
        room = self._rooms.get(room_id)
        if room is None:
            room = Room(room_id, [sender], joined=True)
            room.expected = {member for member in members if member != sender}
            self._rooms[room_id] = room
            self._changed(room_id, True)
            self._room_of[sender] = room_id
            return [(sender, _message("room-state", room=room_id, members=room.members, rejoined=True))]
        if sender in room.members:  # never left: nothing changes for the others
            return [(sender, _message("room-state", room=room_id, members=room.members, rejoined=True))]
        if sender not in room.expected:
            raise NotAMember(
                f"room {room_id!r} went on without you (its members: {', '.join(room.members)}); "
                "ask one of them to invite you again",
                in_reply_to="register",
            )
        if self.max_room_size is not None and len(room.members) >= self.max_room_size:
            raise RoomFull(
                f"room {room_id!r} is full again: {len(room.members)} members re-registered into it, the limit "
                f"is max_room_size={self.max_room_size}",
                in_reply_to="register",
            )
        room.expected.discard(sender)
        room.expected.update(member for member in members if member not in room.members and member != sender)
        if sender in room.invitations:
            self._drop_invitation(room, sender)
        room.members.append(sender)
        self._room_of[sender] = room_id
        out: Notices = [(sender, _message("room-state", room=room_id, members=room.members, rejoined=True))]
        joined = _message("room-joined", room=room_id, id=sender)
        out.extend((member, joined) for member in room.members if member != sender)
        return out

    # -- connections --------------------------------------------------------

    def went_away(self, peer_id: str) -> Notices:
        """``peer_id``'s connection is gone: its invitations are declined, its grace as a member starts."""
        out: Notices = []
        invited_to = self._invited_to.pop(peer_id, None)
        if invited_to:
            for room_id in invited_to:
                room = self._rooms[room_id]
                invitation = room.invitations.pop(peer_id)
                declined = _message(
                    "room-declined", room=room_id, id=peer_id, reason="it went offline before answering"
                )
                out.append((invitation.inviter, declined))
                out.extend(self._end_if_nobody_joined(room))
        if self._expired:
            for key in [key for key in self._expired if key[0] == peer_id]:
                del self._expired[key]
        if peer_id in self._room_of:
            self._away[peer_id] = None  # the grace starts at the next tick
        return out

    def came_back(self, peer_id: str) -> None:
        """``peer_id`` reclaimed its ID within its grace: it stays a member."""
        self._away.pop(peer_id, None)

    def remove(self, peer_id: str, reason: str) -> Notices:
        """Remove ``peer_id`` from its room now (if any), telling the others why."""
        room_id = self._room_of.get(peer_id)
        if room_id is None:
            return []
        return self._remove(self._rooms[room_id], peer_id, reason)

    def tick(self, now: float) -> tuple[Notices, list[str]]:
        """Expire what is due at ``now`` (seconds, any monotonic clock; call about once a second).

        Returns the notices (``room-declined`` and ``room-cancelled`` for expired invitations,
        ``room-ended``, ``room-left`` for members past their grace) and the IDs of the members
        removed for being away too long.
        """
        out: Notices = []
        removed: list[str] = []
        ttl, grace = self.invitation_ttl, self.room_grace
        for room in list(self._rooms.values()):
            if ttl is not None and room.invitations:
                for invitee, invitation in list(room.invitations.items()):
                    if invitation.deadline is None:
                        invitation.deadline = now + ttl
                    elif invitation.deadline <= now:
                        out.extend(self._expire(room, invitee, invitation, now))
            if room.expected and grace is not None:
                if room.expected_deadline is None:
                    room.expected_deadline = now + grace
                elif room.expected_deadline <= now:
                    room.expected.clear()
        if self._expired:
            for key, forget_at in list(self._expired.items()):
                if forget_at is None:
                    self._expired[key] = now + (ttl or 0)
                elif forget_at <= now:
                    del self._expired[key]
        if self._away and grace is not None:
            for peer_id, deadline in list(self._away.items()):
                if deadline is None:
                    self._away[peer_id] = now + grace
                elif deadline <= now and peer_id in self._away:
                    removed.append(peer_id)
                    out.extend(
                        self.remove(peer_id, f"its signaling connection was gone longer than {grace:g} s")
                    )
        return out, removed

    # -- internals ----------------------------------------------------------

    def _member_room(self, sender: str, room_id: str, msg_type: str) -> Room:
        if self._room_of.get(sender) != room_id:
            mine = self._room_of.get(sender)
            raise NotAMember(
                f"you are not a member of room {room_id!r}"
                + (f"; your room is {mine!r}" if mine is not None else "; you are in no room"),
                in_reply_to=msg_type,
            )
        return self._rooms[room_id]

    def _expired_text(self, room_id: str) -> str:
        ttl = "" if self.invitation_ttl is None else f" (invitations last {self.invitation_ttl:g} s)"
        return f"your invitation to room {room_id!r} expired{ttl}; ask a member to invite you again"

    def _drop_invitation(self, room: Room, invitee: str) -> Invitation:
        invitation = room.invitations.pop(invitee)
        rooms = self._invited_to.get(invitee)
        if rooms is not None:
            rooms.pop(room.id, None)
            if not rooms:
                del self._invited_to[invitee]
        return invitation

    def _expire(self, room: Room, invitee: str, invitation: Invitation, now: float) -> Notices:
        self._drop_invitation(room, invitee)
        self._expired[(invitee, room.id)] = None  # remembered for one more ttl (see accept)
        reason = "the invitation expired"
        out: Notices = [
            (invitation.inviter, _message("room-declined", room=room.id, id=invitee, reason=reason)),
            (
                invitee,
                _message("room-cancelled", room=room.id, reason=reason, **{"from": invitation.inviter}),
            ),
        ]
        out.extend(self._end_if_nobody_joined(room))
        return out

    def _end_if_nobody_joined(self, room: Room) -> Notices:
        """A new room whose every invitation was declined or expired ends (``room-ended`` to its creator)."""
        if room.joined or room.invitations or len(room.members) != 1:
            return []
        creator = room.members[0]
        self._delete(room)
        reason = "nobody joined: every invitation was declined or expired"
        return [(creator, _message("room-ended", room=room.id, reason=reason))]

    def _remove(self, room: Room, peer_id: str, reason: str) -> Notices:
        room.members.remove(peer_id)
        del self._room_of[peer_id]
        self._away.pop(peer_id, None)
        room.lost.pop(peer_id, None)
        for reporters in room.lost.values():
            reporters.discard(peer_id)
        left = _message("room-left", room=room.id, id=peer_id, reason=reason)
        out: Notices = [(member, left) for member in room.members]
        if not room.members:
            out.extend(self._cancel_invitations(room, "the room ended: its last member left"))
            self._delete(room)
        else:
            out.extend(self._sweep_links(room))
        return out

    def _sweep_links(self, room: Room) -> Notices:
        """Remove each member every other member reported lost (``room-link``)."""
        out: Notices = []
        for peer_id, reporters in list(room.lost.items()):
            if peer_id not in room.members:
                continue
            others = [member for member in room.members if member != peer_id]
            if others and reporters.issuperset(others):
                reason = "every other member lost its connection to it"
                # The removed phone hears it too: its signaling may be alive while its links are not.
                out.append((peer_id, _message("room-left", room=room.id, id=peer_id, reason=reason)))
                out.extend(self._remove(room, peer_id, reason))
                break  # _remove swept what is left
        return out

    def _cancel_invitations(self, room: Room, reason: str) -> Notices:
        out: Notices = []
        for invitee in list(room.invitations):
            invitation = self._drop_invitation(room, invitee)
            out.append(
                (
                    invitee,
                    _message("room-cancelled", room=room.id, reason=reason, **{"from": invitation.inviter}),
                )
            )
        return out

    def _delete(self, room: Room) -> None:
        for invitee in list(room.invitations):
            self._drop_invitation(room, invitee)
        for member in room.members:
            self._room_of.pop(member, None)
            self._away.pop(member, None)
        room.members.clear()
        # Expired invitations stay remembered (accept says invitation-expired) until tick forgets them.
        if self._rooms.pop(room.id, None) is not None:
            self._changed(room.id, False)

    def _changed(self, room_id: str, made: bool) -> None:
        if self.changes is not None:
            self.changes.append((room_id, made))


def _message(msg_type: str, /, **fields: object) -> str:
    # protocol.encode_message's twin: the protocol imports this module, not the other way round.
    return json.dumps({"type": msg_type, **fields}, separators=(",", ":"), allow_nan=False)
