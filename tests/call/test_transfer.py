"""Files over a call: names, reception and its verdicts (with their codes), the one sender, and the exit codes
``nbcall send`` and ``nbcall receive`` take from the codes. No network: a loopback link carries the sender's
messages into a receiver and its verdicts back."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nbcall.call.transfer import (
    CODES,
    KEY,
    FileReceiver,
    Received,
    clean_name,
    list_files,
    send_files,
    verdict_code,
)
from nbcall.peer.transfer_cli import CHECKSUM, INTERRUPTED, OK, REFUSED, exit_code


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("/etc/passwd", "etc/passwd"),
        ("../../home/x/.bashrc", "home/x/.bashrc"),
        ("a/./b/../c.txt", "a/b/c.txt"),
        ("C:\\Windows\\evil.dll", "Windows/evil.dll"),
        ("..", "unnamed"),
        ("report.pdf", "report.pdf"),
        ("a\x00b.txt", "ab.txt"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        (None, "unnamed"),
    ],
)
def test_received_file_names_are_cleaned(sent: str | None, kept: str) -> None:
    assert clean_name(sent) == kept


@pytest.mark.parametrize("name", ["nul\x00.bin", "é" * 200, "x/" * 60 + "deep.bin"])
def test_a_name_the_file_system_refuses_gets_a_verdict_and_the_next_file_goes(
    tmp_path: Path, name: str
) -> None:
    receiver = FileReceiver(tmp_path)
    reply, _, _ = _send(receiver, name, b"data")
    assert reply is not None and (reply["ok"] is True or reply["code"] == "unwritable"), reply
    assert _send(receiver, "next.txt", b"next")[0]["code"] == "ok"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".part", "-partial"))]


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


def test_the_rest_of_a_file_a_call_cut_is_dropped_until_the_sender_starts_anew(tmp_path: Path) -> None:
    receiver = FileReceiver(tmp_path)
    assert receiver.receive("S", "json", {KEY: "start", "id": "f1", "name": "a.bin", "size": 10}) is not None
    receiver.receive("S", "bytes", b"01234")
    assert receiver.abort() == ["a.bin"]  # the call ended
    # Bytes still on their way are the file's, not messages: dropped and counted.
    assert receiver.receive("S", "bytes", b"56789") == (None, None, None)
    assert receiver.receive("T", "bytes", b"another peer's message") is None
    assert receiver.dropped_bytes == 5
    for begins in (receiver.new_call, lambda: receiver.learn({"type": "call", "from": "S"})):
        begins()  # a new call (this phone's, or the sender's call or answer): what comes is new
        assert receiver.receive("S", "bytes", b"a message") is None
        receiver.receive("S", "json", {KEY: "start", "id": "f2", "name": "b.bin", "size": 10})
        receiver.abort()
        assert receiver.receive("S", "bytes", b"56789") == (None, None, None)


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


# ---------------------------------------------------------------------------------------- verdict codes


def test_each_verdict_carries_its_code_beside_the_words(tmp_path: Path) -> None:
    assert _send(FileReceiver(tmp_path), "ok.txt", b"fine")[0]["code"] == "ok"
    (tmp_path / "a.txt").write_text("mine")
    refused = _send(FileReceiver(tmp_path), "a.txt", b"theirs")[0]
    assert (refused["ok"], refused["code"]) == (False, "exists") and "exists" in refused["error"]
    assert _send(FileReceiver(tmp_path), "x.bin", b"abc", digest="00" * 32)[0]["code"] == "checksum"
    receiver = FileReceiver(tmp_path)
    receiver.receive("S", "json", {KEY: "start", "id": "1", "name": "short.bin", "size": 10})
    receiver.receive("S", "bytes", b"abc")
    reply, _, _ = receiver.receive(
        "S", "json", {KEY: "end", "id": "1", "sha256": hashlib.sha256(b"abc").hexdigest()}
    )
    assert reply["code"] == "incomplete" and "3 bytes received of 10" in reply["error"]
    assert [(r.name, r.ok, r.code) for r in receiver.received] == [("short.bin", False, "incomplete")]


def test_a_name_the_receiver_cannot_write_is_refused_not_raised(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a folder")
    receiver = FileReceiver(tmp_path)
    reply, message, _ = _send(receiver, "plain/inner.txt", b"data")
    assert (reply["ok"], reply["code"], message) == (False, "unwritable", None)
    assert "cannot write plain/inner.txt" in reply["error"]
    assert receiver.received == [Received("plain/inner.txt", None, False, "unwritable")]


@pytest.mark.parametrize("size", ["lots", -1, 1.5, [3], True])
def test_a_start_with_a_size_that_is_no_count_of_bytes_is_refused_not_raised(
    tmp_path: Path, size: Any
) -> None:
    receiver = FileReceiver(tmp_path)
    start = {KEY: "start", "id": "f1", "name": "a.txt", "size": size}
    assert receiver.receive("A", "json", start) == (None, None, None)
    assert receiver.receive("A", "bytes", b"data") is not None  # taken as the refused file's, not a message
    end = {KEY: "end", "id": "f1", "sha256": hashlib.sha256(b"data").hexdigest()}
    reply, message, _ = receiver.receive("A", "json", end)
    assert (reply["ok"], reply["code"], message) == (False, "malformed", None)
    assert "is not a count of bytes" in reply["error"]
    assert not (tmp_path / "a.txt").exists()
    assert _send(receiver, "b.txt", b"next")[0]["code"] == "ok"  # the next file is received as usual


@pytest.mark.parametrize("folder", [True, False], ids=["receive_dir", "in memory"])
def test_a_file_that_sends_more_than_it_announced_is_discarded_with_an_error_verdict(
    tmp_path: Path, folder: bool
) -> None:
    receiver = FileReceiver(tmp_path if folder else None)
    receiver.receive("A", "json", {KEY: "start", "id": "1", "name": "a.bin", "size": 4})
    for _ in range(3):  # a peer that goes on and on: nothing more is written or kept in memory
        assert receiver.receive("A", "bytes", b"0123") is not None
    end = {KEY: "end", "id": "1", "sha256": hashlib.sha256(b"0123" * 3).hexdigest()}
    reply, message, _ = receiver.receive("A", "json", end)
    assert (reply["ok"], reply["code"], message) == (False, "incomplete", None)
    assert "sent more than the 4 bytes it announced" in reply["error"]
    assert list(tmp_path.iterdir()) == []
    assert _send(receiver, "next.txt", b"next")[0]["code"] == "ok"  # the next file is received as usual


def test_a_file_kept_in_memory_is_refused_above_max_receive_size() -> None:
    receiver = FileReceiver(None, max_receive_size=8)
    reply, message, _ = _send(receiver, "big.bin", b"123456789")
    assert (reply["ok"], reply["code"], message) == (False, "too-large", None)
    assert "9 bytes, more than max_receive_size (8)" in reply["error"]
    assert _send(receiver, "small.bin", b"12345678")[1].data == b"12345678"


def test_a_file_whose_folder_went_away_meanwhile_is_refused_not_raised(tmp_path: Path) -> None:
    receiver = FileReceiver(tmp_path)
    receiver.receive("A", "json", {KEY: "start", "id": "1", "name": "sub/a.bin", "size": 4})
    receiver.receive("A", "bytes", b"data")
    shutil.rmtree(tmp_path / "sub")
    end = {KEY: "end", "id": "1", "sha256": hashlib.sha256(b"data").hexdigest()}
    reply, message, _ = receiver.receive("A", "json", end)
    assert (reply["ok"], reply["code"], message) == (False, "unwritable", None)
    assert "cannot write sub/a.bin" in reply["error"]
    assert _send(receiver, "sub/a.bin", b"next")[0]["code"] == "ok"


def test_a_symlink_in_the_receive_directory_is_never_followed_out_of_it(tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (inbox / "link").symlink_to(outside)
    reply, message, _ = _send(FileReceiver(inbox), "link/x", b"data")
    assert (reply["ok"], reply["code"], message) == (False, "unwritable", None)
    assert "symbolic link" in reply["error"]
    assert list(outside.iterdir()) == []


def test_of_two_senders_of_one_name_the_first_to_finish_keeps_it_the_other_is_told_it_exists(
    tmp_path: Path,
) -> None:
    receiver = FileReceiver(tmp_path)
    for sender, content in (("A", b"from A"), ("B", b"from B")):  # both start before either ends
        receiver.receive(
            sender, "json", {KEY: "start", "id": sender, "name": "same.txt", "size": len(content)}
        )
        receiver.receive(sender, "bytes", content)
    replies = {}
    for sender, content in (("B", b"from B"), ("A", b"from A")):
        end = {KEY: "end", "id": sender, "sha256": hashlib.sha256(content).hexdigest()}
        replies[sender] = receiver.receive(sender, "json", end)[0]
    assert (replies["B"]["code"], replies["A"]["code"]) == ("ok", "exists")
    assert (tmp_path / "same.txt").read_bytes() == b"from B"
    assert [p.name for p in tmp_path.iterdir()] == ["same.txt"]  # no temporary file left behind


def test_a_file_made_while_receiving_is_not_overwritten(tmp_path: Path) -> None:
    receiver = FileReceiver(tmp_path)
    receiver.receive("A", "json", {KEY: "start", "id": "1", "name": "a.txt", "size": 4})
    receiver.receive("A", "bytes", b"data")
    (tmp_path / "a.txt").write_text("mine")
    end = {KEY: "end", "id": "1", "sha256": hashlib.sha256(b"data").hexdigest()}
    assert receiver.receive("A", "json", end)[0]["code"] == "exists"
    assert (tmp_path / "a.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("verdict", "code"),
    [
        ({"ok": True, "sha256": "ab", "error": ""}, "ok"),
        ({"ok": False, "error": "a.txt exists in checksums (receive with --force to overwrite)"}, "exists"),
        ({"ok": False, "error": "checksum mismatch for a.txt: sent 00..., received 11..."}, "checksum"),
        ({"ok": False, "error": "a.txt: 3 bytes received of 10"}, "incomplete"),
        ({"ok": False, "error": "something new"}, "refused"),
        ({"ok": False, "error": "whatever the words", "code": "exists"}, "exists"),
        ({"ok": False, "error": "from a newer receiver", "code": "no-such-code"}, "refused"),
    ],
)
def test_a_verdict_from_a_receiver_older_than_codes_is_understood(verdict: dict[str, Any], code: str) -> None:
    assert verdict_code(verdict) == code and code in CODES


def test_exit_codes_come_from_the_verdicts_codes_never_their_words() -> None:
    assert exit_code([]) == exit_code(["ok", "ok"]) == OK
    assert exit_code(["exists"]) == exit_code(["ok", "unwritable", "checksum"]) == REFUSED
    assert exit_code(["checksum", "exists"]) == CHECKSUM
    assert exit_code(["incomplete"]) == exit_code(["no-verdict"]) == exit_code(["refused"]) == INTERRUPTED


# ------------------------------------------------------------------------------------------ the sender


class Loopback:
    """A phone whose file messages go straight into ``far`` (the receiver of each target) and whose
    verdicts come back, as over a call; ``silent`` targets send none."""

    def __init__(self, far: dict[str, FileReceiver], silent: Sequence[str] = ()) -> None:
        self.far, self.silent = far, silent
        self.file_receiver = FileReceiver(None)
        self.reports: list[dict[str, Any]] = []

    def file_targets(self, to: str | None) -> list[str]:
        return [to] if to is not None else list(self.far)

    async def send_file_part(
        self, data: Any, targets: Sequence[str], progress: dict[str, Any] | None
    ) -> None:
        kind = "bytes" if isinstance(data, bytes) else "json"
        for target in targets:
            handled = self.far[target].receive("me", kind, data)
            if handled is not None and handled[0] is not None and target not in self.silent:
                self.file_receiver.receive(target, "json", handled[0])
        if progress is not None:
            self.reports.append(progress)


def tree(tmp_path: Path) -> list[Any]:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_bytes(b"alpha")
    (tmp_path / "d" / "b.bin").write_bytes(bytes(range(256)) * 5000)
    return list_files([tmp_path / "d"])


async def test_one_sender_sends_each_file_to_every_target_and_collects_each_verdict(tmp_path: Path) -> None:
    link = Loopback({"B": FileReceiver(tmp_path / "b"), "C": FileReceiver(None)})
    result = await send_files(link, tree(tmp_path))
    assert (result["ok"], result["code"], result["error"]) == (True, "ok", "")
    assert [(v["name"], v["peer"], v["code"]) for v in result["files"]] == [
        ("d/a.txt", "B", "ok"), ("d/a.txt", "C", "ok"), ("d/b.bin", "B", "ok"), ("d/b.bin", "C", "ok")
    ]  # fmt: skip
    assert all(v["sha256"] == v["sent_sha256"] for v in result["files"])
    assert (tmp_path / "b" / "d" / "b.bin").read_bytes() == (tmp_path / "d" / "b.bin").read_bytes()
    assert link.reports[-1] == {
        "direction": "out",
        "peer": "",
        "name": "d/b.bin",
        "done": 1280000,
        "total": 1280000,
    }


async def test_the_first_refusal_stops_the_sending_with_its_code(tmp_path: Path) -> None:
    (tmp_path / "b" / "d").mkdir(parents=True)
    (tmp_path / "b" / "d" / "a.txt").write_text("mine")
    link = Loopback({"B": FileReceiver(tmp_path / "b")})
    result = await send_files(link, tree(tmp_path), to="B")
    assert (result["ok"], result["code"]) == (False, "exists") and "d/a.txt exists" in result["error"]
    assert [v["name"] for v in result["files"]] == ["d/a.txt"]  # b.bin was not sent
    assert not (tmp_path / "b" / "d" / "b.bin").exists()


async def test_a_receiver_that_sends_no_verdict_fails_the_file_after_the_timeout(tmp_path: Path) -> None:
    link = Loopback({"B": FileReceiver(None)}, silent=["B"])
    result = await asyncio.wait_for(send_files(link, tree(tmp_path)[:1], timeout=0.1), 5)
    assert (result["ok"], result["code"], result["error"]) == (
        False,
        "no-verdict",
        "the receiver sent no verdict",
    )


async def test_sending_with_no_one_connected_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="no open data channel to any peer"):
        await send_files(Loopback({}), tree(tmp_path))
