"""The room part of the call machine (docs/rooms.md): inviting, joining, members coming and going, and the
offers, answers and candidates between members. Sans-I/O like the rest of :mod:`~nbcall.call.machine`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import CallError
from .actions import FREE, Link

__all__ = ["RoomCalls"]


class RoomCalls:
    """Mixin of :class:`~nbcall.call.machine.CallMachine`: its room events. The machine holds the fields and the
    helpers declared here."""

    user_id: str
    auto_answer: bool
    state: str
    peer: str
    error: str
    online: bool
    links: dict[str, Link]
    room: str
    members: list[str]
    connections: dict[str, str]
    invitation: dict[str, Any]
    room_mode: str
    _deadline: float | None
    _room_asked: bool
    _room_credential: str
    _sfu_record: str
    _sent_invites: int
    _refused_invites: int
    _change: Callable[..., None]
    _signal: Callable[..., None]
    _engine: Callable[..., None]
    _end: Callable[[str, str], None]
    _check_id: Callable[[object, str], str]
    _doing: Callable[[], str]
    _example_peer: Callable[[], str]
    _rtc_config: Callable[[], dict[str, Any]]
    answer: Callable[..., None]
    check_sfu_invite: Callable[[], None]
    _sfu_room_state: Callable[[list[str], bool], None]

    def invite(self, peers: tuple[object, ...], now: float, sfu: bool = False) -> None:
        """Invite ``peers`` into this phone's room; an idle phone makes a new room (on the SFU with ``sfu``), a
        1:1 call becomes one."""
        if not peers:
            raise ValueError(f"invite one or more peers by their IDs, such as {self._example_peer()!r}")
        ids = [self._check_id(p, "invite") for p in peers]
        if not self.online:
            raise CallError(f"{self.user_id} is offline: {self.error or 'not connected to a server'}")
        if sfu:
            self.check_sfu_invite()
            if (self.room or self._room_asked) and self.room_mode != "sfu" and self.room:
                raise CallError(
                    f"{self.user_id} is in the mesh room {self.room}: sfu=True makes a new room, so leave this "
                    "one first (or invite without sfu=True into it)"
                )
            if self.state == "connected" and self.peer and not self.room:
                raise CallError(
                    f"{self.user_id} is in a 1:1 call with {self.peer}, which cannot become an SFU room: hang up "
                    "and invite again, or invite without sfu=True to turn the call into a mesh room"
                )
        for peer in ids:
            if peer in self.members:
                raise CallError(
                    f"{peer} is already in {self.user_id}'s room {self.room}; members: {self.members}"
                )
        if self.room or self._room_asked:
            if not self.room:
                self._sent_invites += len(ids)
            for peer in ids:
                self._signal("room-invite", peer, **({"room": self.room} if self.room else {}))
            return
        if self.state == "connected" and self.peer:
            # The 1:1 call becomes a room: its peer joins without ringing and keeps its connection to us.
            self._room_asked = True
            self._sent_invites = 1 + sum(1 for p in ids if p != self.peer)
            self._signal("room-invite", self.peer, link=True)
            for peer in ids:
                if peer != self.peer:
                    self._signal("room-invite", peer)
            return
        if self.state not in FREE:
            raise CallError(
                f"{self.user_id} is {self.state} with {self.peer!r}; hang up first, or wait until connected"
            )
        self._room_asked = True
        self._sent_invites = len(ids)
        self.links = {}
        self._change(state="calling", peer="", error="")
        for peer in ids:
            self._signal("room-invite", peer, **({"sfu": True} if sfu else {}))

    def register_fields(self) -> dict[str, Any]:
        """What this phone adds to ``register``: that it understands rooms, and the room it is in with the
        credential that proves it is a member (so that it can re-create the room after a server restart)."""
        if self.room:
            fields: dict[str, Any] = {"rooms": True, "room": self.room, "members": list(self.members)}
            if self._room_credential:
                fields["credential"] = self._room_credential
            if self._sfu_record:
                fields["sfu"] = self._sfu_record  # so that the SFU keeps our links across a server restart
            return fields
        return {"rooms": True}

    def _on_room_state(self, message: dict[str, Any], now: float) -> None:
        room, members = str(message.get("room")), [str(m) for m in message.get("members", [])]
        if not self._room_asked or (self.room and room != self.room):
            return
        rejoined = bool(message.get("rejoined"))
        joining = not self.room and self.invitation.get("room") == room
        credential = message.get("credential")
        if isinstance(credential, str):
            self._room_credential = credential  # kept out of the traits: only the server sees it
        if rejoined:
            members = [*self.members, *(m for m in members if m not in self.members)]
        self._sent_invites = self._refused_invites = 0
        first = not self.room
        self._change(room=room, members=members, invitation={}, peer="")
        if message.get("mode") == "sfu" or self.room_mode == "sfu":
            # Nobody offers to anybody: each member publishes to the SFU, which the server connects it to.
            self._sfu_room_state(members, first)
            if joining:
                self._deadline = None
                self._change(state="connected")
            self._update_connections()
            return
        if first:
            self._change(room_mode="mesh")
        if joining:
            # The joiner offers to each member already there, except one it is already connected to
            # (the peer of a 1:1 call that became this room).
            for member in members:
                if member != self.user_id and member not in self.links:
                    self.links[member] = Link(member, "caller")
                    self._engine("start_call", member, **self._rtc_config())
            self._deadline = None
            self._change(state="connected")
        self._update_connections()

    def _on_room_invitation(self, message: dict[str, Any], now: float) -> None:
        room, inviter = str(message.get("room")), str(message.get("from"))
        members = [str(m) for m in message.get("members", [])]
        if message.get("link") and self.state == "connected" and self.peer == inviter and not self.room:
            # Our 1:1 call becomes a room: join at once, keeping the connection to the inviter.
            self.invitation = {"room": room, "from": inviter, "members": members}
            self._room_asked = True
            self._signal("room-accept", None, room=room)
            return
        if self.state not in FREE or self.room or self._room_asked:
            self._signal("room-decline", None, room=room, reason=f"{self.user_id} is {self._doing()}")
            return
        self.links = {}
        invitation = {
            "room": room,
            "from": inviter,
            "members": members,
            **({"sfu": True} if message.get("sfu") else {}),
        }
        self._change(state="ringing", peer="", error="", invitation=invitation)
        if self.auto_answer:
            self.answer()

    def _on_room_cancelled(self, message: dict[str, Any], now: float) -> None:
        if self.invitation.get("room") == message.get("room") and not self.room:
            self._end("ended", f"the invitation from {message.get('from')} is gone: {message.get('reason')}")

    def _on_room_declined(self, message: dict[str, Any], now: float) -> None:
        if message.get("room") == self.room:
            self._change(
                error=f"{message.get('id')} declined the invitation: {message.get('reason') or 'declined'}"
            )

    def _on_room_ended(self, message: dict[str, Any], now: float) -> None:
        if message.get("room") == self.room:
            reason = str(message.get("reason") or "every invitation was declined or expired")
            # Keep who declined and why (room-declined just said so): the creator must still see it.
            last = f" ({self.error})" if self.error else ""
            self._end("idle", f"the room ended: {reason}{last}")

    def _on_room_joined(self, message: dict[str, Any], now: float) -> None:
        member = str(message.get("id"))
        if message.get("room") != self.room or member == self.user_id:
            return
        if member not in self.members:
            self._change(members=[*self.members, member])
        # The joiner offers to us; a member we are already connected to (1:1 call, or a rejoin) keeps its link.
        self.links.setdefault(member, Link(member, "callee"))
        if self.state == "calling":
            self._deadline = None
            self._change(state="connected")
        self._update_connections()

    def _on_room_left(self, message: dict[str, Any], now: float) -> None:
        member = str(message.get("id"))
        if message.get("room") != self.room or member not in self.members:
            return
        if member == self.user_id:  # the server removed us (the others lost their connections to us)
            self._end("failed", f"removed from room {self.room}: {message.get('reason') or 'by the server'}")
            return
        credential = message.get("credential")
        if isinstance(credential, str):
            self._room_credential = credential  # the room's next epoch: the one who left has an older one
        self._change(members=[m for m in self.members if m != member])
        if self.links.pop(member, None) is not None:
            self._engine("close", member)
        self._update_connections()

    def _on_room_signal(self, kind: str, message: dict[str, Any]) -> None:
        """An offer, answer or candidate from a member of our room."""
        sender = str(message.get("from"))
        if message.get("room") != self.room or sender not in self.members or sender == self.user_id:
            return
        link = self.links.get(sender)
        if kind == "call":
            if link is None:
                link = self.links[sender] = Link(sender, "callee")
            self._engine("remote", sender, signal=message, **self._rtc_config())
            self._engine("accept", sender)
        elif link is not None:
            self._engine("remote", sender, signal=message)
        self._update_connections()

    def _update_connections(self) -> None:
        """``connections``: each other member's link as connecting, connected or failed."""
        shown = {}
        for member in self.members:
            if member == self.user_id:
                continue
            link = self.links.get(member)
            if link is not None and link.connection in ("failed", "closed"):
                shown[member] = "failed"
            elif link is not None and link.channel_open:
                shown[member] = "connected"
            else:
                shown[member] = "connecting"
        self._change(connections=shown)
