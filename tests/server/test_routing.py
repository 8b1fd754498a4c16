"""The cluster decisions of the sans-I/O protocol: claims, forwards to other nodes, news from them. No sockets."""

from __future__ import annotations

import json

from nbcall.server.messages import Claim, Close, Forward, Release, RoomNode, SfuSignal
from nbcall.server.protocol import SignalingProtocol

#: The deployment's room key (from Redis, or --room-key): every node signs and checks credentials with it.
KEY = b"the deployment's room key"


def node(name: str = "n1") -> SignalingProtocol[str]:
    protocol: SignalingProtocol[str] = SignalingProtocol(room_key=KEY)
    protocol.join_cluster(name)
    return protocol


def register(
    p: SignalingProtocol[str], conn: str, peer_id: str, outcome: str = "ok", **fields: object
) -> list:
    p.connect(conn)
    out = p.receive(conn, json.dumps({"type": "register", "from": peer_id, **fields}))
    assert out == [(conn, Claim(peer_id, fields["secret"].encode() if "secret" in fields else None))]  # type: ignore[union-attr]
    result = p.claimed(conn, outcome, "n2")
    assert result is not None
    return result


def test_a_new_id_is_claimed_first_and_registered_when_the_registry_says_ok() -> None:
    p = node()
    assert register(p, "a", "A", secret="s") == [("a", '{"type":"registered","id":"A"}')]
    assert p.local_peers == ["A"]


def test_an_id_taken_on_another_node_or_a_registry_away_is_refused_with_its_code() -> None:
    p = node()
    ((_, reply),) = register(p, "a", "A", outcome="taken")
    assert json.loads(reply)["code"] == "duplicate-id" and "(n2)" in json.loads(reply)["message"]
    ((_, reply),) = register(p, "b", "B", outcome="down")
    assert json.loads(reply)["code"] == "registry-unavailable"
    assert p.local_peers == []


def test_a_second_local_register_of_an_id_being_claimed_is_refused() -> None:
    p = node()
    p.connect("a")
    p.connect("b")
    p.receive("a", '{"type":"register","from":"A"}')
    ((_, reply),) = p.receive("b", '{"type":"register","from":"A"}')
    assert json.loads(reply)["code"] == "duplicate-id"


def test_a_message_for_a_phone_on_another_node_becomes_a_forward_and_unknown_ids_stay_unavailable() -> None:
    p = node()
    register(p, "a", "A")
    p.routing.remote_joined("B", "n2")
    frame = '{"type":"ice","from":"A","to":"B","candidate":"{}"}'
    assert p.receive("a", frame) == [("a", Forward("n2", "B", "A", frame))]
    ((_, reply),) = p.receive("a", '{"type":"ice","to":"nobody","candidate":"{}"}')
    assert json.loads(reply)["type"] == "unavailable"


def test_a_forward_for_a_phone_gone_from_its_node_comes_back_as_unavailable() -> None:
    p = node("n2")
    ((conn, bounce),) = p.routing.deliver("B", "A", "n1", '{"type":"call","from":"A","to":"B","sdp":"{}"}')
    assert (
        conn is None
        and isinstance(bounce, Forward)
        and (bounce.node, bounce.to, bounce.sender) == ("n1", "A", "")
    )
    assert json.loads(bounce.text)["peer"] == "B" and json.loads(bounce.text)["in_reply_to"] == "call"
    assert p.routing.deliver("A", "", "n1", bounce.text) == []  # a notice is never bounced


def test_news_from_other_nodes_reaches_watchers_and_a_move_closes_the_old_connection_silently() -> None:
    p = node()
    register(p, "w", "W", presence=True)
    assert p.routing.remote_joined("B", "n2") == [("w", '{"type":"joined","id":"B"}')]
    assert p.routing.remote_joined("B", "n2") == []  # already known
    assert p.routing.remote_moved("B", "n2", "n3") == []  # still online: no news
    assert p.routing.remote_left("B", "n2") == []  # stale news from its old node
    assert p.routing.remote_left("B", "n3") == [("w", '{"type":"left","id":"B"}')]
    register(p, "a", "A", secret="s")
    out = p.routing.remote_moved("A", "n1", "n2")
    assert out == [
        ("a", Close(1008, "replaced by a newer connection of the same phone on another server node"))
    ]
    assert p.disconnect("a") == []  # no `left`, no release: A lives on node 2
    assert p.peers == ["A", "W"]


def test_a_departure_releases_the_id_and_a_snapshot_reports_what_changed_unseen() -> None:
    p = node()
    register(p, "w", "W", presence=True)
    register(p, "a", "A")
    assert p.disconnect("a")[-1] == ("a", Release("A"))
    p.routing.remote_joined("B", "n2")
    out = p.routing.registry_snapshot({"W": "n1", "C": "n3"})
    assert out == [("w", '{"type":"left","id":"B"}'), ("w", '{"type":"joined","id":"C"}')]


# -- rooms across nodes (docs/rooms.md, "Across the nodes") ------------------------------------


class Bus:
    """Two or more nodes' protocols wired as Redis would: a Forward published by a node reaches its node."""

    def __init__(self, *names: str) -> None:
        self.nodes = {name: node(name) for name in names}
        self.instructions: list[tuple[str, object]] = []

    def send(self, name: str, out: list) -> list[tuple[str, dict]]:
        """Carry ``out`` (from node ``name``) through the bus: the text frames phones get, decoded, in order."""
        frames: list[tuple[str, dict]] = []
        for conn, item in out:
            if isinstance(item, str):
                frames.append((conn, json.loads(item)))
            elif isinstance(item, Forward):
                target = self.nodes[item.node]
                frames.extend(
                    self.send(item.node, target.routing.deliver(item.to, item.sender, name, item.text))
                )
            else:
                self.instructions.append((name, item))
        return frames

    def phone(self, name: str, conn: str, peer_id: str, **fields: object) -> None:
        out = register(self.nodes[name], conn, peer_id, rooms=True, **fields)
        assert json.loads(out[0][1])["type"] == "registered"
        for other, protocol in self.nodes.items():
            if other != name:
                protocol.routing.remote_joined(peer_id, name)

    def receive(self, name: str, conn: str, **msg: object) -> list[tuple[str, dict]]:
        return self.send(name, self.nodes[name].receive(conn, json.dumps(msg)))


def test_a_room_held_by_one_node_takes_members_on_another_and_relays_through_its_node() -> None:
    bus = Bus("n1", "n2")
    bus.phone("n1", "a", "A")
    bus.phone("n2", "b", "B")
    bus.phone("n2", "c", "C")
    (_, state), (_, invitation) = bus.receive("n1", "a", type="room-invite", to="B")
    room = state["room"]
    assert invitation == {"type": "room-invitation", "room": room, "members": ["A"], "from": "A"}
    assert ("n1", RoomNode(room, True)) in bus.instructions  # the registry learns where the room is
    out = bus.receive("n2", "b", type="room-accept", room=room)
    credential = bus.nodes["n1"].rooms.credential(room, "B")
    assert out == [
        (
            "b",
            {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["A", "B"],
                "credential": credential,
            },
        ),
        ("a", {"type": "room-joined", "room": room, "id": "B"}),
    ]
    # B's invitation into its room goes to n1, which holds it, even without 'room'.
    ((conn, msg),) = bus.receive("n2", "b", type="room-invite", to="C")
    assert (conn, msg["type"], msg["from"]) == ("c", "room-invitation", "B")
    bus.receive("n2", "c", type="room-accept", room=room)
    assert bus.nodes["n1"].rooms.members(room) == ["A", "B", "C"]
    # Relays with the room go through n1, even between two phones of n2.
    ((conn, msg),) = bus.receive("n2", "c", type="call", to="B", room=room, sdp="{}")
    assert (conn, msg["from"], msg["room"]) == ("b", "C", room)
    ((conn, msg),) = bus.receive("n2", "c", type="ice", to="A", room="r-other", candidate="{}")
    assert (conn, msg["code"]) == ("c", "not-a-member")
    # An error of n1's rules comes back to the phone on n2.
    ((conn, msg),) = bus.receive("n2", "b", type="room-invite", to="A")
    assert (conn, msg["code"]) == ("b", "already-a-member")
    out = bus.receive("n2", "c", type="room-leave", room=room)
    assert sorted((conn, msg["type"], msg["id"]) for conn, msg in out) == [
        ("a", "room-left", "C"),
        ("b", "room-left", "C"),
    ]
    # C, out of the room, may make one; its node knows that B, its phone, is in a room held elsewhere.
    ((conn, msg),) = bus.receive("n2", "c", type="room-invite", to="B")
    assert (conn, msg["code"]) == ("c", "in-another-room")
    (_, state), (conn, msg), (_, ended) = bus.receive("n2", "c", type="room-invite", to="A")
    assert state["members"] == ["C"] and (conn, msg["reason"]) == ("c", "it is a member of another room")
    assert ended["type"] == "room-ended"


def test_the_node_of_an_invitee_declines_for_it_when_it_is_busy_or_does_not_understand_rooms() -> None:
    bus = Bus("n1", "n2")
    bus.phone("n1", "a", "A")
    bus.phone("n2", "b", "B")
    bus.phone("n2", "c", "C")
    register(bus.nodes["n2"], "s", "S")  # a seed page
    bus.nodes["n1"].routing.remote_joined("S", "n2")
    bus.receive("n2", "b", type="room-invite", to="C")  # B's room, held by n2
    out = bus.receive("n1", "a", type="room-invite", to="B")
    assert [(conn, msg["type"], msg.get("reason")) for conn, msg in out[1:]] == [
        ("a", "room-declined", "it is a member of another room"),
        ("a", "room-ended", "nobody joined: every invitation was declined or expired"),
    ]
    out = bus.receive("n1", "a", type="room-invite", to="S")
    assert out[-2][1]["type"] == "room-declined" and "does not understand rooms" in out[-2][1]["reason"]


def test_a_member_of_a_room_on_another_node_that_goes_offline_leaves_after_its_grace() -> None:
    bus = Bus("n1", "n2")
    bus.phone("n1", "a", "A")
    bus.phone("n2", "b", "B")
    room = bus.receive("n1", "a", type="room-invite", to="B")[0][1]["room"]
    bus.receive("n2", "b", type="room-accept", room=room)
    n1 = bus.nodes["n1"]
    assert bus.nodes["n2"].disconnect("b")[-1] == ("b", Release("B"))  # the registry publishes its departure
    n1.routing.remote_left("B", "n2")
    n1.tick(0.0)
    assert n1.rooms.members(room) == ["A", "B"]  # within its grace
    out = bus.send("n1", n1.tick(100.0))
    assert [(conn, msg["type"], msg["id"]) for conn, msg in out] == [("a", "room-left", "B")]


def test_a_member_back_on_another_node_rejoins_its_room_where_it_is_held_or_remakes_it_if_that_node_is_gone() -> (
    None
):
    bus = Bus("n1", "n2")
    bus.phone("n1", "a", "A")
    bus.phone("n1", "b", "B", secret="b")
    room = bus.receive("n1", "a", type="room-invite", to="B")[0][1]["room"]
    bus.receive("n1", "b", type="room-accept", room=room)
    n2 = bus.nodes["n2"]
    n2.connect("b2")
    credential = {member: bus.nodes["n1"].rooms.credential(room, member) for member in ("A", "B")}
    fields = {
        "type": "register",
        "from": "B",
        "secret": "b",
        "rooms": True,
        "room": room,
        "members": ["A", "B"],
        "credential": credential["B"],
    }
    assert n2.receive("b2", json.dumps(fields)) == [("b2", Claim("B", b"b", room))]
    out = n2.claimed("b2", "moved", "n1", "n1")
    bus.nodes["n1"].routing.remote_moved("B", "n1", "n2")  # the registry's news: n1 closes B's old connection
    assert out is not None and isinstance(out[-1][1], Forward) and out[-1][1].node == "n1"
    assert bus.send("n2", out[-1:]) == [
        (
            "b2",
            {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["A", "B"],
                "credential": credential["B"],
                "rejoined": True,
            },
        )
    ]
    # A claim naming the room without a credential never names it to the registry: nothing to hold there.
    n2.connect("x")
    assert n2.receive("x", json.dumps({**fields, "from": "X", "credential": None})) == [
        ("x", Claim("X", b"b", None))
    ]
    # The room's node gone as well: the registry could not deliver the rejoin, so n2 makes the room again.
    n3 = node("n3")
    n3.connect("a3")
    fields.update({"from": "A", "secret": "a", "credential": credential["A"]})
    n3.receive("a3", json.dumps(fields))
    out = n3.claimed("a3", "ok", "", "n1")
    assert out is not None
    forward = out[-1][1]
    assert isinstance(forward, Forward)
    out = n3.routing.undeliverable(forward, "its node (n1) is not connected to the registry")
    assert json.loads(out[0][1]) == {
        "type": "room-state", "mode": "mesh", "room": room, "members": ["A"], "credential": credential["A"], "rejoined": True
    }  # fmt: skip
    assert out[0][0] == "a3"
    assert out[-1] == (None, RoomNode(room, True))


def test_the_node_holding_an_sfu_room_gets_its_members_signals_and_answers_through_their_nodes() -> None:
    bus = Bus("n1", "n2")
    for protocol in bus.nodes.values():
        protocol.dispatch.sfu = True  # every node of a deployment is given the same --sfu
    bus.phone("n1", "a", "A")
    bus.phone("n2", "b", "B")
    (_, state), _ = bus.receive("n1", "a", type="room-invite", to="B", sfu=True)
    room = state["room"]
    ((conn, joined),) = bus.receive("n2", "b", type="room-accept", room=room)[:1]
    assert (conn, joined["mode"]) == ("b", "sfu")
    # B's offer, sent to its node n2, reaches the SFU bridge of n1, which holds the room.
    offer = json.dumps({"type": "offer", "sdp": "v=0\r\n"})
    bus.instructions.clear()
    assert bus.receive("n2", "b", type="sfu-offer", room=room, role="publisher", sdp=offer) == []
    assert bus.instructions == [
        ("n1", SfuSignal(room, "B", "sfu-offer", "publisher", {"type": "offer", "sdp": "v=0\r\n"}))
    ]
    # n1's answer for B goes back through n2.
    answer = json.dumps({"type": "sfu-answer", "room": room, "role": "publisher", "sdp": "{}", "feed": "7"})
    assert bus.send("n1", bus.nodes["n1"].dispatch.deliver([("B", answer)], sync=False)) == [
        ("b", json.loads(answer))
    ]
    # A directed send from B reaches A (through n1), and only A.
    ((conn, msg),) = bus.receive("n2", "b", type="room-message", room=room, to="A", data="psst")
    assert (conn, msg["from"], msg["data"]) == ("a", "B", "psst")
