"""Faults put on purpose, and the manual-signaling text, without sockets."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

from nbcall.cli import parser
from nbcall.server.server import serve
from nbcall.teach import manual
from nbcall.wire.faults import Faults, FaultyOutbox, candidate_type

HOST = {"type": "ice", "candidate": '{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host"}'}
RELAY = {
    "type": "ice",
    "candidate": '{"candidate":"candidate:2 1 udp 41885439 127.0.0.1 6000 typ relay raddr"}',
}


def test_candidate_types_are_read_from_the_candidate_line() -> None:
    assert (candidate_type(HOST), candidate_type(RELAY), candidate_type({"type": "ice"})) == (
        "host",
        "relay",
        None,
    )


def test_faults_say_why_a_message_is_dropped() -> None:
    faults = Faults.of({"drop": "answer", "candidate_types": ["relay"]})
    assert faults is not None
    assert faults.why_dropped({"type": "answer"}) == "faults drop 'answer' messages"
    assert faults.why_dropped(HOST) == "faults keep only relay candidates, this one is host"
    assert faults.why_dropped(RELAY) is None
    assert faults.why_dropped({"type": "call"}) is None


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        ({"drop": ["ice"], "jitter": 1}, ValueError, "unknown faults ['jitter']"),
        ({"candidate_types": ["lan"]}, ValueError, "are not candidate types"),
        ({"delay": -1}, ValueError, "delay must be >= 0"),
        (["ice"], TypeError, "faults must be a Faults or a dict"),
    ],
)
def test_bad_faults_are_refused_saying_what_to_use(value: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        Faults.of(value)


def outbox(faults: Faults) -> tuple[FaultyOutbox, list[Any], list[tuple[float, Any]], list[str]]:
    sent: list[Any] = []
    timers: list[tuple[float, Any]] = []
    drops: list[str] = []
    box = FaultyOutbox(
        faults, sent.append, lambda delay, fn: timers.append((delay, fn)), lambda m, why: drops.append(why)
    )
    return box, sent, timers, drops


def test_a_delay_sends_each_message_later() -> None:
    box, sent, timers, _ = outbox(Faults(delay=0.5))
    box({"type": "call"})
    assert sent == [] and [t for t, _ in timers] == [0.5]
    timers[0][1]()
    assert sent == [{"type": "call"}]


def test_reordered_messages_go_last_first_after_a_short_window() -> None:
    box, sent, timers, _ = outbox(Faults(reorder=("ice",)))
    box({"type": "ice", "n": 1})
    box({"type": "ice", "n": 2})
    box({"type": "answer"})
    assert sent == [{"type": "answer"}] and len(timers) == 1
    timers[0][1]()
    assert [m.get("n") for m in sent[1:]] == [2, 1]


def test_dropped_messages_are_reported_not_sent() -> None:
    box, sent, _, drops = outbox(Faults(drop=("ice",)))
    box(HOST)
    assert (sent, drops) == ([], ["faults drop 'ice' messages"])


def test_manual_text_round_trips_and_is_short_enough_to_paste() -> None:
    offer = [{"type": "call", "from": "A", "sdp": "v=0\r\n" + "a=x\r\n" * 200}, HOST, RELAY]
    text = manual.pack(offer)
    assert text.startswith("nbcall1:") and "\n" not in text and len(text) < 600
    assert manual.unpack(text, "call") == offer
    assert manual.unpack("  " + text + "\n", "call") == offer  # pasted with whitespace around


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("v=0 an SDP", "this is not an offer from create_offer()"),
        ("nbcall1:%%%", "this text is damaged"),
        (manual.pack([{"type": "answer"}]), "this is a 'answer', not an offer"),
        ("nbcall1:" + "eJyLjgUAARUAuQ==", "holds no signaling messages"),
    ],
)
def test_text_that_is_not_an_offer_is_refused_saying_what_to_paste(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        manual.unpack(text, "call")


# -------------------------------------------------------------------- the server's faults, over sockets


async def test_a_server_with_faults_drops_and_delays_what_it_relays() -> None:
    server = await serve(faults={"drop": ["ice"], "delay": 0.3})
    try:
        async with connect(server.url) as a, connect(server.url) as b:
            for ws, peer in ((a, "A"), (b, "B")):
                await ws.send(json.dumps({"type": "register", "from": peer}))
                assert json.loads(await ws.recv())["type"] == "registered"
            started = time.monotonic()
            await a.send(json.dumps({"type": "ice", "to": "B", "candidate": HOST["candidate"]}))
            await a.send(json.dumps({"type": "call", "to": "B", "sdp": "{}"}))
            first = json.loads(await asyncio.wait_for(b.recv(), 5))
            assert first["type"] == "call"  # the candidate was dropped; the call came, late
            assert time.monotonic() - started >= 0.25
    finally:
        server.close()
        await server.wait_closed()


def test_nbcall_serve_takes_the_faults_as_flags() -> None:
    args = parser().parse_args(["serve", "--drop", "ice", "--drop", "answer", "--candidate-types", "relay"])
    assert (args.drop, args.candidate_types) == (["ice", "answer"], "relay")
