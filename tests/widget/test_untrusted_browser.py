"""What the page sends a Phone's Python half is untrusted: malformed widget messages and messages larger than
``max_receive_size`` are dropped with one log line and a visible error, and the call goes on.

As in test_phone.py: a real signaling server, a raw websockets client as the other phone, and the browser half
simulated by delivering custom widget messages the way ipywidgets does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import traitlets
from support import RawPeer
from support import wait_until_sync as wait_until

from nbcall import Phone
from nbcall.server.server import SignalingServer
from nbcall.wire.payload import MAX_RECEIVE_SIZE


@pytest.fixture
def in_call(server: SignalingServer) -> Iterator[Callable[..., Phone]]:
    """A phone ``P`` (with these options) in a connected call with a raw peer ``A``."""
    made: list[Any] = []

    def make(**options: Any) -> Phone:
        phone = Phone("P", server=server.url, **options)
        caller = RawPeer(server.url, "A")
        made.extend([phone, caller])
        caller.call("P")
        wait_until(lambda: phone.state == "ringing", "P to ring")
        phone.answer()
        from_browser(phone, {"type": "channel", "peer": "A", "state": "open", "label": "nbcall"})
        assert phone.state == "connected"
        return phone

    yield make
    for thing in made:
        thing.close()


def from_browser(phone: Phone, content: Any, *buffers: bytes) -> None:
    phone._handle_custom_msg(content, [memoryview(b) for b in buffers])


def part(phone: Phone, data: bytes, *, first: bool, last: bool) -> None:
    message = {"type": "message", "peer": "A", "kind": "bytes", "first": first, "last": last}
    from_browser(phone, message, data)


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("nbcall")]


def test_max_receive_size_defaults_to_512_mib_is_checked_and_reaches_the_browser(in_call) -> None:
    phone = in_call()
    assert phone.max_receive_size == MAX_RECEIVE_SIZE == 512 * 2**20
    assert phone._settings["max_receive_size"] == MAX_RECEIVE_SIZE
    phone.max_receive_size = 2**20
    assert phone._settings["max_receive_size"] == 2**20  # the browser's decoder takes the new bound
    with pytest.raises(traitlets.TraitError, match="max_receive_size must be a number of bytes > 0"):
        phone.max_receive_size = 0
    with pytest.raises(ValueError, match="max_receive_size must be a number of bytes > 0, such as"):
        Phone("Q", server=False, max_receive_size=-1)


def test_a_streamed_message_over_max_receive_size_is_dropped_once_and_the_call_goes_on(
    in_call, caplog: pytest.LogCaptureFixture
) -> None:
    phone = in_call(max_receive_size=10)
    part(phone, b"12345678", first=True, last=False)
    part(phone, b"12345678", first=False, last=False)  # 16 bytes: over the bound
    part(phone, b"12345678", first=False, last=False)  # the rest of it is dropped quietly
    part(phone, b"1234", first=False, last=True)
    assert phone.messages == []
    assert "16 bytes is more than max_receive_size (10)" in phone.error
    assert len(warnings(caplog)) == 1 and caplog.records[-1].exc_info is None
    assert [e["detail"]["peer"] for e in phone.log if e["type"] == "dropped"] == ["A"]
    part(phone, b"next", first=True, last=True)
    assert [m.data for m in phone.messages] == [b"next"]
    assert phone.state == "connected"


def test_a_message_the_browser_dropped_drops_its_parts_here_too(in_call, caplog) -> None:
    phone = in_call()
    part(phone, b"held ", first=True, last=False)
    from_browser(phone, {"type": "dropped", "peer": "A", "problem": "unknown message kind byte 9"})
    assert "from A: unknown message kind byte 9" in phone.error
    assert len(warnings(caplog)) == 1
    part(phone, b"whole", first=False, last=True)  # an older browser half that marks no first part
    assert [m.data for m in phone.messages] == [b"whole"]
    assert phone.state == "connected"


BAD = {
    "peer not a str": {"type": "message", "peer": ["A"], "kind": "str", "last": True},
    "unknown kind": {"type": "message", "peer": "A", "kind": "pickle", "last": True},
    "messages not a list": {"type": "batch", "messages": "a string of many characters"},
    "batch in a batch": {"type": "batch", "messages": [{"type": "hello"}]},
    "progress of the wrong shape": {"type": "progress", "direction": "in", "peer": "A", "name": None,
                                    "done": "lots", "total": None, "rate": 0, "eta": None},
    "unhashable rtc name": {"type": "rtc", "peer": "A", "name": ["x"], "value": 1},
    "signal not an object": {"type": "signal", "peer": "A", "signal": "garbage"},
    "unknown channel state": {"type": "channel", "peer": "A", "state": "ajar", "label": "x"},
    "stats not an object": {"type": "stats", "peer": "A", "stats": "fast"},
    "media not objects": {"type": "media", "local": 1, "remote": 2, "errors": []},
    "huge unknown type": {"type": "x" * 100_000},
    "not an object": 42,
}  # fmt: skip


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_a_malformed_message_in_a_batch_is_logged_in_one_short_line_and_the_rest_runs(
    in_call, bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    phone = in_call()
    rtc = {"type": "rtc", "peer": "A", "name": "iceConnectionState", "value": "checking"}
    with caplog.at_level(logging.DEBUG, logger="nbcall"):
        caplog.clear()
        from_browser(phone, {"type": "batch", "messages": [bad, rtc]})
    lines = warnings(caplog)
    assert len(lines) == 1, [r.getMessage()[:200] for r in lines]
    assert lines[0].exc_info is None and len(lines[0].getMessage()) < 400
    assert phone.rtc["iceConnectionState"] == "checking"  # the rest of the batch ran
    assert phone.state == "connected" and phone.messages == []
    assert isinstance(phone.stats, dict) and phone.local_media == {"audio": False, "video": False}
    assert [e for e in phone.log if e["type"] == "protocol-error"]


def test_a_message_that_does_not_decode_is_dropped_in_one_log_line(in_call, caplog) -> None:
    phone = in_call()
    from_browser(phone, {"type": "message", "peer": "A", "kind": "json", "last": True}, b"{broken")
    from_browser(phone, {"type": "message", "peer": "A", "kind": "str", "last": True}, b"\xff\xfe")
    assert phone.messages == [] and "received a str message that does not decode" in phone.error
    assert len(warnings(caplog)) == 2 and phone.state == "connected"
