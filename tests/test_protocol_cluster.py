"""The cluster decisions of the sans-I/O protocol: claims, forwards to other nodes, news from them. No sockets."""

from __future__ import annotations

import json

from nbcall.protocol import Claim, Close, Forward, Release, SignalingProtocol


def node(name: str = "n1") -> SignalingProtocol[str]:
    protocol: SignalingProtocol[str] = SignalingProtocol()
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
    p.remote_joined("B", "n2")
    frame = '{"type":"ice","from":"A","to":"B","candidate":"{}"}'
    assert p.receive("a", frame) == [("a", Forward("n2", "B", "A", frame))]
    ((_, reply),) = p.receive("a", '{"type":"ice","to":"nobody","candidate":"{}"}')
    assert json.loads(reply)["type"] == "unavailable"


def test_a_forward_for_a_phone_gone_from_its_node_comes_back_as_unavailable() -> None:
    p = node("n2")
    out, bounce = p.deliver("B", "A", "n1", '{"type":"call","from":"A","to":"B","sdp":"{}"}')
    assert out == [] and bounce is not None and (bounce.node, bounce.to, bounce.sender) == ("n1", "A", "")
    assert json.loads(bounce.text)["peer"] == "B" and json.loads(bounce.text)["in_reply_to"] == "call"
    assert p.deliver("A", "", "n1", bounce.text) == ([], None)  # a notice is never bounced


def test_news_from_other_nodes_reaches_watchers_and_a_move_closes_the_old_connection_silently() -> None:
    p = node()
    register(p, "w", "W", presence=True)
    assert p.remote_joined("B", "n2") == [("w", '{"type":"joined","id":"B"}')]
    assert p.remote_joined("B", "n2") == []  # already known
    assert p.remote_moved("B", "n2", "n3") == []  # still online: no news
    assert p.remote_left("B", "n2") == []  # stale news from its old node
    assert p.remote_left("B", "n3") == [("w", '{"type":"left","id":"B"}')]
    register(p, "a", "A", secret="s")
    out = p.remote_moved("A", "n1", "n2")
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
    p.remote_joined("B", "n2")
    out = p.registry_snapshot({"W": "n1", "C": "n3"})
    assert out == [("w", '{"type":"left","id":"B"}'), ("w", '{"type":"joined","id":"C"}')]
