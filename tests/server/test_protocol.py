"""The signaling rules, without sockets: frames in, (connection, text) pairs out."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import OFFER, error_of, frame, only, register

from nbcall.server.messages import KNOWN_TYPES, Close, encode_message, validate_id
from nbcall.server.protocol import SignalingProtocol

CANDIDATE = json.dumps(
    {
        "candidate": "candidate:1 1 UDP 2122252543 192.168.1.2 54321 typ host",
        "sdpMLineIndex": 0,
        "sdpMid": "0",
    }
)


# -- registration and presence ------------------------------------------------


def test_register_replies_with_the_other_peers_sorted(proto: SignalingProtocol[str]) -> None:
    out = register(proto, "z", "Zed")
    assert json.loads(out[0][1]) == {"type": "registered", "id": "Zed", "peers": ["A", "B"]}
    assert out[0][0] == "z"


def test_register_announces_joined_to_every_other_peer(proto: SignalingProtocol[str]) -> None:
    out = register(proto, "c", "C")
    joined = [(conn, json.loads(text)) for conn, text in out[1:]]
    assert sorted(joined, key=lambda pair: pair[0]) == [
        ("a", {"type": "joined", "id": "C"}),
        ("b", {"type": "joined", "id": "C"}),
    ]
    assert proto.peers == ["A", "B", "C"]
    assert proto.id_of("c") == "C"


def test_first_peer_sees_an_empty_list_and_nobody_is_told() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    out = register(p, "a", "A")
    assert only(out, "a") == {"type": "registered", "id": "A", "peers": []}


def test_register_without_presence_gets_its_id_only_and_no_news(proto: SignalingProtocol[str]) -> None:
    proto.connect("s")
    out = proto.receive("s", frame(type="register", **{"from": "Seed"}))
    # Watchers A and B hear of the newcomer; the newcomer gets no list.
    assert out[0] == ("s", '{"type":"registered","id":"Seed"}')
    assert sorted(conn for conn, _ in out[1:]) == ["a", "b"]
    assert not proto.wants_presence("s") and proto.wants_presence("a")
    register(proto, "c", "C")
    assert [conn for conn, _ in proto.disconnect("c")] == ["a", "b"]  # "s" hears no left either


def test_register_with_presence_false_is_seed_style() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    p.connect("a")
    out = p.receive("a", frame(type="register", presence=False, **{"from": "A"}))
    assert only(out, "a") == {"type": "registered", "id": "A"}
    assert register(p, "b", "B") == [("b", '{"type":"registered","id":"B","peers":["A"]}')]


def test_seed_style_clients_relay_normally_and_cost_no_broadcast() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    for n in range(200):
        p.connect(f"s{n}")
        out = p.receive(f"s{n}", frame(type="register", **{"from": f"S{n}"}))
        assert out == [(f"s{n}", f'{{"type":"registered","id":"S{n}"}}')]  # one reply, no fan-out
    text = frame(type="ice", to="S1", candidate=CANDIDATE, **{"from": "S0"})
    assert p.receive("s0", text) == [("s1", text)]
    assert only(p.receive("s1", frame(type="call", to="S0", sdp=OFFER)), "s0")["from"] == "S1"
    assert p.disconnect("s0") == []


def test_presence_must_be_a_boolean(proto: SignalingProtocol[str]) -> None:
    err = error_of(proto.receive("c", frame(type="register", presence="yes", **{"from": "C"})), "c")
    assert (err["code"], err["in_reply_to"]) == ("bad-message", "register")
    assert "'presence' must be true or false, got string 'yes'" in err["message"]
    assert proto.id_of("c") is None


def test_reregistering_can_turn_presence_off(proto: SignalingProtocol[str]) -> None:
    out = proto.receive("a", frame(type="register", **{"from": "A"}))
    assert out == [("a", '{"type":"registered","id":"A"}')]
    assert [conn for conn, _ in register(proto, "c", "C")[1:]] == ["b"]


def test_reregistering_the_same_id_on_the_same_connection_is_harmless(proto: SignalingProtocol[str]) -> None:
    out = proto.receive("a", frame(type="register", presence=True, **{"from": "A"}))
    assert only(out, "a") == {"type": "registered", "id": "A", "peers": ["B"]}
    assert proto.peers == ["A", "B"]


def test_registering_another_id_on_a_registered_connection_is_refused(proto: SignalingProtocol[str]) -> None:
    err = error_of(proto.receive("a", frame(type="register", **{"from": "A2"})), "a")
    assert err["code"] == "already-registered"
    assert err["in_reply_to"] == "register"
    assert "'A'" in err["message"] and "'A2'" in err["message"]
    assert proto.id_of("a") == "A" and proto.peers == ["A", "B"]


def test_duplicate_id_is_refused_and_the_original_keeps_receiving(proto: SignalingProtocol[str]) -> None:
    err = error_of(proto.receive("c", frame(type="register", **{"from": "A"})), "c")
    assert err["code"] == "duplicate-id"
    assert err["message"] == (
        "ID 'A' is already registered by another connection; pick another ID, "
        "close the other phone first, or reclaim it with the secret it registered with"
    )
    assert proto.id_of("c") is None
    out = proto.receive("b", frame(type="call", to="A", sdp=OFFER))
    assert only(out, "a")["sdp"] == OFFER


def test_refused_connection_may_register_another_id(proto: SignalingProtocol[str]) -> None:
    proto.receive("c", frame(type="register", **{"from": "A"}))
    out = proto.receive("c", frame(type="register", **{"from": "C"}))
    assert json.loads(out[0][1])["type"] == "registered"
    assert proto.id_of("c") == "C"


def test_nfc_and_nfd_spellings_of_an_id_are_the_same_peer() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    register(p, "nfc", "Jos\u00e9")
    err = error_of(register(p, "nfd", "Jose\u0301"), "nfd")
    assert err["code"] == "duplicate-id"
    register(p, "b", "B")
    # A call addressed with the NFD spelling reaches the NFC-registered peer, with `to` normalized.
    msg = only(p.receive("b", frame(type="call", to="Jose\u0301", sdp=OFFER)), "nfc")
    assert msg == {"type": "call", "from": "B", "to": "Jos\u00e9", "sdp": OFFER}


@pytest.mark.parametrize(
    ("bad_id", "fragment"),
    [
        ("", "empty"),
        ("   ", "whitespace"),
        (" A", "whitespace"),
        ("A ", "whitespace"),
        ("A\u00a0", "U+00A0"),
        ("A\x07", "U+0007"),
        ("line\nbreak", "U+000A"),
        ("x" * 65, "65 characters long, the limit is 64"),
    ],
)
def test_ids_breaking_a_rule_are_refused_with_the_rule_and_value(bad_id: str, fragment: str) -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    err = error_of(register(p, "a", bad_id), "a")
    assert err["code"] == "bad-id"
    assert fragment in err["message"]
    assert p.peers == []
    # The same connection can still register with a good ID.
    assert json.loads(p.receive("a", frame(type="register", **{"from": "A"}))[0][1])["type"] == "registered"


def test_id_of_sixty_four_characters_and_inner_spaces_is_accepted() -> None:
    assert validate_id("x" * 64) == "x" * 64
    assert validate_id("Ada Lovelace") == "Ada Lovelace"
    assert validate_id("Jose\u0301") == "Jos\u00e9"


@pytest.mark.parametrize("value", [5, None, ["A"], {"id": "A"}, True])
def test_id_that_is_not_a_string_is_a_bad_message(value: object) -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    err = error_of(register(p, "a", value), "a")  # type: ignore[arg-type]
    assert err["code"] == "bad-message"
    assert "'from' must be a string" in err["message"]


def test_register_without_from_is_a_bad_message() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    p.connect("a")
    err = error_of(p.receive("a", frame(type="register")), "a")
    assert (err["code"], err["in_reply_to"]) == ("bad-message", "register")
    assert "'from'" in err["message"]


def test_disconnect_frees_the_id_and_tells_the_others(proto: SignalingProtocol[str]) -> None:
    register(proto, "c", "C")
    out = proto.disconnect("a")
    assert sorted(out) == [("b", '{"type":"left","id":"A"}'), ("c", '{"type":"left","id":"A"}')]
    assert proto.peers == ["B", "C"]
    assert proto.id_of("a") is None
    assert json.loads(register(proto, "a2", "A")[0][1])["type"] == "registered"


def test_disconnect_is_idempotent_and_safe_for_unknown_or_unregistered_connections(
    proto: SignalingProtocol[str],
) -> None:
    assert proto.disconnect("c") == []
    assert proto.disconnect("never-seen") == []
    assert len(proto.disconnect("a")) == 1
    assert proto.disconnect("a") == []


def test_receive_from_a_connection_never_connected_is_a_programming_error() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    with pytest.raises(ValueError, match="connect"):
        p.receive("ghost", frame(type="register", **{"from": "A"}))


# -- relaying -----------------------------------------------------------------


def test_seed_call_answer_and_ice_are_forwarded_as_the_original_text(proto: SignalingProtocol[str]) -> None:
    call = frame(type="call", **{"from": "A"}, to="B", sdp=OFFER)
    answer = frame(type="answer", **{"from": "B"}, to="A", sdp=OFFER.replace("offer", "answer"))
    ice_ab = frame(type="ice", **{"from": "A"}, to="B", candidate=CANDIDATE)
    ice_ba = frame(type="ice", **{"from": "B"}, to="A", candidate=CANDIDATE)
    for sender, text, receiver in [
        ("a", call, "b"),
        ("b", answer, "a"),
        ("a", ice_ab, "b"),
        ("b", ice_ba, "a"),
    ]:
        out = proto.receive(sender, text)
        assert out == [(receiver, text)]
        assert out[0][1] is text  # no re-serialization on the hot path


def test_relay_without_from_adds_the_sender_id(proto: SignalingProtocol[str]) -> None:
    msg = only(proto.receive("a", frame(type="call", to="B", sdp=OFFER, extra={"k": [1, 2]})), "b")
    assert msg == {"type": "call", "from": "A", "to": "B", "sdp": OFFER, "extra": {"k": [1, 2]}}


def test_from_naming_another_peer_is_refused_as_wrong_from(proto: SignalingProtocol[str]) -> None:
    err = error_of(proto.receive("a", frame(type="call", **{"from": "B"}, to="B", sdp=OFFER)), "a")
    assert err["code"] == "wrong-from"
    assert err["in_reply_to"] == "call"
    assert err["message"].startswith("'from' is 'B' but this connection is registered as 'A'")


def test_call_to_unknown_peer_reports_unavailable(proto: SignalingProtocol[str]) -> None:
    register(proto, "c", "C")
    msg = only(proto.receive("a", frame(type="call", to="Bob", sdp=OFFER)), "a")
    assert msg == {
        "type": "unavailable",
        "peer": "Bob",
        "in_reply_to": "call",
        "message": "'Bob' is not online on this server; online: B, C",
    }


def test_unavailable_when_alone_says_nobody_else_is_online() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    register(p, "a", "A")
    msg = only(p.receive("a", frame(type="ice", to="B", candidate=CANDIDATE)), "a")
    assert msg["message"] == "'B' is not online on this server; no other peer is online"


def test_unavailable_truncates_a_long_list_of_online_peers() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    for n in range(25):
        register(p, f"c{n}", f"peer{n:02d}")
    msg = only(p.receive("c0", frame(type="call", to="nobody", sdp=OFFER)), "c0")
    assert msg["message"].endswith("peer10 and 14 more")
    assert "peer11" not in msg["message"]


def test_message_to_yourself_is_a_bad_message(proto: SignalingProtocol[str]) -> None:
    err = error_of(proto.receive("a", frame(type="call", to="A", sdp=OFFER)), "a")
    assert err["code"] == "bad-message"
    assert "own ID" in err["message"]


@pytest.mark.parametrize("msg_type", ["hangup", "decline", "busy"])
def test_hangup_decline_and_busy_are_relayed_with_or_without_reason(
    proto: SignalingProtocol[str], msg_type: str
) -> None:
    assert only(proto.receive("b", frame(type=msg_type, to="A")), "a") == {
        "type": msg_type,
        "to": "A",
        "from": "B",
    }
    with_reason = frame(type=msg_type, **{"from": "B"}, to="A", reason="in a meeting")
    assert proto.receive("b", with_reason) == [("a", with_reason)]
    err = error_of(proto.receive("b", frame(type=msg_type, to="A", reason=3)), "b")
    assert err["code"] == "bad-message" and "'reason'" in err["message"]


def test_relayed_messages_before_register_get_not_registered(proto: SignalingProtocol[str]) -> None:
    for msg_type in ("call", "answer", "ice", "hangup"):
        err = error_of(proto.receive("c", frame(type=msg_type, to="A", sdp="x", candidate="y")), "c")
        assert (err["code"], err["in_reply_to"]) == ("not-registered", msg_type)
        assert 'send {"type":"register","from":YOUR_ID} first' in err["message"]


@pytest.mark.parametrize(
    ("text", "code", "fragment"),
    [
        ("{not json", "bad-json", "line 1 column 2"),
        ("", "bad-json", "invalid JSON"),
        ('{"type":"call","to":"B","sdp":NaN}', "bad-json", "column 31"),
        ("[1, 2]", "bad-message", "got array"),
        ("42", "bad-message", "got number"),
        ('"register"', "bad-message", "got string"),
        ("null", "bad-message", "got null"),
        ('{"from":"A"}', "bad-message", "missing field 'type'"),
        ('{"type":7}', "bad-message", "'type' must be a string, got number"),
        ('{"type":"offer","to":"B"}', "unknown-type", "known types: answer, busy, call"),
        ('{"type":"call","sdp":"x"}', "bad-message", "missing field 'to'"),
        ('{"type":"call","to":5,"sdp":"x"}', "bad-message", "'to' must be a string"),
        ('{"type":"call","to":"  ","sdp":"x"}', "bad-id", "whitespace"),
        ('{"type":"call","to":"B"}', "bad-message", "missing field 'sdp'"),
        (
            '{"type":"call","to":"B","sdp":{"type":"offer"}}',
            "bad-message",
            "'sdp' of a 'call' message must be",
        ),
        ('{"type":"answer","to":"B","sdp":null}', "bad-message", "got null"),
        ('{"type":"ice","to":"B","candidate":{"candidate":""}}', "bad-message", "'candidate'"),
        ('{"type":"call","from":7,"to":"B","sdp":"x"}', "bad-message", "'from' must be a string"),
        ("[" * 100_000 + "]" * 100_000, "too-big", "bytes"),
    ],
)
def test_garbage_gets_a_precise_error_and_changes_nothing(
    proto: SignalingProtocol[str], text: str, code: str, fragment: str
) -> None:
    err = error_of(proto.receive("a", text), "a")
    assert err["code"] == code
    assert fragment in err["message"]
    assert proto.peers == ["A", "B"] and proto.id_of("a") == "A"
    assert only(proto.receive("a", frame(type="call", to="B", sdp="x")), "b")["from"] == "A"


def test_unknown_type_echoes_the_type_in_reply_to(proto: SignalingProtocol[str]) -> None:
    err = error_of(proto.receive("a", frame(type="chat", to="B")), "a")
    assert (err["code"], err["in_reply_to"]) == ("unknown-type", "chat")
    for known in KNOWN_TYPES:
        assert known in err["message"]


def test_errors_without_a_type_reply_in_reply_to_null(proto: SignalingProtocol[str]) -> None:
    assert error_of(proto.receive("a", "{oops"), "a")["in_reply_to"] is None


def test_binary_frame_is_refused_with_a_hint_to_send_text(proto: SignalingProtocol[str]) -> None:
    err = error_of(proto.receive("a", frame(type="call", to="B", sdp="x").encode()), "a")
    assert err["code"] == "binary-frame"
    assert "send JSON text frames" in err["message"]


def test_oversize_message_reports_its_size_and_the_limit(proto: SignalingProtocol[str]) -> None:
    text = frame(type="call", to="B", sdp="x" * 100 * 1024)
    err = error_of(proto.receive("a", text), "a")
    assert err["code"] == "too-big"
    assert f"message is {len(text)} bytes, the limit is 65536 bytes" in err["message"]


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(max_message_size=1000)
    register(p, "a", "A")
    register(p, "b", "B")
    fits = frame(type="call", to="B", sdp="x" * 900)
    too_big = frame(type="call", to="B", sdp="\u00e9" * 500)  # 500 characters, 1000 bytes of sdp
    assert len(too_big) < 1000 < len(too_big.encode())
    assert only(p.receive("a", fits), "b")["sdp"] == "x" * 900
    assert error_of(p.receive("a", too_big), "a")["code"] == "too-big"


def test_max_message_size_none_disables_the_limit() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(max_message_size=None)
    register(p, "a", "A")
    register(p, "b", "B")
    big = frame(type="call", **{"from": "A"}, to="B", sdp="x" * 1_000_000)
    assert p.receive("a", big) == [("b", big)]


def test_max_message_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        SignalingProtocol(max_message_size=0)


def test_registrations_calls_and_departures_are_logged(
    proto: SignalingProtocol[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbcall.server.protocol")
    register(proto, "c", "Carol")
    proto.receive("c", frame(type="call", to="A", sdp="x"))
    proto.disconnect("c")
    assert [r.getMessage() for r in caplog.records] == [
        "'Carol' registered (3 online)",
        "'Carol' -> 'A': call",
        "'Carol' left",
    ]


def test_encode_message_puts_type_first_and_is_compact() -> None:
    assert encode_message("left", id="A") == '{"type":"left","id":"A"}'


# -- robustness ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ids = st.sampled_from(["A", "B", "C", "Jose\u0301", "", " A", "x" * 65]) | st.text(max_size=8)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from([*KNOWN_TYPES, "offer", ""]) | json_values},
    optional={
        "from": ids | json_values,
        "to": ids | json_values,
        "sdp": st.text(max_size=30) | json_values,
        "candidate": st.text(max_size=30) | json_values,
        "reason": st.text(max_size=30) | json_values,
        "secret": st.sampled_from(["s1", "s2"]) | json_values,
    },
)
frames = (
    st.text(max_size=200)
    | st.binary(max_size=200)
    | json_values.map(json.dumps)
    | messages.map(json.dumps)
    | messages.map(lambda m: json.dumps(m)[:-1])
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from("abc"), frames), max_size=12))
def test_random_frames_never_break_the_protocol_or_the_relay(batch: list[tuple[str, str | bytes]]) -> None:
    p: SignalingProtocol[str] = SignalingProtocol(max_message_size=150)
    for conn in "abc":
        p.connect(conn)
    register(p, "a", "A")
    register(p, "b", "B")
    for conn, text in batch:
        for target, reply in p.receive(conn, text):
            assert target in "abc"
            assert isinstance(reply, str), reply  # no Close: nobody here may take A's or B's ID
            reply.encode("utf-8")  # sendable as a websocket text frame
            decoded = json.loads(reply)
            assert isinstance(decoded, dict) and isinstance(decoded["type"], str)
    assert p.id_of("a") == "A" and p.id_of("b") == "B"
    assert only(p.receive("a", frame(type="call", to="B", sdp="offer")), "b")["from"] == "A"
    assert only(p.receive("b", frame(type="answer", to="A", sdp="answer")), "a")["from"] == "B"


# -- reclaiming an ID ---------------------------------------------------------


def register_with_secret(
    p: SignalingProtocol[str], conn: str, peer_id: str, secret: object
) -> list[tuple[str, str | Close]]:
    p.connect(conn)
    return p.receive(conn, frame(type="register", secret=secret, presence=True, **{"from": peer_id}))


def test_same_secret_reclaims_the_id_and_closes_the_old_connection_without_churn() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    register(p, "b", "B")
    register_with_secret(p, "a", "A", "phone-A-secret")
    out = register_with_secret(p, "a2", "A", "phone-A-secret")
    assert out == [
        ("a2", '{"type":"registered","id":"A","peers":["B"]}'),
        ("a", Close(1008, "replaced by a newer connection of the same phone")),
    ]  # B hears neither `left` nor `joined`: A never went offline
    assert p.id_of("a2") == "A" and p.id_of("a") is None and p.peers == ["A", "B"]
    assert p.disconnect("a") == []  # the old connection's end frees nothing
    assert only(p.receive("b", frame(type="call", to="A", sdp=OFFER)), "a2")["from"] == "B"
    # The new connection holds the secret too: the phone can reconnect again.
    assert register_with_secret(p, "a3", "A", "phone-A-secret")[1] == ("a2", Close(1008, ANY_REASON))


ANY_REASON = "replaced by a newer connection of the same phone"


@pytest.mark.parametrize("secret", [None, "wrong", "phone-A-secre", "phone-A-secret!"])
def test_missing_or_wrong_secret_cannot_take_an_id_over(secret: str | None) -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    register_with_secret(p, "a", "A", "phone-A-secret")
    out = register(p, "x", "A") if secret is None else register_with_secret(p, "x", "A", secret)
    err = error_of(out, "x")  # type: ignore[arg-type]
    assert (err["code"], err["in_reply_to"]) == ("duplicate-id", "register")
    assert "phone-A-secret" not in json.dumps(err) and (secret is None or secret not in err["message"])
    assert p.id_of("a") == "A" and p.id_of("x") is None


def test_an_id_registered_without_a_secret_cannot_be_reclaimed() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    register(p, "a", "A")
    assert error_of(register_with_secret(p, "x", "A", "guess"), "x")["code"] == "duplicate-id"  # type: ignore[arg-type]
    assert p.id_of("a") == "A"


def test_the_secret_is_forgotten_when_the_id_is_freed() -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    register_with_secret(p, "a", "A", "s1")
    p.disconnect("a", clean=True)  # a close frame frees the ID at once
    register(p, "b", "A")  # a new owner without a secret
    assert error_of(register_with_secret(p, "x", "A", "s1"), "x")["code"] == "duplicate-id"  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", [42, "", "s" * 257, ["s"]])
def test_malformed_secret_is_a_bad_message_that_does_not_echo_it(secret: object) -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    err = error_of(register_with_secret(p, "a", "A", secret), "a")  # type: ignore[arg-type]
    assert err["code"] == "bad-message" and "'secret'" in err["message"]
    assert "sss" not in err["message"] and "42" not in err["message"]
    assert p.peers == []


def test_secrets_are_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="nbcall.server.protocol")
    p: SignalingProtocol[str] = SignalingProtocol()
    register_with_secret(p, "a", "A", "hunter2-secret")
    register_with_secret(p, "x", "A", "wrong-secret")
    register_with_secret(p, "a2", "A", "hunter2-secret")
    text = caplog.text
    assert "'A' reconnected" in text
    assert "hunter2" not in text and "wrong-secret" not in text
