"""Rooms after a server restart: members re-create their room with their credentials (docs/rooms.md).

:class:`RoomRestart` is the part of :class:`~nbcall.server.rooms.RoomRegistry` that applies the rules of a
``register`` with ``room``: a member back within its grace, a room re-created from its members' claims, a
claim that proves nothing. It works on the registry's own state, declared below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import InAnotherRoom, NotAMember, TooManyRoomClaims
from .messages import encode_message as notice
from .messages import shorten
from .room_model import ENDED_WITH_RESTART, REJOIN_WINDOW, Invitation, Notices, Room

__all__ = ["RoomRestart"]


class RoomRestart:
    """The rejoin and re-creation rules of :class:`~nbcall.server.rooms.RoomRegistry`."""

    # The registry's state (see RoomRegistry.__init__) and the helpers of its own these rules use.
    key_is_random: bool
    max_room_claims: int | None
    room_grace: float | None
    _rooms: dict[str, Room]
    _room_of: dict[str, str]
    _away: dict[str, float | None]
    _ended: dict[str, None]
    _claims: dict[str, set[str]]

    if TYPE_CHECKING:  # the registry's own, used here

        def proves(self, room_id: str, member: str, credential: object) -> int | None: ...
        def _check_size(self, room: Room, taken: int, msg_type: str, counted: str, remedy: str) -> None: ...
        def _drop_invitation(self, room: Room, invitee: str) -> Invitation: ...
        def _release_claim(self, room: Room) -> None: ...
        def end(self, room_id: str, reason: str) -> Notices: ...
        def _state(self, room: Room, member: str, **fields: object) -> str: ...
        def _admit(self, room: Room, member: str, **fields: object) -> Notices: ...
        def _changed(self, room_id: str, made: bool) -> None: ...

    def rejoin(
        self, sender: str, room_id: str, credential: object, *, proven: bool = False, address: str = ""
    ) -> Notices:
        """``sender`` registered saying it is a member of ``room_id``, with its room ``credential`` (docs/rooms.md).

        ``proven``: ``sender`` proved its ID with the secret it registered with. A member (back within
        its grace) gets ``room-state`` with ``rejoined``. A room the server does not know (it restarted)
        is re-created by a phone whose credential proves it was a member, and the others rejoin it with
        theirs until ``room_grace`` has passed, each announced with ``room-joined``. ``address``: the
        client's, which holds at most ``max_room_claims`` re-created rooms nobody else rejoined yet.
        """
        mine = self._room_of.get(sender)
        if mine is not None and mine != room_id:
            raise InAnotherRoom(
                f"you are a member of room {mine!r}, not {shorten(room_id)}; send room-leave for it first",
                in_reply_to="register",
            )
        room = self._rooms.get(room_id)
        epoch = self.proves(room_id, sender, credential)
        if room is not None and sender in room.members:  # never left: nothing changes for the others
            # Any epoch: it may have been away when a member left, and still is a member.
            if not proven and epoch is None:
                raise NotAMember(
                    f"nothing shows that you are the member {sender!r} of room {shorten(room_id)}: register with "
                    "the secret you registered with, or with the room's credential (from your room-state)",
                    in_reply_to="register",
                )
            self._away.pop(sender, None)
            return [(sender, self._state(room, sender, rejoined=True))]
        if room is None:
            return self._recreate(sender, room_id, credential, epoch, address)
        if not room.recreated or epoch is None or epoch < room.epoch:
            # Name no member: the caller may never have been one (or was removed before the restart).
            raise NotAMember(
                f"room {shorten(room_id)} went on without you; ask one of its members to invite you again",
                in_reply_to="register",
            )
        self._check_size(
            room, len(room.members) + 1, "register", f"{len(room.members)} members re-registered into it",
            "its members came back before you",
        )  # fmt: skip
        out: Notices = self._drop_stale(room, epoch) if epoch > room.epoch else []
        if sender in room.invitations:
            self._drop_invitation(room, sender)
        room.proven[sender] = epoch
        self._release_claim(room)  # a second member proved the room
        return out + self._admit(room, sender, rejoined=True)

    def _recreate(
        self, sender: str, room_id: str, credential: object, epoch: int | None, address: str
    ) -> Notices:
        """A room this registry does not know, claimed by ``sender``: made again if its credential proves it."""
        if room_id in self._ended:
            raise NotAMember(
                f"room {shorten(room_id)} has ended and is never re-created; invite the others into a new room",
                in_reply_to="register",
            )
        if epoch is None:
            if self.key_is_random and credential is not None:
                # Signed under the key of the server before this one: the rooms died with it.
                return [(sender, notice("room-ended", room=room_id, reason=ENDED_WITH_RESTART))]
            raise NotAMember(
                f"nothing shows that you were a member of room {shorten(room_id)}: a room is re-created only by "
                "members presenting the credential their room-state gave them",
                in_reply_to="register",
            )
        claims = self._claims.get(address)
        if claims is not None and self.max_room_claims is not None and len(claims) >= self.max_room_claims:
            raise TooManyRoomClaims(
                f"your address re-created {len(claims)} rooms that no other member rejoined yet, the limit is "
                f"max_room_claims={self.max_room_claims}; wait for their members, or for them to be dropped",
                in_reply_to="register",
            )
        room = Room(room_id, [sender], joined=True, epoch=epoch)
        room.proven[sender] = epoch
        room.recreated = True
        room.claim = address
        self._claims.setdefault(address, set()).add(room_id)
        self._rooms[room_id] = room
        self._changed(room_id, True)
        self._room_of[sender] = room_id
        return [(sender, self._state(room, sender, rejoined=True))]

    def _drop_stale(self, room: Room, epoch: int) -> Notices:
        """A member proved ``epoch`` of a re-created room: whoever came back with an older one was removed before
        the restart, and is out again (``room-left`` to it and to the others)."""
        room.epoch = epoch
        stale = [member for member in room.members if room.proven.get(member, epoch) < epoch]
        reason = "it was removed from the room before the server restart"
        out: Notices = []
        for member in stale:
            room.members.remove(member)
            room.proven.pop(member, None)
            del self._room_of[member]
            self._away.pop(member, None)
        for member in stale:
            left = notice("room-left", room=room.id, id=member, reason=reason)
            out.extend((other, left) for other in [member, *room.members])
        return out

    def _drop_unproven(self, room: Room) -> Notices:
        """A re-created room no second member rejoined in time ends (``room-ended`` to whoever is in it)."""
        window = REJOIN_WINDOW if self.room_grace is None else self.room_grace
        reason = f"nobody else came back within {window:g} s of the server restart"
        return self.end(room.id, reason)
