"""Files over a call's data channel: what is sent, how a receiver checks it, where it is written.

A file travels as ordinary nbcall messages, so any phone can carry it:

1. ``{"nbcall_file": "start", "id": ID, "name": "dir/a.txt", "size": N}`` (JSON)
2. the content as bytes messages of :data:`CHUNK` bytes (the framing cuts them further)
3. ``{"nbcall_file": "end", "id": ID, "sha256": HEX}`` (JSON)

and the receiver answers ``{"nbcall_file": "verdict", "id": ID, "ok": bool, "sha256": HEX, "error": TEXT,
"code": CODE}``: ``error`` says what went wrong in words, ``code`` (one of :data:`CODES`) for programs; a verdict
from a receiver older than ``code`` gets its code from :func:`verdict_code`.

**Resume** (only with a receiver that lists ``resume`` in its call's or answer's ``framing_ext``, so that older
ones and the seed's clients keep the flow above): the ``start`` carries ``"resume": true`` (false: start over),
and before any byte the receiver answers either a verdict (refused now: ``exists``, ``busy``, ...) or
``{"nbcall_file": "offset", "id": ID, "offset": K, "sha256": HEX, "whole": bool}``: it holds the first K bytes
of the file, whose sha256 is HEX (in a partial file, or the whole file under that name when ``whole``). The
sender hashes its own first K bytes and says where its bytes start, ``{"nbcall_file": "from", "id": ID,
"offset": K or 0}``: K when the digests match (for ``whole``, the file is there already: no byte is sent and the
verdict's code is ``same``), else 0, and it says why it started over. An offer that is no offset in the file
gets ``{"nbcall_file": "cancel", "id": ID, "error": TEXT}`` and nothing of the file. The ``end`` and its verdict
follow as above; the sha256 checked is always the whole file's.

A receiver writes a file into ``.NAME.nbcall-partial`` beside it, locked while written (a second sender of the
name gets ``busy``), and renames it once whole; a cut transfer leaves it for the next one.
Received names are cleaned (:func:`clean_name`): no absolute paths, no ``..``; a file that exists is not
overwritten unless the receiver allows it. :class:`FileReceiver` receives; :func:`send_files` sends through
any :class:`FileLink` (a Phone, a Peer).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .files import (
    CHUNK,
    CODES,
    KEY,
    PARTIAL,
    SUCCESS,
    FileMessage,
    Received,
    clean_name,
    end_message,
    hash_prefix,
    start_message,
    verdict_code,
)
from .progress import size_text
from .receiver import FileReceiver

__all__ = [
    "CHUNK",
    "CODES",
    "KEY",
    "FileLink",
    "FileMessage",
    "FileReceiver",
    "Received",
    "SendItem",
    "clean_name",
    "end_message",
    "list_files",
    "send_files",
    "start_message",
    "verdict_code",
]

logger = logging.getLogger("nbcall.call.transfer")

#: Bytes a second a receiver is granted to hash what it offers, on top of the answer's ``timeout``.
HASH_RATE = 50 * 2**20


@dataclass(frozen=True)
class SendItem:
    """A file to send: where it is, and the name it travels under."""

    path: Path
    name: str
    size: int


def list_files(paths: Sequence[Path], names: Sequence[str] | None = None) -> list[SendItem]:
    """The files to send for ``paths`` (a directory: its files, named with the directory's relative paths;
    partial files of an nbcall receiver in it are left out).

    Raises FileNotFoundError or PermissionError with one clear line for a missing or unreadable path.
    """
    items: list[SendItem] = []
    for n, path in enumerate(paths):
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(PARTIAL)):
                rel = file.relative_to(path.parent).as_posix()
                items.append(SendItem(file, rel, _readable_size(file)))
        else:
            name = names[n] if names and n < len(names) else path.name
            items.append(SendItem(path, clean_name(name), _readable_size(path)))
    return items


def _readable_size(path: Path) -> int:
    if not os.access(path, os.R_OK):
        raise PermissionError(f"cannot read {path}: permission denied")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise PermissionError(f"cannot read {path}: {exc.strerror or exc}") from None
    return path.stat().st_size


class FileLink(Protocol):
    """What :func:`send_files` needs of a phone (``Phone`` and ``Peer`` implement it)."""

    @property
    def file_receiver(self) -> FileReceiver:
        """The phone's receiver, which hands it the replies on the files it sends."""
        ...

    def file_targets(self, to: str | None) -> list[str]:
        """Who a file sent now goes to: ``to``, or (``None``) every peer connected now."""
        ...

    async def send_file_part(
        self, data: Any, targets: Sequence[str], progress: dict[str, Any] | None
    ) -> None:
        """Send one message of a file to ``targets``; ``progress`` (None but for chunks) says how far the file
        has gone once it is handed over, for the phone to report."""
        ...


async def send_files(
    link: FileLink,
    files: Sequence[SendItem],
    *,
    to: str | None = None,
    timeout: float | None = 30.0,
    resume: bool = True,
    on_chunk: Callable[[SendItem, int], Any] | None = None,
    on_start: Callable[[SendItem, int, str], Any] | None = None,
) -> dict[str, Any]:
    """Send ``files`` through ``link`` to ``to`` (or every peer connected now), one after the other, each
    receiver's verdict on a file awaited (at most ``timeout`` s from its last byte) before the next goes.

    A receiver that kept part of a file gets only the rest (``resume`` False: all of it again), and one that has
    the file already gets none of it. Returns ``{"ok": bool, "files": [verdict, ...], "error": str, "code":
    str}``, one verdict per file and receiver (each with its ``peer``, ``code``, ``offset`` where its bytes
    started and ``note``, why it started where it did); the first refusal stops the sending, and gives ``error``
    and ``code``. ``on_start(item, offset, note)`` tells where a file starts, ``on_chunk(item, done)`` follows it.
    """
    targets = link.file_targets(to)
    if not targets:
        raise ConnectionError(f"no open data channel to {to or 'any peer'}")
    verdicts: list[dict[str, Any]] = []
    for item in files:
        sending = _Sending(link, item, targets, timeout, resume)
        verdicts += await sending.run(on_chunk, on_start)
        failed = next((v for v in verdicts if v["code"] not in SUCCESS), None)
        if failed is not None:
            return {
                "ok": False,
                "files": verdicts,
                "error": str(failed.get("error") or "refused"),
                "code": failed["code"],
            }
    return {"ok": True, "files": verdicts, "error": "", "code": "ok"}


def _deliver(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict[str, Any]]
) -> Callable[[dict[str, Any]], None]:
    """Put replies into ``queue`` on ``loop``, from whatever thread the receiver takes them on."""

    def put(reply: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, reply)

    return put


_NO_VERDICT = {"ok": False, "error": "the receiver sent no verdict", "code": "no-verdict"}


class _Sending:
    """One file on its way to its targets: the handshake with each, the bytes, the verdicts."""

    def __init__(
        self, link: FileLink, item: SendItem, targets: list[str], timeout: float | None, resume: bool
    ) -> None:
        self.link, self.item, self.targets, self.timeout, self.resume = link, item, targets, timeout, resume
        self.ident = uuid.uuid4().hex[:12]
        self.replies: dict[str, asyncio.Queue[dict[str, Any]]] = {t: asyncio.Queue() for t in targets}
        #: Each target's verdict, once it came (or the sender decided one).
        self.verdicts: dict[str, dict[str, Any]] = {}
        #: Where the bytes each target gets start, and why there (when not at 0 as usual).
        self.starts: dict[str, int] = {}
        self.notes: dict[str, str] = {}
        #: The sha256 state after the first N bytes of the file, by N.
        self.hashes: dict[int, asyncio.Future[Any]] = {}
        self.sha256 = ""

    async def run(
        self,
        on_chunk: Callable[[SendItem, int], Any] | None,
        on_start: Callable[[SendItem, int, str], Any] | None,
    ) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        receiver = self.link.file_receiver
        for target, queue in self.replies.items():
            receiver.expect_replies(self.ident, _deliver(loop, queue), target)
        try:
            answering = [t for t in self.targets if receiver.resumes(t)]
            older = [t for t in self.targets if t not in answering]
            item = self.item
            if older:
                await self.link.send_file_part(start_message(item.name, item.size, self.ident), older, None)
                self.starts.update(dict.fromkeys(older, 0))
            if answering:
                start = start_message(item.name, item.size, self.ident, resume=self.resume)
                await self.link.send_file_part(start, answering, None)
                await asyncio.gather(*(self._handshake(t) for t in answering))
            if on_start is not None and self.starts:
                on_start(item, min(self.starts.values()), "; ".join(self.notes.values()))
            going = {t: s for t, s in self.starts.items() if t not in self.verdicts}
            if going:
                await self._stream(going, on_chunk)
                await self.link.send_file_part(end_message(self.ident, self.sha256), list(going), None)
                waits = [asyncio.ensure_future(self._verdict(t)) for t in going]
                _, late = await asyncio.wait(waits, timeout=self.timeout)
                for wait in late:
                    wait.cancel()
        finally:
            receiver.forget_replies(self.ident)
        return [self._entry(t) for t in self.targets]

    async def _handshake(self, target: str) -> None:
        """Take ``target``'s answer to the start (an offer, or a refusal) and say where its bytes start."""
        item = self.item
        wait = None if self.timeout is None else self.timeout + item.size / HASH_RATE
        reply = await self._next(target, wait)
        if reply is None:
            self.verdicts[target] = {
                **_NO_VERDICT,
                "error": f"the receiver did not answer the start of {item.name}",
            }
            await self._cancel(target, "no answer to the start in time")
            return
        if reply.get(KEY) == "verdict":
            self.verdicts[target] = reply
            return
        offset, sha256, whole = reply.get("offset"), reply.get("sha256"), reply.get("whole") is True
        # A whole file there may be longer than this one; a partial file never is.
        largest = offset if whole and isinstance(offset, int) else item.size
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= largest:
            problem = (
                f"the receiver offered to resume {item.name} at {repr(offset)[:40]}, which is no offset in its "
                f"{item.size} bytes: nothing of it was sent"
            )
            return await self._lied(target, problem)
        if not isinstance(sha256, str):
            problem = (
                f"the receiver offered {item.name} with sha256 {repr(sha256)[:40]}: nothing of it was sent"
            )
            return await self._lied(target, problem)
        same = offset == 0 or (offset <= item.size and (await self._hash(offset)).hexdigest() == sha256)
        start = offset if same else 0
        if whole:
            if not (same and offset == item.size):  # another file of that name: the receiver refuses it
                await self._say_from(target, 0)
                refusal = await self._next(target, self.timeout)
                self.verdicts[target] = refusal if refusal is not None else _NO_VERDICT
                return
        elif not same:
            self.notes[target] = (
                f"started over: the receiver's partial copy of {item.name} differs from this file "
                "(the file changed since, or the copy was damaged)"
            )
            logger.info("%s: %s", target, self.notes[target])
        elif offset:
            self.notes[target] = f"resumed at {size_text(offset, 1)} of {size_text(item.size, 1)}"
        self.starts[target] = start
        await self._say_from(target, start)

    async def _lied(self, target: str, problem: str) -> None:
        logger.warning("%s: %s", target, problem)
        self.verdicts[target] = {"ok": False, "error": problem, "code": "malformed"}
        await self._cancel(target, problem)

    async def _say_from(self, target: str, offset: int) -> None:
        await self.link.send_file_part({KEY: "from", "id": self.ident, "offset": offset}, [target], None)

    async def _cancel(self, target: str, error: str) -> None:
        await self.link.send_file_part({KEY: "cancel", "id": self.ident, "error": error}, [target], None)

    async def _next(self, target: str, timeout: float | None) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.replies[target].get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _verdict(self, target: str) -> None:
        while (reply := await self.replies[target].get()).get(KEY) != "verdict":
            pass
        self.verdicts[target] = reply

    def _hash(self, size: int) -> asyncio.Future[Any]:
        """The sha256 state after the file's first ``size`` bytes (read on a thread, once per size)."""
        if size not in self.hashes:
            if size == 0:
                self.hashes[0] = asyncio.get_running_loop().create_future()
                self.hashes[0].set_result(hashlib.sha256())
            else:
                loop = asyncio.get_running_loop()
                self.hashes[size] = loop.run_in_executor(None, hash_prefix, self.item.path, size)
        return self.hashes[size]

    async def _stream(self, going: dict[str, int], on_chunk: Callable[[SendItem, int], Any] | None) -> None:
        """Send each target the file's bytes from where its start is, hashing the whole file on the way."""
        loop = asyncio.get_running_loop()
        item, shown = self.item, self.targets[0] if len(self.targets) == 1 else ""
        position = min(going.values())
        digest = (await self._hash(position)).copy()
        with open(item.path, "rb") as file:  # noqa: ASYNC230 (reads go to a thread, below)
            file.seek(position)
            while chunk := await loop.run_in_executor(None, file.read, CHUNK):
                digest.update(chunk)
                end = position + len(chunk)
                report = {
                    "direction": "out",
                    "peer": shown,
                    "name": item.name,
                    "done": end,
                    "total": item.size,
                }
                whole = [t for t, start in going.items() if start <= position]
                if whole:
                    await self.link.send_file_part(chunk, whole, report)
                for target, start in going.items():  # those that start within this chunk get its tail
                    if position < start < end:
                        await self.link.send_file_part(chunk[start - position :], [target], report)
                position = end
                if on_chunk is not None:
                    on_chunk(item, position)
        self.sha256 = digest.hexdigest()

    def _entry(self, target: str) -> dict[str, Any]:
        verdict = self.verdicts.get(target, _NO_VERDICT)
        entry = {**verdict, "code": verdict_code(verdict), "id": self.ident, "name": self.item.name,
                 "sent_sha256": self.sha256, "peer": target, "offset": self.starts.get(target, 0)}  # fmt: skip
        if target in self.notes:
            entry["note"] = self.notes[target]
        return entry
