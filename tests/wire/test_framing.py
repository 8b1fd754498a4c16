"""The Python peer's pure parts: framing (byte-compatible with js/framing.js), file names and file reception,
and the error a missing optional dependency gives. No network."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbcall.call.transfer import KEY, FileReceiver, clean_name, list_files
from nbcall.wire.framing import MORE, FrameDecoder, FramingError, encode_frames

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


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("/etc/passwd", "etc/passwd"),
        ("../../home/x/.bashrc", "home/x/.bashrc"),
        ("a/./b/../c.txt", "a/b/c.txt"),
        ("C:\\Windows\\evil.dll", "Windows/evil.dll"),
        ("..", "unnamed"),
        ("report.pdf", "report.pdf"),
    ],
)
def test_received_file_names_are_cleaned(sent: str, kept: str) -> None:
    assert clean_name(sent) == kept


def _send(receiver: FileReceiver, name: str, content: bytes, digest: str | None = None) -> tuple:
    receiver.receive("S", "json", {KEY: "start", "id": "1", "name": name, "size": len(content)})
    for start in range(0, len(content), 3):
        receiver.receive("S", "bytes", content[start : start + 3])
    return receiver.receive(
        "S", "json", {KEY: "end", "id": "1", "sha256": digest or hashlib.sha256(content).hexdigest()}
    )


def test_a_received_file_is_written_under_its_cleaned_name_and_checked(tmp_path: Path) -> None:
    receiver = FileReceiver(tmp_path)
    reply, message, progress = _send(receiver, "../sub/data.bin", b"0123456789")
    assert reply["ok"] is True and reply["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert (tmp_path / "sub" / "data.bin").read_bytes() == b"0123456789"
    assert message.name == "sub/data.bin" and message.path == tmp_path / "sub" / "data.bin"
    assert progress["done"] == progress["total"] == 10
    assert receiver.receive("S", "bytes", b"not a file") is None  # ordinary messages pass through


def test_an_existing_file_is_not_overwritten_without_permission(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("mine")
    reply, message, _ = _send(FileReceiver(tmp_path), "a.txt", b"theirs")
    assert reply["ok"] is False and "exists" in reply["error"] and message is None
    assert (tmp_path / "a.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no partial file left behind
    reply, _, _ = _send(FileReceiver(tmp_path, overwrite=True), "a.txt", b"theirs")
    assert reply["ok"] is True and (tmp_path / "a.txt").read_text() == "theirs"


def test_a_checksum_mismatch_is_reported_and_the_file_discarded(tmp_path: Path) -> None:
    reply, message, _ = _send(FileReceiver(tmp_path), "x.bin", b"abc", digest="00" * 32)
    assert reply["ok"] is False and "checksum mismatch" in reply["error"] and message is None
    assert list(tmp_path.iterdir()) == []


def test_without_a_directory_a_received_file_arrives_in_memory_with_its_name() -> None:
    _, message, _ = _send(FileReceiver(None), "notes.txt", b"hello")
    assert (message.data, message.name, message.path, message.kind) == (b"hello", "notes.txt", None, "bytes")


def test_listing_a_directory_keeps_relative_names_and_bad_paths_say_so(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "one.txt").write_text("1")
    (tmp_path / "d" / "e" / "two.txt").write_text("22")
    items = list_files([tmp_path / "d"])
    assert [(i.name, i.size) for i in items] == [("d/e/two.txt", 2), ("d/one.txt", 1)]
    with pytest.raises(FileNotFoundError, match="no such file or directory: .*missing"):
        list_files([tmp_path / "missing"])


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
