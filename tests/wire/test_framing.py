"""The Python peer's pure parts: framing (byte-compatible with js/framing.js) and the error a missing optional
dependency gives. No network (file transfers: tests/call/test_transfer.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbcall.wire.framing import (
    ACK,
    FIRST,
    LENGTH,
    MORE,
    SYNC,
    AckWindow,
    FrameDecoder,
    FramingError,
    MessageTooLarge,
    ack_frame,
    control,
    encode_frames,
)

ROOT = Path(__file__).resolve().parents[2]


def test_frames_carry_a_kind_byte_and_the_more_flag_on_all_but_the_last() -> None:
    frames = list(encode_frames("bytes", b"abcdefg", 4))
    assert frames == [bytes([2 | MORE]) + b"abc", bytes([2 | MORE]) + b"def", bytes([2]) + b"g"]
    assert list(encode_frames("str", b"", 64)) == [b"\x01"]  # an empty message is one frame
    assert list(encode_frames("json", b"[1]", 64)) == [b"\x03[1]"]


def test_decoder_reassembles_messages_and_recovers_after_a_broken_one() -> None:
    decoder = FrameDecoder()
    payload = "ü".encode() * 1000
    frames = list(encode_frames("str", payload, 7))  # cuts multi-byte characters across frames
    assert [decoder.push(f) for f in frames[:-1]] == [None] * (len(frames) - 1)
    assert decoder.push(frames[-1]) == ("str", payload)
    decoder.push(bytes([2 | MORE]) + b"half")
    with pytest.raises(FramingError, match="inside a message"):
        decoder.push(b"\x01x")
    assert decoder.push(b"\x03{}") == ("json", b"{}")
    with pytest.raises(FramingError, match="unknown message kind byte"):
        decoder.push(b"\x07")
    with pytest.raises(FramingError, match="empty frame"):
        decoder.push(b"")


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run js/framing.js")
def test_python_frames_are_byte_for_byte_those_of_the_browser_phone() -> None:
    script = (
        "import('./js/framing.js').then(({encodeFrames}) => {"
        " const out = [...encodeFrames('str', new TextEncoder().encode('héllo wörld'), 5, true)];"
        " console.log(JSON.stringify(out.map((f) => Array.from(f)))); })"
    )
    run = subprocess.run(
        ["node", "-e", script], check=False, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    from_js = [bytes(f) for f in json.loads(run.stdout)]
    assert from_js[0] == bytes([4, 0, 0, 0, 0, 0, 0, 0, 13])  # the LENGTH frame: 13 UTF-8 bytes follow
    assert from_js == list(encode_frames("str", "héllo wörld".encode(), 5, announce_length=True))
    decoder = FrameDecoder()
    assert [decoder.push(f) for f in from_js][-1] == ("str", "héllo wörld".encode())


def test_length_extension_tells_the_decoder_how_much_is_left_and_misplaced_length_frames_are_refused() -> (
    None
):
    payload = bytes(range(256)) * 40
    frames = list(encode_frames("bytes", payload, 1000, announce_length=True))
    assert frames[0] == bytes([4]) + len(payload).to_bytes(8, "big")
    decoder = FrameDecoder()
    decoder.push(frames[0])
    decoder.push(frames[1])
    assert (decoder.pending, decoder.expected) == (999, len(payload))
    assert [decoder.push(f) for f in frames[2:]][-1] == ("bytes", payload)
    assert (decoder.pending, decoder.expected) == (0, None)
    assert list(encode_frames("str", b"short", 1000, announce_length=True)) == [b"\x01short"]
    decoder.push(bytes([2 | MORE]) + b"half")
    with pytest.raises(FramingError, match="length frame inside a message"):
        decoder.push(frames[0])
    with pytest.raises(FramingError, match="length frame of 3 bytes"):
        decoder.push(b"\x04\x00\x01")
    assert decoder.push(b"\x02z") == ("bytes", b"z")


def test_a_missing_aiortc_gives_the_install_command() -> None:
    code = (
        "import sys; sys.modules['aiortc'] = None\n"
        "import nbcall\n"
        "try:\n    nbcall.Peer('P')\nexcept ImportError as e:\n    print(e)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert 'pip install "nbcall[peer]"' in run.stdout, run.stderr
    assert "aiortc" in run.stdout


def test_a_message_over_max_size_is_refused_once_and_the_next_one_decodes() -> None:
    decoder = FrameDecoder(max_size=10)
    frames = list(encode_frames("bytes", bytes(25), 5))  # 4 payload bytes a frame: the third goes over
    assert [decoder.push(f) for f in frames[:2]] == [None, None]
    with pytest.raises(MessageTooLarge, match=r"12 bytes is more than max_receive_size \(10\)"):
        decoder.push(frames[2])
    assert [decoder.push(f) for f in frames[3:]] == [None] * len(frames[3:])  # dropped without a word
    assert decoder.push(b"\x01hi") == ("str", b"hi")
    announced = list(encode_frames("str", bytes(2**20), 2**16, announce_length=True))
    with pytest.raises(MessageTooLarge, match="1048576 bytes is more than max_receive_size"):
        decoder.push(announced[0])  # refused before any of it arrives
    assert all(decoder.push(f) is None for f in announced[1:])
    assert decoder.push(b"\x03[]") == ("json", b"[]")
    assert decoder.push(b"\x02" + bytes(10)) == ("bytes", bytes(10))  # at the limit: kept


def test_start_extension_lets_a_receiver_that_comes_in_mid_message_drop_its_tail() -> None:
    first = list(encode_frames("bytes", b"A" * 2500, 1000, announce_length=True, mark_start=True))
    second = list(encode_frames("str", b"hello", 1000, mark_start=True))
    assert first[0][0] == LENGTH | FIRST and not first[1][0] & FIRST  # the LENGTH frame starts the message
    assert second == [bytes([1 | FIRST]) + b"hello"]
    late = FrameDecoder(start=True)
    assert [late.push(f) for f in first[2:]] == [None, None]  # the tail of a message it missed
    assert late.skipped == 2
    assert late.push(second[0]) == ("str", b"hello")
    assert [late.push(f) for f in first][-1] == ("bytes", b"A" * 2500)
    # A first frame while a message is open: the open one was cut off and is dropped, the new one decodes.
    assert late.push(first[1]) is None
    assert late.push(second[0]) == ("str", b"hello")
    # A broken message makes it wait for the next first frame.
    with pytest.raises(FramingError, match="inside a message"):
        late.push(first[1]), late.push(b"\x01x")
    assert late.push(b"\x02tail") is None and late.push(second[0]) == ("str", b"hello")


def test_sfu_pacing_holds_a_sender_until_its_receivers_acknowledge_and_forgets_the_deaf() -> None:
    window = AckWindow(every=100, outstanding=2, patience=5.0)
    assert window.sent(60, ["B", "C"], now=0) is None
    sync = window.sent(60, ["B", "C"], now=0)
    assert sync is not None and control(sync) == (SYNC, 1, "")
    assert not window.blocked(now=0)
    assert control(window.sent(100, ["B", "C"], now=1) or b"") == (SYNC, 2, "")
    assert window.blocked(now=1)  # two SYNCs unanswered: hold back
    ack = ack_frame(2, "Ä")
    assert control(ack) == (ACK, 2, "Ä")
    window.acked("B", 2)  # an ACK answers every SYNC up to its number
    assert window.blocked(now=1)
    window.acked("C", 1)
    assert not window.blocked(now=1)  # one SYNC (2, from C) still out, under the limit
    window.sent(100, ["B", "C"], now=2)
    assert window.blocked(now=4)
    assert not window.blocked(now=6.5)  # C left SYNC 2 unanswered for 5 s: it holds nobody back now
    assert window.deaf == {"C"}
    window.sent(100, ["B", "C"], now=7)
    window.acked("B", 4)
    assert not window.blocked(now=7)  # SYNC 3 waits for B only (C is deaf), and B answered
    window.acked("C", 0)  # "I receive you": C counts again
    assert window.deaf == set()
    assert control(b"\x01not a control frame") is None and control(b"\x05short") is None
