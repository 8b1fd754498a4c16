"""What a phone no browser ever displayed keeps for its browser half is bounded: the oldest is dropped and
counted, and ``error`` says why and what to do. The browser half is simulated as in test_phone.py."""

from __future__ import annotations

import json
from typing import Any

from support import TIMEOUT, RawPeer
from support import wait_until_sync as wait_until

from nbcall import Phone
from nbcall.server.server import SignalingServer
from nbcall.widget.backlog import MAX_BACKLOG, MAX_BACKLOG_BYTES, Backlog

CANDIDATE = json.dumps({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", "sdpMid": "0"})


def test_a_phone_never_displayed_keeps_a_bounded_backlog_and_says_to_display_it(
    server: SignalingServer, made: list[Any]
) -> None:
    phone = Phone("P", server=server.url, timeout=TIMEOUT, auto_answer=True)
    made.append(phone)
    phone._to_browser.max_count = 10  # the bound, small enough to reach with a few signals
    caller = RawPeer(server.url, "Caller")
    made.append(caller)
    caller.call("P")
    wait_until(lambda: phone.state == "connecting", "P to answer")
    for _ in range(20):  # each candidate is a message for the browser half, which never came
        caller.send(type="ice", to="P", candidate=CANDIDATE)
    wait_until(lambda: phone._to_browser.dropped >= 10, "the backlog to overflow")
    assert len(phone._to_browser) == 10
    dropped = phone._to_browser.dropped
    assert phone.error == (
        f"no browser ever displayed this phone, so none runs its calls: {dropped} messages for its browser half "
        "were dropped (it keeps the last 10, 16 MiB); display it (put it last in a cell, or display(phone)) "
        "before calling or answering"
    )
    # A browser that shows it at last gets what was kept, the newest.
    phone._handle_custom_msg({"type": "hello", "page": "p1"}, [])
    assert len(phone._to_browser) == 0


def test_the_backlog_drops_the_oldest_beyond_its_count_or_bytes() -> None:
    assert (MAX_BACKLOG, MAX_BACKLOG_BYTES) == (1000, 16 * 2**20)  # as documented
    backlog = Backlog(max_count=3, max_bytes=1000)
    assert [backlog.add({"n": n}, []) for n in range(5)] == [0, 0, 0, 1, 1]
    assert [content["n"] for content, _ in backlog.take()] == [2, 3, 4]
    assert backlog.add({"n": 5}, [b"x" * 600]) == 0
    assert backlog.add({"n": 6}, [b"y" * 600]) == 1  # over 1000 bytes: the older one goes
    assert backlog.add({"n": 7}, [b"z" * 2000]) == 1  # alone over the bound, the newest stays
    assert [content["n"] for content, _ in backlog.take()] == [7]
    assert backlog.dropped == 4
