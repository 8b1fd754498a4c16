"""Resumable files: the receiver offers what it kept of a file, the sender checks it and sends the rest. No
network: a loopback link carries the sender's messages into real receivers (writing real files, hashing offers
on their threads) and their replies back; a cut is the link failing after so many bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from nbcall.call.transfer import KEY, FileReceiver, SendItem, list_files, send_files

PARTIAL_OF = ".big.bin.nbcall-partial"  # where big.bin is written until it is whole
MIB = 2**20


class Loopback:
    """A phone whose file messages go straight into ``far`` (a receiver per target, each of which says it
    resumes) and whose replies come back as over a call; ``cut_after`` bytes, the call ends."""

    def __init__(
        self,
        far: dict[str, FileReceiver],
        *,
        cut_after: int | None = None,
        lie: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.far, self.cut_after, self.lie = far, cut_after, lie
        self.file_receiver = FileReceiver(None)
        self.sent_bytes = 0
        self.steps: list[dict[str, Any]] = []
        for target, receiver in far.items():
            signal = {
                "type": "answer",
                "from": target,
                "framing": "nbcall/1",
                "framing_ext": ["length", "resume"],
            }
            self.file_receiver.learn(signal)
            receiver.reply_later = lambda _sender, reply, t=target: self._back(t, reply)

    def _back(self, target: str, reply: dict[str, Any]) -> None:
        if self.lie is not None and reply.get(KEY) == "offset":
            reply = self.lie(reply)
        self.file_receiver.receive(target, "json", reply)

    def file_targets(self, to: str | None) -> list[str]:
        return [to] if to is not None else list(self.far)

    async def send_file_part(
        self, data: Any, targets: Sequence[str], progress: dict[str, Any] | None
    ) -> None:
        if self.cut_after is not None and self.sent_bytes >= self.cut_after:
            raise ConnectionError("the call ended")
        kind = "bytes" if isinstance(data, bytes) else "json"
        if kind == "bytes":
            self.sent_bytes += len(data)
        else:
            self.steps.append(data)
        for target in targets:
            handled = self.far[target].receive("me", kind, data)
            if handled is not None and handled[0] is not None:
                self._back(target, handled[0])


@pytest.fixture
def big(tmp_path: Path) -> SendItem:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(5 * MIB + 123))
    return list_files([path])[0]


async def cut(inbox: Path, item: SendItem, after: int) -> None:
    """Send ``item`` into ``inbox`` until the call ends after ``after`` bytes, as a killed call does."""
    receiver = FileReceiver(inbox, reply_later=lambda *_: None)
    link = Loopback({"R": receiver}, cut_after=after)
    with pytest.raises(ConnectionError):
        await send_files(link, [item])
    receiver.abort()


async def test_a_cut_transfer_resumes_from_the_partial_file_a_new_receiver_finds(
    tmp_path: Path, big: SendItem
) -> None:
    inbox = tmp_path / "inbox"
    await cut(inbox, big, after=3 * MIB)
    assert sorted(p.name for p in inbox.iterdir()) == [PARTIAL_OF]  # never taken for the file itself
    assert (inbox / PARTIAL_OF).stat().st_size == 3 * MIB

    link = Loopback({"R": FileReceiver(inbox)})  # a receiver started again
    result = await send_files(link, [big])
    (verdict,) = result["files"]
    assert (result["ok"], verdict["code"], verdict["offset"]) == (True, "ok", 3 * MIB)
    assert verdict["note"] == "resumed at 3.0 MiB of 5.0 MiB"
    assert link.sent_bytes == big.size - 3 * MIB  # only the rest travelled
    assert (inbox / "big.bin").read_bytes() == big.path.read_bytes()
    assert verdict["sha256"] == verdict["sent_sha256"] == hashlib.sha256(big.path.read_bytes()).hexdigest()
    assert sorted(p.name for p in inbox.iterdir()) == ["big.bin"]  # no partial file left after success


async def test_a_changed_source_starts_over_and_says_why(tmp_path: Path, big: SendItem) -> None:
    inbox = tmp_path / "inbox"
    await cut(inbox, big, after=2 * MIB)
    big.path.write_bytes(b"changed" + big.path.read_bytes()[7:])
    link = Loopback({"R": FileReceiver(inbox)})
    (verdict,) = (await send_files(link, [big]))["files"]
    assert (verdict["code"], verdict["offset"], link.sent_bytes) == ("ok", 0, big.size)
    assert verdict["note"].startswith("started over: the receiver's partial copy of big.bin differs")
    assert (inbox / "big.bin").read_bytes() == big.path.read_bytes()


async def test_no_resume_sends_everything_again_and_leaves_no_partial_file(
    tmp_path: Path, big: SendItem
) -> None:
    inbox = tmp_path / "inbox"
    await cut(inbox, big, after=2 * MIB)
    link = Loopback({"R": FileReceiver(inbox)})
    (verdict,) = (await send_files(link, [big], resume=False))["files"]
    assert (verdict["code"], verdict["offset"], link.sent_bytes) == ("ok", 0, big.size)
    assert sorted(p.name for p in inbox.iterdir()) == ["big.bin"]


async def test_a_receiver_told_not_to_resume_offers_nothing_and_keeps_nothing(
    tmp_path: Path, big: SendItem
) -> None:
    inbox = tmp_path / "inbox"
    await cut(inbox, big, after=2 * MIB)
    receiver = FileReceiver(inbox, resume=False)
    link = Loopback({"R": receiver}, cut_after=4 * MIB)
    with pytest.raises(ConnectionError):
        await send_files(link, [big])
    assert link.sent_bytes == 4 * MIB  # from 0, though 2 MiB were kept
    receiver.abort()
    assert list(inbox.iterdir()) == []


async def test_files_received_in_memory_do_not_resume(tmp_path: Path, big: SendItem) -> None:
    receiver = FileReceiver(None)
    with pytest.raises(ConnectionError):
        await send_files(Loopback({"R": receiver}, cut_after=2 * MIB), [big])
    receiver.abort()
    link = Loopback({"R": receiver})
    (verdict,) = (await send_files(link, [big]))["files"]
    assert (verdict["code"], verdict["offset"], link.sent_bytes) == ("ok", 0, big.size)


async def test_sending_a_directory_again_skips_what_is_there_and_resumes_each_file(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    for name, size in (("a.bin", 2 * MIB), ("b.bin", 3 * MIB), ("c.bin", MIB)):
        (folder / name).write_bytes(os.urandom(size))
    items = list_files([folder])
    inbox = tmp_path / "inbox"
    receiver = FileReceiver(inbox)
    with pytest.raises(ConnectionError):  # a.bin arrives, b.bin is cut after its first MiB
        await send_files(Loopback({"R": receiver}, cut_after=3 * MIB), items)
    receiver.abort()

    link = Loopback({"R": FileReceiver(inbox)})
    result = await send_files(link, items)
    assert result["ok"] is True
    assert [(v["name"], v["code"], v["offset"]) for v in result["files"]] == [
        ("d/a.bin", "same", 2 * MIB), ("d/b.bin", "ok", MIB), ("d/c.bin", "ok", 0)
    ]  # fmt: skip
    assert link.sent_bytes == 2 * MIB + MIB
    assert {p.name: p.read_bytes() for p in (inbox / "d").iterdir()} == {
        p.name: p.read_bytes() for p in folder.iterdir()
    }

    (folder / "c.bin").write_bytes(b"another c")  # a file of that name, but not this one: refused as before
    result = await send_files(Loopback({"R": FileReceiver(inbox)}), list_files([folder]))
    assert (result["ok"], result["code"]) == (False, "exists")
    assert "d/c.bin exists in" in result["error"] and (inbox / "d" / "c.bin").stat().st_size == MIB


async def test_a_second_sender_of_a_name_gets_busy_while_the_first_writes_it(tmp_path: Path) -> None:
    receiver = FileReceiver(tmp_path)
    start = {KEY: "start", "id": "A1", "name": "same.bin", "size": 10, "resume": True}
    first, _, _ = receiver.receive("A", "json", start)
    assert (first[KEY], first["offset"]) == ("offset", 0)
    other = FileReceiver(tmp_path)  # another receiver on the same folder (another call, say)
    for who, busy in (("B", receiver), ("C", other)):
        refusal, _, _ = busy.receive(who, "json", {**start, "id": who})
        assert (refusal[KEY], refusal["ok"], refusal["code"]) == ("verdict", False, "busy")
        assert "being received from another sender" in refusal["error"]
    receiver.receive("A", "json", {KEY: "from", "id": "A1", "offset": 0})
    receiver.receive("A", "bytes", b"0123456789")
    end = {KEY: "end", "id": "A1", "sha256": hashlib.sha256(b"0123456789").hexdigest()}
    assert receiver.receive("A", "json", end)[0]["code"] == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.bin"]


LOCK_HOLDER = """
import fcntl, os, sys
handle = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
os.write(handle, b"0123")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="partial files are locked with flock")
def test_a_partial_file_another_process_writes_is_busy_and_its_lock_dies_with_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / ".x.bin.nbcall-partial")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        start = {KEY: "start", "id": "1", "name": "x.bin", "size": 10, "resume": True}
        assert FileReceiver(tmp_path).receive("S", "json", start)[0]["code"] == "busy"
    finally:
        holder.kill()  # as a receiver killed mid-transfer
        holder.wait()
    offer, _, _ = FileReceiver(tmp_path).receive("S", "json", {**start, "id": "2"})
    assert (offer[KEY], offer["offset"], offer["sha256"]) == (
        "offset",
        4,
        hashlib.sha256(b"0123").hexdigest(),
    )


@pytest.mark.parametrize(
    ("offset", "says"),
    [
        (6 * MIB, "at 6291456, which is no offset in its 5243003 bytes"),
        (-1, "at -1, which is no offset"),
        ("lots", "at 'lots', which is no offset"),
        (None, "at None, which is no offset"),
        (True, "at True, which is no offset"),
    ],
)
async def test_a_receiver_offering_no_offset_in_the_file_gets_an_error_and_nothing_of_it(
    tmp_path: Path, big: SendItem, offset: Any, says: str
) -> None:
    inbox = tmp_path / "inbox"
    await cut(inbox, big, after=2 * MIB)
    link = Loopback({"R": FileReceiver(inbox)}, lie=lambda offer: {**offer, "offset": offset})
    result = await send_files(link, [big])
    assert (result["ok"], result["code"]) == (False, "malformed") and says in result["error"]
    assert link.sent_bytes == 0 and link.steps[-1][KEY] == "cancel"  # the receiver is told why
    assert says in link.steps[-1]["error"]
    assert sorted(p.name for p in inbox.iterdir()) == [PARTIAL_OF]  # nothing written, nothing kept as big.bin
    assert (inbox / PARTIAL_OF).stat().st_size == 2 * MIB


async def test_a_receiver_offering_bytes_that_hash_otherwise_gets_the_whole_file_again(
    tmp_path: Path, big: SendItem
) -> None:
    inbox = tmp_path / "inbox"
    await cut(inbox, big, after=2 * MIB)
    link = Loopback({"R": FileReceiver(inbox)}, lie=lambda offer: {**offer, "sha256": "00" * 32})
    (verdict,) = (await send_files(link, [big]))["files"]
    assert (verdict["code"], verdict["offset"], link.sent_bytes) == ("ok", 0, big.size)
    assert "started over" in verdict["note"]
    assert (inbox / "big.bin").read_bytes() == big.path.read_bytes()


async def test_a_receiver_that_never_answers_the_start_fails_the_file_in_time(
    tmp_path: Path, big: SendItem
) -> None:
    link = Loopback({"R": FileReceiver(tmp_path)}, lie=lambda offer: {KEY: "ignored"})
    result = await asyncio.wait_for(send_files(link, [big], timeout=0.2), 10)
    assert (result["code"], result["error"]) == (
        "no-verdict",
        "the receiver did not answer the start of big.bin",
    )
    assert link.sent_bytes == 0 and link.steps[-1][KEY] == "cancel"


@pytest.mark.parametrize(
    "signal",
    [
        {"type": "answer", "from": "R", "framing": "nbcall/1", "framing_ext": ["length"]},  # an older nbcall
        {"type": "answer", "from": "R", "sdp": "..."},  # the seed's clients: no framing at all
    ],
)
async def test_a_receiver_that_does_not_say_it_resumes_gets_the_plain_flow(
    tmp_path: Path, big: SendItem, signal: dict[str, Any]
) -> None:
    link = Loopback({"R": FileReceiver(tmp_path / "inbox")})
    link.file_receiver.learn(signal)  # what its call's answer said
    result = await send_files(link, [big])
    assert result["ok"] is True and [step[KEY] for step in link.steps] == ["start", "end"]
    assert "resume" not in link.steps[0] and link.sent_bytes == big.size


def test_a_folder_sent_leaves_out_the_partial_files_a_receiver_keeps_in_it(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "done.txt").write_text("whole")
    (tmp_path / "inbox" / ".cut.bin.nbcall-partial").write_bytes(b"part of a file")
    assert [item.name for item in list_files([tmp_path / "inbox"])] == ["inbox/done.txt"]
    reply, _, _ = FileReceiver(tmp_path / "out").receive(
        "S", "json", {KEY: "start", "id": "1", "name": ".cut.bin.nbcall-partial", "size": 3, "resume": True}
    )
    assert (reply["code"], reply["error"]) == (
        "unwritable",
        "cannot write .cut.bin.nbcall-partial: nbcall keeps partial files under such names",
    )
