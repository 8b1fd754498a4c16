"""A Phone's file receiver has one owner: the thread that hands the phone its browser's messages (in a kernel,
the main thread, which runs an event loop). A call the peer ends mid-file, seen on the background loop, cuts the
file on that thread; the file's bytes the browser still relays are dropped, not taken for messages. The browser
half is simulated as in test_phone.py, on a thread running an event loop as a kernel's main thread does."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TIMEOUT, channel_open, phone_answering
from support import wait_until_sync as wait_until

from nbcall import Phone
from nbcall.call.files import start_message
from nbcall.server.server import SignalingServer
from nbcall.wire.payload import encode


class MainThread:
    """A thread running an event loop, handing the phone what its browser half sends, as a kernel does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def relay(self, phone: Phone, content: dict[str, Any], payload: bytes = b"") -> None:
        """Hand ``phone`` one browser message on this thread, and wait until it is handled."""

        async def handle() -> None:
            phone._handle_custom_msg(content, [memoryview(payload)] if payload else [])

        asyncio.run_coroutine_threadsafe(handle(), self.loop).result(TIMEOUT)

    def message(self, phone: Phone, sender: str, data: Any) -> None:
        kind, payload = encode(data)
        self.relay(phone, {"type": "message", "peer": sender, "kind": kind, "last": True}, payload)

    def idle(self) -> None:
        """Return once what was queued on this thread ran."""
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(4 * TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def main_thread() -> Iterator[MainThread]:
    thread = MainThread()
    yield thread
    thread.close()


def test_a_call_the_peer_ends_mid_file_cuts_it_on_the_main_thread_and_its_late_bytes_are_no_messages(
    server: SignalingServer, made: list[Any], main_thread: MainThread, tmp_path: Path
) -> None:
    phone, caller = phone_answering(server.url, made, receive_dir=tmp_path)
    main_thread.relay(phone, channel_open("Caller"))
    assert phone.state == "connected"
    main_thread.message(phone, "Caller", start_message("report.bin", 3000, "f1", resume=True))
    main_thread.message(phone, "Caller", {"nbcall_file": "from", "id": "f1", "offset": 0})
    main_thread.message(phone, "Caller", b"a" * 1000)
    partial = tmp_path / ".report.bin.nbcall-partial"

    # The main thread is busy (a cell runs) when the peer hangs up: the cut waits for it.
    cell_runs, cell_may_end = threading.Event(), threading.Event()
    main_thread.loop.call_soon_threadsafe(lambda: (cell_runs.set(), cell_may_end.wait(4 * TIMEOUT)))
    assert cell_runs.wait(TIMEOUT)
    caller.send(type="hangup", to="P")
    wait_until(lambda: phone.state == "ended", "P to hear the hang-up")
    assert phone.error == "Caller hung up"
    assert phone.file_receiver.busy("Caller"), "the background loop cut the file itself"
    cell_may_end.set()
    main_thread.idle()
    assert not phone.file_receiver.busy("Caller")
    assert partial.read_bytes() == b"a" * 1000  # closed, kept for the next send to resume

    # What the browser relays of the file after the call ended is dropped: no bytes message, nothing written.
    main_thread.message(phone, "Caller", b"b" * 1000)
    assert phone.messages == []
    assert partial.read_bytes() == b"a" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == [partial.name]
    assert phone.file_receiver.dropped_bytes == 1000

    # A new call from the same peer: its messages are messages again.
    caller.call("P")
    wait_until(lambda: phone.state == "ringing", "P to ring again")
    phone.answer()
    main_thread.relay(phone, channel_open("Caller"))
    main_thread.message(phone, "Caller", b"a message")
    assert [m.data for m in phone.messages] == [b"a message"]


def test_without_a_browser_message_the_cut_still_happens_on_the_main_thread(
    server: SignalingServer, made: list[Any], main_thread: MainThread, tmp_path: Path
) -> None:
    phone, caller = phone_answering(server.url, made, receive_dir=tmp_path)
    main_thread.relay(phone, channel_open("Caller"))
    main_thread.message(phone, "Caller", start_message("report.bin", 3000, "f1", resume=True))
    caller.send(type="hangup", to="P")
    wait_until(lambda: phone.state == "ended", "P to hear the hang-up")
    wait_until(lambda: not phone.file_receiver.busy("Caller"), "the main thread to cut the file")
