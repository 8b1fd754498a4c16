"""A Peer facing a peer that sends too much or sends garbage: it drops what is malformed or too large with one
log line and an error, keeps the call up, keeps its memory bounded and writes no file outside its receive
directory. Real aiortc over 127.0.0.1 (marked ``webrtc``, run in the loopback-only namespace)."""

from __future__ import annotations

import json
import logging
import os
import resource
from pathlib import Path
from typing import Any

import pytest
from hostile import json_frames, probe, run_bursts
from support import RawRtcPeer, wait_until_sync

from nbcall.call import kernel
from nbcall.server.server import SignalingServer

pytestmark = pytest.mark.webrtc
TIMEOUT = 10.0


def test_a_message_over_max_receive_size_is_dropped_with_an_error_and_the_call_goes_on(
    make_peer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_peer("A"), make_peer("B", auto_answer=True, max_receive_size=1000)
    a.call("B")
    a.wait("connected", timeout=TIMEOUT)
    b.wait("connected", timeout=TIMEOUT)
    with caplog.at_level(logging.WARNING, logger="nbcall"):
        a.send(bytes(5000)).result(TIMEOUT)  # announced (B takes lengths): refused before it arrives
        a.send("still here").result(TIMEOUT)
        wait_until_sync(lambda: b.messages, "the message after the large one", TIMEOUT)
    assert [m.data for m in b.messages] == ["still here"]
    assert "from A: dropped a message: 5000 bytes is more than max_receive_size (1000)" in b.error
    dropped = [r for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].exc_info is None
    assert a.state == b.state == "connected"
    b.max_receive_size = 10_000
    a.send(bytes(5000)).result(TIMEOUT)
    wait_until_sync(lambda: len(b.messages) == 2, "the large message under the raised bound", TIMEOUT)
    with pytest.raises(Exception, match="max_receive_size must be a number of bytes > 0"):
        b.max_receive_size = -1


def test_malformed_candidates_and_messages_from_a_peer_cost_one_log_line_each_and_the_call_goes_on(
    make_peer, server: SignalingServer, caplog: pytest.LogCaptureFixture
) -> None:
    b = make_peer("B", auto_answer=True)
    raw = RawRtcPeer("X")
    kernel.run(raw.register(server.url), timeout=TIMEOUT)
    kernel.run(raw.call("B"), timeout=30)
    b.wait("connected", timeout=TIMEOUT)
    bad = [
        "{not json",
        json.dumps({"candidate": "candidate:1 1 udp"}),
        json.dumps({"candidate": "no colon"}),
        5,
    ]
    with caplog.at_level(logging.WARNING, logger="nbcall"):
        for candidate in bad:
            kernel.run(raw.signal(type="ice", to="B", candidate=candidate), timeout=TIMEOUT)
        kernel.run(raw.send(*json_frames({"probe": 1})), timeout=TIMEOUT)
        wait_until_sync(lambda: b.messages, "the message after the bad candidates", TIMEOUT)
    assert b.messages[-1].data == {"probe": 1} and b.state == "connected", b.error
    lines = [r for r in caplog.records if "ICE candidate" in r.getMessage()]
    assert len(lines) == len(bad) - 1 and all(r.exc_info is None for r in lines)  # 5 is no candidate at all
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nbcall"):
        kernel.run(raw.send(b"\x03{broken", b"\x01\xff", *json_frames({"probe": 2})), timeout=TIMEOUT)
        wait_until_sync(
            lambda: b.messages[-1].data == {"probe": 2}, "the message after two that do not decode"
        )
    assert "from X: received a str message that does not decode" in b.error
    assert len([r for r in caplog.records if "does not decode" in r.getMessage()]) == 2
    kernel.run(raw.close(), timeout=TIMEOUT)


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_hostile_peer_sending_garbage_leaves_the_peer_up_bounded_and_its_files_inside(
    make_peer, server: SignalingServer, tmp_path: Path
) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (inbox / "link").symlink_to(outside, target_is_directory=True)
    (inbox / "file").write_text("a file where a folder may be asked for")
    before = _tree(tmp_path)
    limit = 16 * 1024
    b = make_peer("B", auto_answer=True, receive_dir=inbox, max_receive_size=limit)
    probes: list[Any] = []
    b.on_message(lambda m: probes.append(m.data) if isinstance(m.data, dict) and "probe" in m.data else None)
    raw = RawRtcPeer("X")
    kernel.run(raw.register(server.url), timeout=TIMEOUT)
    kernel.run(raw.call("B"), timeout=30)
    b.wait("connected", timeout=TIMEOUT)
    rss = [_rss_mib()]

    def send_and_check(messages: list[bytes | str], n: int) -> None:
        kernel.run(raw.send(*messages), timeout=TIMEOUT)
        wait_until_sync(lambda: probe(n) in probes, f"probe {n} after {messages!r:.300}", TIMEOUT)
        assert b.state == "connected", b.error
        assert all(link.decoder.pending <= limit for link in b._engine.links.values())

    run_bursts(send_and_check, examples=60)
    rss.append(_rss_mib())
    assert rss[-1] - rss[0] < 150, f"RSS grew from {rss[0]:.0f} to {rss[-1]:.0f} MiB"
    assert not list(outside.iterdir()), "a file was written through the symlink, outside the receive dir"
    new = _tree(tmp_path) - before
    assert all(inbox.resolve() in p.resolve().parents for p in new), sorted(map(str, new))

    # It answers later calls: the hostile peer hangs up, and another calls and is heard.
    kernel.run(raw.hang_up("B"), timeout=TIMEOUT)
    b.wait("ended", timeout=TIMEOUT)
    kernel.run(raw.close(), timeout=TIMEOUT)
    c = make_peer("C")
    c.call("B")
    c.wait("connected", timeout=TIMEOUT)
    c.send({"probe": "after"}).result(TIMEOUT)
    wait_until_sync(lambda: {"probe": "after"} in probes, "a later caller's message", TIMEOUT)
