"""Room dispatch: a phone's ``room-*`` messages to the rules of :mod:`nbcall.server.rooms`, and its notices back.

:class:`RoomDispatch` checks who may send a room message and its fields, applies the rules of
:class:`~nbcall.server.rooms.RoomRegistry` (docs/rooms.md) and addresses the notices: to this node's
phones that registered with ``"rooms": true`` and, in a cluster, to the other nodes (a room held by
another node gets the message itself, as a :class:`~nbcall.server.messages.Forward`). Pure, like
:class:`~nbcall.server.protocol.SignalingProtocol`, which owns it.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Generic, cast

from ..exceptions import (
    BadMessage,
    InAnotherRoom,
    InviteSelf,
    NoRooms,
    NotRegistered,
    SfuUnavailable,
    SignalingError,
    Unavailable,
)
from .messages import (
    REGISTER_HINT,
    SFU_SIGNALS,
    SFU_SYNC,
    ConnT,
    Forward,
    Outgoing,
    RoomNode,
    SfuSignal,
    check_from,
    encode_message,
    error_reply,
    flag_field,
    json_type,
    not_a_member,
    peer_field,
    reason_field,
    room_field,
    shorten,
)
from .registry import Registry
from .room_model import Notices, is_sfu_room
from .rooms import RoomRegistry
from .sfu_messages import directed_text, sfu_signal

__all__ = ["RoomDispatch"]


class RoomDispatch(Generic[ConnT]):
    """The room messages of the phones in ``registry``, under the rules of ``rooms``."""

    def __init__(
        self,
        registry: Registry[ConnT],
        rooms: RoomRegistry,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.registry = registry
        self.rooms = rooms
        self.logger = logger
        self._warned = False  # that rooms cannot be re-established without a room key
        #: Whether the server drives an SFU (``serve(sfu=...)``): SFU rooms may be made, their signals go to it.
        self.sfu = False

    def message(self, conn: ConnT, msg: dict[str, Any], msg_type: str) -> Outgoing[ConnT]:
        """A room message ``msg`` of type ``msg_type`` from ``conn``: what to send to whom."""
        registry = self.registry
        sender = registry.ids[conn]
        if sender is None:
            raise NotRegistered(f"this connection has no ID yet; {REGISTER_HINT}", in_reply_to=msg_type)
        raw_from = msg.get("from", sender)
        if raw_from != sender:
            check_from(raw_from, sender, msg_type)
        if conn not in registry.room_clients:
            raise NoRooms(
                f'this connection ({sender!r}) did not register with "rooms": true; register again '
                f'with {{"type":"register","from":{json.dumps(sender)},"rooms":true}} to use rooms',
                in_reply_to=msg_type,
            )
        if registry.node is not None and (node := self._node_of(sender, msg, msg_type)) is not None:
            # A room held by another node: it applies the rules, and its notices come back through this one.
            msg["from"] = sender
            if msg_type == "room-leave":  # the leaver hears nothing back: it is out once it said so
                registry.member_elsewhere.pop(sender, None)
            return [(conn, Forward(node, "", sender, json.dumps(msg, separators=(",", ":"))))]
        return self.apply(sender, msg, msg_type)

    def apply(self, sender: str, msg: dict[str, Any], msg_type: str) -> Outgoing[ConnT]:
        """``sender``'s room message for a room this node decides on: the notices, addressed, or an SFU signal."""
        if msg_type in SFU_SIGNALS:
            room = room_field(msg, msg_type)
            self.rooms.check_member(sender, room, msg_type)
            if not is_sfu_room(room):
                raise BadMessage(
                    f"room {room!r} is a mesh room: its members offer to each other with 'call'; SFU messages "
                    'are for rooms made with room-invite and "sfu": true',
                    in_reply_to=msg_type,
                )
            return [(cast(ConnT, None), sfu_signal(sender, room, msg, msg_type))]
        if msg_type == "room-message":  # a directed send: to one member only, never to the others
            room = room_field(msg, msg_type)
            to = peer_field(msg, "to", msg_type)
            self.rooms.check_relay(sender, to, room, msg_type)
            return self.deliver([(to, directed_text(sender, room, to, msg))], sync=False)
        return self.deliver(self.rules(sender, msg, msg_type))

    def _node_of(self, sender: str, msg: dict[str, Any], msg_type: str) -> str | None:
        """Cluster: the other node holding the room ``msg`` is about, or ``None`` (this node decides)."""
        registry = self.registry
        member = registry.member_elsewhere.get(sender) if registry.member_elsewhere else None
        if msg_type == "room-invite":
            room = room_field(msg, msg_type, required=False)
            if member is None:
                return None
            if room is not None and room != member[0]:
                raise not_a_member(room, member[0], msg_type)
            msg["room"] = member[0]  # into its room, as on one node
            return member[1]
        room = room_field(msg, msg_type)
        if member is not None and member[0] == room:
            return member[1]
        invited = registry.invited_elsewhere
        node = invited.get(sender, {}).get(room) if invited else None
        if node is not None and msg_type in ("room-accept", "room-decline"):
            if msg_type == "room-accept" and (member is not None or self.rooms.room_of(sender) is not None):
                raise InAnotherRoom(
                    f"you are a member of room {member[0] if member else self.rooms.room_of(sender)!r}; send "
                    f"room-leave for it before accepting room {room!r}",
                    in_reply_to=msg_type,
                )
            return node
        return None

    def rejoin(
        self,
        conn: ConnT,
        peer_id: str,
        room: str,
        credential: str | None,
        proven: bool,
        room_node: str,
        record: str | None = None,
    ) -> Outgoing[ConnT]:
        """``peer_id`` (on ``conn``) registered with ``room``: it says it is a member, with its ``credential``
        (and, in an SFU room, the ``record`` of its links to the SFU, see :mod:`~nbcall.server.sfu_record`).

        ``proven``: it proved its ID with its secret. ``room_node``: the node the shared registry named
        for the room, if any. The registration stands either way; a refused claim to the room is an
        error after ``registered``.
        """
        address = self.registry.addresses.get(conn, "")
        node = self.held_by(peer_id, room, room_node)
        if node is not None:
            # Its room is held by another node: that node decides (and answers through this one).
            fields: dict[str, Any] = {"room": room, "from": peer_id, "address": address}
            if credential is not None:
                fields["credential"] = credential
            if proven:
                fields["proven"] = True  # nodes trust each other: this one checked the secret
            if record is not None:
                fields["sfu"] = record
            return [(conn, Forward(node, "", peer_id, encode_message("register", **fields)))]
        return self.rejoin_here(peer_id, room, credential, proven, address, conn, record)

    def rejoin_here(
        self,
        peer_id: str,
        room: str,
        credential: object,
        proven: bool,
        address: str,
        conn: ConnT | None = None,
        record: object = None,
    ) -> Outgoing[ConnT]:
        """Apply the rules of a rejoin to a room this node holds (or re-creates); an error goes to ``conn``.

        A member back in an SFU room hands the SFU its ``record`` first (``sfu-restore``, ``None`` when it had
        none), so that a room re-created here takes its links to the SFU up where they were."""
        rooms = self.rooms
        try:
            out = self.deliver(rooms.rejoin(peer_id, room, credential, proven=proven, address=address))
        except SignalingError as exc:
            self.logger.debug("refused %r's claim to a room: %s", peer_id, exc)
            if conn is None:
                raise
            return [(conn, error_reply(exc, "register"))]
        if self.sfu and is_sfu_room(room) and rooms.room_of(peer_id) == room:
            value = {"record": record if isinstance(record, str) else None}
            out.insert(0, (cast(ConnT, None), SfuSignal(room, peer_id, "sfu-restore", "publisher", value)))
        if rooms.room_of(peer_id) != room:  # its credential was signed by the key of the server before
            if not self._warned:
                self._warned = True
                self.logger.warning(
                    "a phone tried to re-establish its room after a restart, but this server has no room key "
                    "(--room-key or NBCALL_ROOM_KEY): rooms cannot be re-established, their members are told "
                    "the room ended"
                )
            return out
        self.logger.info("%r is back in room %r (%d members)", peer_id, room, len(rooms.members(room)))
        return out

    def held_by(self, peer_id: str, room: str, room_node: str = "") -> str | None:
        """The other node that holds ``room``, for ``peer_id``'s messages about it; ``None``: this node decides.

        ``room_node``: the node the shared registry named for the room, if any.
        """
        registry = self.registry
        if registry.node is None or self.rooms.has(room):
            return None
        member = registry.member_elsewhere.get(peer_id)
        if member is not None and member[0] == room:
            return member[1]
        node = registry.invited_elsewhere.get(peer_id, {}).get(room) or room_node
        return node if node and node != registry.node else None

    def rules(self, sender: str, msg: dict[str, Any], msg_type: str) -> Notices:
        """Apply the rules of rooms to ``sender``'s message (a phone here or, for a room held here, elsewhere)."""
        rooms, registry = self.rooms, self.registry
        if msg_type == "room-invite":
            to = peer_field(msg, "to", msg_type)
            room = room_field(msg, msg_type, required=False)
            link = flag_field(msg, "link", msg_type, "send true when you are already connected to 'to'")
            sfu = flag_field(msg, "sfu", msg_type, "send true to make a new room on the server's SFU")
            if sfu and not self.sfu and room is None and rooms.room_of(sender) is None:
                raise SfuUnavailable(
                    "this server runs without an SFU (start it with --sfu URL, Janus's API URL, or "
                    'serve(sfu=...)); invite without "sfu" for a mesh room',
                    in_reply_to=msg_type,
                )
            if to == sender:
                raise InviteSelf(
                    f"'to' is your own ID {sender!r}; invite another phone into your room",
                    in_reply_to=msg_type,
                )
            mine = rooms.room_of(sender)
            if room is not None and room != mine:
                raise not_a_member(room, mine, msg_type)
            target = registry.conns.get(to)
            if target is None and to not in registry.remote:
                raise Unavailable(
                    f"{to!r} is not online on this server; invite a phone that is", in_reply_to=msg_type
                )
            # A phone on another node: its node checks that it understands rooms and is in no other room,
            # and declines for it if not (docs/rooms.md, "Across the nodes").
            if target is not None and target not in registry.room_clients:
                raise NoRooms(
                    f'{to!r} did not register with "rooms": true (a phone that does not understand rooms, '
                    "such as a seed page); call it 1:1 instead",
                    in_reply_to=msg_type,
                )
            if target is not None and to in registry.member_elsewhere:
                raise InAnotherRoom(
                    f"{to!r} is a member of another room; it must leave that room before it can be invited",
                    in_reply_to=msg_type,
                )
            notices = rooms.invite(sender, to, link=link, sfu=sfu)
            self.logger.info("%r invited %r into room %r", sender, to, rooms.room_of(sender))
        elif msg_type == "room-accept":
            room = room_field(msg, msg_type)
            if sender in registry.member_elsewhere:
                raise InAnotherRoom(
                    f"you are a member of room {registry.member_elsewhere[sender][0]!r}; send room-leave for it "
                    f"before accepting room {room!r}",
                    in_reply_to=msg_type,
                )
            notices = rooms.accept(sender, room)
            self.logger.info("%r joined room %r (%d members)", sender, room, len(rooms.members(room)))
        elif msg_type == "room-decline":
            room = room_field(msg, msg_type)
            notices = rooms.decline(sender, room, reason_field(msg, msg_type))
        elif msg_type == "room-leave":
            room = room_field(msg, msg_type)
            notices = rooms.leave(sender, room, reason_field(msg, msg_type))
            self.logger.info("%r left room %r", sender, room)
        else:  # room-link
            room = room_field(msg, msg_type)
            peer = peer_field(msg, "peer", msg_type)
            state = msg.get("state")
            if state not in ("failed", "closed"):
                raise BadMessage(
                    f"field 'state' of a 'room-link' message must be \"failed\" or \"closed\" (the "
                    f"connectionState of your link to 'peer'), got {json_type(state)} {shorten(state)}",
                    in_reply_to=msg_type,
                )
            if peer == sender:
                raise BadMessage(
                    f"'peer' is your own ID {sender!r}; report your link to another member",
                    in_reply_to=msg_type,
                )
            notices = rooms.report_link(sender, room, peer)
        return notices

    def check_relay(self, sender: str, to: str, room: object, msg_type: str) -> None:
        """Raise unless ``sender`` may relay ``msg_type`` to ``to`` as members of ``room`` (``None``: no room)."""
        if room is None:
            return  # like an absent field
        if not isinstance(room, str):
            raise BadMessage(
                f"field 'room' must be a string (the room's ID), got {json_type(room)} {shorten(room)}",
                in_reply_to=msg_type,
            )
        self.rooms.check_relay(sender, to, room, msg_type)

    def went_away(self, peer_id: str) -> Outgoing[ConnT]:
        """``peer_id``'s connection is gone (here, or its node's): for this node's rooms, its grace starts."""
        rooms = self.rooms
        if not (rooms.active and rooms.involves(peer_id)):
            return []
        return self.deliver(rooms.went_away(peer_id))

    def end_room(self, room: str, reason: str) -> Outgoing[ConnT]:
        """End ``room`` now, its SFU having failed: ``room-ended`` with ``reason`` to its members."""
        return self.deliver(self.rooms.end(room, reason))

    def deliver(self, notices: Notices, *, sync: bool = True) -> Outgoing[ConnT]:
        """Address room notices: to online phones here that registered with rooms, and (cluster) to other nodes.

        A phone on another node gets its notice through its node, which checks that it registered with
        rooms. The rooms made and ended here go to the registry (:class:`RoomNode`). ``sync``: the notices
        may change who is in a room; with SFU rooms, the SFU then looks (:data:`SFU_SYNC`).
        """
        out: Outgoing[ConnT] = []
        registry = self.registry
        conns, room_clients, remote = registry.conns, registry.room_clients, registry.remote
        for peer_id, text in notices:
            conn = conns.get(peer_id)
            if conn is not None:
                if conn in room_clients:
                    out.append((conn, text))
            elif remote and (node := remote.get(peer_id)) is not None:
                out.append((cast(ConnT, None), Forward(node, peer_id, "", text)))
        rooms = self.rooms
        changes = rooms.changes
        if changes:
            out.extend((cast(ConnT, None), RoomNode(room, made)) for room, made in changes)
            changes.clear()
        if sync and (rooms.sfu_changed or (notices and rooms.sfu_rooms)):
            rooms.sfu_changed = False
            out.append((cast(ConnT, None), SFU_SYNC))
        return out
