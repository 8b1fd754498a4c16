"""Who is online, as one server node knows it: its connections and their IDs, and (cluster) the other nodes'.

:class:`Registry` is the state the parts of :class:`~nbcall.server.protocol.SignalingProtocol` share
(the relay, the room dispatch, the routing across nodes, the rate policy reads the IDs): plain
dictionaries named publicly, so each part reads and changes them directly, with no call per message.
"""

from __future__ import annotations

import hmac
from typing import Generic

from .messages import ConnT, Outgoing, encode_message

__all__ = ["Registry"]

_MAX_LISTED_PEERS = 10


class Registry(Generic[ConnT]):
    """The connections of one server node and the IDs online, here and (cluster) on the other nodes."""

    __slots__ = ("addresses", "conns", "held", "ids", "invited_elsewhere", "member_elsewhere", "node", "remote",
                 "room_clients", "secrets", "watchers")  # fmt: skip

    def __init__(self) -> None:
        #: Every connected connection -> its ID once registered.
        self.ids: dict[ConnT, str | None] = {}
        #: Registered ID -> its connection.
        self.conns: dict[str, ConnT] = {}
        #: Registered ID -> the secret it registered with, if any (kept while the ID is held).
        self.secrets: dict[str, bytes] = {}
        #: IDs whose connection was lost without a close frame, held for their secret's holder -> when the
        #: hold ends (``None`` until the next tick stamps it); see ``id_grace``.
        self.held: dict[str, float | None] = {}
        #: Connection -> its client's address (host), where the server gave it.
        self.addresses: dict[ConnT, str] = {}
        #: Registered connections that asked for presence news (a dict keeps their order).
        self.watchers: dict[ConnT, None] = {}
        #: Registered connections that said they understand rooms: the only ones room messages reach.
        self.room_clients: dict[ConnT, None] = {}
        #: In a cluster, this node's ID; ``None``: every peer is local.
        self.node: str | None = None
        #: Cluster: ID online on another node -> that node.
        self.remote: dict[str, str] = {}
        #: Cluster: this node's phones in rooms held by other nodes (docs/rooms.md, "Across the nodes"),
        #: learned from the notices those nodes send them: phone -> (room, node).
        self.member_elsewhere: dict[str, tuple[str, str]] = {}
        #: Cluster: this node's phones invited into rooms held by other nodes: phone -> {room: node}.
        self.invited_elsewhere: dict[str, dict[str, str]] = {}

    def proves(self, peer_id: str, secret: bytes | None) -> bool:
        """Whether ``secret`` is the one ``peer_id`` registered with (compared in constant time)."""
        known = self.secrets.get(peer_id)
        # Always compare, even without a known secret, so timing tells nothing about it.
        matches = hmac.compare_digest(known or b"\0", secret or b"")
        return known is not None and secret is not None and matches

    def detach(self, conn: ConnT) -> None:
        """``conn`` stays connected but holds no ID any more (its ID went to a newer connection)."""
        self.ids[conn] = None
        self.watchers.pop(conn, None)
        self.room_clients.pop(conn, None)

    def news(self, what: str, peer_id: str) -> Outgoing[ConnT]:
        """``joined`` or ``left`` news of ``peer_id`` for every watcher."""
        text = encode_message(what, id=peer_id)
        return [(watcher, text) for watcher in self.watchers]

    def unavailable(self, sender: str, to: str, msg_type: str, listing: bool = False) -> str:
        """The ``unavailable`` reply to ``sender``'s ``msg_type`` for ``to``.

        ``listing``: name some of the IDs online (only to a phone that asked for presence).
        """
        if not listing:
            return encode_message(
                "unavailable", peer=to, in_reply_to=msg_type, message=f"{to!r} is not online on this server"
            )
        online = sorted(peer for peer in self.conns if peer != sender)
        if not online:
            who = "no other peer is online"
        else:
            who = "online: " + ", ".join(online[:_MAX_LISTED_PEERS])
            if len(online) > _MAX_LISTED_PEERS:
                who += f" and {len(online) - _MAX_LISTED_PEERS} more"
        return encode_message(
            "unavailable",
            peer=to,
            in_reply_to=msg_type,
            message=f"{to!r} is not online on this server; {who}",
        )

    def uninvite(self, peer_id: str, room: str) -> None:
        """``peer_id`` is no longer invited into ``room``, held by another node."""
        invited = self.invited_elsewhere.get(peer_id)
        if invited is not None and invited.pop(room, None) is not None and not invited:
            del self.invited_elsewhere[peer_id]

    def forget_elsewhere(self, peer_id: str) -> None:
        """``peer_id`` is in no room held by another node, nor invited into one."""
        if self.member_elsewhere:
            self.member_elsewhere.pop(peer_id, None)
        if self.invited_elsewhere:
            self.invited_elsewhere.pop(peer_id, None)
