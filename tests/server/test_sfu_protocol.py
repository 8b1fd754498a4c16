"""The rules of SFU rooms and directed sends (docs/rooms.md, "Rooms on an SFU"), without sockets or Janus."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import OFFER, SAMPLE_OFFER

from nbcall.server.messages import SFU_SYNC, SfuSignal
from nbcall.server.protocol import SignalingProtocol

Out = list[tuple[Any, Any]]


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def texts(out: Out, conn: str) -> list[dict[str, Any]]:
    """The messages ``out`` sends to ``conn``, decoded."""
    return [json.loads(item) for target, item in out if target == conn and isinstance(item, str)]


def error(out: Out, conn: str, code: str) -> str:
    messages = texts(out, conn)
    assert len(messages) == 1 and (messages[0]["type"], messages[0]["code"]) == ("error", code), out
    return str(messages[0]["message"])


def signals(out: Out) -> list[SfuSignal]:
    return [item for _, item in out if isinstance(item, SfuSignal)]


def make(sfu: bool = True, **limits: Any) -> SignalingProtocol[str]:
    """Phones A to E with rooms, on a server with (or without) an SFU."""
    p: SignalingProtocol[str] = SignalingProtocol(sfu=sfu, **limits)
    for name in "ABCDE":
        p.connect(name.lower())
        p.receive(name.lower(), frame(type="register", rooms=True, **{"from": name}))
    return p


def sfu_room(p: SignalingProtocol[str], creator: str, *joiners: str) -> str:
    out = p.receive(creator.lower(), frame(type="room-invite", to=joiners[0], sfu=True))
    room = texts(out, creator.lower())[0]["room"]
    for joiner in joiners[1:]:
        p.receive(creator.lower(), frame(type="room-invite", to=joiner))
    for joiner in joiners:
        p.receive(joiner.lower(), frame(type="room-accept", room=room))
    return str(room)


@pytest.fixture
def proto() -> SignalingProtocol[str]:
    return make()


def test_registered_announces_the_sfu_only_on_a_server_with_one() -> None:
    for sfu in (True, False):
        p: SignalingProtocol[str] = SignalingProtocol(sfu=sfu)
        p.connect("a")
        reply = texts(p.receive("a", frame(type="register", presence=True, **{"from": "A"})), "a")[0]
        assert reply.get("sfu") is (True if sfu else None)


def test_an_sfu_invite_makes_an_sfu_room_whose_notices_say_so(proto: SignalingProtocol[str]) -> None:
    out = proto.receive("a", frame(type="room-invite", to="B", sfu=True))
    state, invitation = texts(out, "a")[0], texts(out, "b")[0]
    assert state["type"] == "room-state" and state["mode"] == "sfu" and state["room"].startswith("s-")
    assert invitation == {
        "type": "room-invitation",
        "room": state["room"],
        "members": ["A"],
        "sfu": True,
        "from": "A",
    }
    assert (None, SFU_SYNC) in out  # the SFU makes its room
    # A further invitation into it is into the SFU room, whatever its flag says.
    out = proto.receive("a", frame(type="room-invite", to="C"))
    assert texts(out, "c")[0]["sfu"] is True
    joined = proto.receive("b", frame(type="room-accept", room=state["room"]))
    assert texts(joined, "b")[0]["mode"] == "sfu" and (None, SFU_SYNC) in joined
    # A mesh room says so too.
    out = proto.receive("d", frame(type="room-invite", to="E"))
    assert texts(out, "d")[0]["mode"] == "mesh" and "sfu" not in texts(out, "e")[0]


def test_a_server_without_an_sfu_refuses_an_sfu_room() -> None:
    p = make(sfu=False)
    message = error(p.receive("a", frame(type="room-invite", to="B", sfu=True)), "a", "sfu-unavailable")
    assert "--sfu" in message and p.rooms.rooms == []


def test_sfu_rooms_have_their_own_size_limit() -> None:
    p = make(max_room_size=2, max_sfu_room_size=3)
    room = sfu_room(p, "A", "B", "C")
    message = error(p.receive("a", frame(type="room-invite", to="D")), "a", "room-full")
    assert "max_sfu_room_size=3" in message
    assert p.rooms.members(room) == ["A", "B", "C"]


def test_a_members_offers_answers_and_candidates_become_signals_for_its_room(
    proto: SignalingProtocol[str],
) -> None:
    room = sfu_room(proto, "A", "B")
    out = proto.receive("a", frame(type="sfu-offer", room=room, role="publisher", sdp=OFFER))
    assert signals(out) == [
        SfuSignal(room, "A", "sfu-offer", "publisher", {"type": "offer", "sdp": SAMPLE_OFFER})
    ]
    answer = json.dumps({"type": "answer", "sdp": "v=0\r\n"})
    out = proto.receive("b", frame(type="sfu-answer", room=room, role="subscriber", sdp=answer))
    assert signals(out)[0].value == {"type": "answer", "sdp": "v=0\r\n"}
    candidate = json.dumps(
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "x": 1}
    )
    out = proto.receive("b", frame(type="sfu-ice", room=room, role="publisher", candidate=candidate))
    assert signals(out)[0].value == {
        "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
        "sdpMid": "0",
    }
    for end in (None, "", "null", json.dumps({"candidate": ""})):
        out = proto.receive("b", frame(type="sfu-ice", room=room, role="subscriber", candidate=end))
        assert signals(out) == [SfuSignal(room, "B", "sfu-ice", "subscriber", None)]


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"role": "subscriber", "sdp": OFFER}, "bad-message", "only on its publisher link"),
        ({"role": "publisher"}, "bad-message", "field 'sdp'"),
        ({"role": "publisher", "sdp": "v=0"}, "bad-message", "JSON.stringify"),
        (
            {"role": "publisher", "sdp": json.dumps({"type": "answer", "sdp": "v=0"})},
            "bad-message",
            '"offer"',
        ),
    ],
)
def test_a_malformed_offer_is_refused_saying_what_to_send(
    proto: SignalingProtocol[str], fields: dict[str, Any], code: str, words: str
) -> None:
    room = sfu_room(proto, "A", "B")
    out = proto.receive("a", frame(type="sfu-offer", room=room, **fields))
    assert words in error(out, "a", code) and not signals(out)


def test_sfu_signals_are_refused_outside_ones_own_sfu_room(proto: SignalingProtocol[str]) -> None:
    room = sfu_room(proto, "A", "B")
    mesh = proto.receive("c", frame(type="room-invite", to="D"))
    mesh_room = texts(mesh, "c")[0]["room"]
    proto.receive("d", frame(type="room-accept", room=mesh_room))
    # C, a member of another room, cannot publish into A's room: the room decides, never the message.
    out = proto.receive("c", frame(type="sfu-offer", room=room, role="publisher", sdp=OFFER))
    assert "not a member" in error(out, "c", "not-a-member") and not signals(out)
    out = proto.receive("e", frame(type="sfu-offer", room=room, role="publisher", sdp=OFFER))
    error(out, "e", "not-a-member")
    out = proto.receive("c", frame(type="sfu-offer", room=mesh_room, role="publisher", sdp=OFFER))
    assert "mesh room" in error(out, "c", "bad-message")


def test_a_directed_message_reaches_its_target_only(proto: SignalingProtocol[str]) -> None:
    room = sfu_room(proto, "A", "B", "C")
    out = proto.receive(
        "a", frame(type="room-message", room=room, to="B", data={"n": [1, 2]}, **{"from": "A"})
    )
    assert out == [("b", out[0][1])]
    assert json.loads(out[0][1]) == {
        "type": "room-message",
        "room": room,
        "from": "A",
        "to": "B",
        "data": {"n": [1, 2]},
    }
    error(proto.receive("a", frame(type="room-message", room=room, to="D", data=1)), "a", "not-a-member")
    error(proto.receive("d", frame(type="room-message", room=room, to="B", data=1)), "d", "not-a-member")
    assert "'data'" in error(
        proto.receive("a", frame(type="room-message", room=room, to="B")), "a", "bad-message"
    )


def test_a_directed_message_over_the_size_limit_is_refused() -> None:
    p = make(max_message_size=1000)
    room = sfu_room(p, "A", "B")
    out = p.receive("a", frame(type="room-message", room=room, to="B", data="x" * 1000))
    assert "the limit is 1000 bytes" in error(out, "a", "too-big")


def test_a_leaving_member_and_an_ended_room_reach_the_sfu(proto: SignalingProtocol[str]) -> None:
    room = sfu_room(proto, "A", "B")
    assert (None, SFU_SYNC) in proto.receive("b", frame(type="room-leave", room=room))
    out = proto.receive("a", frame(type="room-leave", room=room))
    assert (None, SFU_SYNC) in out and proto.rooms.sfu_rooms == 0
    room = sfu_room(proto, "A", "B")
    out = proto.dispatch.end_room(room, "the SFU stopped")
    assert {conn for conn, item in out if isinstance(item, str)} == {"a", "b"}
    assert texts(out, "a") == [{"type": "room-ended", "room": room, "reason": "the SFU stopped"}]
    assert (None, SFU_SYNC) in out and proto.rooms.room_of("A") is None
