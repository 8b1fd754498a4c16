"""The call state machine, without sockets, threads or a browser: events in, actions out."""

from __future__ import annotations

from typing import Any

import pytest
from support import OFFER

from nbcall.call.machine import CallMachine, Changed, ToEngine, ToServer
from nbcall.exceptions import CallError
from nbcall.widget import widget_protocol

ANSWER = '{"type": "answer", "sdp": "v=0"}'
CANDIDATE = '{"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}'


def machine(**options: Any) -> CallMachine:
    """Phone P, online, with A and B online too; no actions pending."""
    m = CallMachine("P", **options)
    m.registered({"type": "registered", "id": "P", "peers": ["A", "B"]})
    m.actions_to_take()
    return m


def to_server(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, ToServer)]


def to_engine(actions: list[Any]) -> list[dict[str, Any]]:
    """The engine commands, each checked against the widget protocol the browser half implements."""
    commands = [a.message for a in actions if isinstance(a, ToEngine)]
    for command in commands:
        assert widget_protocol.problem(command, widget_protocol.TO_BROWSER) is None, command
    return commands


def changes(actions: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Changed):
            merged.update(action.fields)
    return merged


def calling(now: float = 0.0, **options: Any) -> CallMachine:
    m = machine(**options)
    m.call("A", now)
    m.actions_to_take()
    return m


def ringing(now: float = 0.0, **options: Any) -> CallMachine:
    m = machine(**options)
    m.receive({"type": "call", "from": "A", "to": "P", "sdp": OFFER}, now)
    m.actions_to_take()
    return m


def connecting_as_caller() -> CallMachine:
    m = calling()
    m.receive({"type": "answer", "from": "A", "to": "P", "sdp": ANSWER}, 1.0)
    m.actions_to_take()
    return m


def connected() -> CallMachine:
    m = connecting_as_caller()
    m.engine_channel("A", True)
    m.actions_to_take()
    assert m.state == "connected"
    return m


# ------------------------------------------------------------------------------------------- idle


def test_call_rings_the_peer_through_the_engine_and_starts_the_ring_clock() -> None:
    m = machine(ice_servers=[{"urls": "stun:127.0.0.1:3478"}])
    m.call("A", 100.0)
    actions = m.actions_to_take()
    assert changes(actions) == {"state": "calling", "peer": "A"}
    assert to_engine(actions) == [
        {"type": "start_call", "peer": "A", "ice_servers": [{"urls": "stun:127.0.0.1:3478"}]}
    ]
    assert to_server(actions) == []  # the offer goes out when the engine has made it
    assert m.deadline() == 130.0
    assert list(m.links) == ["A"] and m.links["A"].role == "caller"


@pytest.mark.parametrize(
    ("peer", "error"), [(None, TypeError), (7, TypeError), ("", ValueError), (" ", ValueError)]
)
def test_call_refuses_what_is_not_a_peer_id(peer: object, error: type[Exception]) -> None:
    m = machine()
    with pytest.raises(error, match="call a peer by its ID, .*'A'"):
        m.call(peer, 0.0)
    assert (m.state, m.actions_to_take()) == ("idle", [])


def test_call_refuses_itself_and_names_who_could_be_called() -> None:
    m = machine()
    with pytest.raises(CallError, match=r"P cannot call itself; call one of \['A', 'B'\]"):
        m.call("P", 0.0)


def test_call_while_offline_says_why() -> None:
    m = machine()
    m.signaling_lost("the signaling connection closed; reconnecting")
    with pytest.raises(CallError, match="P is offline: offline: the signaling connection closed"):
        m.call("A", 0.0)


@pytest.mark.parametrize("action", ["answer", "decline"])
def test_answer_or_decline_without_an_incoming_call_is_refused(action: str) -> None:
    m = machine()
    with pytest.raises(CallError, match=rf"no incoming call to {action} \(state 'idle'\)"):
        getattr(m, action)()
    assert m.actions_to_take() == []


def test_hangup_without_a_call_does_nothing() -> None:
    m = machine()
    m.hangup()
    assert (m.state, m.actions_to_take()) == ("idle", [])


def test_presence_news_update_the_peer_list() -> None:
    m = machine()
    m.receive({"type": "joined", "id": "C"}, 0.0)
    m.receive({"type": "left", "id": "A"}, 0.0)
    assert m.peers == ["B", "C"]
    assert changes(m.actions_to_take()) == {"peers": ["B", "C"]}


def test_losing_and_regaining_the_server_changes_online_and_error() -> None:
    m = machine()
    m.signaling_lost("gone; reconnecting")
    assert changes(m.actions_to_take()) == {
        "online": False,
        "peers": [],
        "error": "offline: gone; reconnecting",
    }
    m.registered({"type": "registered", "id": "P", "peers": ["B"]})
    assert changes(m.actions_to_take()) == {"online": True, "peers": ["B"], "error": ""}


def test_closing_the_connection_ourselves_is_not_reported_as_an_error() -> None:
    m = machine()
    m.signaling_lost(None)
    assert changes(m.actions_to_take()) == {"online": False, "peers": []}


# ---------------------------------------------------------------------------------------- calling


def test_engine_offer_is_relayed_to_the_peer_with_its_extra_fields() -> None:
    m = calling()
    m.engine_signal("A", {"type": "call", "sdp": OFFER, "framing": "nbcall/1"})
    assert to_server(m.actions_to_take()) == [
        {"type": "call", "from": "P", "to": "A", "sdp": OFFER, "framing": "nbcall/1"}
    ]


def test_engine_answer_while_calling_is_not_relayed() -> None:
    m = calling()
    m.engine_signal("A", {"type": "answer", "sdp": ANSWER})
    assert m.actions_to_take() == []


def test_answer_from_the_peer_connects_and_stops_the_ring_clock() -> None:
    m = calling()
    answer = {"type": "answer", "from": "A", "to": "P", "sdp": ANSWER}
    m.receive(answer, 1.0)
    actions = m.actions_to_take()
    assert changes(actions) == {"state": "connecting"}
    assert to_engine(actions) == [{"type": "remote", "peer": "A", "signal": answer}]
    assert m.deadline() == 1.0 + m.connect_timeout  # the ring clock stopped, the connect clock runs


def test_answer_from_someone_else_is_ignored() -> None:
    m = calling()
    m.receive({"type": "answer", "from": "B", "to": "P", "sdp": ANSWER}, 1.0)
    assert (m.state, m.actions_to_take()) == ("calling", [])


@pytest.mark.parametrize(
    ("message", "state", "error"),
    [
        ({"type": "decline", "from": "A"}, "ended", "A declined the call"),
        (
            {"type": "decline", "from": "A", "reason": "in a meeting"},
            "ended",
            "A declined the call: in a meeting",
        ),
        (
            {"type": "busy", "from": "A", "reason": "A is connected with B"},
            "ended",
            "A is busy: A is connected with B",
        ),
        ({"type": "hangup", "from": "A"}, "ended", "A hung up"),
        ({"type": "unavailable", "peer": "A", "message": "'A' is not online"}, "failed", "'A' is not online"),
        ({"type": "left", "id": "A"}, "failed", "A went offline"),
        (
            {"type": "error", "code": "bad-id", "message": "'to' is empty", "in_reply_to": "call"},
            "failed",
            "signaling server: 'to' is empty (bad-id)",
        ),
    ],
)
def test_a_call_that_cannot_connect_ends_with_the_reason(
    message: dict[str, Any], state: str, error: str
) -> None:
    m = calling()
    m.receive({"to": "P", **message}, 1.0)
    actions = m.actions_to_take()
    assert {k: v for k, v in changes(actions).items() if k != "peers"} == {"state": state, "error": error}
    assert to_engine(actions) == [{"type": "close", "peer": "A"}]
    assert (m.links, m.deadline()) == ({}, None)


def test_an_unanswered_call_ends_after_the_ring_timeout_and_the_callee_stops_ringing() -> None:
    m = calling(now=10.0, ring_timeout=5)
    m.tick(14.9)
    assert (m.state, m.actions_to_take()) == ("calling", [])
    m.tick(15.0)
    actions = m.actions_to_take()
    assert to_server(actions) == [
        {"type": "hangup", "from": "P", "to": "A", "reason": "no answer within 5 s"}
    ]
    assert to_engine(actions) == [{"type": "close", "peer": "A"}]
    assert changes(actions) == {"state": "ended", "error": "A did not answer within 5 s: no answer arrived"}
    assert m.deadline() is None


def test_hanging_up_while_calling_cancels_the_call() -> None:
    m = calling()
    m.hangup()
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "hangup", "from": "P", "to": "A"}]
    assert to_engine(actions) == [{"type": "close", "peer": "A"}]
    assert changes(actions) == {"state": "ended"}


def test_a_second_call_while_calling_is_refused() -> None:
    m = calling()
    with pytest.raises(CallError, match="P is calling with 'A'; hang up first"):
        m.call("B", 1.0)


def test_an_incoming_call_while_calling_gets_busy_and_changes_nothing() -> None:
    m = calling()
    m.receive({"type": "call", "from": "B", "to": "P", "sdp": OFFER}, 1.0)
    assert to_server(m.actions_to_take()) == [
        {"type": "busy", "from": "P", "to": "B", "reason": "P is calling with A"}
    ]
    assert (m.state, m.peer) == ("calling", "A")


def test_a_server_error_about_something_else_is_shown_but_the_call_goes_on() -> None:
    m = calling()
    m.receive({"type": "error", "code": "rate-limited", "message": "slow down", "in_reply_to": "ice"}, 1.0)
    assert changes(m.actions_to_take()) == {"error": "signaling server: slow down (rate-limited)"}
    assert m.state == "calling"


# ---------------------------------------------------------------------------------------- ringing


def test_an_incoming_call_rings_and_hands_the_offer_to_the_engine() -> None:
    m = machine(ice_servers=[{"urls": "stun:127.0.0.1:3478"}])
    offer = {"type": "call", "from": "A", "to": "P", "sdp": OFFER}
    m.receive(offer, 50.0)
    actions = m.actions_to_take()
    assert changes(actions) == {"state": "ringing", "peer": "A"}
    assert to_engine(actions) == [
        {"type": "remote", "peer": "A", "signal": offer, "ice_servers": [{"urls": "stun:127.0.0.1:3478"}]}
    ]
    assert m.deadline() == 80.0


def test_auto_answer_answers_at_once() -> None:
    m = machine(auto_answer=True)
    m.receive({"type": "call", "from": "A", "to": "P", "sdp": OFFER}, 0.0)
    actions = m.actions_to_take()
    assert m.state == "connecting"
    assert [c["type"] for c in to_engine(actions)] == ["remote", "accept"]


def test_answering_asks_the_engine_for_the_answer_and_relays_it() -> None:
    m = ringing()
    m.answer()
    actions = m.actions_to_take()
    assert changes(actions) == {"state": "connecting"}
    assert to_engine(actions) == [{"type": "accept", "peer": "A"}]
    m.engine_signal("A", {"type": "answer", "sdp": ANSWER, "framing": "nbcall/1"})
    assert to_server(m.actions_to_take()) == [
        {"type": "answer", "from": "P", "to": "A", "sdp": ANSWER, "framing": "nbcall/1"}
    ]


def test_declining_tells_the_caller_why() -> None:
    m = ringing()
    m.decline("not now")
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "decline", "from": "P", "to": "A", "reason": "not now"}]
    assert to_engine(actions) == [{"type": "close", "peer": "A"}]
    assert m.state == "ended"


def test_the_caller_hanging_up_ends_the_ringing_with_the_reason() -> None:
    m = ringing()
    m.receive({"type": "hangup", "from": "A", "to": "P", "reason": "changed my mind"}, 1.0)
    assert changes(m.actions_to_take()) == {"state": "ended", "error": "A hung up: changed my mind"}


def test_a_hangup_from_someone_else_does_not_end_the_ringing() -> None:
    m = ringing()
    m.receive({"type": "hangup", "from": "B", "to": "P"}, 1.0)
    assert (m.state, m.peer, m.actions_to_take()) == ("ringing", "A", [])


def test_decline_after_the_caller_cancelled_is_refused() -> None:
    m = ringing()
    m.receive({"type": "hangup", "from": "A", "to": "P"}, 1.0)
    m.actions_to_take()
    with pytest.raises(CallError, match=r"no incoming call to decline \(state 'ended'\)"):
        m.decline()
    assert m.actions_to_take() == []


def test_an_unanswered_incoming_call_stops_ringing_after_the_ring_timeout() -> None:
    m = ringing(now=0.0, ring_timeout=30)
    m.tick(30.0)
    actions = m.actions_to_take()
    assert to_server(actions) == [
        {"type": "decline", "from": "P", "to": "A", "reason": "not answered within 30 s"}
    ]
    assert changes(actions) == {"state": "ended", "error": "missed call from A: not answered within 30 s"}


def test_a_second_caller_while_ringing_gets_busy() -> None:
    m = ringing()
    m.receive({"type": "call", "from": "B", "to": "P", "sdp": OFFER}, 1.0)
    assert to_server(m.actions_to_take()) == [
        {"type": "busy", "from": "P", "to": "B", "reason": "P is ringing with A"}
    ]


def test_the_caller_going_offline_while_ringing_fails_the_call() -> None:
    m = ringing()
    m.receive({"type": "left", "id": "A"}, 1.0)
    assert changes(m.actions_to_take()) == {"peers": ["B"], "state": "failed", "error": "A went offline"}


# ------------------------------------------------------------------------------ connecting, races


def test_the_data_channel_opening_connects_the_call() -> None:
    m = connecting_as_caller()
    m.engine_channel("A", True)
    assert changes(m.actions_to_take()) == {"state": "connected"}
    assert m.links["A"].channel_open


def test_hangup_racing_an_answer_callee_side() -> None:
    """The caller hangs up while the callee's browser is still making its answer: the answer never goes out."""
    m = ringing()
    m.answer()
    m.receive({"type": "hangup", "from": "A", "to": "P"}, 1.0)
    m.actions_to_take()
    assert (m.state, m.error) == ("ended", "A hung up")
    m.engine_signal("A", {"type": "answer", "sdp": ANSWER})
    m.engine_signal("A", {"type": "ice", "candidate": CANDIDATE})
    assert m.actions_to_take() == []


def test_hangup_racing_an_answer_caller_side() -> None:
    """The caller hung up; the callee's answer arrives after: it changes nothing and reaches no engine."""
    m = calling()
    m.hangup()
    m.actions_to_take()
    m.receive({"type": "answer", "from": "A", "to": "P", "sdp": ANSWER}, 1.0)
    assert (m.state, m.actions_to_take()) == ("ended", [])


def test_a_late_candidate_after_the_end_reaches_no_engine() -> None:
    m = connected()
    m.hangup()
    m.actions_to_take()
    m.receive({"type": "ice", "from": "A", "to": "P", "candidate": CANDIDATE}, 5.0)
    assert m.actions_to_take() == []


def test_candidates_travel_both_ways_during_the_call() -> None:
    m = connecting_as_caller()
    ice = {"type": "ice", "from": "A", "to": "P", "candidate": CANDIDATE}
    m.receive(ice, 1.0)
    m.engine_signal("A", {"type": "ice", "candidate": CANDIDATE})
    actions = m.actions_to_take()
    assert to_engine(actions) == [{"type": "remote", "peer": "A", "signal": ice}]
    assert to_server(actions) == [{"type": "ice", "from": "P", "to": "A", "candidate": CANDIDATE}]


def test_candidates_from_a_stranger_are_ignored() -> None:
    m = connecting_as_caller()
    m.receive({"type": "ice", "from": "B", "to": "P", "candidate": CANDIDATE}, 1.0)
    assert m.actions_to_take() == []


def test_ice_failing_before_connecting_fails_the_call_and_tells_the_peer() -> None:
    m = connecting_as_caller()
    m.engine_connection("A", "failed")
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "hangup", "from": "P", "to": "A", "reason": "connection failed"}]
    assert changes(actions) == {
        "state": "failed",
        "error": "could not connect to A: ICE found no path between the two peers",
    }


def test_an_engine_failure_during_a_call_fails_it() -> None:
    m = connecting_as_caller()
    m.engine_failed("browser: InvalidStateError: bad state")
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "hangup", "from": "P", "to": "A", "reason": "failed"}]
    assert changes(actions) == {"state": "failed", "error": "browser: InvalidStateError: bad state"}


def test_an_engine_failure_outside_a_call_is_only_reported() -> None:
    m = machine()
    m.engine_failed("browser: TypeError: x")
    assert changes(m.actions_to_take()) == {"error": "browser: TypeError: x"}
    assert m.state == "idle"


def test_reports_about_a_peer_without_a_link_are_ignored() -> None:
    m = connecting_as_caller()
    m.engine_channel("B", True)
    m.engine_connection("B", "failed")
    m.engine_signal("B", {"type": "ice", "candidate": CANDIDATE})
    assert (m.state, m.actions_to_take()) == ("connecting", [])


# -------------------------------------------------------------------------------------- connected


def test_send_is_allowed_only_when_connected() -> None:
    m = connecting_as_caller()
    with pytest.raises(CallError, match=r"not in a connected call \(state 'connecting'\)"):
        m.check_send()
    m.engine_channel("A", True)
    m.check_send()


def test_the_data_channel_closing_ends_the_call() -> None:
    m = connected()
    m.engine_channel("A", False)
    assert changes(m.actions_to_take()) == {"state": "ended", "error": "the data channel to A closed"}


def test_losing_the_peer_during_the_call_says_so() -> None:
    m = connected()
    m.engine_connection("A", "failed")
    assert changes(m.actions_to_take())["error"].startswith("lost the connection to A")


def test_the_peer_going_offline_does_not_end_a_connected_call() -> None:
    m = connected()
    m.receive({"type": "left", "id": "A"}, 1.0)
    assert m.state == "connected"


def test_the_engine_losing_its_connections_ends_the_call_and_tells_the_peer() -> None:
    m = connected()
    m.engine_lost("the browser page was reloaded during the call")
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "hangup", "from": "P", "to": "A"}]
    assert changes(actions) == {"state": "failed", "error": "the browser page was reloaded during the call"}


def test_a_new_call_after_an_ended_one_starts_clean() -> None:
    m = connected()
    m.receive({"type": "hangup", "from": "A", "to": "P"}, 2.0)
    m.actions_to_take()
    m.call("B", 3.0)
    assert changes(m.actions_to_take()) == {"state": "calling", "peer": "B", "error": ""}
    assert list(m.links) == ["B"]


def test_ticks_outside_a_call_do_nothing() -> None:
    m = connected()
    m.tick(1e9)
    assert (m.state, m.actions_to_take()) == ("connected", [])


# ------------------------------------------------------------------------------------------- rooms

ROOM = "r-abc"


def room_creator(*invited: str) -> CallMachine:
    """P invited ``invited`` (A by default) and the server made its room."""
    m = machine()
    m.invite(invited or ("A",), 0.0)
    m.receive({"type": "room-state", "room": ROOM, "members": ["P"]}, 0.0)
    m.actions_to_take()
    return m


def room_with_a() -> CallMachine:
    """P made a room and A joined; A's offer arrived and the data channel to A is open."""
    m = room_creator()
    m.receive({"type": "room-joined", "room": ROOM, "id": "A"}, 1.0)
    m.receive({"type": "call", "from": "A", "to": "P", "room": ROOM, "sdp": OFFER}, 1.0)
    m.engine_channel("A", True)
    m.actions_to_take()
    return m


def invited(**options: Any) -> CallMachine:
    m = machine(**options)
    m.receive({"type": "room-invitation", "room": ROOM, "from": "A", "members": ["A", "B"]}, 0.0)
    if not options.get("auto_answer"):
        m.actions_to_take()
    return m


def test_inviting_from_idle_asks_the_server_for_a_room_and_calls() -> None:
    m = machine()
    m.invite(("A", "B"), 0.0)
    actions = m.actions_to_take()
    assert to_server(actions) == [
        {"type": "room-invite", "from": "P", "to": "A"},
        {"type": "room-invite", "from": "P", "to": "B"},
    ]
    assert changes(actions) == {"state": "calling"}
    assert to_engine(actions) == []  # no connection until someone joins


@pytest.mark.parametrize(("peers", "error"), [((), ValueError), ((7,), TypeError), (("P",), CallError)])
def test_invite_refuses_nobody_non_ids_and_itself(peers: tuple[object, ...], error: type[Exception]) -> None:
    m = machine()
    with pytest.raises(error):
        m.invite(peers, 0.0)
    assert (m.state, m.actions_to_take()) == ("idle", [])


def test_the_creator_has_its_room_and_keeps_calling_until_someone_joins() -> None:
    m = machine()
    m.invite(("A",), 0.0)
    m.actions_to_take()
    m.receive({"type": "room-state", "room": ROOM, "members": ["P"], "credential": "e1.proof"}, 0.0)
    assert changes(m.actions_to_take()) == {
        "room": ROOM,
        "members": ["P"],
        "room_mode": "mesh",
    }  # the credential is no trait
    assert m.state == "calling"
    # A reconnect re-registers into the room with the credential, which re-creates it after a server restart.
    assert m.register_fields() == {"rooms": True, "room": ROOM, "members": ["P"], "credential": "e1.proof"}
    # A member leaving: the others get their credentials of the room's next epoch.
    m.receive({"type": "room-joined", "room": ROOM, "id": "A"}, 1.0)
    m.receive({"type": "room-left", "room": ROOM, "id": "A", "reason": "left", "credential": "e2.proof"}, 2.0)
    assert m.register_fields()["credential"] == "e2.proof"
    m.leave()
    assert m.register_fields() == {"rooms": True}


def test_a_member_joining_connects_the_creator_and_waits_for_the_joiners_offer() -> None:
    m = room_creator()
    m.receive({"type": "room-joined", "room": ROOM, "id": "A"}, 1.0)
    actions = m.actions_to_take()
    assert changes(actions) == {
        "members": ["P", "A"],
        "state": "connected",
        "connections": {"A": "connecting"},
    }
    assert to_engine(actions) == []  # the joiner offers
    offer = {"type": "call", "from": "A", "to": "P", "room": ROOM, "sdp": OFFER}
    m.receive(offer, 1.0)
    assert to_engine(m.actions_to_take()) == [
        {"type": "remote", "peer": "A", "signal": offer, "ice_servers": []},
        {"type": "accept", "peer": "A"},
    ]
    m.engine_signal("A", {"type": "answer", "sdp": ANSWER})
    m.engine_signal("A", {"type": "ice", "candidate": CANDIDATE})
    assert to_server(m.actions_to_take()) == [
        {"type": "answer", "from": "P", "to": "A", "room": ROOM, "sdp": ANSWER},
        {"type": "ice", "from": "P", "to": "A", "room": ROOM, "candidate": CANDIDATE},
    ]
    m.engine_channel("A", True)
    assert changes(m.actions_to_take()) == {"connections": {"A": "connected"}}
    m.check_send()
    m.check_send("A")


def test_an_invitation_rings_and_accepting_it_joins_and_offers_to_each_member() -> None:
    m = machine()
    invitation = {"type": "room-invitation", "room": ROOM, "from": "A", "members": ["A", "B"]}
    m.receive(invitation, 0.0)
    assert changes(m.actions_to_take()) == {
        "state": "ringing",
        "invitation": {"room": ROOM, "from": "A", "members": ["A", "B"]},
    }
    assert m.peer == ""
    m.answer()
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "room-accept", "from": "P", "room": ROOM}]
    assert changes(actions) == {"state": "connecting"}
    m.receive({"type": "room-state", "room": ROOM, "members": ["A", "B", "P"]}, 1.0)
    actions = m.actions_to_take()
    assert to_engine(actions) == [
        {"type": "start_call", "peer": "A", "ice_servers": []},
        {"type": "start_call", "peer": "B", "ice_servers": []},
    ]
    assert changes(actions) == {
        "room": ROOM,
        "members": ["A", "B", "P"],
        "invitation": {},
        "state": "connected",
        "connections": {"A": "connecting", "B": "connecting"},
        "room_mode": "mesh",
    }
    m.engine_signal("B", {"type": "call", "sdp": OFFER, "framing": "nbcall/1"})
    assert to_server(m.actions_to_take()) == [
        {"type": "call", "from": "P", "to": "B", "room": ROOM, "sdp": OFFER, "framing": "nbcall/1"}
    ]


def test_auto_answer_accepts_an_invitation() -> None:
    m = invited(auto_answer=True)
    assert to_server(m.actions_to_take()) == [{"type": "room-accept", "from": "P", "room": ROOM}]


def test_declining_an_invitation_tells_the_server_why() -> None:
    m = invited()
    m.decline("not today")
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "room-decline", "from": "P", "room": ROOM, "reason": "not today"}]
    assert changes(actions) == {"state": "ended", "invitation": {}}


def test_a_cancelled_invitation_stops_ringing_with_the_reason() -> None:
    m = invited()
    m.receive({"type": "room-cancelled", "room": ROOM, "from": "A", "reason": "the invitation expired"}, 60.0)
    assert changes(m.actions_to_take()) == {
        "state": "ended",
        "error": "the invitation from A is gone: the invitation expired",
        "invitation": {},
    }


def test_a_busy_phone_declines_an_invitation_saying_why() -> None:
    m = connected()
    m.receive({"type": "room-invitation", "room": ROOM, "from": "B", "members": ["B"]}, 0.0)
    assert to_server(m.actions_to_take()) == [
        {"type": "room-decline", "from": "P", "room": ROOM, "reason": "P is connected with A"}
    ]
    assert m.state == "connected"


def test_the_inviter_learns_of_a_decline_in_error() -> None:
    m = room_with_a()
    m.receive({"type": "room-declined", "room": ROOM, "id": "B", "reason": "not today"}, 2.0)
    assert changes(m.actions_to_take()) == {"error": "B declined the invitation: not today"}
    assert m.state == "connected"


def test_a_new_room_whose_every_invitation_failed_ends_and_its_creator_is_idle() -> None:
    m = room_creator()
    m.receive({"type": "room-ended", "room": ROOM, "reason": "A declined"}, 2.0)
    actions = m.actions_to_take()
    assert changes(actions) == {
        "state": "idle",
        "error": "the room ended: A declined",
        "room": "",
        "members": [],
        "room_mode": "",
    }


def test_no_room_when_every_invitation_is_refused_by_the_server() -> None:
    m = machine()
    m.invite(("X", "Y"), 0.0)
    m.actions_to_take()
    refusal = {
        "type": "error",
        "code": "unavailable",
        "message": "'X' is not online",
        "in_reply_to": "room-invite",
    }
    m.receive(refusal, 0.0)
    assert m.state == "calling"  # Y may still make the room
    m.receive({**refusal, "message": "'Y' is not online"}, 0.0)
    assert (m.state, m.error) == ("failed", "signaling server: 'Y' is not online (unavailable)")
    assert m.register_fields() == {"rooms": True}


def test_a_member_leaving_closes_its_connection_and_the_others_go_on() -> None:
    m = room_with_a()
    m.receive({"type": "room-joined", "room": ROOM, "id": "B"}, 2.0)
    m.actions_to_take()
    m.receive({"type": "room-left", "room": ROOM, "id": "A", "reason": "left"}, 3.0)
    actions = m.actions_to_take()
    assert to_engine(actions) == [{"type": "close", "peer": "A"}]
    assert changes(actions) == {"members": ["P", "B"], "connections": {"B": "connecting"}}
    assert m.state == "connected"


def test_leaving_tells_the_server_and_closes_every_connection() -> None:
    m = room_with_a()
    m.receive({"type": "room-joined", "room": ROOM, "id": "B"}, 2.0)
    m.actions_to_take()
    m.hangup()  # hangup in a room is leave
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "room-leave", "from": "P", "room": ROOM}]
    assert sorted(c["peer"] for c in to_engine(actions)) == ["A", "B"]
    assert (m.state, m.room, m.members, m.connections, m.links) == ("ended", "", [], {}, {})


def test_sending_in_a_room_needs_an_open_connection_to_a_member() -> None:
    m = room_creator()
    m.receive({"type": "room-joined", "room": ROOM, "id": "A"}, 1.0)
    with pytest.raises(CallError, match="no open connection to any member yet"):
        m.check_send()
    m.engine_channel("A", True)
    with pytest.raises(CallError, match=r"'Z' is not in P's room r-abc; members: \['P', 'A'\]"):
        m.check_send("Z")


def test_a_lost_connection_in_a_room_is_reported_to_the_server() -> None:
    m = room_with_a()
    m.engine_connection("A", "failed")
    actions = m.actions_to_take()
    assert to_server(actions) == [
        {"type": "room-link", "from": "P", "room": ROOM, "peer": "A", "state": "failed"}
    ]
    assert changes(actions) == {"connections": {"A": "failed"}}
    assert m.state == "connected"


def test_room_signals_from_outside_the_room_are_ignored() -> None:
    m = room_with_a()
    m.receive({"type": "call", "from": "Z", "to": "P", "room": ROOM, "sdp": OFFER}, 1.0)
    m.receive({"type": "ice", "from": "A", "to": "P", "room": "r-other", "candidate": CANDIDATE}, 1.0)
    assert m.actions_to_take() == []


def test_a_1_to_1_call_becomes_a_room_keeping_its_connection() -> None:
    m = connected()  # P called A
    m.invite(("C",), 5.0)
    assert to_server(m.actions_to_take()) == [
        {"type": "room-invite", "from": "P", "to": "A", "link": True},
        {"type": "room-invite", "from": "P", "to": "C"},
    ]
    m.receive({"type": "room-state", "room": ROOM, "members": ["P"]}, 5.0)
    m.receive({"type": "room-joined", "room": ROOM, "id": "A"}, 5.0)
    actions = m.actions_to_take()
    assert to_engine(actions) == []  # the link to A stays as it is
    assert (m.state, m.peer, m.room, m.members) == ("connected", "", ROOM, ["P", "A"])
    assert m.connections == {"A": "connected"}


def test_the_peer_of_a_1_to_1_call_joins_its_room_without_ringing() -> None:
    m = connected()  # P called A
    m.receive({"type": "room-invitation", "room": ROOM, "from": "A", "members": ["A"], "link": True}, 5.0)
    assert to_server(m.actions_to_take()) == [{"type": "room-accept", "from": "P", "room": ROOM}]
    assert m.state == "connected"
    m.receive({"type": "room-state", "room": ROOM, "members": ["A", "P"]}, 5.0)
    actions = m.actions_to_take()
    assert to_engine(actions) == []  # already connected to A: no new offer
    assert (m.room, m.peer, m.connections) == (ROOM, "", {"A": "connected"})


def test_a_rejoin_after_a_restart_keeps_the_members_and_makes_no_offer() -> None:
    m = room_with_a()
    m.receive({"type": "room-state", "room": ROOM, "members": ["P"], "rejoined": True}, 9.0)
    m.receive({"type": "room-joined", "room": ROOM, "id": "A"}, 9.0)
    actions = m.actions_to_take()
    assert to_engine(actions) == [] and to_server(actions) == []
    assert (m.members, m.connections) == (["P", "A"], {"A": "connected"})


def test_a_1_to_1_call_to_a_room_member_gets_busy() -> None:
    m = room_with_a()
    m.receive({"type": "call", "from": "B", "to": "P", "sdp": OFFER}, 1.0)
    assert to_server(m.actions_to_take()) == [
        {"type": "busy", "from": "P", "to": "B", "reason": "P is in room r-abc"}
    ]


def test_a_call_that_never_connects_fails_saying_no_candidate_arrived() -> None:
    m = calling(connect_timeout=20)
    m.engine_signal("A", {"type": "ice", "candidate": CANDIDATE})
    m.receive({"type": "answer", "from": "A", "to": "P", "sdp": ANSWER}, 1.0)
    m.actions_to_take()
    m.tick(20.9)
    assert m.state == "connecting"
    m.tick(21.0)
    actions = m.actions_to_take()
    assert to_server(actions) == [{"type": "hangup", "from": "P", "to": "A", "reason": "could not connect"}]
    assert m.state == "failed"
    assert m.error == (
        "could not connect to A within 20 s: no ICE candidate arrived from it (1 sent from here), so there was "
        "no candidate pair to check (were its candidates dropped on the way?)"
    )


def test_a_callee_that_never_connects_fails_saying_no_pair_succeeded() -> None:
    m = ringing()
    m.answer(5.0)
    m.receive({"type": "ice", "from": "A", "to": "P", "candidate": CANDIDATE}, 6.0)
    m.engine_connection("A", "connecting")
    m.actions_to_take()
    m.tick(25.0)
    assert m.error == (
        "could not connect to A within 20 s: no candidate pair succeeded (0 local and 1 remote candidates; "
        "connection connecting)"
    )


def test_glare_the_smaller_id_yields_and_rings_for_the_other_call() -> None:
    m = calling()  # P calls A, and A calls P at the same moment
    offer = {"type": "call", "from": "A", "to": "P", "sdp": OFFER}
    m.receive(offer, 1.0)
    actions = m.actions_to_take()
    assert m.state == "calling"  # "P" > "A": P's call stands, A's offer is ignored (A yields)
    assert actions == []
    m = machine()
    m.user_id = "0"  # now this phone has the smaller ID
    m.call("A", 0.0)
    m.actions_to_take()
    m.receive({**offer, "to": "0"}, 1.0)
    actions = m.actions_to_take()
    assert to_engine(actions) == [
        {"type": "close", "peer": "A"},
        {"type": "remote", "peer": "A", "signal": {**offer, "to": "0"}, "ice_servers": []},
    ]
    assert to_server(actions) == []  # no busy: A's call goes on
    assert (m.state, m.peer) == ("ringing", "A")


def test_a_new_room_whose_only_invitation_is_declined_ends_and_keeps_who_declined_and_why() -> None:
    m = machine()
    m.invite(("B",), 0.0)
    m.receive({"type": "room-state", "room": "r-1", "members": ["A"]}, 0.0)
    m.receive({"type": "room-declined", "room": "r-1", "id": "B", "reason": "not now"}, 0.0)
    m.receive({"type": "room-ended", "room": "r-1", "reason": "nobody joined"}, 0.0)
    assert (m.state, m.room) == ("idle", "")
    assert m.error == "the room ended: nobody joined (B declined the invitation: not now)"


#: The server's refusal of a room-accept whose invitation is gone (it names the room: add ``room``).
REFUSED_ACCEPT = {
    "type": "error",
    "code": "not-invited",
    "message": "no invitation",
    "in_reply_to": "room-accept",
}


def test_a_refused_accept_of_an_earlier_room_does_not_end_the_accept_of_the_next() -> None:
    # The first room ended while our accept of it was on its way; its refusal comes after we accepted the next.
    m = invited(auto_answer=True)
    m.actions_to_take()
    m.receive({**REFUSED_ACCEPT, "room": "r-earlier"}, 1.0)
    assert m.state == "connecting"
    m.receive({"type": "room-state", "room": ROOM, "members": ["A", "P"]}, 1.5)
    assert (m.state, m.room) == ("connected", ROOM)


def test_a_refused_accept_of_the_room_we_accepted_ends_it() -> None:
    m = invited(auto_answer=True)
    m.actions_to_take()
    m.receive({**REFUSED_ACCEPT, "room": ROOM}, 1.0)
    assert m.state == "failed" and "no invitation" in m.error
