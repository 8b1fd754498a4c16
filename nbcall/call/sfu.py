"""The SFU part of the call machine (docs/rooms.md, "SFU rooms"): a room whose members send to a Janus SFU.

Members never offer to each other. After its ``room-state`` each member publishes one connection to the SFU
(``sfu-offer`` / ``sfu-answer`` with ``role: "publisher"``: a data channel, and its tracks), and the server
offers it one subscriber connection carrying every other member's feed (``role: "subscriber"``, with ``feeds``,
feed ID -> member). ``connections`` stays keyed by member: the engine reports a member's channel open when its
feed is open and it receives ours. A message to one member goes through the signaling server
(``room-message``), since the SFU relays a publisher's data to every subscriber. Sans-I/O like
:mod:`~nbcall.call.machine`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from ..exceptions import CallError
from .actions import Delivered, Link

__all__ = ["ROLES", "SfuCalls", "room_message_data"]

#: The SFU connections a member holds: the one it sends on, and the one it receives the others' feeds on.
ROLES = ("publisher", "subscriber")

#: What a signal from the engine becomes on the wire.
_SIGNALS = {"offer": "sfu-offer", "answer": "sfu-answer", "ice": "sfu-ice"}


def room_message_data(kind: str, payload: bytes) -> dict[str, str]:
    """How a directed message travels in ``room-message``'s ``data``: its kind, and its payload as text."""
    if kind == "bytes":
        return {"kind": kind, "base64": base64.b64encode(payload).decode("ascii")}
    return {"kind": kind, "text": payload.decode("utf-8")}


class SfuCalls:
    """Mixin of :class:`~nbcall.call.machine.CallMachine`: its SFU room events. The machine holds the fields and
    the helpers declared here."""

    user_id: str
    room: str
    members: list[str]
    links: dict[str, Link]
    room_mode: str
    sfu_links: dict[str, str]
    sfu_available: bool
    max_message_size: int | None
    _feeds: dict[str, str]
    _sfu_record: str
    _actions: list[Any]
    _change: Callable[..., None]
    _signal: Callable[..., None]
    _engine: Callable[..., None]
    _rtc_config: Callable[[], dict[str, Any]]
    _update_connections: Callable[[], None]

    def check_sfu_invite(self) -> None:
        """Raise unless this phone's server can make an SFU room."""
        if not self.sfu_available:
            raise CallError(
                f"{self.user_id}'s signaling server runs without an SFU, so it cannot make an SFU room: start it "
                "with `nbcall serve --sfu URL` (Janus's API URL), or invite without sfu=True for a mesh room"
            )

    def check_send_file(self, to: str | None) -> None:
        """Raise when a file cannot go to ``to`` in this room: in an SFU room a file goes to every member."""
        if to is not None and self.room and self.room_mode == "sfu":
            raise CallError(
                f"in an SFU room a file goes to every member (the SFU relays to all), not to {to!r} alone: send it "
                f"without to=, or call {to} 1:1 (leave the room first) to send it only there"
            )

    def _sfu_room_state(self, members: list[str], first: bool) -> None:
        """Our ``room-state`` in an SFU room: on the first, publish to the SFU; every member is a feed to wait for."""
        for member in members:
            if member != self.user_id:
                self.links.setdefault(member, Link(member, "callee"))
        if first:
            self._change(room_mode="sfu", sfu_links={role: "new" for role in ROLES})
            self._engine("sfu_publish", "", room=self.room, **self._rtc_config())

    def _on_sfu_offer(self, message: dict[str, Any], now: float) -> None:
        if message.get("room") != self.room or self.room_mode != "sfu" or message.get("role") != "subscriber":
            return
        self._take_feeds(message)
        signal = {"type": "offer", "sdp": message.get("sdp")}
        streams = [s for s in message.get("streams") or [] if isinstance(s, dict)]
        self._engine(
            "sfu_remote", "", role="subscriber", signal=signal, feeds=dict(self._feeds), streams=streams,
            **self._rtc_config(),
        )  # fmt: skip

    def _on_sfu_feeds(self, message: dict[str, Any], now: float) -> None:
        """The feeds of our subscriber connection changed without a new offer (data channels only)."""
        if message.get("room") == self.room and self.room_mode == "sfu":
            self._take_feeds(message)
            self._engine(
                "sfu_remote", "", role="subscriber", signal={"type": "feeds"}, feeds=dict(self._feeds)
            )

    def _take_feeds(self, message: dict[str, Any]) -> None:
        feeds = message.get("feeds")
        self._feeds = {str(f): str(m) for f, m in feeds.items()} if isinstance(feeds, dict) else {}

    def _on_sfu_answer(self, message: dict[str, Any], now: float) -> None:
        if (
            message.get("room") == self.room
            and self.room_mode == "sfu"
            and message.get("role") == "publisher"
        ):
            self._engine(
                "sfu_remote", "", role="publisher", signal={"type": "answer", "sdp": message.get("sdp")}
            )

    def _on_sfu_ice(self, message: dict[str, Any], now: float) -> None:
        role = message.get("role")
        if message.get("room") == self.room and self.room_mode == "sfu" and role in ROLES:
            signal = {"type": "ice", "candidate": message.get("candidate")}
            self._engine("sfu_remote", "", role=role, signal=signal)

    def _on_sfu_record(self, message: dict[str, Any], now: float) -> None:
        """The server's record of our links to the SFU: kept (never a trait) and reported after a restart."""
        record = message.get("record")
        if message.get("room") == self.room and self.room_mode == "sfu" and isinstance(record, str):
            self._sfu_record = record

    def _on_sfu_restart(self, message: dict[str, Any], now: float) -> None:
        """The server could not keep our links to the SFU (after a restart): publish again on new connections."""
        if message.get("room") != self.room or self.room_mode != "sfu":
            return
        self._sfu_record = ""
        self._feeds = {}
        # Every member is a feed to wait for again: the old connections' "connected" says nothing of the new
        # VideoRoom, and a message sent before a member subscribes there never reaches it.
        for link in self.links.values():
            link.connection, link.channel_open = "new", False
        self._change(sfu_links={role: "new" for role in ROLES})
        self._update_connections()
        self._engine("sfu_publish", "", room=self.room, **self._rtc_config())

    def _on_room_message(self, message: dict[str, Any], now: float) -> None:
        """A message one member sent to us alone, through the server."""
        sender, data = str(message.get("from")), message.get("data")
        if message.get("room") != self.room or sender not in self.members or not isinstance(data, dict):
            return
        kind = data.get("kind")
        try:
            if kind == "bytes":
                payload = base64.b64decode(str(data.get("base64")), validate=True)
            elif kind in ("str", "json"):
                payload = str(data.get("text")).encode("utf-8")
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except ValueError as exc:
            self._change(error=f"{sender} sent a room message that does not decode: {exc}")
            return
        self._actions.append(Delivered(sender, kind, payload))

    def send_direct(self, to: str, kind: str, payload: bytes) -> None:
        """Send a message to the member ``to`` alone, through the signaling server (an SFU room's directed send).

        Raises :class:`CallError` when it would pass the server's ``max_message_size``.
        """
        data = room_message_data(kind, payload)
        message = {"type": "room-message", "from": self.user_id, "to": to, "room": self.room, "data": data}
        size = len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        limit = self.max_message_size
        if limit is not None and size > limit:
            raise CallError(
                f"a message to one member of an SFU room goes through the signaling server, which takes at most "
                f"{limit} bytes: this one takes {size} ({len(payload)} bytes of {kind}). Send it to every member "
                f"(without to=), in smaller parts, or call {to} 1:1 for large data"
            )
        self._signal("room-message", to, room=self.room, data=data)

    def sfu_view(self, video: list[str]) -> None:
        """Take only the video of the members ``video`` (the tiles a grid shows); audio and data from all."""
        if self.room and self.room_mode == "sfu":
            self._signal("sfu-view", None, room=self.room, video=[m for m in video if m in self.members])

    def engine_sfu_signal(self, role: str, signal: dict[str, Any]) -> None:
        """The engine made an offer, answer or candidate for its ``role`` connection to the SFU: send it on."""
        kind = _SIGNALS.get(str(signal.get("type")))
        if not self.room or self.room_mode != "sfu" or role not in ROLES or kind is None:
            return
        fields = {k: v for k, v in signal.items() if k != "type"}
        self._signal(kind, None, room=self.room, role=role, **fields)

    def engine_sfu_connection(self, role: str, state: str) -> None:
        """The engine's ``role`` connection to the SFU changed its connectionState."""
        if self.room_mode != "sfu" or role not in ROLES:
            return
        self._change(sfu_links={**self.sfu_links, role: state})
        if role == "subscriber":
            for link in self.links.values():
                link.connection = state  # every feed comes through it
        if state == "failed":
            self._change(
                error=f"the {role} connection to the SFU failed: ICE found no path to Janus's media ports"
            )
        self._update_connections()
