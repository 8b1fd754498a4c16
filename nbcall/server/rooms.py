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

Each member gets a room credential in its ``room-state`` (:func:`room_credential`: an HMAC of the room,
the member and the room's epoch under the server's key). After a restart only a phone presenting one
re-creates or rejoins a room, so a room's ID alone (every invitee learns it) lets nobody in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

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
from .messages import encode_message as notice  # a room's notices are signaling messages
from .messages import shorten
from .room_model import (
    MAX_ENDED,
    REJOIN_WINDOW,
    Invitation,
    Notices,
    Room,
    is_sfu_room,
    new_room_id,
    proven_epoch,
    room_credential,
    sfu_room_id,
)
from .room_restart import RoomRestart

__all__ = ["RoomRegistry"]


class RoomRegistry(RoomRestart):
    """The rooms of one server and their rules, by peer ID; limits as in :class:`nbcall.server.limits.Limits`.

    ``key`` signs the members' room credentials; without one a random key is made, and rooms cannot be
    re-created after a restart (``key_is_random``). ``new_id`` makes room IDs (tests may pass their own).
    SFU rooms (``invite(..., sfu=True)``, IDs starting ``s-``) hold up to ``max_sfu_room_size`` members.
    """

    def __init__(
        self,
        *,
        max_room_size: int | None = DEFAULT_LIMITS.max_room_size,
        invitation_ttl: float | None = DEFAULT_LIMITS.invitation_ttl,
        room_grace: float | None = DEFAULT_LIMITS.room_grace,
        max_room_claims: int | None = DEFAULT_LIMITS.max_room_claims,
        max_sfu_room_size: int | None = DEFAULT_LIMITS.max_sfu_room_size,
        key: bytes | None = None,
        new_id: Callable[[], str] = new_room_id,
    ) -> None:
        if max_room_size is not None and max_room_size < 2:
            raise ValueError(f"max_room_size must be at least 2 or None, got {max_room_size!r}")
        if invitation_ttl is not None and not invitation_ttl > 0:
            raise ValueError(f"invitation_ttl must be positive or None (no limit), got {invitation_ttl!r}")
        if room_grace is not None and not room_grace >= 0:
            raise ValueError(f"room_grace must be at least 0 (no grace) or None, got {room_grace!r}")
        self.max_room_size = max_room_size
        self.invitation_ttl = invitation_ttl
        self.room_grace = room_grace
        self.max_room_claims = max_room_claims
        self.max_sfu_room_size = max_sfu_room_size
        #: How many SFU rooms there are, and whether one was made or ended since the SFU last looked.
        self.sfu_rooms = 0
        self.sfu_changed = False
        self.key = key if key is not None else secrets.token_bytes(32)
        #: Whether :attr:`key` was made here: then no room outlives a restart.
        self.key_is_random = key is None
        self._new_id = new_id
        self._ended: dict[str, None] = {}  # IDs of rooms that ended, oldest first (never re-created)
        self._claims: dict[str, set[str]] = {}  # client address -> rooms it re-created, no second member yet
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

    def use_key(self, key: bytes) -> None:
        """Sign credentials with ``key`` from now on: a deployment's shared key, which outlives a restart."""
        self.key = key
        self.key_is_random = False

    def credential(self, room_id: str, member: str) -> str:
        """``member``'s credential for ``room_id`` (a room of this registry), as its ``room-state`` carries it."""
        return room_credential(self.key, room_id, member, self._rooms[room_id].epoch)

    def proves(self, room_id: str, member: str, credential: object) -> int | None:
        """The epoch of ``room_id`` that ``credential`` proves ``member`` belonged to, or ``None``."""
        return proven_epoch(self.key, room_id, member, credential)

    # -- messages -------------------------------------------------------------

    def invite(self, sender: str, to: str, *, link: bool = False, sfu: bool = False) -> Notices:
        """``sender`` invites ``to`` (online, with rooms, not ``sender``) into its room, or a new one (an SFU
        room when ``sfu``)."""
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
        if room is not None:
            self._check_size(
                room, len(room.members) + len(room.invitations) + 1, "room-invite",
                f"{len(room.members)} members and {len(room.invitations)} pending invitations",
                "wait for an invitation to be answered or a member to leave",
            )  # fmt: skip
        out: Notices = []
        if room is None:
            room = Room(sfu_room_id(self._new_id()) if sfu else self._new_id(), [sender], joined=False)
            self._rooms[room.id] = room
            self._changed(room.id, True)
            self._room_of[sender] = room.id
            out.append((sender, self._state(room, sender)))
        room.invitations[to] = Invitation(sender, link)
        self._invited_to.setdefault(to, {})[room.id] = None
        self._expired.pop((to, room.id), None)
        fields = {"link": True} if link else {}
        if is_sfu_room(room.id):
            fields["sfu"] = True
        out.append(
            (
                to,
                notice("room-invitation", room=room.id, members=room.members, **fields, **{"from": sender}),
            )
        )
        return out

    def accept(self, sender: str, room_id: str) -> Notices:
        """``sender`` accepts its invitation into ``room_id``: it becomes the room's last member."""
        room = self._rooms.get(room_id)
        if room is None or sender not in room.invitations:
            if (sender, room_id) in self._expired:
                raise InvitationExpired(self._expired_text(room_id), in_reply_to="room-accept", room=room_id)
            raise NotInvited(
                f"you have no invitation to room {room_id!r}; only a phone invited by a member may accept",
                in_reply_to="room-accept",
                room=room_id,
            )
        mine = self._room_of.get(sender)
        if mine is not None:
            raise InAnotherRoom(
                f"you are a member of room {mine!r}; send room-leave for it before accepting room {room_id!r}",
                in_reply_to="room-accept",
            )
        self._check_size(
            room, len(room.members) + 1, "room-accept", f"{len(room.members)} members",
            "ask a member to invite you again later",
        )  # fmt: skip
        self._drop_invitation(room, sender)
        room.joined = True
        return self._admit(room, sender)

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
                room=room_id,
            )
        self._drop_invitation(room, sender)
        out: Notices = [
            (
                invitation.inviter,
                notice("room-declined", room=room_id, id=sender, reason=reason or "declined"),
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

    def check_member(self, sender: str, room_id: str, msg_type: str) -> None:
        """Raise :class:`NotAMember` unless ``sender`` is a member of ``room_id``."""
        self._member_room(sender, room_id, msg_type)

    def check_relay(self, sender: str, to: str, room_id: str, msg_type: str) -> None:
        """Raise :class:`NotAMember` unless ``sender`` and ``to`` are both members of ``room_id``."""
        room_of = self._room_of
        if room_of.get(sender) != room_id:
            raise NotAMember(
                f"you are not a member of room {shorten(room_id)}; send {msg_type!r} only to members of your "
                "room, or without 'room' for a 1:1 call",
                in_reply_to=msg_type,
            )
        if room_of.get(to) != room_id:
            raise NotAMember(
                f"{to!r} is not a member of room {room_id!r}; members: {', '.join(self._rooms[room_id].members)}",
                in_reply_to=msg_type,
            )

    # -- connections --------------------------------------------------------

    def went_away(self, peer_id: str) -> Notices:
        """``peer_id``'s connection is gone: its invitations are declined, its grace as a member starts."""
        out: Notices = []
        invited_to = self._invited_to.pop(peer_id, None)
        if invited_to:
            for room_id in invited_to:
                room = self._rooms[room_id]
                invitation = room.invitations.pop(peer_id)
                declined = notice(
                    "room-declined", room=room_id, id=peer_id, reason="it went offline before answering"
                )
                out.append((invitation.inviter, declined))
                out.extend(self._end_if_nobody_joined(room))
        if self._expired:
            for key in [key for key in self._expired if key[0] == peer_id]:
                del self._expired[key]
        if peer_id in self._room_of:
            self._away.setdefault(peer_id, None)  # the grace starts at the next tick (if not started yet)
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

    def end(self, room_id: str, reason: str) -> Notices:
        """End ``room_id`` now (its SFU failed): ``room-ended`` to its members, ``room-cancelled`` to invitees."""
        room = self._rooms.get(room_id)
        if room is None:
            return []
        members = list(room.members)
        out = self._cancel_invitations(room, f"the room ended: {reason}")
        self._delete(room)
        return out + [(member, notice("room-ended", room=room_id, reason=reason)) for member in members]

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
            if room.recreated:
                if room.rejoin_deadline is None:
                    room.rejoin_deadline = now + (REJOIN_WINDOW if grace is None else grace)
                elif room.rejoin_deadline <= now:
                    room.recreated = False
                    if room.claim is not None:  # nobody came back to prove it: dropped
                        out.extend(self._drop_unproven(room))
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
            (invitation.inviter, notice("room-declined", room=room.id, id=invitee, reason=reason)),
            (
                invitee,
                notice("room-cancelled", room=room.id, reason=reason, **{"from": invitation.inviter}),
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
        return [(creator, notice("room-ended", room=room.id, reason=reason))]

    def _remove(self, room: Room, peer_id: str, reason: str, *, renew: bool = True) -> Notices:
        """Remove ``peer_id``; ``renew``: the others' ``room-left`` carries their new credentials, so that the
        removed member's re-creates nothing after a restart."""
        room.members.remove(peer_id)
        del self._room_of[peer_id]
        self._away.pop(peer_id, None)
        room.proven.pop(peer_id, None)
        room.lost.pop(peer_id, None)
        for reporters in room.lost.values():
            reporters.discard(peer_id)
        out: Notices
        if renew and room.members:
            room.epoch += 1
            out = [
                (member, notice("room-left", room=room.id, id=peer_id, reason=reason,
                                  credential=room_credential(self.key, room.id, member, room.epoch)))
                for member in room.members
            ]  # fmt: skip
        else:
            left = notice("room-left", room=room.id, id=peer_id, reason=reason)
            out = [(member, left) for member in room.members]
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
                out.append((peer_id, notice("room-left", room=room.id, id=peer_id, reason=reason)))
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
                    notice("room-cancelled", room=room.id, reason=reason, **{"from": invitation.inviter}),
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
        self._release_claim(room)
        # Expired invitations stay remembered (accept says invitation-expired) until tick forgets them.
        if self._rooms.pop(room.id, None) is not None:
            self._changed(room.id, False)
            self._ended[room.id] = None
            if len(self._ended) > MAX_ENDED:
                del self._ended[next(iter(self._ended))]

    def _release_claim(self, room: Room) -> None:
        if room.claim is not None:
            claims = self._claims.get(room.claim)
            if claims is not None:
                claims.discard(room.id)
                if not claims:
                    del self._claims[room.claim]
            room.claim = None

    def _admit(self, room: Room, member: str, **fields: object) -> Notices:
        """``member`` becomes ``room``'s last member: its ``room-state`` (with ``fields``), ``room-joined`` to the
        others."""
        room.members.append(member)
        self._room_of[member] = room.id
        joined = notice("room-joined", room=room.id, id=member)
        return [(member, self._state(room, member, **fields))] + [
            (other, joined) for other in room.members if other != member
        ]

    def _state(self, room: Room, member: str, **fields: object) -> str:
        """``room-state`` for ``member``: the room as it is now, with ``member``'s credential."""
        credential = room_credential(self.key, room.id, member, room.epoch)
        mode = "sfu" if is_sfu_room(room.id) else "mesh"
        return notice(
            "room-state", room=room.id, members=room.members, credential=credential, mode=mode, **fields
        )

    def _check_size(self, room: Room, taken: int, msg_type: str, counted: str, remedy: str) -> None:
        """Raise :class:`RoomFull` when ``taken`` places (``counted``, for people) pass ``room``'s size limit."""
        limit, name = (
            (self.max_sfu_room_size, "max_sfu_room_size")
            if is_sfu_room(room.id)
            else (self.max_room_size, "max_room_size")
        )
        if limit is not None and taken > limit:
            raise RoomFull(
                f"room {room.id!r} is full: {counted}, the limit is {name}={limit}; {remedy}",
                in_reply_to=msg_type,
            )

    def _changed(self, room_id: str, made: bool) -> None:
        if is_sfu_room(room_id):
            self.sfu_rooms += 1 if made else -1
            self.sfu_changed = True
        if self.changes is not None:
            self.changes.append((room_id, made))
