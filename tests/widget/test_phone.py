"""The Phone widget's Python half, without a browser.

A real signaling server runs on the kernel's background loop; raw websockets clients speaking the wire
protocol stand in for other phones. The browser half is simulated by delivering custom widget messages the
way ipywidgets does (``Widget._handle_custom_msg(content, buffers)``, buffers as memoryviews).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets.sync.server
from ipywidgets.widgets import widget as ipywidget
from support import OFFER, TIMEOUT, RawPeer, closed_after
from support import wait_until as async_wait_until
from support import wait_until_sync as wait_until
from websockets.exceptions import ConnectionClosed

from nbcall import CallError, Message, Phone
from nbcall.call import kernel
from nbcall.exceptions import DuplicateID, ServerUnreachable
from nbcall.server.server import SignalingServer, serve
from nbcall.widget import widget_protocol
from nbcall.wire.payload import encode


@pytest.fixture
def make_phone(server: SignalingServer) -> Iterator[Callable[..., Phone]]:
    yield from closed_after(lambda user_id, **options: Phone(user_id, **{"server": server.url, **options}))


@pytest.fixture
def raw_peer(server: SignalingServer) -> Iterator[Callable[[str], RawPeer]]:
    yield from closed_after(lambda user_id: RawPeer(server.url, user_id))


def ring(phone: Phone, caller: RawPeer) -> None:
    caller.call(phone.user_id)
    wait_until(lambda: phone.state == "ringing", f"{phone.user_id} to ring (state {phone.state!r})")


def from_browser(phone: Phone, content: dict[str, Any], *buffers: bytes) -> None:
    """Deliver a custom message from the browser half, as ipywidgets does."""
    phone._handle_custom_msg(content, [memoryview(b) for b in buffers])


def hello(phone: Phone, page: str) -> None:
    """The browser half of this build starts in the page ``page``."""
    from_browser(phone, {"type": "hello", "page": page, "protocol": widget_protocol.FINGERPRINT})


def connected(phone: Phone, caller: RawPeer) -> Phone:
    """``phone`` in a connected call with ``caller``: it rang, answered, and the browser opened the channel."""
    ring(phone, caller)
    phone.answer()
    from_browser(phone, {"type": "channel", "peer": caller.id, "state": "open", "label": "nbcall"})
    assert phone.state == "connected"
    return phone


def receive(phone: Phone, data: Any) -> None:
    """The browser half reports one data-channel message carrying ``data``."""
    kind, payload = encode(data)
    from_browser(phone, {"type": "message", "peer": phone.peer, "kind": kind, "last": True}, payload)


# ------------------------------------------------------------------------------------------ presence


def test_phone_registers_and_sees_peers_already_online(make_phone, raw_peer) -> None:
    raw_peer("A")
    phone = make_phone("P")
    assert phone.user_id == "P"
    assert phone.online
    assert phone.peers == ["A"]
    assert phone.state == "idle"


def test_peer_registering_appears_in_peers_and_leaving_removes_it(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    assert phone.peers == []
    other = raw_peer("B")
    wait_until(lambda: phone.peers == ["B"], f"B in peers (peers {phone.peers})")
    other.close()
    wait_until(lambda: phone.peers == [], f"B gone from peers (peers {phone.peers})")


def test_closing_a_phone_tells_the_others_it_left(make_phone, raw_peer) -> None:
    other = raw_peer("B")
    phone = make_phone("P")
    assert other.recv_type("joined")["id"] == "P"
    phone.close()
    assert other.recv_type("left")["id"] == "P"


def test_duplicate_id_raises_clearly_and_leaves_no_widget(server, raw_peer) -> None:
    raw_peer("A")
    widgets_before = set(ipywidget._instances)
    with pytest.raises(DuplicateID) as info:
        Phone("A", server=server.url, timeout=TIMEOUT)
    assert "'A' is already registered" in str(info.value)
    assert info.value.code == "duplicate-id"
    assert set(ipywidget._instances) == widgets_before


def test_running_the_cell_again_takes_the_id_over_ending_the_old_phones_call(make_phone, raw_peer) -> None:
    caller = raw_peer("B")
    old = connected(make_phone("A"), caller)
    new = make_phone("A")  # `a = Phone("A")` run again
    assert new.online and new.user_id == "A"
    assert (old.state, old.error) == ("ended", "replaced by a new phone")  # what its widget shows
    # Its widget stays open, marked closed, so that its views say so rather than vanish.
    assert old.closed and old.comm is not None and not new.closed
    assert caller.recv_type("hangup")["reason"] == "replaced by a new phone"
    caller.call("A")  # the ID is the new phone's
    wait_until(lambda: new.state == "ringing", f"the new A to ring (state {new.state!r})")
    assert old.state == "ended"


def test_a_closed_phone_frees_its_id_at_once(make_phone, server) -> None:
    phone = make_phone("A")
    phone.close()
    other = RawPeer(server.url, "A")  # another process takes the ID the moment close() returns
    other.close()


def test_phones_still_open_at_exit_close_cleanly(tmp_path) -> None:
    """At interpreter exit every phone closes its connection with a close frame (code 1000), not a drop."""
    codes: list[int | None] = []

    def handler(ws: Any) -> None:
        ws.recv()
        ws.send(json.dumps({"type": "registered", "id": "X", "peers": []}))
        with contextlib.suppress(ConnectionClosed):
            while True:
                ws.recv()
        codes.append(ws.close_code)

    with websockets.sync.server.serve(handler, "127.0.0.1", 0) as fake:
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{fake.socket.getsockname()[1]}/ws"
        script = f"import nbcall; p = nbcall.Phone('X', server={url!r}); print(p.online)"
        done = subprocess.run(
            [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
        )
        assert done.stdout.strip() == "True", done.stderr
        wait_until(lambda: codes, "the fake server to see the connection end")
        fake.shutdown()
    assert codes == [1000]


def test_the_servers_token_is_in_no_synced_trait_nor_in_repr(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="nbcall")
    secured = kernel.run(serve(token="tok-3141592653"), timeout=TIMEOUT)
    phone = Phone("A", server=secured.url, timeout=TIMEOUT)
    try:
        assert phone.server_url == secured.url  # Python keeps the URL to share
        assert phone.server_address == secured.url.split("?")[0]
        assert "tok-3141592653" not in json.dumps(phone.get_state(), default=str)  # what the browser gets
        assert "tok-3141592653" not in repr(phone)
        assert "tok-3141592653" not in json.dumps(phone.log, default=str)
        assert not [r for r in caplog.records if "tok-3141592653" in r.getMessage()]
    finally:
        phone.close()

        async def stop() -> None:
            secured.close()
            await secured.wait_closed()

        kernel.run(stop(), timeout=TIMEOUT)


def test_unreachable_server_raises_naming_the_url() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/ws"
    widgets_before = set(ipywidget._instances)
    with pytest.raises(ServerUnreachable) as info:
        Phone("P", server=url, timeout=2)
    assert url in str(info.value)
    assert set(ipywidget._instances) == widgets_before


# ---------------------------------------------------------------------------------- incoming calls


def test_incoming_call_rings_and_is_logged(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    caller = raw_peer("A")
    ring(phone, caller)
    assert phone.peer == "A"
    entries = [e for e in phone.log if e["dir"] == "in" and e["type"] == "call"]
    assert len(entries) == 1
    assert entries[0]["detail"]["from"] == "A"
    assert entries[0]["detail"]["sdp"] == OFFER
    assert entries[0]["size"] > len(OFFER)


def test_decline_sends_decline_to_the_caller(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    caller = raw_peer("A")
    ring(phone, caller)
    phone.decline("not now")
    msg = caller.recv_type("decline")
    assert (msg["from"], msg["to"], msg["reason"]) == ("P", "A", "not now")
    assert phone.state == "ended"


def test_second_caller_while_ringing_gets_busy_with_a_reason(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    first, second = raw_peer("A"), raw_peer("B")
    ring(phone, first)
    second.call("P")
    msg = second.recv_type("busy")
    assert msg["from"] == "P"
    assert msg["reason"] == "P is ringing with A"
    assert (phone.state, phone.peer) == ("ringing", "A")


def test_caller_hanging_up_while_ringing_ends_the_ringing(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    caller = raw_peer("A")
    ring(phone, caller)
    caller.send(type="hangup", to="P")
    wait_until(lambda: phone.state == "ended", f"ringing to end (state {phone.state!r})")


def test_hangup_from_someone_else_does_not_end_the_ringing(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    caller, stranger = raw_peer("A"), raw_peer("B")
    ring(phone, caller)
    stranger.send(type="hangup", to="P")
    wait_until(
        lambda: any(e["type"] == "hangup" and e["dir"] == "in" for e in phone.log), "the stranger's hangup"
    )
    assert (phone.state, phone.peer) == ("ringing", "A")


# --------------------------------------------------------------------------------- refused actions


def test_answer_when_not_ringing_says_so(make_phone) -> None:
    phone = make_phone("P")
    with pytest.raises(CallError, match=r"no incoming call to answer \(state 'idle'\)"):
        phone.answer()
    assert phone.state == "idle"


def test_send_when_not_connected_raises(make_phone) -> None:
    phone = make_phone("P")
    with pytest.raises(CallError, match=r"not in a connected call \(state 'idle'\)"):
        phone.send("hello")


def test_calling_yourself_raises(make_phone, raw_peer) -> None:
    raw_peer("A")
    phone = make_phone("P")
    with pytest.raises(CallError, match="cannot call itself") as info:
        phone.call("P")
    assert "A" in str(info.value)  # suggests who to call instead
    assert phone.state == "idle"


# ------------------------------------------------------------------------------------------ wait_for


async def test_wait_for_times_out_naming_the_state(make_phone) -> None:
    phone = make_phone("P")
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await phone.wait_for("connected", timeout=0.2)
    assert time.monotonic() - started < 2
    assert "did not reach connected within 0.2 s (state 'idle')" in str(info.value)


async def test_wait_for_returns_when_a_call_rings(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    waiting = asyncio.create_task(phone.wait_for("ringing", timeout=TIMEOUT))
    raw_peer("A").call("P")
    assert await waiting == "ringing"
    assert phone.peer == "A"


async def test_wait_for_the_current_state_returns_at_once(make_phone) -> None:
    phone = make_phone("P")
    assert await phone.wait_for("connected", "idle", timeout=0.5) == "idle"


async def test_wait_for_ringing_after_a_previous_call_ended_waits_for_the_next_call(
    make_phone, raw_peer
) -> None:
    phone = make_phone("P")
    caller = raw_peer("A")
    ring(phone, caller)
    caller.send(type="hangup", to="P")
    await phone.wait_for("ended")
    waiting = asyncio.create_task(phone.wait_for("ringing", timeout=TIMEOUT))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the previous call's end is no reason to give up
    caller.call("P")
    assert await waiting == "ringing"


async def test_wait_for_raises_when_the_call_is_declined_with_the_reason(make_phone, raw_peer) -> None:
    callee = raw_peer("A")
    phone = make_phone("P")
    phone.call("A")
    waiting = asyncio.create_task(phone.wait_for("connected", timeout=TIMEOUT))
    callee.send(type="decline", to="P")
    with pytest.raises(CallError, match="P's call ended: A declined the call"):
        await waiting


async def test_wait_for_raises_when_the_caller_goes_offline_while_ringing(make_phone, raw_peer) -> None:
    phone = make_phone("P")
    caller = raw_peer("A")
    ring(phone, caller)
    waiting = asyncio.create_task(phone.wait_for("connected", timeout=TIMEOUT))
    caller.close()
    with pytest.raises(CallError, match="P's call failed: A went offline"):
        await waiting


async def test_wait_for_raises_when_the_caller_hangs_up_while_ringing_with_the_reason(
    make_phone, raw_peer
) -> None:
    phone = make_phone("P")
    caller = raw_peer("A")
    ring(phone, caller)
    waiting = asyncio.create_task(phone.wait_for("connected", timeout=TIMEOUT))
    caller.send(type="hangup", to="P", reason="changed my mind")
    with pytest.raises(CallError) as info:
        await waiting
    assert "A hung up" in str(info.value)
    assert "changed my mind" in str(info.value)


@pytest.mark.parametrize("states", [("dialing",), ("ringing", "Connected"), ()])
async def test_wait_for_unknown_state_raises_value_error(make_phone, states: tuple[str, ...]) -> None:
    phone = make_phone("P")
    with pytest.raises(ValueError) as info:
        await phone.wait_for(*states, timeout=0.2)
    assert "wait for one or more of" in str(info.value)
    for state in states:
        if state != "ringing":
            assert repr(state) in str(info.value)
    assert "'ringing'" not in str(info.value).split(", not ")[-1]


# ------------------------------------------------------------------------ messages from the browser


def test_messages_from_the_browser_are_decoded_with_their_types(make_phone, raw_peer) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    sent = ["héllo ✓", b"\x00\xffraw", {"x": [1, 2.5, None]}, [True, "b"], 7]
    for data in sent:
        receive(phone, data)
    received = phone.messages
    assert [m.data for m in received] == sent
    assert [type(m.data) for m in received] == [type(d) for d in sent]
    assert [m.kind for m in received] == ["str", "bytes", "json", "json", "json"]
    assert [m.size for m in received] == [len(encode(d)[1]) for d in sent]
    assert {m.sender for m in received} == {"A"}
    assert all(isinstance(m, Message) for m in received)


def test_messages_are_bounded_by_max_messages_keeping_the_newest(make_phone, raw_peer) -> None:
    phone = connected(make_phone("P", max_messages=3), raw_peer("A"))
    for n in range(5):
        receive(phone, n)
    assert [m.data for m in phone.messages] == [2, 3, 4]


def test_max_messages_one_keeps_only_the_latest(make_phone, raw_peer) -> None:
    phone = connected(make_phone("P", max_messages=1), raw_peer("A"))
    for n in range(3):
        receive(phone, n)
    assert [m.data for m in phone.messages] == [2]


def test_a_message_in_several_parts_is_reassembled(make_phone, raw_peer) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    text = "é" * 3 + "✓ done"
    payload = text.encode("utf-8")
    parts = [payload[:1], payload[1:4], payload[4:]]  # splits inside multi-byte characters
    from_browser(phone, {"type": "message", "peer": "A", "kind": "str", "last": False}, parts[0])
    from_browser(phone, {"type": "message", "peer": "A", "kind": "str", "last": False}, parts[1])
    assert phone.messages == []
    from_browser(phone, {"type": "message", "peer": "A", "kind": "str", "last": True}, parts[2])
    assert [(m.data, m.kind, m.size) for m in phone.messages] == [(text, "str", len(payload))]
    receive(phone, b"next")  # the parts were consumed: the next message stands alone
    assert phone.messages[-1].data == b"next"


def test_progress_from_the_browser_reaches_the_trait_and_callbacks_and_clears_at_the_end(
    make_phone, raw_peer
) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    heard: list[dict[str, Any]] = []
    phone.on_progress(heard.append)
    report = {"direction": "in", "peer": "A", "name": "a.bin", "done": 2**20, "total": 2**22, "rate": 2**20,
              "eta": 3.0}  # fmt: skip
    from_browser(phone, {"type": "progress", **report})
    assert phone.progress == report and heard == [report]
    from_browser(phone, {"type": "progress", **report, "done": 2**22, "eta": 0})
    assert heard[-1]["done"] == 2**22 and phone.progress == {}  # over: nothing under way
    from_browser(phone, {"type": "progress", "direction": "in"})  # malformed: logged, not applied
    assert phone.progress == {} and len(heard) == 2
    assert any(e["type"] == "protocol-error" for e in phone.log)


def test_parts_of_a_message_cut_off_are_dropped_and_said_so_when_the_next_message_begins(
    make_phone, raw_peer
) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    part = {"type": "message", "peer": "A", "kind": "bytes"}
    from_browser(phone, {**part, "last": False, "first": True}, b"stale ")  # its call ended here
    from_browser(phone, {**part, "last": False, "first": True}, b"new ")
    from_browser(phone, {**part, "last": True, "first": False}, b"message")
    assert [m.data for m in phone.messages] == [b"new message"]
    problem = "dropped a message cut off after 6 bytes: the next one began"
    assert [e["detail"] for e in phone.log if e["type"] == "dropped"] == [{"peer": "A", "problem": problem}]
    assert phone.error == f"from A: {problem}"


def test_a_message_the_browser_received_before_the_hang_up_reaches_the_phone_after_it(
    make_phone, raw_peer
) -> None:
    # The comm may bring it after the kernel ended the call (issue 15: a greeting sent as the call ends).
    phone = connected(make_phone("P"), raw_peer("A"))
    heard: list[Any] = []
    phone.on_message(lambda m: heard.append(m.data))
    phone.hangup()
    from_browser(
        phone, {"type": "message", "peer": "A", "kind": "str", "last": True, "first": True}, b"late hello"
    )
    assert phone.state == "ended"
    assert [m.data for m in phone.messages] == heard == ["late hello"]


def test_a_message_the_hang_up_cut_off_is_logged_and_the_hang_up_stays_the_reason(
    make_phone, raw_peer
) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    phone.hangup()
    problem = "dropped a message cut off after 524286 of its 1048576 bytes: the call ended"
    from_browser(phone, {"type": "dropped", "peer": "A", "problem": problem})
    assert [e["detail"] for e in phone.log if e["type"] == "dropped"] == [{"peer": "A", "problem": problem}]
    assert phone.state == "ended" and "cut off" not in phone.error


def test_a_message_that_does_not_decode_is_reported_not_stored(make_phone, raw_peer) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    from_browser(phone, {"type": "message", "peer": "A", "kind": "json", "last": True}, b"{broken")
    assert phone.messages == []
    assert "received a json message that does not decode" in phone.error


def test_a_malformed_file_message_from_the_peer_gets_a_verdict_and_the_call_goes_on(
    make_phone, raw_peer, caplog
) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    sent: list[Any] = []
    phone.send = lambda data, to=None: sent.append((data, to))  # what goes back to the peer
    receive(phone, {"nbcall_file": "start", "id": "f1", "name": "x.txt", "size": "lots"})
    receive(phone, {"nbcall_file": "end", "id": "f1", "sha256": "00"})
    assert [(v["code"], to) for v, to in sent] == [("malformed", "A")]
    assert sum("is not a count of bytes" in r.getMessage() for r in caplog.records) == 1
    receive(phone, "still here")
    assert phone.state == "connected" and phone.messages[-1].data == "still here"


def test_a_browser_message_that_fails_is_logged_in_one_line_and_the_rest_of_the_batch_runs(
    make_phone, raw_peer, caplog
) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    bad = {"type": "stats", "peer": "A", "stats": {}}
    phone._on_browser_stats = lambda content, buffers: 1 / 0  # a bug reached by what the page sent
    rtc = {"type": "rtc", "peer": "A", "name": "iceConnectionState", "value": "checking"}
    from_browser(phone, {"type": "batch", "messages": [bad, rtc]})
    assert phone.rtc["iceConnectionState"] == "checking"
    failed = [r for r in caplog.records if "failed: ZeroDivisionError" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is None
    assert phone.state == "connected"


def test_on_message_callbacks_run_once_per_message_despite_a_failing_one(
    make_phone, raw_peer, caplog: pytest.LogCaptureFixture
) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    calls: list[tuple[str, Any]] = []

    @phone.on_message
    def broken(message: Message) -> None:
        calls.append(("broken", message.data))
        raise RuntimeError("callback bug")

    phone.on_message(lambda message: calls.append(("good", message.data)))
    with caplog.at_level(logging.ERROR, logger="nbcall.widget.phone"):
        receive(phone, "one")
        receive(phone, {"two": 2})
    assert calls == [("broken", "one"), ("good", "one"), ("broken", {"two": 2}), ("good", {"two": 2})]
    assert [m.data for m in phone.messages] == ["one", {"two": 2}]
    failures = [r for r in caplog.records if "on_message callback" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and "callback bug" in str(r.exc_info[1]) for r in failures)


def test_phone_reconnects_with_its_id_after_the_server_restarts() -> None:
    first = kernel.run(serve(), timeout=TIMEOUT)
    port = first.port
    phone = Phone("P", server=first.url, timeout=TIMEOUT)
    try:

        async def stop(server: SignalingServer) -> None:
            server.close()
            await server.wait_closed()

        kernel.run(stop(first), timeout=TIMEOUT)
        wait_until(lambda: not phone.online, "the phone to notice the server is gone")
        assert "reconnecting" in phone.error
        phone._client.send({"type": "hangup", "to": "Q"})  # queued while offline, sent once back
        second = kernel.run(serve(port=port), timeout=TIMEOUT)
        try:
            peer = RawPeer(second.url, "Q")
            wait_until(lambda: phone.online, "the phone to be back online", timeout=15)
            assert phone.error == ""
            assert peer.recv_type("hangup")["from"] == "P"  # nothing queued was lost
            with pytest.raises(AssertionError, match="duplicate-id"):  # the ID is the phone's again
                RawPeer(second.url, "P")
            peer.close()
        finally:
            kernel.run(stop(second), timeout=TIMEOUT)
    finally:
        phone.close()


def test_calling_something_that_is_not_an_id_raises_type_error(make_phone) -> None:
    phone = make_phone("P")
    for bad in (None, 42, b"B"):
        with pytest.raises(TypeError, match="call a peer by its ID"):
            phone.call(bad)
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="call a peer by its ID"):
            phone.call(empty)
    assert phone.state == "idle"


def test_a_batch_from_the_browser_is_handled_message_by_message_in_order(make_phone) -> None:
    phone = make_phone("P")
    batch = [
        {"type": "rtc", "peer": "A", "name": "iceGatheringState", "value": "gathering"},
        {"type": "stats", "peer": "A", "stats": {"rtt_ms": 1.5}},
        {"type": "rtc", "peer": "A", "name": "iceGatheringState", "value": "complete"},
    ]
    from_browser(phone, {"type": "batch", "messages": batch})
    assert phone.rtc["iceGatheringState"] == "complete"
    assert phone.stats == {"rtt_ms": 1.5}
    events = [e["detail"] for e in phone.log if e["type"] == "iceGatheringState"]
    assert events == ["gathering", "complete"]


def call_run_by_a_tab(phone: Phone, caller: RawPeer) -> None:
    """The page "tab-1" shows ``phone`` first, so it runs its calls; then ``phone`` is in a call with ``caller``."""
    hello(phone, "tab-1")
    connected(phone, caller)


def test_a_second_tab_shows_the_phone_without_touching_its_call_and_a_reload_ends_it(
    make_phone, raw_peer
) -> None:
    phone, caller = make_phone("P"), raw_peer("B")
    call_run_by_a_tab(phone, caller)
    hello(phone, "tab-2")  # the notebook opened in a second tab
    assert (phone.state, phone._engine_page) == ("connected", "tab-1")
    from_browser(phone, {"type": "bye", "page": "tab-2"})  # and closed again
    assert phone.state == "connected"
    hello(phone, "tab-1")  # the first tab reloaded: its connection is gone
    assert (phone.state, phone.error) == ("failed", "the browser page was reloaded during the call")
    assert caller.recv_type("hangup")["from"] == "P"


def test_when_the_tab_running_the_call_goes_the_call_ends_and_the_tab_shown_last_runs_the_next(
    make_phone, raw_peer
) -> None:
    phone, caller = make_phone("P"), raw_peer("B")
    call_run_by_a_tab(phone, caller)
    hello(phone, "tab-2")
    from_browser(phone, {"type": "bye", "page": "tab-1"})
    assert (phone.state, phone.error) == (
        "failed",
        "the browser page running the call was closed or reloaded",
    )
    assert phone._engine_page == "tab-2"
    from_browser(phone, {"type": "hello", "page": "tab-3"})  # opened while no call is on: it runs the next
    assert phone._engine_page == "tab-3"


async def test_waiting_on_a_phone_no_browser_shows_says_to_display_it(make_phone) -> None:
    phone = make_phone("P")
    with pytest.raises(TimeoutError, match="no browser shows P yet: display it"):
        await phone.wait_for("connected", timeout=0.1)
    from_browser(phone, {"type": "hello"})
    with pytest.raises(TimeoutError) as info:
        await phone.wait_for("connected", timeout=0.1)
    assert "display it" not in str(info.value)


# -------------------------------------------------------------------------- ring timeout, settings


def test_an_unanswered_call_ends_after_the_ring_timeout_telling_the_callee(make_phone, raw_peer) -> None:
    callee = raw_peer("A")
    phone = make_phone("P", ring_timeout=0.3)
    phone.call("A")
    assert phone.state == "calling"
    wait_until(lambda: phone.state == "ended", f"the call to time out (state {phone.state!r})")
    assert phone.error == "A did not answer within 0.3 s: no answer arrived"
    assert callee.recv_type("hangup")["reason"] == "no answer within 0.3 s"


def test_the_browser_is_told_the_phones_settings(make_phone) -> None:
    phone = make_phone("P", max_log=42)
    assert phone._settings["max_log"] == 42
    assert set(phone._settings) == set(widget_protocol.SETTINGS)


@pytest.mark.parametrize(
    "content",
    [{"type": "teleport"}, {"type": "channel", "state": "open"}, ["not", "an", "object"]],
    ids=["unknown type", "missing fields", "not an object"],
)
def test_a_bad_message_from_the_browser_is_logged_with_its_type_and_ignored(
    make_phone, content: Any, caplog: pytest.LogCaptureFixture
) -> None:
    phone = make_phone("P")
    with caplog.at_level(logging.WARNING, logger="nbcall.widget.phone"):
        from_browser(phone, content)
    entries = [e for e in phone.log if e["type"] == "protocol-error"]
    assert len(entries) == 1
    kind = content.get("type") if isinstance(content, dict) else None
    assert entries[0]["detail"]["type"] == kind
    assert "ignored a message from the browser" in caplog.text
    assert phone.state == "idle"


# ------------------------------------------------------------------------------- what users pass in


@pytest.mark.parametrize(
    ("servers", "error", "words"),
    [
        ([42], TypeError, "ice_servers[0] is 42"),
        (["http://stun.example.org"], ValueError, "start with stun:, stuns:, turn: or turns:"),
        ([{"url": "stun:x"}], ValueError, "has no 'urls'"),
        ([{"urls": "turn:127.0.0.1:3478"}], ValueError, "without 'username' and 'credential'"),
        ("stun:127.0.0.1", TypeError, "wrap the one you passed in a list"),
    ],
)
def test_bad_ice_servers_are_refused_saying_what_to_pass(
    server, servers: Any, error: type[Exception], words: str
) -> None:
    widgets_before = set(ipywidget._instances)
    with pytest.raises(error) as info:
        Phone("I", server=server.url, ice_servers=servers)
    assert words in str(info.value)
    assert set(ipywidget._instances) == widgets_before


def test_good_ice_servers_reach_the_call_as_rtc_ice_servers(make_phone, raw_peer) -> None:
    raw_peer("A")
    turn = {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"}
    phone = make_phone("P", ice_servers=["stun:127.0.0.1:3478", turn])
    assert phone.ice_servers == [{"urls": "stun:127.0.0.1:3478"}, turn]


def test_an_http_server_url_is_taken_as_its_websocket(make_phone, server) -> None:
    phone = make_phone("P", server=server.url.replace("ws://", "http://"))
    assert phone.online
    assert phone.server_url.startswith("ws://127.0.0.1:")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/ws", "127.0.0.1:8765", "ws:///ws"])
def test_a_server_that_is_not_a_websocket_url_is_refused_saying_what_to_pass(url: str) -> None:
    with pytest.raises(ValueError, match="is not a websocket URL: pass ws://HOST:PORT/ws"):
        Phone("P", server=url)


def test_shutting_down_is_not_reported_as_going_offline(
    make_phone, server, caplog: pytest.LogCaptureFixture
) -> None:
    phone = make_phone("P")
    kernel._shutting_down.set()  # what the interpreter's exit does first
    try:
        with caplog.at_level(logging.INFO, logger="nbcall"):
            kernel.run(_stop(server), timeout=TIMEOUT)
            wait_until(lambda: not phone.online, "the phone to see the server gone")
    finally:
        kernel._shutting_down.clear()
    assert phone.error == ""
    assert "offline" not in caplog.text and "reconnecting" not in caplog.text


async def _stop(server: SignalingServer) -> None:
    server.close()
    await server.wait_closed()


def test_a_relay_only_phone_asks_its_browser_for_relay_only_connections(make_phone, raw_peer) -> None:
    raw_peer("A")
    turn = {"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"}
    phone = make_phone("P", ice_servers=[turn], ice_transport_policy="relay")
    phone.call("A")
    assert phone._to_browser[-1][0] == {
        "type": "start_call",
        "peer": "A",
        "ice_servers": [turn],
        "ice_transport_policy": "relay",
    }


def test_an_unknown_ice_transport_policy_is_refused(server) -> None:
    with pytest.raises(ValueError, match="ice_transport_policy must be 'all' .* or 'relay'"):
        Phone("P", server=server.url, ice_transport_policy="direct")


async def test_next_message_returns_the_next_message_not_an_earlier_one(make_phone, raw_peer) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    receive(phone, "earlier")
    waiting = asyncio.create_task(phone.next_message(timeout=TIMEOUT))
    await asyncio.sleep(0)
    receive(phone, {"n": 2})
    message = await waiting
    assert (message.data, message.sender) == ({"n": 2}, "A")
    with pytest.raises(TimeoutError, match="P received no message within 0.1 s"):
        await phone.next_message(timeout=0.1)


# --------------------------------------------------------------------- teaching: steps, faults, manual

CANDIDATE = json.dumps({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", "sdpMid": "0"})


def signals_within(peer: RawPeer, seconds: float) -> list[str]:
    """The types of the messages (presence news aside) ``peer`` receives within ``seconds``."""
    types, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(peer.ws.recv(timeout=left))
        except TimeoutError:
            break
        if message["type"] not in ("joined", "left"):
            types.append(message["type"])
    return types


def browser_offers(phone: Phone, peer: str) -> None:
    """The browser half made its offer and a candidate for ``peer``."""
    from_browser(phone, {"type": "signal", "peer": peer, "signal": {"type": "call", "sdp": OFFER}})
    from_browser(phone, {"type": "signal", "peer": peer, "signal": {"type": "ice", "candidate": CANDIDATE}})


def test_stepping_holds_each_signaling_message_until_step(make_phone, raw_peer) -> None:
    callee = raw_peer("A")
    phone = make_phone("P", step=True)
    phone.call("A")
    browser_offers(phone, "A")
    assert [h["type"] for h in phone.held] == ["call", "ice"]
    assert "rings" in phone.held[0]["peer_will"] and "host candidate" in phone.held[1]["peer_will"]
    assert signals_within(callee, 0.2) == []  # nothing went out
    assert phone.step()["type"] == "call"
    assert callee.recv_type("call")["sdp"] == OFFER
    assert [h["type"] for h in phone.held] == ["ice"]
    phone.set_trait("stepping", False)  # stepping off lets the rest go, in order
    assert callee.recv_type("ice")["candidate"] == CANDIDATE
    assert phone.held == [] and phone.step() is None


def test_the_widgets_next_button_steps(make_phone, raw_peer) -> None:
    callee = raw_peer("A")
    phone = make_phone("P")
    from_browser(phone, {"type": "ui", "action": "step_on"})
    phone.call("A")
    browser_offers(phone, "A")
    from_browser(phone, {"type": "ui", "action": "next"})
    assert callee.recv_type("call")["from"] == "P"
    assert [h["type"] for h in phone.held] == ["ice"]


def test_a_dropped_message_never_leaves_and_the_log_says_why(make_phone, raw_peer) -> None:
    callee = raw_peer("A")
    phone = make_phone("P", faults={"drop": ["ice"]})
    phone.call("A")
    browser_offers(phone, "A")
    assert signals_within(callee, 0.3) == ["call"]
    faults = [e["detail"] for e in phone.log if e["type"] == "fault"]
    assert faults == ["not sent: the ice message to A (faults drop 'ice' messages)"]


def test_a_delay_fault_holds_each_message_back(make_phone, raw_peer) -> None:
    callee = raw_peer("A")
    phone = make_phone("P", faults={"delay": 0.4})
    phone.call("A")
    started = time.monotonic()
    browser_offers(phone, "A")
    callee.recv_type("call")
    assert time.monotonic() - started >= 0.35


def test_a_phone_without_a_server_connects_by_text_only(server) -> None:
    phone = Phone("M", server=False)
    try:
        assert (phone.online, phone.server_url, phone.peers) == (True, "", [])
        with pytest.raises(CallError, match="has no signaling server .* await a.create_offer"):
            phone.call("A")
        with pytest.raises(CallError, match="has no signaling server"):
            phone.invite("A")
    finally:
        phone.close()


async def test_create_offer_without_a_browser_says_to_display_the_phone() -> None:
    phone = Phone("M", server=False)
    try:
        with pytest.raises(TimeoutError, match="M made no offer within 0.2 s; no browser shows M yet"):
            await phone.create_offer(timeout=0.2)
    finally:
        phone.close()


async def test_manual_signaling_is_refused_on_a_phone_with_a_server(make_phone) -> None:
    phone = make_phone("P")
    with pytest.raises(CallError, match=r"create_offer\(\) is for phones without a signaling server"):
        await phone.create_offer()


async def test_next_stats_returns_the_next_summary_the_browser_reports(make_phone) -> None:
    phone = make_phone("P")
    from_browser(phone, {"type": "stats", "peer": "A", "stats": {"rtt_ms": 9.0}})  # before the wait: not it
    waiting = asyncio.ensure_future(phone.next_stats(timeout=5))
    await asyncio.sleep(0)  # let the wait begin
    from_browser(
        phone, {"type": "batch", "messages": [{"type": "stats", "peer": "A", "stats": {"rtt_ms": 1.5}}]}
    )
    assert await waiting == {"rtt_ms": 1.5}
    with pytest.raises(TimeoutError, match="P reported no statistics within 0.1 s"):
        await phone.next_stats(timeout=0.1)


# ------------------------------------------------------------------------------- sends, paced by the browser


def browser_took(phone: Phone) -> list[tuple[dict[str, Any], bytes]]:
    """Open the phone's browser half (hello) and record what it is sent: (message, its one buffer)."""
    got: list[tuple[dict[str, Any], bytes]] = []
    phone._send_custom = lambda content, buffers=None: got.append(  # type: ignore[method-assign]
        (content, b"".join(bytes(b) for b in buffers or []))
    )
    from_browser(phone, {"type": "hello"})
    got.clear()
    return got


def test_a_large_send_goes_to_the_browser_in_parts_paced_by_what_the_browser_took(
    make_phone, raw_peer
) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    got = browser_took(phone)
    payload = bytes(range(256)) * (20 * 2**20 // 256)  # 20 MiB
    phone.send(payload)
    sends = [m for m, _ in got if m["type"] in ("send", "send_part")]
    # The first 8 MiB went at once, the first part announcing the whole size; then nothing while no answer came.
    assert sends[0] == {"type": "send", "id": 1, "kind": "bytes", "size": len(payload)}
    assert sum(len(b) for _, b in got) == 8 * 2**20
    assert all(m == {"type": "send_part", "id": 1} for m in sends[1:])
    from_browser(phone, {"type": "sent", "id": 1, "done": 3 * 2**20})
    assert sum(len(b) for _, b in got) == 11 * 2**20
    for done in range(4, 21):
        from_browser(phone, {"type": "sent", "id": 1, "done": done * 2**20})
    assert b"".join(b for _, b in got) == payload
    # A message after it starts at once.
    phone.send("after")
    assert got[-1] == ({"type": "send", "id": 2, "kind": "str", "size": 5}, b"after")


def test_a_send_the_browser_failed_stops_and_the_next_one_goes(make_phone, raw_peer) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    got = browser_took(phone)
    phone.send(bytes(20 * 2**20))
    phone.send(b"next")
    assert sum(len(b) for _, b in got) == 8 * 2**20
    from_browser(phone, {"type": "send_failed", "id": 1, "message": "the data channel closed while sending"})
    assert got[-1] == ({"type": "send", "id": 2, "kind": "bytes", "size": 4}, b"next")
    assert "send #1 failed" in phone.error


async def test_a_file_is_read_no_further_ahead_than_the_browser_took(make_phone, raw_peer, tmp_path) -> None:
    phone = connected(make_phone("P"), raw_peer("A"))
    got = browser_took(phone)
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(32 * 2**20))
    sending = phone.send_file(path, timeout=1)
    chunks = lambda: sum(len(b) for m, b in got if m["type"] == "send" and m["kind"] == "bytes")
    # The start message and 8 MiB of chunks went; the transfer waits for the browser, reading no further.
    await async_wait_until(lambda: chunks() == 8 * 2**20, "8 MiB of the file handed to the browser")
    await asyncio.sleep(0.3)  # a moment in which nothing more may go
    assert chunks() == 8 * 2**20 and not sending.done()
    for message, _ in list(got):  # the browser takes everything it had
        from_browser(phone, {"type": "sent", "id": message["id"], "done": message["size"]})
    await async_wait_until(lambda: chunks() == 16 * 2**20, "the next 8 MiB handed to the browser")
    phone.hangup()  # the call ends: the transfer stops saying so, nothing more is read
    with pytest.raises(CallError):
        await asyncio.wait_for(asyncio.wrap_future(sending), 5)


def test_a_page_built_from_another_widget_protocol_is_told_at_its_hello_with_the_fix(
    make_phone, caplog
) -> None:
    phone = make_phone("P")
    hello(phone, "tab-1")
    assert phone.error == ""
    # A bundle older than the fingerprint, or one built from another protocol.
    for name, fingerprint in (("Q", None), ("R", "0badf00d")):
        stale = make_phone(name)
        from_browser(stale, {"type": "hello", "page": "tab-1", "protocol": fingerprint})
        assert "another widget protocol" in stale.error and "npm run build" in stale.error, stale.error
        assert widget_protocol.FINGERPRINT in stale.error and (fingerprint or "names none") in stale.error
        assert stale.log[-1]["type"] == "protocol-error"
    assert any("another widget protocol" in r.getMessage() for r in caplog.records)
