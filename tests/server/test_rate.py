"""The rate and slow-reader policy, without sockets (nbcall.server.rate), and the token bucket behind the rate."""

from __future__ import annotations

import json

import pytest
from support import OFFER, error_of, frame, register

from nbcall.server.limits import TokenBucket
from nbcall.server.messages import Close, encode_message
from nbcall.server.protocol import SignalingProtocol

CANDIDATE = json.dumps(
    {"candidate": "candidate:1 1 UDP 2122252543 192.168.1.2 54321 typ host", "sdpMid": "0"}
)


# -- token bucket ---------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=4, capacity=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.125) is False  # half a token
    assert bucket.take(100.25) is True  # one token after 1/4 s
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # refills to capacity only


def test_token_bucket_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, capacity=1, now=0)
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(rate=1, capacity=0, now=0)


# -- decisions on what the transport saw: rate limit, slow reader ---------------


def test_a_message_refused_for_rate_gets_an_error_naming_the_limits() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(max_rate=2, max_burst=5, max_refused=3)
    register(p, "a", "A")
    err = error_of(p.refuse_for_rate("a", now=0.0), "a")
    assert err["code"] == "rate-limited" and err["in_reply_to"] is None
    assert err["message"] == (
        "more than 2 messages per second (bursts of 5) from this connection; this message was dropped: "
        "slow down (more than 3 dropped within 10 s close the connection)"
    )


def test_persistent_refusals_for_rate_close_the_connection_and_the_window_forgives() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(max_refused=3)
    register(p, "a", "A")
    for _ in range(3):
        assert error_of(p.refuse_for_rate("a", now=0.0), "a")["code"] == "rate-limited"
    assert p.refuse_for_rate("a", now=0.0) == [
        ("a", Close(1008, "rate limit exceeded persistently (more than 3 refused)"))
    ]
    # 3 refusals per 10 s are forgiven: one more refusal 4 s later is only an error again.
    p.connect("b")
    for _ in range(3):
        p.refuse_for_rate("b", now=0.0)
    assert error_of(p.refuse_for_rate("b", now=4.0), "b")["code"] == "rate-limited"


def test_without_max_refused_refusals_never_close_and_are_forgotten_on_disconnect() -> None:
    p: SignalingProtocol[str] = SignalingProtocol(max_refused=None)
    p.connect("a")
    for _ in range(1000):
        assert error_of(p.refuse_for_rate("a", now=0.0), "a")["code"] == "rate-limited"
    q: SignalingProtocol[str] = SignalingProtocol()
    q.connect("a")
    q.refuse_for_rate("a", now=0.0)
    q.disconnect("a")
    assert not q.rate.refusals


def test_a_dropped_slow_reader_is_closed_its_sender_told_and_the_others_see_it_leave(
    proto: SignalingProtocol[str],
) -> None:
    register(proto, "w", "Watcher")
    lost = frame(type="call", **{"from": "A"}, to="B", sdp=OFFER)
    out = proto.drop_slow_reader("b", lost.encode(), "a")
    assert out[0] == ("b", Close(1008, "too slow: stopped reading its messages"))
    assert out[1][0] == "a" and json.loads(out[1][1]) == {
        "type": "unavailable",
        "peer": "B",
        "in_reply_to": "call",
        "message": "'B' was disconnected because it stopped reading its messages; this 'call' was not delivered",
    }
    assert sorted((conn, json.loads(text)["type"]) for conn, text in out[2:]) == [
        ("a", "left"),
        ("w", "left"),
    ]
    assert proto.peers == ["A", "Watcher"]


@pytest.mark.parametrize(
    ("lost", "sender"),
    [
        (encode_message("left", id="C"), None),  # server news: nobody to tell
        (encode_message("joined", id="C"), "a"),  # not a relayed message
        (frame(type="ice", to="B", candidate=CANDIDATE), "b"),  # its own echo: it is the one dropped
    ],
)
def test_no_unavailable_notice_when_no_sender_lost_a_relayed_message(lost: str, sender: str | None) -> None:
    p: SignalingProtocol[str] = SignalingProtocol()
    register(p, "a", "A")
    register(p, "b", "B")
    out = p.drop_slow_reader("b", lost, sender)
    assert out == [
        ("b", Close(1008, "too slow: stopped reading its messages")),
        ("a", encode_message("left", id="B")),
    ]


def test_an_unregistered_slow_reader_is_closed_without_notices(proto: SignalingProtocol[str]) -> None:
    out = proto.drop_slow_reader("c", frame(type="call", to="C", sdp=OFFER), "a")
    assert out == [("c", Close(1008, "too slow: stopped reading its messages"))]
