"""The call machine in SFU rooms (docs/rooms.md, "SFU rooms"): publishing, the subscriber connection, members
as feeds, directed sends through the server. Sans-I/O: no sockets."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from nbcall.call.machine import CallMachine, Delivered
from nbcall.exceptions import CallError

from .test_call_machine import changes, to_engine, to_server

ROOM = "r-sfu"


def machine(sfu: bool = True, **options: Any) -> CallMachine:
    m = CallMachine("P", **options)
    m.registered({"type": "registered", "id": "P", "peers": ["A", "B"], "sfu": sfu, "max_message_size": 2000})
    m.actions_to_take()
    return m


def joined(members: tuple[str, ...] = ("A", "P")) -> CallMachine:
    """P accepted A's invitation into an SFU room and got its room-state."""
    m = machine()
    m.receive({"type": "room-invitation", "room": ROOM, "from": "A", "members": ["A"], "sfu": True}, 0.0)
    assert m.invitation == {"room": ROOM, "from": "A", "members": ["A"], "sfu": True}
    m.answer(0.0)
    m.receive({"type": "room-state", "room": ROOM, "members": list(members), "mode": "sfu"}, 0.0)
    return m


def test_invite_with_sfu_asks_the_server_for_an_sfu_room_and_refuses_without_one() -> None:
    m = machine()
    m.invite(("A", "B"), 0.0, sfu=True)
    assert [(s["type"], s["to"], s.get("sfu")) for s in to_server(m.actions_to_take())] == [
        ("room-invite", "A", True),
        ("room-invite", "B", True),
    ]
    with pytest.raises(CallError, match="without an SFU.*--sfu URL"):
        machine(sfu=False).invite(("A",), 0.0, sfu=True)


def test_a_joiner_publishes_to_the_sfu_and_offers_to_no_member() -> None:
    m = joined(("A", "B", "P"))
    actions = m.actions_to_take()
    engine = to_engine(actions)
    assert [c["type"] for c in engine] == ["sfu_publish"]
    assert engine[0]["room"] == ROOM and engine[0]["ice_servers"] == []
    assert changes(actions)["room_mode"] == "sfu"
    assert m.state == "connected" and m.sfu_links == {"publisher": "new", "subscriber": "new"}
    assert m.connections == {"A": "connecting", "B": "connecting"}
    m.engine_sfu_signal("publisher", {"type": "offer", "sdp": "v=0 pub"})
    assert to_server(m.actions_to_take()) == [
        {"type": "sfu-offer", "from": "P", "room": ROOM, "role": "publisher", "sdp": "v=0 pub"}
    ]
    m.receive({"type": "sfu-answer", "room": ROOM, "role": "publisher", "sdp": "v=0 janus"}, 0.0)
    assert to_engine(m.actions_to_take()) == [
        {
            "type": "sfu_remote",
            "peer": "",
            "role": "publisher",
            "signal": {"type": "answer", "sdp": "v=0 janus"},
        }
    ]


def test_the_subscriber_offer_carries_the_feeds_and_members_connect_as_their_feeds_open() -> None:
    m = joined(("A", "B", "P"))
    m.actions_to_take()
    feeds = {"111": "A", "222": "B"}
    m.receive(
        {"type": "sfu-offer", "room": ROOM, "role": "subscriber", "sdp": "v=0 sub", "feeds": feeds}, 0.0
    )
    [command] = to_engine(m.actions_to_take())
    assert command["type"] == "sfu_remote" and command["feeds"] == feeds
    m.engine_sfu_signal("subscriber", {"type": "answer", "sdp": "v=0 mine"})
    assert to_server(m.actions_to_take())[0]["type"] == "sfu-answer"
    m.engine_sfu_connection("subscriber", "connected")
    m.engine_channel("A", True)
    assert m.connections == {"A": "connected", "B": "connecting"}
    m.engine_channel(
        "A", False
    )  # a feed closing is no report on the member's links: the server follows Janus
    assert not [s for s in to_server(m.actions_to_take()) if s["type"] == "room-link"]
    m.engine_sfu_connection("subscriber", "failed")
    assert (
        m.connections == {"A": "failed", "B": "failed"}
        and "subscriber connection to the SFU failed" in m.error
    )


def test_leaving_closes_the_sfu_connections_and_forgets_the_mode() -> None:
    m = joined()
    m.actions_to_take()
    m.leave()
    actions = m.actions_to_take()
    assert [s["type"] for s in to_server(actions)] == ["room-leave"]
    assert "sfu_close" in [c["type"] for c in to_engine(actions)]
    assert (m.room_mode, m.sfu_links, m.connections) == ("", {}, {})


def test_a_directed_send_goes_through_the_server_and_one_too_large_for_it_is_refused() -> None:
    m = joined()
    m.actions_to_take()
    m.check_send("A")  # no feed open yet: it goes through the server all the same
    m.send_direct("A", "bytes", b"\x00\xff")
    [sent] = to_server(m.actions_to_take())
    assert sent == {"type": "room-message", "from": "P", "to": "A", "room": ROOM,
                    "data": {"kind": "bytes", "base64": "AP8="}}  # fmt: skip
    with pytest.raises(CallError, match="takes at most 2000 bytes.*without to="):
        m.send_direct("A", "str", b"x" * 2000)
    with pytest.raises(CallError, match="a file goes to every member"):
        m.check_send_file("A")


def test_a_room_message_from_a_member_is_delivered_and_one_from_anyone_else_is_not() -> None:
    m = joined()
    m.actions_to_take()
    data = {"kind": "bytes", "base64": base64.b64encode(b"hi").decode()}
    m.receive({"type": "room-message", "room": ROOM, "from": "A", "to": "P", "data": data}, 0.0)
    assert [a for a in m.actions_to_take() if isinstance(a, Delivered)] == [Delivered("A", "bytes", b"hi")]
    m.receive({"type": "room-message", "room": ROOM, "from": "B", "to": "P", "data": data}, 0.0)
    m.receive({"type": "room-message", "room": "r-other", "from": "A", "to": "P", "data": data}, 0.0)
    assert not [a for a in m.actions_to_take() if isinstance(a, Delivered)]
    m.receive(
        {"type": "room-message", "room": ROOM, "from": "A", "data": {"kind": "bytes", "base64": "!"}}, 0.0
    )
    assert "does not decode" in m.error


def test_a_mesh_room_says_so_and_an_sfu_invite_there_is_refused() -> None:
    m = machine()
    m.invite(("A",), 0.0)
    m.receive({"type": "room-state", "room": ROOM, "members": ["P"]}, 0.0)
    assert m.room_mode == "mesh"
    with pytest.raises(CallError, match="mesh room.*leave this one first"):
        m.invite(("B",), 0.0, sfu=True)


def test_the_sfu_record_goes_back_in_register_and_an_sfu_restart_publishes_again() -> None:
    m = joined(("A", "P"))
    m.actions_to_take()
    m.receive({"type": "sfu-record", "room": "another room", "record": "forged"}, 0.0)
    assert "sfu" not in m.register_fields()
    m.receive({"type": "sfu-record", "room": ROOM, "record": "abc.def"}, 0.0)
    assert m.register_fields()["sfu"] == "abc.def"  # with room and credential, after a restart
    m.receive(
        {"type": "room-state", "room": ROOM, "members": ["A", "P"], "mode": "sfu", "rejoined": True}, 0.0
    )
    assert to_engine(m.actions_to_take()) == []  # taken up where it was: nothing published again
    m.engine_sfu_connection("subscriber", "connected")
    m.engine_channel("A", True)
    assert m.connections == {"A": "connected"}
    m.receive({"type": "sfu-restart", "room": ROOM, "reason": "the session expired: publish again"}, 0.0)
    engine = to_engine(m.actions_to_take())
    assert [c["type"] for c in engine] == ["sfu_publish"] and engine[0]["room"] == ROOM
    assert m.sfu_links == {"publisher": "new", "subscriber": "new"} and "sfu" not in m.register_fields()
    # A is a feed to wait for again on the new VideoRoom: wait_for_members waits until the engine says so.
    assert m.connections == {"A": "connecting"}
    m.engine_sfu_connection("subscriber", "connected")
    assert m.connections == {"A": "connecting"}
    m.engine_channel("A", True)
    assert m.connections == {"A": "connected"}
    m.leave(0.0)
    assert "sfu" not in m.register_fields()
