"""The rules of rooms (docs/rooms.md), without sockets: frames and ticks in, (connection, text) pairs out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import OFFER, error_of

from nbcall.server.protocol import SignalingProtocol
from nbcall.server.room_model import ENDED_WITH_RESTART, new_room_id, room_credential

Out = list[tuple[str, Any]]


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def decoded(out: Out) -> list[tuple[str, dict[str, Any]]]:
    """Every message of ``out`` as (connection, decoded message), in order."""
    return [(conn, json.loads(text)) for conn, text in out]


def sole(out: Out, conn: str) -> dict[str, Any]:
    """The only message in ``out``, which must be addressed to ``conn``."""
    messages = decoded(out)
    assert len(messages) == 1 and messages[0][0] == conn, messages
    return messages[0][1]


def error(out: Out, conn: str, code: str) -> str:
    msg = sole(out, conn)
    assert (msg["type"], msg["code"]) == ("error", code), msg
    return str(msg["message"])


def register(p: SignalingProtocol[str], conn: str, peer_id: str, **fields: Any) -> Out:
    p.connect(conn)
    return p.receive(conn, frame(type="register", **{"from": peer_id}, **fields))


def phones(p: SignalingProtocol[str], *names: str, secret: bool = True) -> None:
    """Register phones understanding rooms: connection "a" as A, "b" as B..."""
    for name in names:
        extra = {"secret": f"secret-of-{name}"} if secret else {}
        out = register(p, name.lower(), name, rooms=True, **extra)
        assert decoded(out)[0][1]["type"] == "registered"


@pytest.fixture
def proto() -> SignalingProtocol[str]:
    """Phones A to E with rooms, and a seed-style client S (no rooms, no presence)."""
    p: SignalingProtocol[str] = SignalingProtocol()
    phones(p, "A", "B", "C", "D", "E")
    register(p, "s", "S")
    return p


def make_room(p: SignalingProtocol[str], creator: str, *joiners: str) -> str:
    """``creator`` invites each of ``joiners``, who all accept; returns the room's ID."""
    room = ""
    for joiner in joiners:
        out = decoded(p.receive(creator.lower(), frame(type="room-invite", to=joiner)))
        room = out[-1][1]["room"]
    for joiner in joiners:
        p.receive(joiner.lower(), frame(type="room-accept", room=room))
    assert p.rooms.members(room) == [creator, *joiners]
    return room


# -- forming a room -----------------------------------------------------------------


def test_an_invite_outside_a_room_makes_a_room_and_invites_the_peer(proto: SignalingProtocol[str]) -> None:
    out = decoded(proto.receive("a", frame(type="room-invite", to="B")))
    assert [conn for conn, _ in out] == ["a", "b"]
    room = out[0][1]["room"]
    credential = proto.rooms.credential(room, "A")
    assert out[0][1] == {
        "type": "room-state",
        "mode": "mesh",
        "room": room,
        "members": ["A"],
        "credential": credential,
    }
    assert out[1][1] == {"type": "room-invitation", "room": room, "members": ["A"], "from": "A"}
    assert room.startswith("r-") and len(room) == 18
    assert proto.rooms.room_of("A") == room and proto.rooms.invitees(room) == ["B"]


def test_accepting_adds_the_joiner_last_and_tells_every_other_member(proto: SignalingProtocol[str]) -> None:
    room = decoded(proto.receive("a", frame(type="room-invite", to="B")))[0][1]["room"]
    proto.receive("a", frame(type="room-invite", to="C", room=room))
    credential = proto.rooms.credential
    assert decoded(proto.receive("b", frame(type="room-accept", room=room))) == [
        (
            "b",
            {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["A", "B"],
                "credential": credential(room, "B"),
            },
        ),
        ("a", {"type": "room-joined", "room": room, "id": "B"}),
    ]
    assert decoded(proto.receive("c", frame(type="room-accept", room=room))) == [
        (
            "c",
            {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["A", "B", "C"],
                "credential": credential(room, "C"),
            },
        ),
        ("a", {"type": "room-joined", "room": room, "id": "C"}),
        ("b", {"type": "room-joined", "room": room, "id": "C"}),
    ]


def test_any_member_invites_and_the_invitation_lists_the_members(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    msg = sole(proto.receive("b", frame(type="room-invite", to="C", room=room)), "c")
    assert msg == {"type": "room-invitation", "room": room, "members": ["A", "B"], "from": "B"}


def test_an_invite_without_room_from_a_member_invites_into_its_room(proto: SignalingProtocol[str]) -> None:
    # A phone turning a 1:1 call into a room sends both invitations before its room-state arrives.
    room = decoded(proto.receive("a", frame(type="room-invite", to="B", link=True)))[0][1]["room"]
    msg = sole(proto.receive("a", frame(type="room-invite", to="C")), "c")
    assert msg["room"] == room and proto.rooms.invitees(room) == ["B", "C"]


def test_link_says_the_inviter_is_already_connected_to_the_invitee(proto: SignalingProtocol[str]) -> None:
    out = decoded(proto.receive("a", frame(type="room-invite", to="B", link=True)))
    assert out[1][1]["link"] is True
    assert "link" not in decoded(proto.receive("a", frame(type="room-invite", to="C")))[0][1]


def test_from_is_filled_in_and_checked_as_for_relays(proto: SignalingProtocol[str]) -> None:
    assert len(proto.receive("a", frame(type="room-invite", to="B", **{"from": "A"}))) == 2
    message = error(proto.receive("c", frame(type="room-invite", to="D", **{"from": "A"})), "c", "wrong-from")
    assert "'from' is 'A' but this connection is registered as 'C'" in message


# -- refusals of room-invite ------------------------------------------------------


def test_inviting_yourself_is_refused(proto: SignalingProtocol[str]) -> None:
    message = error(proto.receive("a", frame(type="room-invite", to="A")), "a", "invite-self")
    assert "'A'" in message and proto.rooms.rooms == []


def test_inviting_a_phone_that_is_not_online_is_refused_as_unavailable(proto: SignalingProtocol[str]) -> None:
    message = error(proto.receive("a", frame(type="room-invite", to="Zed")), "a", "unavailable")
    assert message.startswith("'Zed' is not online") and proto.rooms.rooms == []


def test_inviting_a_seed_client_is_refused_as_no_rooms(proto: SignalingProtocol[str]) -> None:
    message = error(proto.receive("a", frame(type="room-invite", to="S")), "a", "no-rooms")
    assert "'S' did not register with \"rooms\": true" in message and "1:1" in message
    assert proto.rooms.rooms == []


def test_inviting_a_member_of_this_room_is_refused(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    message = error(proto.receive("a", frame(type="room-invite", to="B", room=room)), "a", "already-a-member")
    assert f"'B' is already a member of room {room!r}" == message


def test_inviting_a_phone_already_invited_is_refused_and_the_first_invitation_stands(
    proto: SignalingProtocol[str],
) -> None:
    proto.receive("a", frame(type="room-invite", to="B"))
    message = error(proto.receive("a", frame(type="room-invite", to="B")), "a", "already-invited")
    assert "'B' already has an invitation" in message and "60 s" in message
    assert proto.rooms.invitees(proto.rooms.room_of("A") or "") == ["B"]


def test_inviting_a_member_of_another_room_is_refused_without_naming_that_room(
    proto: SignalingProtocol[str],
) -> None:
    other = make_room(proto, "C", "D")
    message = error(proto.receive("a", frame(type="room-invite", to="D")), "a", "in-another-room")
    assert "'D' is a member of another room" in message and other not in message
    assert proto.rooms.rooms == [other]


def test_inviting_into_a_room_that_is_not_yours_is_refused(proto: SignalingProtocol[str]) -> None:
    other = make_room(proto, "C", "D")
    message = error(proto.receive("a", frame(type="room-invite", to="E", room=other)), "a", "not-a-member")
    assert f"you are not a member of room {other!r}" in message and "omit 'room'" in message
    assert proto.rooms.members(other) == ["C", "D"] and proto.rooms.room_of("A") is None


def test_invitations_beyond_max_room_size_are_refused_counting_pending_ones() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(max_room_size=3)
    phones(p, "A", "B", "C", "D")
    room = decoded(p.receive("a", frame(type="room-invite", to="B")))[0][1]["room"]
    p.receive("a", frame(type="room-invite", to="C"))
    message = error(p.receive("a", frame(type="room-invite", to="D")), "a", "room-full")
    assert "1 members and 2 pending invitations, the limit is max_room_size=3" in message
    assert p.rooms.invitees(room) == ["B", "C"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({}, "missing field 'to'"),
        ({"to": 5}, "'to' must be a string"),
        ({"to": "B", "link": "yes"}, "'link' must be true or false"),
        ({"to": "B", "room": ["r-x"]}, "'room' must be a room ID"),
        ({"to": "B", "room": "r-" + "x" * 70}, "'room' must be a room ID"),
    ],
)
def test_malformed_invites_are_bad_messages(
    proto: SignalingProtocol[str], fields: dict[str, Any], fragment: str
) -> None:
    message = error(proto.receive("a", frame(type="room-invite", **fields)), "a", "bad-message")
    assert fragment in message and proto.rooms.rooms == []


# -- answering an invitation ------------------------------------------------------


def test_declining_tells_the_inviter_with_the_reason(proto: SignalingProtocol[str]) -> None:
    room = decoded(proto.receive("a", frame(type="room-invite", to="B")))[0][1]["room"]
    proto.receive("a", frame(type="room-invite", to="C"))
    out = proto.receive("b", frame(type="room-decline", room=room, reason="in another call"))
    assert sole(out, "a") == {"type": "room-declined", "room": room, "id": "B", "reason": "in another call"}
    assert proto.rooms.invitees(room) == ["C"]


def test_accepting_or_declining_without_an_invitation_is_refused(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    for msg_type in ("room-accept", "room-decline"):
        out = proto.receive("c", frame(type=msg_type, room=room))
        assert repr(room) in error(out, "c", "not-invited")
        # It names the room, so that a late refusal is not taken for one about a room accepted since.
        assert error_of(out, "c")["room"] == room
    assert proto.rooms.members(room) == ["A", "B"]


def test_accepting_while_a_member_of_another_room_is_refused(proto: SignalingProtocol[str]) -> None:
    mine = make_room(proto, "C", "D")
    room = decoded(proto.receive("a", frame(type="room-invite", to="E")))[0][1]["room"]
    proto.receive("e", frame(type="room-decline", room=room))  # A's room ends; a new one:
    room = decoded(proto.receive("a", frame(type="room-invite", to="E")))[0][1]["room"]
    proto.receive("e", frame(type="room-invite", to="B"))  # E makes its own room meanwhile
    message = error(proto.receive("e", frame(type="room-accept", room=room)), "e", "in-another-room")
    assert "send room-leave for it before accepting" in message
    assert proto.rooms.members(room) == ["A"] and proto.rooms.members(mine) == ["C", "D"]


def test_a_new_room_ends_when_every_invitation_is_declined(proto: SignalingProtocol[str]) -> None:
    room = decoded(proto.receive("a", frame(type="room-invite", to="B")))[0][1]["room"]
    proto.receive("a", frame(type="room-invite", to="C"))
    assert [conn for conn, _ in proto.receive("b", frame(type="room-decline", room=room))] == ["a"]
    assert decoded(proto.receive("c", frame(type="room-decline", room=room))) == [
        ("a", {"type": "room-declined", "room": room, "id": "C", "reason": "declined"}),
        (
            "a",
            {
                "type": "room-ended",
                "room": room,
                "reason": "nobody joined: every invitation was declined or expired",
            },
        ),
    ]
    assert proto.rooms.rooms == [] and proto.rooms.room_of("A") is None
    assert decoded(proto.receive("a", frame(type="room-invite", to="B")))[0][1]["room"] != room


def test_a_room_someone_joined_does_not_end_when_later_invitations_are_declined(
    proto: SignalingProtocol[str],
) -> None:
    room = make_room(proto, "A", "B")
    proto.receive("b", frame(type="room-leave", room=room))
    proto.receive("a", frame(type="room-invite", to="C"))
    assert (
        decoded(proto.receive("c", frame(type="room-decline", room=room)))[-1][1]["type"] == "room-declined"
    )
    assert proto.rooms.members(room) == ["A"]


def test_an_invitee_going_offline_counts_as_declining(proto: SignalingProtocol[str]) -> None:
    room = decoded(proto.receive("a", frame(type="room-invite", to="B")))[0][1]["room"]
    assert decoded(proto.disconnect("b")) == [
        (
            "a",
            {"type": "room-declined", "room": room, "id": "B", "reason": "it went offline before answering"},
        ),
        (
            "a",
            {
                "type": "room-ended",
                "room": room,
                "reason": "nobody joined: every invitation was declined or expired",
            },
        ),
    ]


# -- time -------------------------------------------------------------------------


def test_an_invitation_expires_after_its_ttl_counted_from_the_next_tick() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(invitation_ttl=60)
    phones(p, "A", "B")
    room = decoded(p.receive("a", frame(type="room-invite", to="B")))[0][1]["room"]
    assert p.tick(100.0) == [] and p.tick(159.9) == []
    assert decoded(p.tick(160.0)) == [
        ("a", {"type": "room-declined", "room": room, "id": "B", "reason": "the invitation expired"}),
        ("b", {"type": "room-cancelled", "room": room, "reason": "the invitation expired", "from": "A"}),
        (
            "a",
            {
                "type": "room-ended",
                "room": room,
                "reason": "nobody joined: every invitation was declined or expired",
            },
        ),
    ]
    message = error(p.receive("b", frame(type="room-accept", room=room)), "b", "invitation-expired")
    assert (
        message
        == f"your invitation to room {room!r} expired (invitations last 60 s); ask a member to invite you again"
    )
    p.tick(161.0)
    p.tick(221.0)  # expired invitations are remembered for one more ttl, then forgotten
    error(p.receive("b", frame(type="room-accept", room=room)), "b", "not-invited")
    assert not p.rooms.active


def test_an_expired_invitation_into_a_joined_room_leaves_the_room_as_it_was() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(invitation_ttl=5)
    phones(p, "A", "B", "C")
    room = make_room(p, "A", "B")
    p.receive("b", frame(type="room-invite", to="C"))
    p.tick(0.0)
    assert [(conn, msg["type"]) for conn, msg in decoded(p.tick(5.0))] == [
        ("b", "room-declined"),
        ("c", "room-cancelled"),
    ]
    assert p.rooms.members(room) == ["A", "B"]


def test_without_invitation_ttl_invitations_never_expire() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(invitation_ttl=None)
    phones(p, "A", "B")
    room = decoded(p.receive("a", frame(type="room-invite", to="B")))[0][1]["room"]
    assert p.tick(0.0) == [] and p.tick(1e9) == []
    assert decoded(p.receive("b", frame(type="room-accept", room=room)))[0][1]["type"] == "room-state"


def test_a_member_gone_longer_than_the_grace_is_removed_with_room_left(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B", "C")
    assert decoded(proto.disconnect("c")) == []  # no presence watcher, and nothing for the room yet
    assert proto.rooms.members(room) == ["A", "B", "C"]
    assert proto.tick(10.0) == [] and proto.tick(39.9) == []
    left = {
        "type": "room-left",
        "room": room,
        "id": "C",
        "reason": "its signaling connection was gone longer than 30 s",
    }
    # The others get new credentials (the room's next epoch): C's own re-creates nothing after a restart.
    credential = proto.rooms.credential
    assert decoded(proto.tick(40.0)) == [
        ("a", {**left, "credential": credential(room, "A")}),
        ("b", {**left, "credential": credential(room, "B")}),
    ]
    assert credential(room, "A").startswith("1.")
    assert proto.rooms.members(room) == ["A", "B"] and "C" not in proto.registry.secrets


def test_reclaiming_the_id_with_its_secret_within_the_grace_keeps_the_membership(
    proto: SignalingProtocol[str],
) -> None:
    room = make_room(proto, "A", "B", "C")
    proto.disconnect("c")
    proto.tick(0.0)
    out = register(proto, "c2", "C", rooms=True, secret="secret-of-C", room=room, members=["A", "B", "C"])
    state = {"room": room, "members": ["A", "B", "C"], "credential": proto.rooms.credential(room, "C")}
    assert decoded(out) == [
        ("c2", {"type": "registered", "id": "C"}),
        ("c2", {"type": "room-state", "mode": "mesh", **state, "rejoined": True}),
    ]  # the others hear nothing: for them C never left
    assert proto.tick(100.0) == [] and proto.rooms.members(room) == ["A", "B", "C"]
    call = frame(type="call", to="A", sdp=OFFER, room=room, **{"from": "C"})
    assert proto.receive("c2", call) == [("a", call)]


def test_during_the_grace_the_id_is_kept_for_whoever_has_its_secret(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    proto.disconnect("b")
    for attempt in ({}, {"secret": "guess"}):
        message = error(register(proto, "x", "B", rooms=True, **attempt), "x", "duplicate-id")
        assert "held for the phone whose connection was lost, for 30 s more" in message
        assert "secret-of-B" not in message
    assert proto.rooms.members(room) == ["A", "B"]


def test_a_member_without_a_secret_is_replaced_by_whoever_registers_its_id(
    proto: SignalingProtocol[str],
) -> None:
    phones(proto, "F", secret=False)
    room = make_room(proto, "A", "F")
    proto.disconnect("f")
    out = decoded(register(proto, "f2", "F", rooms=True))
    assert out[0] == ("f2", {"type": "registered", "id": "F"})
    assert out[1][0] == "a" and out[1][1]["type"] == "room-left"
    assert "did not prove it is the same (with its secret or its room credential)" in out[1][1]["reason"]
    assert proto.rooms.members(room) == ["A"]


def test_a_member_without_a_secret_comes_back_with_its_room_credential(proto: SignalingProtocol[str]) -> None:
    phones(proto, "F", secret=False)
    room = make_room(proto, "A", "F")
    proto.disconnect("f")
    out = decoded(
        register(proto, "f2", "F", rooms=True, room=room, credential=proto.rooms.credential(room, "F"))
    )
    assert out[1] == (
        "f2",
        {
            "type": "room-state",
            "mode": "mesh",
            "room": room,
            "members": ["A", "F"],
            "credential": proto.rooms.credential(room, "F"),
            "rejoined": True,
        },
    )
    assert len(out) == 2 and proto.tick(0.0) == [] and proto.tick(100.0) == []
    assert proto.rooms.members(room) == ["A", "F"]


def test_without_room_grace_a_member_stays_until_it_comes_back() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(room_grace=None)
    phones(p, "A", "B")
    room = make_room(p, "A", "B")
    p.disconnect("b")
    assert p.tick(0.0) == [] and p.tick(1e9) == [] and p.rooms.members(room) == ["A", "B"]


# -- leaving --------------------------------------------------------------------------


def test_leaving_tells_the_remaining_members_and_the_last_one_out_ends_the_room(
    proto: SignalingProtocol[str],
) -> None:
    room = make_room(proto, "A", "B")
    proto.receive("a", frame(type="room-invite", to="C"))
    assert decoded(proto.receive("a", frame(type="room-leave", room=room, reason="bye"))) == [
        (
            "b",
            {
                "type": "room-left",
                "room": room,
                "id": "A",
                "reason": "bye",
                "credential": proto.rooms.credential(room, "B"),
            },
        ),
    ]
    assert decoded(proto.receive("b", frame(type="room-leave", room=room))) == [
        (
            "c",
            {
                "type": "room-cancelled",
                "room": room,
                "reason": "the room ended: its last member left",
                "from": "A",
            },
        ),
    ]
    assert proto.rooms.rooms == [] and proto.rooms.room_of("B") is None
    error(proto.receive("c", frame(type="room-accept", room=room)), "c", "not-invited")


def test_leaving_a_room_you_are_not_in_is_refused(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    message = error(proto.receive("c", frame(type="room-leave", room=room)), "c", "not-a-member")
    assert f"you are not a member of room {room!r}; you are in no room" == message


# -- room-link ----------------------------------------------------------------------


def test_a_member_every_other_member_lost_is_removed_and_told(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B", "C")
    assert proto.receive("a", frame(type="room-link", room=room, peer="C", state="failed")) == []
    assert proto.receive("a", frame(type="room-link", room=room, peer="C", state="closed")) == []  # A again
    left = {
        "type": "room-left",
        "room": room,
        "id": "C",
        "reason": "every other member lost its connection to it",
    }
    out = decoded(proto.receive("b", frame(type="room-link", room=room, peer="C", state="closed")))
    credential = proto.rooms.credential
    assert out == [
        ("c", left),
        ("a", {**left, "credential": credential(room, "A")}),
        ("b", {**left, "credential": credential(room, "B")}),
    ]
    assert proto.rooms.members(room) == ["A", "B"]


def test_a_reporter_leaving_can_complete_the_reports_against_a_member(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B", "C")
    proto.receive("a", frame(type="room-link", room=room, peer="C", state="failed"))
    out = decoded(proto.receive("b", frame(type="room-leave", room=room)))
    assert [(conn, msg["id"]) for conn, msg in out] == [("a", "B"), ("c", "B"), ("c", "C"), ("a", "C")]
    assert proto.rooms.members(room) == ["A"]


@pytest.mark.parametrize(
    ("fields", "code", "fragment"),
    [
        ({"peer": "D", "state": "failed"}, "not-a-member", "'D' is not a member of room"),
        ({"peer": "B", "state": "connected"}, "bad-message", 'must be "failed" or "closed"'),
        ({"peer": "A", "state": "failed"}, "bad-message", "'peer' is your own ID"),
        ({"state": "failed"}, "bad-message", "missing field 'peer'"),
    ],
)
def test_bad_link_reports_are_refused(
    proto: SignalingProtocol[str], fields: dict[str, Any], code: str, fragment: str
) -> None:
    room = make_room(proto, "A", "B")
    assert fragment in error(proto.receive("a", frame(type="room-link", room=room, **fields)), "a", code)
    assert proto.rooms.members(room) == ["A", "B"]


# -- relays between members ------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["call", "answer", "ice"])
def test_members_relay_with_room_and_the_frame_is_forwarded_untouched(
    proto: SignalingProtocol[str], msg_type: str
) -> None:
    room = make_room(proto, "A", "B", "C")
    text = frame(type=msg_type, **{"from": "C"}, to="A", sdp=OFFER, candidate="{}", room=room)
    out = proto.receive("c", text)
    assert out == [("a", text)] and out[0][1] is text


def test_relays_with_room_outside_the_room_are_refused_as_not_a_member(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    message = error(proto.receive("c", frame(type="call", to="A", sdp=OFFER, room=room)), "c", "not-a-member")
    assert f"you are not a member of room {room!r}" in message
    message = error(
        proto.receive("a", frame(type="ice", to="C", candidate="{}", room=room)), "a", "not-a-member"
    )
    assert f"'C' is not a member of room {room!r}; members: A, B" == message
    error(proto.receive("a", frame(type="ice", to="B", candidate="{}", room=7)), "a", "bad-message")
    # Without `room` it is a 1:1 relay, as before.
    assert sole(proto.receive("a", frame(type="call", to="C", sdp=OFFER)), "c")["from"] == "A"


def test_a_relay_to_a_member_within_its_grace_reports_it_unavailable(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    proto.disconnect("b")
    assert (
        sole(proto.receive("a", frame(type="call", to="B", sdp=OFFER, room=room)), "a")["type"]
        == "unavailable"
    )


# -- server restart ------------------------------------------------------------------


KEY = b"k" * 32


def credentials(room: str, *members: str) -> dict[str, str]:
    """What the server before the restart, with the same key, gave each member in its room-state."""
    return {member: room_credential(KEY, room, member, 1) for member in members}


def test_after_a_restart_members_re_create_the_room_under_its_id() -> None:
    room = new_room_id()
    proofs = credentials(room, "A", "B", "C")
    p: SignalingProtocol[str] = SignalingProtocol(room_key=KEY)

    def claim(member: str) -> dict[str, Any]:
        return {"rooms": True, "room": room, "members": ["A", "B", "C"], "credential": proofs[member]}

    assert decoded(register(p, "b", "B", **claim("B"))) == [
        ("b", {"type": "registered", "id": "B"}),
        (
            "b",
            {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["B"],
                "credential": proofs["B"],
                "rejoined": True,
            },
        ),
    ]
    assert decoded(register(p, "a", "A", **claim("A"))) == [
        ("a", {"type": "registered", "id": "A"}),
        (
            "a",
            {
                "type": "room-state",
                "mode": "mesh",
                "room": room,
                "members": ["B", "A"],
                "credential": proofs["A"],
                "rejoined": True,
            },
        ),
        ("b", {"type": "room-joined", "room": room, "id": "A"}),
    ]
    # A phone without a member's credential is refused (the registration itself stands), and learns no member.
    for proof in ({}, {"credential": proofs["A"]}, {"credential": "1.forged"}):
        out = decoded(register(p, "x", "X", rooms=True, room=room, members=["A", "B", "X"], **proof))
        assert out[0][1]["type"] == "registered"
        assert out[1][1]["code"] == "not-a-member"
        assert (
            out[1][1]["message"]
            == f"room {room!r} went on without you; ask one of its members to invite you again"
        )
        p.disconnect("x", clean=True)
    # C, a member, but back only after the grace, is refused too.
    p.tick(0.0)
    p.tick(30.0)
    out = decoded(register(p, "c", "C", **claim("C")))
    assert out[1][1]["code"] == "not-a-member" and p.rooms.members(room) == ["B", "A"]


def test_after_a_restart_a_room_is_re_created_only_with_a_member_s_credential() -> None:
    room = new_room_id()
    p: SignalingProtocol[str] = SignalingProtocol(room_key=KEY)
    # V, invited but never a member, knows the room's ID and claims it naming the real members.
    for proof in ({}, {"credential": credentials(room, "A")["A"]}, {"credential": "1.AAAA"}):
        out = decoded(register(p, "v", "V", rooms=True, room=room, members=["A", "B"], **proof))
        assert (
            out[1][1]["code"] == "not-a-member"
            and "nothing shows that you were a member" in out[1][1]["message"]
        )
        assert p.rooms.rooms == []
        p.disconnect("v", clean=True)
    # The real members re-create it, without V.
    register(p, "a", "A", rooms=True, room=room, credential=credentials(room, "A")["A"])
    register(p, "b", "B", rooms=True, room=room, credential=credentials(room, "B")["B"])
    assert p.rooms.members(room) == ["A", "B"]
    register(p, "v", "V", rooms=True)
    assert error(p.receive("v", frame(type="call", to="A", sdp=OFFER, room=room)), "v", "not-a-member")


def test_an_ended_room_is_never_re_created(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    credential = proto.rooms.credential(room, "A")
    proto.receive("a", frame(type="room-leave", room=room))
    proto.receive("b", frame(type="room-leave", room=room))
    assert proto.rooms.rooms == []
    out = decoded(
        proto.receive(
            "a", frame(type="register", rooms=True, room=room, credential=credential, **{"from": "A"})
        )
    )
    assert out[1][1]["code"] == "not-a-member" and "has ended and is never re-created" in out[1][1]["message"]
    assert proto.rooms.rooms == []


def test_without_a_room_key_a_restarted_server_says_the_room_ended_with_it() -> None:
    room = new_room_id()
    p: SignalingProtocol[str] = SignalingProtocol()  # a random key: not the one before the restart
    out = decoded(register(p, "a", "A", rooms=True, room=room, credential=credentials(room, "A")["A"]))
    assert out[1] == ("a", {"type": "room-ended", "room": room, "reason": ENDED_WITH_RESTART})
    assert "the room ended with the server restart" in ENDED_WITH_RESTART
    assert p.rooms.rooms == [] and p.peers == ["A"]


def test_a_re_created_room_nobody_else_rejoins_is_dropped_and_claims_per_address_are_bounded() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(room_key=KEY, max_room_claims=2, room_grace=5)
    rooms = [new_room_id() for _ in range(3)]
    for n, room in enumerate(rooms):
        p.connect(f"m{n}", "203.0.113.7")
        out = decoded(p.receive(f"m{n}", frame(type="register", rooms=True, room=room,
                                                 credential=credentials(room, f"M{n}")[f"M{n}"], **{"from": f"M{n}"})))  # fmt: skip
    assert out[1][1]["code"] == "too-many-claims" and "max_room_claims=2" in out[1][1]["message"]
    assert p.rooms.rooms == rooms[:2]
    # Another address is not held back by this one's claims.
    p.connect("o", "198.51.100.1")
    p.receive("o", frame(type="register", rooms=True, room=rooms[2], credential=credentials(rooms[2], "O")["O"],
                         **{"from": "O"}))  # fmt: skip
    assert p.rooms.rooms == rooms
    # A second member proves rooms[0]: it stays. Nobody came back to the others: dropped after room_grace.
    p.connect("z", "198.51.100.2")
    p.receive("z", frame(type="register", rooms=True, room=rooms[0], credential=credentials(rooms[0], "Z")["Z"],
                         **{"from": "Z"}))  # fmt: skip
    assert p.rooms.members(rooms[0]) == ["M0", "Z"]
    p.tick(0.0)
    out = decoded(p.tick(5.0))
    ended = [(conn, msg["room"]) for conn, msg in out if msg["type"] == "room-ended"]
    assert ended == [("m1", rooms[1]), ("o", rooms[2])]
    assert "nobody else came back within 5 s of the server restart" in out[0][1]["reason"]
    assert p.rooms.rooms == [rooms[0]]
    # Its claims released, the address may re-create rooms again (not the ended ones).
    room = new_room_id()
    p.connect("m9", "203.0.113.7")
    p.receive("m9", frame(type="register", rooms=True, room=room, credential=credentials(room, "M9")["M9"],
                          **{"from": "M9"}))  # fmt: skip
    assert p.rooms.has(room)


def test_with_room_grace_0_an_absent_member_is_removed_at_the_next_ticks() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(room_grace=0)
    phones(p, "A", "B")
    room = make_room(p, "A", "B")
    p.disconnect("b")
    p.tick(0.0)
    assert sole(p.tick(0.5), "a")["type"] == "room-left" and p.rooms.members(room) == ["A"]


def test_a_room_claim_from_a_member_of_another_room_is_refused(proto: SignalingProtocol[str]) -> None:
    room = make_room(proto, "A", "B")
    out = decoded(
        proto.receive(
            "a", frame(type="register", rooms=True, room=new_room_id(), members=["A"], **{"from": "A"})
        )
    )
    assert (
        out[1][1]["code"] == "in-another-room"
        and f"you are a member of room {room!r}" in out[1][1]["message"]
    )


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"room": "r-x", "members": "A"}, "'members' of a 'register' with 'room' must be an array"),
        ({"room": "r-x", "credential": 5}, "'credential' of a 'register' with 'room' must be the string"),
        ({"room": "r-x", "members": ["A"] * 65}, "an array of 65 IDs"),
        ({"room": "r-x", "members": [" A"]}, "whitespace"),
        ({"room": 5, "members": []}, "'room' must be a room ID"),
        ({"rooms": "yes"}, "'rooms' must be true or false"),
    ],
)
def test_malformed_room_claims_refuse_the_registration(fields: dict[str, Any], fragment: str) -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    out = decoded(register(p, "a", "A", **fields))
    assert len(out) == 1 and out[0][1]["in_reply_to"] == "register" and fragment in out[0][1]["message"]
    assert p.peers == [] and p.rooms.rooms == []


# -- who hears about rooms -------------------------------------------------------------


def test_seed_and_presence_only_clients_never_receive_room_messages(proto: SignalingProtocol[str]) -> None:
    register(proto, "p", "P", presence=True)
    seen: list[tuple[str, dict[str, Any]]] = []
    room = make_room(proto, "A", "B")
    seen += decoded(proto.receive("a", frame(type="room-invite", to="C")))
    seen += decoded(proto.receive("c", frame(type="room-decline", room=room)))
    seen += decoded(proto.receive("b", frame(type="room-leave", room=room)))
    seen += decoded(proto.disconnect("a"))
    seen += decoded(proto.tick(0.0)) + decoded(proto.tick(100.0))
    assert not [msg for conn, msg in seen if conn in "sp" and msg["type"].startswith("room-")]
    for msg_type in ("room-invite", "room-accept", "room-leave"):
        message = error(proto.receive("s", frame(type=msg_type, to="A", room=room)), "s", "no-rooms")
        assert "this connection ('S') did not register with \"rooms\": true" in message


def test_room_messages_before_register_are_refused(proto: SignalingProtocol[str]) -> None:
    proto.connect("x")
    error(proto.receive("x", frame(type="room-invite", to="A")), "x", "not-registered")


def test_a_phone_registering_again_without_rooms_hears_no_more_of_its_room(
    proto: SignalingProtocol[str],
) -> None:
    room = make_room(proto, "A", "B")
    proto.receive("b", frame(type="register", **{"from": "B"}))
    assert not proto.wants_rooms("b")
    assert proto.receive("a", frame(type="room-leave", room=room)) == []


def test_room_ids_differ_and_hold_96_random_bits() -> None:
    ids = {new_room_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(room.startswith("r-") and len(room) == 18 for room in ids)
    p: SignalingProtocol[str] = SignalingProtocol()
    phones(p, "A", "B", "C", "D")
    made = {
        decoded(p.receive(a, frame(type="room-invite", to=b)))[0][1]["room"]
        for a, b in (("a", "B"), ("c", "D"))
    }
    assert len(made) == 2


def test_with_no_rooms_tick_and_disconnect_do_nothing_for_rooms() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    phones(p, "A", "B")
    assert p.tick(0.0) == [] and not p.rooms.active
    assert p.disconnect("a", clean=True) == [] and "A" not in p.registry.secrets


def test_a_member_removed_before_a_restart_cannot_re_create_the_room_nor_stay_in_it() -> None:
    before: SignalingProtocol[str] = SignalingProtocol(room_key=KEY)
    phones(before, "A", "B", "X")
    room = make_room(before, "A", "B", "X")
    removed = before.rooms.credential(room, "X")
    out = decoded(before.receive("x", frame(type="room-leave", room=room)))
    renewed = {conn.upper(): msg["credential"] for conn, msg in out}
    assert renewed == {member: before.rooms.credential(room, member) for member in "AB"}
    # After the restart X comes back first with its old credential: the room is made, but only until a member
    # with the newer epoch proves X was removed.
    after: SignalingProtocol[str] = SignalingProtocol(room_key=KEY)
    assert (
        decoded(register(after, "x", "X", rooms=True, room=room, credential=removed))[1][1]["rejoined"]
        is True
    )
    out = decoded(register(after, "a", "A", rooms=True, room=room, credential=renewed["A"]))
    assert [(conn, msg["type"], msg.get("id")) for conn, msg in out[1:]] == [
        ("x", "room-left", "X"),
        ("a", "room-state", None),
    ]
    assert out[1][1]["reason"] == "it was removed from the room before the server restart"
    register(after, "b", "B", rooms=True, room=room, credential=renewed["B"])
    assert after.rooms.members(room) == ["A", "B"]
    # X again, with its old credential: refused, the room went on without it.
    after.disconnect("x", clean=True)
    out = decoded(register(after, "x", "X", rooms=True, room=room, credential=removed))
    assert out[1][1]["code"] == "not-a-member" and after.rooms.members(room) == ["A", "B"]
