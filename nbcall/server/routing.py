"""Routing across the nodes of a cluster: claims of IDs, messages from other nodes, news from the registry.

:class:`ClusterRouting` is the pure half of :mod:`nbcall.server.cluster`, which does the I/O: it
decides what a claim's outcome, a message published by another node, or the registry's
``joined``/``left``/``moved``/``taken`` news mean for this node's phones and rooms, and returns what
to send (to phones here, or as :class:`~nbcall.server.messages.Forward` to other nodes).
:class:`~nbcall.server.protocol.SignalingProtocol` owns it and exposes its methods.
"""

from __future__ import annotations

import logging
from typing import Any, Generic, cast

import orjson

from ..exceptions import DuplicateID, RegistryUnavailable, SignalingError
from .messages import (
    RELAYED_TYPES,
    REPLACED_ELSEWHERE,
    ROOM_TYPES,
    TAKEN_ELSEWHERE,
    Claim,
    Close,
    ConnT,
    Forward,
    Outgoing,
    encode_message,
    error_reply,
    type_of,
)
from .registry import Registry
from .room_dispatch import RoomDispatch

__all__ = ["ClusterRouting"]


class ClusterRouting(Generic[ConnT]):
    """What the other nodes and the shared registry mean for the phones and rooms of ``registry``."""

    def __init__(
        self,
        registry: Registry[ConnT],
        dispatch: RoomDispatch[ConnT],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.registry = registry
        self.dispatch = dispatch
        self.rooms = dispatch.rooms
        self.logger = logger
        #: Registrations awaiting their claim: connection -> (ID, its register message).
        self.claims: dict[ConnT, tuple[str, dict[str, Any]]] = {}
        #: IDs being claimed -> the connection claiming each.
        self.claiming: dict[str, ConnT] = {}

    def join(self, node: str) -> None:
        """Become node ``node``: the rooms this node holds go into the registry too."""
        self.registry.node = node
        self.rooms.changes = []  # see RoomNode

    # -- claims ---------------------------------------------------------------------

    def claim(
        self, conn: ConnT, peer_id: str, msg: dict[str, Any], secret: bytes | None, room: str | None
    ) -> Outgoing[ConnT]:
        """``conn`` registers ``peer_id``, new to this node: the :class:`Claim` to make first.

        An ID this node holds for a phone whose connection was lost is never claimed: the protocol
        checks its secret here, where it is known.
        """
        if peer_id in self.claiming:
            raise DuplicateID(
                f"ID {peer_id!r} is being registered by another connection right now; pick another ID",
                in_reply_to="register",
            )
        self.claims[conn] = (peer_id, msg)
        self.claiming[peer_id] = conn
        return [(conn, Claim(peer_id, secret, room))]

    def end_claim(self, conn: ConnT) -> tuple[str, dict[str, Any]] | None:
        """The registry answered ``conn``'s claim: its ID and register message (``None``: no claim)."""
        claim = self.claims.pop(conn, None)
        if claim is not None:
            self.claiming.pop(claim[0], None)
        return claim

    @staticmethod
    def refusal(peer_id: str, outcome: str, owner: str) -> SignalingError:
        """The error for a claim that ended ``taken`` (by node ``owner``) or ``down``."""
        if outcome == "taken":
            return DuplicateID(
                f"ID {peer_id!r} is already registered on another server node ({owner}); pick another ID, "
                "close the other phone first, or reclaim it with the secret it registered with",
                in_reply_to="register",
            )
        return RegistryUnavailable(
            f"this server cannot reach the registry it shares with the other nodes, so it cannot make sure "
            f"that no other node has ID {peer_id!r}; new registrations are refused until it is back: "
            "try again in a few seconds (phones retry by themselves)",
            in_reply_to="register",
        )

    # -- messages from other nodes ---------------------------------------------------

    def deliver(self, to: str, sender: str, sender_node: str, text: str) -> Outgoing[ConnT]:
        """A message for ``to`` published by node ``sender_node``: what to send here, and to other nodes.

        ``sender`` is empty for a server notice (never bounced). A phone no longer here gets its
        sender the same ``unavailable`` a local relay would, returned as a :class:`Forward`. An empty
        ``to`` is a room message of ``sender`` for a room this node holds (docs/rooms.md, "Across the
        nodes"); a room notice for a phone here updates what this node knows of its rooms elsewhere.
        """
        conn = self.registry.conns.get(to)
        if conn is not None:
            if not sender and text.startswith('{"type":"room-'):  # every notice is encode_message's
                return self._room_notice(conn, to, sender_node, text)
            return [(conn, text)]
        if not sender:
            return []
        if not to:
            return self._from_node(sender, sender_node, text)
        # The sender is on another node, which alone knows whether it asked for presence: no listing.
        notice = self.registry.unavailable(sender, to, type_of(text) or "message")
        return [(cast(ConnT, None), Forward(sender_node, sender, "", notice))]

    def _room_notice(self, conn: ConnT, peer_id: str, node: str, text: str) -> Outgoing[ConnT]:
        """A room notice from ``node``, which holds the room, for ``peer_id`` (on ``conn``): track it, pass it on."""
        registry = self.registry
        msg = orjson.loads(text)
        msg_type, room = msg.get("type"), msg.get("room")
        if msg_type == "room-invitation":
            busy = self.rooms.room_of(peer_id) is not None or peer_id in registry.member_elsewhere
            if busy or conn not in registry.room_clients:
                # What its phone would answer, said by its node, which alone knows (see docs/rooms.md).
                reason = (
                    "it is a member of another room"
                    if busy
                    else "it does not understand rooms (it did not register with rooms: true)"
                )
                decline = encode_message("room-decline", room=room, reason=reason, **{"from": peer_id})
                return [(cast(ConnT, None), Forward(node, "", peer_id, decline))]
            registry.invited_elsewhere.setdefault(peer_id, {})[room] = node
        elif msg_type == "room-state":
            registry.member_elsewhere[peer_id] = (room, node)
            registry.uninvite(peer_id, room)
        elif msg_type == "room-cancelled":
            registry.uninvite(peer_id, room)
        elif (msg_type == "room-ended" or (msg_type == "room-left" and msg.get("id") == peer_id)) and (
            registry.member_elsewhere.get(peer_id, ("",))[0] == room
        ):
            del registry.member_elsewhere[peer_id]
        return [(conn, text)] if conn in registry.room_clients else []

    def _from_node(self, sender: str, node: str, text: str) -> Outgoing[ConnT]:
        """A room message of ``sender``, a phone on ``node``, for a room this node holds: apply the rules here."""
        registry, dispatch = self.registry, self.dispatch
        msg = orjson.loads(text)
        msg_type = msg.get("type")
        try:
            if msg_type == "register":
                proven, address = bool(msg.get("proven")), str(msg.get("address", ""))
                return dispatch.rejoin_here(
                    sender, msg["room"], msg.get("credential"), proven, address, record=msg.get("sfu")
                )
            elif msg_type == "went-away":  # its node holds its ID meanwhile (id_grace)
                return dispatch.went_away(sender)
            elif msg_type in ROOM_TYPES:
                return dispatch.apply(sender, msg, msg_type)
            elif msg_type in RELAYED_TYPES:
                to = msg["to"]
                dispatch.check_relay(sender, to, msg.get("room"), msg_type)
                target = registry.conns.get(to)
                if target is not None:
                    return [(target, text)]
                if (to_node := registry.remote.get(to)) is not None:
                    return [(cast(ConnT, None), Forward(to_node, to, sender, text))]
                notice = registry.unavailable(sender, to, msg_type)  # no listing, as above
                return [(cast(ConnT, None), Forward(node, sender, "", notice))]
            self.logger.warning("ignoring a %r message from node %s", msg_type, node)
            return []
        except SignalingError as exc:
            self.logger.debug("refused a message from %r (on node %s): %s", sender, node, exc)
            return [(cast(ConnT, None), Forward(node, sender, "", error_reply(exc)))]

    def undeliverable(self, forward: Forward, reason: str) -> Outgoing[ConnT]:
        """``forward`` could not be published (``reason`` says why): tell its sender, if it is still here.

        A rejoin for a room whose node is gone re-creates the room here instead (docs/rooms.md).
        """
        conn = self.registry.conns.get(forward.sender) if forward.sender else None
        if conn is None:
            return []
        msg_type = type_of(forward.text)
        if not forward.to and msg_type == "register":
            # A member back after a failover whose room's node is gone too: the room is made again here.
            msg = orjson.loads(forward.text)
            self.registry.forget_elsewhere(forward.sender)
            return self.dispatch.rejoin_here(
                forward.sender,
                msg["room"],
                msg.get("credential"),
                bool(msg.get("proven")),
                msg["address"],
                conn,
                msg.get("sfu"),
            )
        if forward.to:
            peer, where = forward.to, f"{forward.to!r} is on another server node"
        else:  # a room message for the node holding the room
            peer, where = forward.node, f"the room is held by another server node ({forward.node})"
        notice = encode_message(
            "unavailable",
            peer=peer,
            in_reply_to=msg_type,
            message=f"{where} and {reason}; this {msg_type!r} was not delivered",
        )
        return [(conn, notice)]

    # -- news from the registry ---------------------------------------------------------

    def remote_joined(self, peer_id: str, node: str) -> Outgoing[ConnT]:
        """``peer_id`` registered on node ``node``: news for this node's watchers."""
        registry = self.registry
        if node == registry.node or peer_id in registry.conns:
            return []
        known = peer_id in registry.remote
        registry.remote[peer_id] = node
        return [] if known else registry.news("joined", peer_id)

    def remote_left(self, peer_id: str, node: str) -> Outgoing[ConnT]:
        """``peer_id`` left node ``node`` (or that node is gone): news for this node's watchers."""
        registry = self.registry
        if registry.remote.get(peer_id) != node:
            return []  # it moved on since, or it was never known here
        del registry.remote[peer_id]
        if peer_id in registry.conns:
            return []
        return registry.news("left", peer_id) + self.dispatch.went_away(peer_id)

    def remote_moved(
        self, peer_id: str, old: str, new: str, close: Close = REPLACED_ELSEWHERE
    ) -> Outgoing[ConnT]:
        """``peer_id`` moved from node ``old`` to node ``new`` (its phone failed over, same secret)."""
        registry = self.registry
        if new == registry.node:
            return []  # claimed() took care of it
        if old == registry.node:
            return self.lost_claim(peer_id, new, close)
        known = peer_id in registry.remote
        registry.remote[peer_id] = new
        return [] if known or peer_id in registry.conns else registry.news("joined", peer_id)

    def remote_taken(self, peer_id: str, old: str, new: str) -> Outgoing[ConnT]:
        """Node ``new`` took ``peer_id`` from node ``old``, which the registry took for gone (as a move)."""
        return self.remote_moved(peer_id, old, new, TAKEN_ELSEWHERE)

    def lost_claim(self, peer_id: str, owner: str, close: Close | None = None) -> Outgoing[ConnT]:
        """The registry gives ``peer_id`` to node ``owner``: drop this node's connection for it, without news."""
        registry = self.registry
        registry.remote[peer_id] = owner
        conn = registry.conns.pop(peer_id, None)
        registry.secrets.pop(peer_id, None)
        registry.held.pop(peer_id, None)
        if conn is None:
            return []
        registry.detach(conn)
        registry.forget_elsewhere(peer_id)
        self.logger.info("%r is now held by node %s; closing its connection here", peer_id, owner)
        return [(conn, close or TAKEN_ELSEWHERE)]

    def registry_snapshot(self, owners: dict[str, str]) -> Outgoing[ConnT]:
        """Every ID in the registry -> its node, read after (re)subscribing: news of what changed unseen."""
        registry = self.registry
        old = registry.remote
        new = {
            peer: node
            for peer, node in owners.items()
            if node != registry.node and peer not in registry.conns
        }
        registry.remote = new
        out: Outgoing[ConnT] = []
        for peer_id in sorted(old.keys() - new.keys()):
            out.extend(registry.news("left", peer_id))
            out.extend(self.dispatch.went_away(peer_id))
        for peer_id in sorted(new.keys() - old.keys()):
            out.extend(registry.news("joined", peer_id))
        return out

    def held(self) -> list[tuple[str, bytes | None]]:
        """The IDs this node holds (its phones', and those held for phones whose connection was lost), with secrets."""
        secrets, registry = self.registry.secrets, self.registry
        return [(peer_id, secrets.get(peer_id)) for peer_id in (*registry.conns, *registry.held)]
