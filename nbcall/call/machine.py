"""Sans-I/O call logic: a phone's calls as a state machine, fed with events, returning what to do.

A :class:`CallMachine` takes three kinds of events: the user's actions (:meth:`~CallMachine.call`,
:meth:`~CallMachine.answer`, ...), messages from the signaling server (:meth:`~CallMachine.receive`) and
reports from the media engine that does the WebRTC (a phone's browser half, or aiortc for a Python peer:
:meth:`~CallMachine.engine_signal`, ...). It returns :data:`Action` items through
:meth:`~CallMachine.actions_to_take`: messages for the server, commands for the engine, and changes of the
fields an adapter shows. No sockets, threads, widgets or clocks: time comes in as ``now`` (monotonic
seconds) and the adapter calls :meth:`~CallMachine.tick` at :meth:`~CallMachine.deadline`.

The call is one record (``state``, ``peer``, ``error``) over a map of :class:`Link` items, one per peer
connection. A 1:1 call has one link; a room (docs/rooms.md) has one per other member, and ``room``,
``members`` and ``invitation`` say which room, who is in it and who invites us.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..exceptions import CallError
from .actions import FREE, IN_CALL, STATES, Action, Changed, Delivered, Link, ToEngine, ToServer
from .rooms import RoomCalls
from .sfu import SfuCalls

__all__ = [
    "FREE",
    "IN_CALL",
    "STATES",
    "Action",
    "CallMachine",
    "Changed",
    "Delivered",
    "Link",
    "ToEngine",
    "ToServer",
]

#: The signaling messages an engine produces, and the call states in which each is relayed to the peer.
_RELAYED_FROM_ENGINE = {"call": ("calling",), "answer": ("connecting",), "ice": IN_CALL}


@dataclass
class CallMachine(RoomCalls, SfuCalls):
    """The calls of the phone ``user_id``; see the module's docstring for how to drive it."""

    user_id: str
    auto_answer: bool = False
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds an unanswered call rings before it ends, on both sides.
    ring_timeout: float = 30.0
    #: Seconds a call may stay "connecting" before it fails, saying what ICE saw.
    connect_timeout: float = 20.0
    #: "all", or "relay" to connect only through a TURN server.
    ice_transport_policy: str = "all"
    state: str = "idle"
    peer: str = ""
    error: str = ""
    online: bool = False
    peers: list[str] = field(default_factory=list)
    links: dict[str, Link] = field(default_factory=dict)
    #: The room this phone is in ("" when none), its members in the order they joined (this phone included),
    #: and the state of the connection to each other member.
    room: str = ""
    members: list[str] = field(default_factory=list)
    connections: dict[str, str] = field(default_factory=dict)
    #: The invitation ringing now: ``{"room", "from", "members"}`` (and ``"sfu": True`` for an SFU room), or ``{}``.
    invitation: dict[str, Any] = field(default_factory=dict)
    #: "mesh" or "sfu" in a room ("" outside one), and in an SFU room the state of our two connections to the SFU
    #: (``{"publisher": ..., "subscriber": ...}``, connectionState strings).
    room_mode: str = ""
    sfu_links: dict[str, str] = field(default_factory=dict)
    #: What the server said at ``register``: whether it runs with an SFU, and the largest message it takes.
    sfu_available: bool = False
    max_message_size: int | None = 64 * 1024
    #: In an SFU room, the feed ID -> member map of our subscriber connection.
    _feeds: dict[str, str] = field(default_factory=dict)
    _deadline: float | None = None
    #: Whether we asked the server for a room (invited, or accepted) and wait for, or got, its ``room-state``.
    _room_asked: bool = False
    #: The server's proof that this phone is a member of ``room`` (room-state's ``credential``); never a trait.
    _room_credential: str = ""
    #: In an SFU room, the server's record of our links to the SFU (``sfu-record``), reported after a restart.
    _sfu_record: str = ""
    #: While our new room is being made: the invitations sent and refused (all refused: no room).
    _sent_invites: int = 0
    _refused_invites: int = 0
    _actions: list[Action] = field(default_factory=list)

    @property
    def room_asked(self) -> bool:
        """Whether this phone asked the server for a room (invited, or accepted) and waits for, or got, its
        ``room-state``."""
        return self._room_asked

    # ------------------------------------------------------------------------------------ the outputs

    def actions_to_take(self) -> list[Action]:
        """The actions produced since the last call, in order; the adapter carries them out."""
        actions, self._actions = self._actions, []
        return actions

    def deadline(self) -> float | None:
        """When :meth:`tick` must run next (monotonic seconds), or None."""
        return self._deadline

    # ----------------------------------------------------------------------------------- user actions

    def call(self, peer: object, now: float) -> None:
        """Call ``peer``: the engine makes an offer, and the call rings there until answered or timed out."""
        peer = self._check_id(peer, "call")
        self._check_free()
        self.links = {peer: Link(peer, "caller")}
        self._deadline = now + self.ring_timeout
        self._change(state="calling", peer=peer, error="")
        self._engine("start_call", peer, **self._rtc_config())

    def answer(self, now: float | None = None) -> None:
        """Answer the incoming call or accept the invitation (the phone must be ringing).

        With ``now``, the call must connect within :attr:`connect_timeout` of it.
        """
        if self.state != "ringing":
            raise CallError(
                f"{self.user_id} has no incoming call to answer (state {self.state!r}); "
                "wait for one with `await phone.wait_for('ringing')`"
            )
        self._deadline = None if self.invitation or now is None else now + self.connect_timeout
        self._change(state="connecting")
        if self.invitation:
            self._room_asked = True
            self._signal("room-accept", None, room=self.invitation["room"])
        else:
            self._engine("accept", self.peer)

    def decline(self, reason: str = "declined") -> None:
        """Refuse the incoming call or invitation; the caller (the inviter) learns ``reason``."""
        if self.state != "ringing":
            raise CallError(f"{self.user_id} has no incoming call to decline (state {self.state!r})")
        if self.invitation:
            self._signal("room-decline", None, room=self.invitation["room"], reason=reason)
            self._end("ended", "")
            return
        self._signal("decline", self.peer, reason=reason)
        self._end("ended", "")

    def hangup(self, reason: str | None = None) -> None:
        """End the current call on both sides, or leave the room; does nothing when there is neither."""
        if self.room or self._room_asked:
            self.leave(reason)
            return
        if self.state in FREE:
            return
        self._signal("hangup", self.peer, **({"reason": reason} if reason else {}))
        self._end("ended", "")

    def close(self, reason: str) -> None:
        """This phone is closing for ``reason``: end its call or room (a ringing one declined) telling the peers
        why, and say it in ``error``."""
        if self.state == "ringing":
            self.decline(reason)
        else:
            self.hangup(reason)
        self._change(error=reason)

    def leave(self, reason: str | None = None) -> None:
        """Leave the room: the others see this phone go and go on among themselves."""
        if not (self.room or self._room_asked):
            if self.state == "ringing" and self.invitation:
                self.decline(reason or "declined")
            return
        if self.room:
            self._signal("room-leave", None, room=self.room, **({"reason": reason} if reason else {}))
        self._end("ended", "")

    def check_send(self, to: str | None = None) -> None:
        """Raise :class:`CallError` unless data can be sent now (to ``to``, or to everyone connected)."""
        if self.room:
            others = [m for m in self.members if m != self.user_id]
            if to is not None and to not in others:
                raise CallError(
                    f"{to!r} is not in {self.user_id}'s room {self.room}; members: {self.members}"
                )
            if to is not None and self.room_mode == "sfu":
                if not self.online:  # it goes through the server
                    raise CallError(f"{self.user_id} is offline, and a message to one member of an SFU room "
                                    "goes through the signaling server")  # fmt: skip
                return
            if not any(self.connections.get(m) == "connected" for m in ([to] if to else others)):
                raise CallError(
                    f"{self.user_id} has no open connection to {to or 'any member'} yet; "
                    "`await phone.wait_for_members()` first"
                )
            return
        if self.state != "connected":
            raise CallError(
                f"{self.user_id} is not in a connected call (state {self.state!r}); "
                "call a peer and `await phone.wait_for('connected')` first"
            )
        if to is not None and to != self.peer:
            raise CallError(f"{self.user_id} is in a call with {self.peer!r}, not {to!r}")

    def tick(self, now: float) -> None:
        """Time passed: end a call that rang past :attr:`ring_timeout`."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        waited = f"{self.ring_timeout:g} s"
        if self.state == "calling" and self.peer:
            self._signal("hangup", self.peer, reason=f"no answer within {waited}")
            self._end("ended", f"{self.peer} did not answer within {waited}: no answer arrived")
        elif self.state == "ringing" and not self.invitation:
            self._signal("decline", self.peer, reason=f"not answered within {waited}")
            self._end("ended", f"missed call from {self.peer}: not answered within {waited}")
        elif self.state == "connecting" and self.peer in self.links:
            self._signal("hangup", self.peer, reason="could not connect")
            self._end("failed", self._why_not_connected(self.links[self.peer]))
        # Invitations expire at the server (invitation_ttl), which tells both sides.

    # ------------------------------------------------------------------------- the signaling server

    def registered(self, reply: dict[str, Any]) -> None:
        """The server accepted our registration (at start or after a reconnect)."""
        self.sfu_available = bool(reply.get("sfu"))
        limit = reply.get("max_message_size")
        if isinstance(limit, int) and limit > 0:
            self.max_message_size = limit
        self._change(online=True, peers=[str(p) for p in reply.get("peers", [])], error="")

    def signaling_lost(self, reason: str | None) -> None:
        """The connection to the server is gone; ``reason`` is None when we closed it ourselves.

        A call or room in progress keeps going: the peer-to-peer connections do not need the server.
        """
        self._change(online=False, peers=[])
        if reason is not None:
            self._change(error=f"offline: {reason}")

    def receive(self, message: dict[str, Any], now: float) -> None:
        """A message from the signaling server."""
        kind = str(message.get("type"))
        if message.get("room") is not None and kind in ("call", "answer", "ice"):
            self._on_room_signal(kind, message)
            return
        handler = getattr(self, f"_on_{kind.replace('-', '_')}", None)
        if handler is not None:
            handler(message, now)

    def _on_registered(self, message: dict[str, Any], now: float) -> None:
        self._change(peers=[str(p) for p in message.get("peers", [])])

    def _on_joined(self, message: dict[str, Any], now: float) -> None:
        self._change(peers=sorted({*self.peers, str(message.get("id"))}))

    def _on_left(self, message: dict[str, Any], now: float) -> None:
        gone = message.get("id")
        self._change(peers=[p for p in self.peers if p != gone])
        # In a room, the server keeps an offline member for its grace period and says when it is gone.
        if not self.room and gone == self.peer and self.state in ("calling", "ringing", "connecting"):
            self._end("failed", f"{gone} went offline")

    def _on_call(self, message: dict[str, Any], now: float) -> None:
        caller = str(message.get("from"))
        if self.state == "calling" and caller == self.peer and not (self.room or self._room_asked):
            # Glare: we call each other at once. A rule, not a race, keeps one call: the smaller ID yields,
            # dropping its own offer to ring for the other's; the larger ignores the other's offer.
            if self.user_id > caller:
                return
            for peer in self.links:
                self._engine("close", peer)
            self.links = {}
            self._change(state="idle")
        if self.state not in FREE or self.room or self._room_asked:
            self._signal("busy", caller, reason=f"{self.user_id} is {self._doing()}")
            return
        self.links = {caller: Link(caller, "callee")}
        self._deadline = now + self.ring_timeout
        self._change(state="ringing", peer=caller, error="")
        self._engine("remote", caller, signal=message, **self._rtc_config())
        if self.auto_answer:
            self.answer(now)

    def _on_answer(self, message: dict[str, Any], now: float) -> None:
        if self.state == "calling" and self._from_peer(message):
            self._deadline = now + self.connect_timeout
            self._change(state="connecting")
            self._engine("remote", self.peer, signal=message)

    def _on_ice(self, message: dict[str, Any], now: float) -> None:
        # A candidate that arrives after the call ended (or from anyone else) has no connection to go to.
        if self.state in IN_CALL and self._from_peer(message):
            self.links[self.peer].received_candidates += 1
            self._engine("remote", self.peer, signal=message)

    def _on_hangup(self, message: dict[str, Any], now: float) -> None:
        if self.state in IN_CALL and self._from_peer(message):
            why = message.get("reason")
            self._end("ended", f"{self.peer} hung up" + (f": {why}" if why else ""))

    def _on_decline(self, message: dict[str, Any], now: float) -> None:
        if self.state == "calling" and self._from_peer(message):
            why = message.get("reason")
            # "declined" is the default reason: saying it twice tells nothing.
            detail = f": {why}" if why and why != "declined" else ""
            self._end("ended", f"{self.peer} declined the call{detail}")

    def _on_busy(self, message: dict[str, Any], now: float) -> None:
        if self.state == "calling" and self._from_peer(message):
            self._end("ended", f"{self.peer} is busy: {message.get('reason') or 'in another call'}")

    def _on_unavailable(self, message: dict[str, Any], now: float) -> None:
        if self.state == "calling" and not self.room and message.get("peer") == self.peer and self.peer:
            self._end("failed", str(message.get("message") or f"{self.peer} is not online"))

    def _on_error(self, message: dict[str, Any], now: float) -> None:
        text = f"signaling server: {message.get('message', 'error')} ({message.get('code')})"
        about = message.get("in_reply_to")
        if self.state == "calling" and about == "call" and not self._room_asked:
            self._end("failed", text)
        elif about == "register" and self.room:
            self._end("failed", f"{text}; the room went on without this phone")  # a rejoin was refused
        elif (
            about == "room-accept"
            and self._room_asked
            and not self.room
            and self._about_our_invitation(message)
        ):
            self._end("failed", text)  # the invitation we accepted is gone: we are in no room
        elif about == "room-invite" and self._room_asked and not self.room and self._sent_invites:
            self._refused_invites += 1
            self._change(error=text)
            if self._refused_invites >= self._sent_invites:
                # Every invitation that would have made our room was refused: there is no room.
                if self.state == "calling":
                    self._end("failed", text)
                else:  # a 1:1 call that was to become a room goes on as it was
                    self._room_asked = False
                    self._refused_invites = self._sent_invites = 0
        else:
            self._change(error=text)

    def _about_our_invitation(self, message: dict[str, Any]) -> bool:
        """Whether a refused ``room-accept`` is about the invitation we hold: one about an earlier room (its
        invitation withdrawn while our accept was on its way) arrives after we accepted the next one."""
        room = message.get("room")
        return room is None or room == (self.invitation or {}).get("room")

    # ------------------------------------------------------------------------------- the media engine

    def engine_signal(self, peer: str, signal: dict[str, Any]) -> None:
        """The engine produced an offer, answer or candidate for ``peer``: relay it if the call still wants it."""
        kind = str(signal.get("type"))
        fields = {k: v for k, v in signal.items() if k not in ("type", "from", "to", "room")}
        if self.room:
            if peer in self.links and kind in _RELAYED_FROM_ENGINE:
                self._signal(kind, peer, room=self.room, **fields)
        elif peer in self.links and peer == self.peer and self.state in _RELAYED_FROM_ENGINE.get(kind, ()):
            if kind == "ice":
                self.links[peer].sent_candidates += 1
            self._signal(kind, peer, **fields)

    def engine_connection(self, peer: str, connection_state: str) -> None:
        """The peer connection to ``peer`` changed its connectionState."""
        link = self.links.get(peer)
        if link is None:
            return
        link.connection = connection_state
        if self.room:
            if connection_state in ("failed", "closed") and self.room_mode != "sfu":
                self._signal("room-link", None, room=self.room, peer=peer, state=connection_state)
            self._update_connections()
            return
        if connection_state == "failed" and self.state in IN_CALL:
            if self.state == "connected":
                why = f"lost the connection to {peer}: it stopped answering (page closed or network down)"
            else:
                why = f"could not connect to {peer}: ICE found no path between the two peers"
            self._signal("hangup", peer, reason="connection failed")
            self._end("failed", why)

    def engine_channel(self, peer: str, open_: bool) -> None:
        """The data channel to ``peer`` opened or closed."""
        link = self.links.get(peer)
        if link is None:
            return
        link.channel_open = open_
        if self.room:
            # In an SFU room a feed closing says nothing of the member's own links: the server follows Janus.
            if not open_ and self.room_mode != "sfu":
                link.connection = "closed"
                self._signal("room-link", None, room=self.room, peer=peer, state="closed")
            self._update_connections()
        elif open_ and self.state in ("calling", "connecting"):
            self._deadline = None
            self._change(state="connected")
        elif not open_ and self.state == "connected":
            self._end("ended", f"the data channel to {peer} closed")

    def engine_failed(self, text: str) -> None:
        """A WebRTC step failed in the engine: the call cannot go on (outside a call, only say so)."""
        if self.state in IN_CALL and not self.room:
            self._signal("hangup", self.peer, reason="failed")
            self._end("failed", text)
        else:
            self._change(error=text)

    def engine_lost(self, reason: str) -> None:
        """The engine lost its peer connections (a reloaded page): end the call or leave the room, saying so."""
        if self.room or self._room_asked:
            if self.room:
                self._signal("room-leave", None, room=self.room, reason=reason)
            self._end("failed", reason)
        elif self.state in IN_CALL:
            self._signal("hangup", self.peer)
            self._end("failed", reason)

    # -------------------------------------------------------------------------------------- internals

    def _check_id(self, peer: object, verb: str) -> str:
        if not isinstance(peer, str):
            raise TypeError(f"{verb} a peer by its ID, a str such as {self._example_peer()!r}, not {peer!r}")
        if not peer.strip():
            raise ValueError(f"{verb} a peer by its ID, such as {self._example_peer()!r}, not {peer!r}")
        if peer == self.user_id:
            raise CallError(f"{self.user_id} cannot {verb} itself; {verb} one of {self.peers}")
        return peer

    def _check_free(self) -> None:
        if not self.online:
            raise CallError(f"{self.user_id} is offline: {self.error or 'not connected to a server'}")
        if self.room or self._room_asked:
            raise CallError(f"{self.user_id} is in room {self.room or '(being made)'}; leave it first")
        if self.state not in FREE:
            raise CallError(f"{self.user_id} is {self.state} with {self.peer!r}; hang up first")

    def _doing(self) -> str:
        if self.room or self._room_asked:
            return f"in room {self.room or '(being made)'}"
        return f"{self.state} with {self.peer}"

    def _from_peer(self, message: dict[str, Any]) -> bool:
        return not self.room and message.get("from") == self.peer and self.peer in self.links

    def _why_not_connected(self, link: Link) -> str:
        """Why a call stayed connecting: what ICE had to work with, in words."""
        waited = f"within {self.connect_timeout:g} s"
        if not link.received_candidates:
            return (
                f"could not connect to {link.peer} {waited}: no ICE candidate arrived from it "
                f"({link.sent_candidates} sent from here), so there was no candidate pair to check "
                "(were its candidates dropped on the way?)"
            )
        return (
            f"could not connect to {link.peer} {waited}: no candidate pair succeeded "
            f"({link.sent_candidates} local and {link.received_candidates} remote candidates; "
            f"connection {link.connection})"
        )

    def _rtc_config(self) -> dict[str, Any]:
        """How the engine makes a peer connection: the STUN/TURN servers, and the policy when not the default."""
        if self.ice_transport_policy == "all":
            return {"ice_servers": self.ice_servers}
        return {"ice_servers": self.ice_servers, "ice_transport_policy": self.ice_transport_policy}

    def _example_peer(self) -> str:
        return next(iter(self.peers), "B")

    def _signal(self, kind: str, to: str | None, **fields: Any) -> None:
        message = {"type": kind, "from": self.user_id, **({"to": to} if to is not None else {}), **fields}
        self._actions.append(ToServer(message))

    def _engine(self, kind: str, peer: str, **fields: Any) -> None:
        self._actions.append(ToEngine({"type": kind, "peer": peer, **fields}))

    def _change(self, **fields: Any) -> None:
        changed = {k: v for k, v in fields.items() if getattr(self, k) != v}
        for name, value in changed.items():
            setattr(self, name, value)
        if changed:
            self._actions.append(Changed(changed))

    def _end(self, state: str, error: str) -> None:
        for peer in self.links:
            self._engine("close", peer)
        self.links = {}
        self._deadline = None
        self._room_asked = False
        self._room_credential = self._sfu_record = ""
        self._refused_invites = self._sent_invites = 0
        if self.room_mode == "sfu":
            self._engine("sfu_close", "")
        self._feeds = {}
        self._change(
            state=state,
            error=error,
            room="",
            members=[],
            connections={},
            invitation={},
            room_mode="",
            sfu_links={},
        )
