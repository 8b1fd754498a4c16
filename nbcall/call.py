"""Sans-I/O call logic: a phone's calls as a state machine, fed with events, returning what to do.

A :class:`CallMachine` takes three kinds of events: the user's actions (:meth:`~CallMachine.call`,
:meth:`~CallMachine.answer`, ...), messages from the signaling server (:meth:`~CallMachine.receive`) and
reports from the media engine that does the WebRTC (a phone's browser half, or aiortc for a Python peer:
:meth:`~CallMachine.engine_signal`, ...). It returns :data:`Action` items through
:meth:`~CallMachine.actions_to_take`: messages for the server, commands for the engine, and changes of the
fields an adapter shows. No sockets, threads, widgets or clocks: time comes in as ``now`` (monotonic
seconds) and the adapter calls :meth:`~CallMachine.tick` at :meth:`~CallMachine.deadline`.

The call is one record (``state``, ``peer``, ``error``) over a map of :class:`Link` items, one per peer
connection, so that a room (several links) can grow from the same machine. A 1:1 call has one link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .exceptions import CallError

__all__ = ["FREE", "IN_CALL", "STATES", "Action", "CallMachine", "Changed", "Link", "ToEngine", "ToServer"]

#: Every state a phone can be in. ``ended`` and ``failed`` are final for a call; a new call may follow.
STATES = ("idle", "calling", "ringing", "connecting", "connected", "ended", "failed")
#: States in which a phone may start or take a call.
FREE = ("idle", "ended", "failed")
IN_CALL = ("calling", "ringing", "connecting", "connected")

#: The signaling messages an engine produces, and the call states in which each is relayed to the peer.
_RELAYED_FROM_ENGINE = {"call": ("calling",), "answer": ("connecting",), "ice": IN_CALL}


@dataclass(frozen=True)
class ToServer:
    """Send ``message`` to the signaling server (``type``, ``from`` and ``to`` filled in)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class ToEngine:
    """Give the media engine a command of the widget protocol (docs/widget-protocol.md)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class Changed:
    """Fields of the phone that changed: any of ``state``, ``peer``, ``error``, ``online``, ``peers``."""

    fields: dict[str, Any]


Action = ToServer | ToEngine | Changed


@dataclass
class Link:
    """The peer connection to one other phone, as the engine reported it."""

    peer: str
    role: Literal["caller", "callee"]
    #: The RTCPeerConnection's connectionState ("new" until the engine reports one).
    connection: str = "new"
    channel_open: bool = False


@dataclass
class CallMachine:
    """The calls of the phone ``user_id``; see the module's docstring for how to drive it."""

    user_id: str
    auto_answer: bool = False
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds an unanswered call rings before it ends, on both sides.
    ring_timeout: float = 30.0
    state: str = "idle"
    peer: str = ""
    error: str = ""
    online: bool = False
    peers: list[str] = field(default_factory=list)
    links: dict[str, Link] = field(default_factory=dict)
    _deadline: float | None = None
    _actions: list[Action] = field(default_factory=list)

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
        if not isinstance(peer, str):
            raise TypeError(f"call a peer by its ID, a str such as {self._example_peer()!r}, not {peer!r}")
        if not peer.strip():
            raise ValueError(f"call a peer by its ID, such as {self._example_peer()!r}, not {peer!r}")
        if not self.online:
            raise CallError(f"{self.user_id} is offline: {self.error or 'not connected to a server'}")
        if self.state not in FREE:
            raise CallError(f"{self.user_id} is {self.state} with {self.peer!r}; hang up first")
        if peer == self.user_id:
            raise CallError(f"{self.user_id} cannot call itself; call one of {self.peers}")
        self.links = {peer: Link(peer, "caller")}
        self._deadline = now + self.ring_timeout
        self._change(state="calling", peer=peer, error="")
        self._engine("start_call", peer, ice_servers=self.ice_servers)

    def answer(self) -> None:
        """Answer the incoming call (the phone must be ringing)."""
        if self.state != "ringing":
            raise CallError(
                f"{self.user_id} has no incoming call to answer (state {self.state!r}); "
                "wait for one with `await phone.wait_for('ringing')`"
            )
        self._deadline = None
        self._change(state="connecting")
        self._engine("accept", self.peer)

    def decline(self, reason: str = "declined") -> None:
        """Refuse the incoming call; the caller's call ends with ``reason``."""
        if self.state != "ringing":
            raise CallError(f"{self.user_id} has no incoming call to decline (state {self.state!r})")
        self._signal("decline", self.peer, reason=reason)
        self._end("ended", "")

    def hangup(self, reason: str | None = None) -> None:
        """End the current call on both sides; does nothing when there is no call."""
        if self.state in FREE:
            return
        self._signal("hangup", self.peer, **({"reason": reason} if reason else {}))
        self._end("ended", "")

    def check_send(self) -> None:
        """Raise :class:`CallError` unless data can be sent now."""
        if self.state != "connected":
            raise CallError(
                f"{self.user_id} is not in a connected call (state {self.state!r}); "
                "call a peer and `await phone.wait_for('connected')` first"
            )

    def tick(self, now: float) -> None:
        """Time passed: end a call that rang past :attr:`ring_timeout`."""
        if self._deadline is None or now < self._deadline:
            return
        waited = f"{self.ring_timeout:g} s"
        if self.state == "calling":
            self._signal("hangup", self.peer, reason=f"no answer within {waited}")
            self._end("ended", f"{self.peer} did not answer within {waited}")
        elif self.state == "ringing":
            self._signal("decline", self.peer, reason=f"not answered within {waited}")
            self._end("ended", f"missed call from {self.peer}: not answered within {waited}")
        self._deadline = None

    # ------------------------------------------------------------------------- the signaling server

    def registered(self, reply: dict[str, Any]) -> None:
        """The server accepted our registration (at start or after a reconnect)."""
        self._change(online=True, peers=[str(p) for p in reply.get("peers", [])], error="")

    def signaling_lost(self, reason: str | None) -> None:
        """The connection to the server is gone; ``reason`` is None when we closed it ourselves.

        A call in progress keeps going: the peer-to-peer connection does not need the server.
        """
        self._change(online=False, peers=[])
        if reason is not None:
            self._change(error=f"offline: {reason}")

    def receive(self, message: dict[str, Any], now: float) -> None:
        """A message from the signaling server."""
        handler = getattr(self, f"_on_{str(message.get('type')).replace('-', '_')}", None)
        if handler is not None:
            handler(message, now)

    def _on_registered(self, message: dict[str, Any], now: float) -> None:
        self._change(peers=[str(p) for p in message.get("peers", [])])

    def _on_joined(self, message: dict[str, Any], now: float) -> None:
        self._change(peers=sorted({*self.peers, str(message.get("id"))}))

    def _on_left(self, message: dict[str, Any], now: float) -> None:
        gone = message.get("id")
        self._change(peers=[p for p in self.peers if p != gone])
        if gone == self.peer and self.state in ("calling", "ringing", "connecting"):
            self._end("failed", f"{gone} went offline")

    def _on_call(self, message: dict[str, Any], now: float) -> None:
        caller = str(message.get("from"))
        if self.state not in FREE:
            self._signal("busy", caller, reason=f"{self.user_id} is {self.state} with {self.peer}")
            return
        self.links = {caller: Link(caller, "callee")}
        self._deadline = now + self.ring_timeout
        self._change(state="ringing", peer=caller, error="")
        self._engine("remote", caller, signal=message, ice_servers=self.ice_servers)
        if self.auto_answer:
            self.answer()

    def _on_answer(self, message: dict[str, Any], now: float) -> None:
        if self.state == "calling" and self._from_peer(message):
            self._deadline = None
            self._change(state="connecting")
            self._engine("remote", self.peer, signal=message)

    def _on_ice(self, message: dict[str, Any], now: float) -> None:
        # A candidate that arrives after the call ended (or from anyone else) has no connection to go to.
        if self.state in IN_CALL and self._from_peer(message):
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
        if self.state == "calling" and message.get("peer") == self.peer:
            self._end("failed", str(message.get("message") or f"{self.peer} is not online"))

    def _on_error(self, message: dict[str, Any], now: float) -> None:
        text = f"signaling server: {message.get('message', 'error')} ({message.get('code')})"
        if self.state == "calling" and message.get("in_reply_to") == "call":
            self._end("failed", text)
        else:
            self._change(error=text)

    # ------------------------------------------------------------------------------- the media engine

    def engine_signal(self, peer: str, signal: dict[str, Any]) -> None:
        """The engine produced an offer, answer or candidate for ``peer``: relay it if the call still wants it."""
        kind = str(signal.get("type"))
        if peer in self.links and peer == self.peer and self.state in _RELAYED_FROM_ENGINE.get(kind, ()):
            fields = {k: v for k, v in signal.items() if k not in ("type", "from", "to")}
            self._signal(kind, peer, **fields)

    def engine_connection(self, peer: str, connection_state: str) -> None:
        """The peer connection to ``peer`` changed its connectionState."""
        link = self.links.get(peer)
        if link is None:
            return
        link.connection = connection_state
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
        if open_ and self.state in ("calling", "connecting"):
            self._deadline = None
            self._change(state="connected")
        elif not open_ and self.state == "connected":
            self._end("ended", f"the data channel to {peer} closed")

    def engine_failed(self, text: str) -> None:
        """A WebRTC step failed in the engine: the call cannot go on (outside a call, only say so)."""
        if self.state in IN_CALL:
            self._signal("hangup", self.peer, reason="failed")
            self._end("failed", text)
        else:
            self._change(error=text)

    def engine_lost(self, reason: str) -> None:
        """The engine lost its peer connections (a reloaded page): end the call, telling the peer."""
        if self.state in IN_CALL:
            self._signal("hangup", self.peer)
            self._end("failed", reason)

    # -------------------------------------------------------------------------------------- internals

    def _from_peer(self, message: dict[str, Any]) -> bool:
        return message.get("from") == self.peer and self.peer in self.links

    def _example_peer(self) -> str:
        return next(iter(self.peers), "B")

    def _signal(self, kind: str, to: str, **fields: Any) -> None:
        self._actions.append(ToServer({"type": kind, "from": self.user_id, "to": to, **fields}))

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
        self._change(state=state, error=error)
