"""Files over a call's data channel: what is sent, how a receiver checks it, where it is written.

A file travels as ordinary nbcall messages, so any phone can carry it:

1. ``{"nbcall_file": "start", "id": ID, "name": "dir/a.txt", "size": N}`` (JSON)
2. the content as bytes messages of :data:`CHUNK` bytes (the framing cuts them further)
3. ``{"nbcall_file": "end", "id": ID, "sha256": HEX}`` (JSON)

and the receiver answers ``{"nbcall_file": "verdict", "id": ID, "ok": bool, "sha256": HEX, "error": TEXT,
"code": CODE}``: ``error`` says what went wrong in words, ``code`` (one of :data:`CODES`) for programs; a verdict
from a receiver older than ``code`` gets its code from :func:`verdict_code`.
Received names are cleaned (:func:`clean_name`): no absolute paths, no ``..``; a file that exists is not
overwritten unless the receiver allows it. :class:`FileReceiver` is sans-I/O apart from writing the files;
:func:`send_files` sends through any :class:`FileLink` (a Phone, a Peer).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple, Protocol

from ..wire.payload import Message

__all__ = [
    "CHUNK",
    "CODES",
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

#: Bytes per data message of a file: large enough to keep aiortc's SCTP busy, small enough to bound memory.
CHUNK = 1024 * 1024
KEY = "nbcall_file"

#: What a verdict's ``code`` says: the receiver's, and the sender's own when no verdict came.
CODES = {
    "ok": "the file arrived whole and its sha256 matched",
    "exists": "refused: a file of that name exists at the receiver, which may not overwrite it",
    "unwritable": "refused: the receiver cannot write a file of that name where it keeps files",
    "checksum": "the file arrived with another sha256 than was sent (it was not kept)",
    "incomplete": "fewer or more bytes arrived than the file's size (it was not kept)",
    "malformed": "refused: the file's control messages were malformed (a size that is no count of bytes, say)",
    "refused": "the receiver refused the file for a reason this version does not know",
    "no-verdict": "the receiver sent no verdict in time",
}


@dataclass(frozen=True)
class FileMessage(Message):
    """A file received in a call: ``name`` is its cleaned relative name, ``path`` where it was written (None
    when kept in memory, then ``data`` holds its bytes), ``sha256`` its checked digest."""

    name: str = ""
    path: Path | None = None
    sha256: str = ""


@dataclass(frozen=True)
class SendItem:
    """A file to send: where it is, and the name it travels under."""

    path: Path
    name: str
    size: int


def clean_name(name: object) -> str:
    """A received file name made safe: relative, with no ``..``, no empty or hidden-drive parts."""
    text = str(name).replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".", "..", "/") and ":" not in p]
    cleaned = "/".join(p.strip() for p in parts if p.strip())
    return cleaned or "unnamed"


def list_files(paths: Sequence[Path], names: Sequence[str] | None = None) -> list[SendItem]:
    """The files to send for ``paths`` (a directory: its files, named with the directory's relative paths).

    Raises FileNotFoundError or PermissionError with one clear line for a missing or unreadable path.
    """
    items: list[SendItem] = []
    for n, path in enumerate(paths):
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
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


def start_message(item: SendItem, ident: str) -> dict[str, Any]:
    """The message that opens the transfer of ``item``."""
    return {KEY: "start", "id": ident, "name": item.name, "size": item.size}


def end_message(ident: str, sha256: str) -> dict[str, Any]:
    """The message that closes a transfer, with the digest the receiver checks."""
    return {KEY: "end", "id": ident, "sha256": sha256}


class FileLink(Protocol):
    """What :func:`send_files` needs of a phone (``Phone`` and ``Peer`` implement it)."""

    @property
    def file_receiver(self) -> FileReceiver:
        """The phone's receiver, which hands it the verdicts on the files it sends."""
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
    on_chunk: Callable[[SendItem, int], Any] | None = None,
) -> dict[str, Any]:
    """Send ``files`` through ``link`` to ``to`` (or every peer connected now), one after the other, each
    receiver's verdict on a file awaited (at most ``timeout`` s from its last byte) before the next goes.

    Returns ``{"ok": bool, "files": [verdict, ...], "error": str, "code": str}``, one verdict per file and
    receiver (each with its ``peer`` and ``code``); the first refusal stops the sending, and gives ``error`` and
    ``code``. ``on_chunk(item, done)`` follows each file.
    """
    loop = asyncio.get_running_loop()
    targets = link.file_targets(to)
    if not targets:
        raise ConnectionError(f"no open data channel to {to or 'any peer'}")
    shown = targets[0] if len(targets) == 1 else ""
    verdicts: list[dict[str, Any]] = []
    for item in files:
        ident = uuid.uuid4().hex[:12]
        waiters = {target: loop.create_future() for target in targets}
        for target, waiter in waiters.items():
            link.file_receiver.expect_verdict(
                ident, lambda v, w=waiter: loop.call_soon_threadsafe(_settle, w, v), sender=target
            )
        try:
            await link.send_file_part(start_message(item, ident), targets, None)
            digest = hashlib.sha256()
            done = 0
            with open(item.path, "rb") as file:  # noqa: ASYNC230 (reads go to a thread, below)
                while chunk := await loop.run_in_executor(None, file.read, CHUNK):
                    digest.update(chunk)
                    done += len(chunk)
                    report = {
                        "direction": "out",
                        "peer": shown,
                        "name": item.name,
                        "done": done,
                        "total": item.size,
                    }
                    await link.send_file_part(chunk, targets, report)
                    if on_chunk is not None:
                        on_chunk(item, done)
            await link.send_file_part(end_message(ident, digest.hexdigest()), targets, None)
            await asyncio.wait(waiters.values(), timeout=timeout)
        finally:
            link.file_receiver.forget_verdicts(ident)
        for target, waiter in waiters.items():
            verdict = waiter.result() if waiter.done() else _NO_VERDICT
            verdicts.append(
                {**verdict, "code": verdict_code(verdict), "id": ident, "name": item.name,
                 "sent_sha256": digest.hexdigest(), "peer": target}
            )  # fmt: skip
        failed = next((v for v in verdicts if v["code"] != "ok"), None)
        if failed is not None:
            return {
                "ok": False,
                "files": verdicts,
                "error": str(failed.get("error") or "refused"),
                "code": failed["code"],
            }
    return {"ok": True, "files": verdicts, "error": "", "code": "ok"}


_NO_VERDICT = {"ok": False, "error": "the receiver sent no verdict", "code": "no-verdict"}


def verdict_code(verdict: dict[str, Any]) -> str:
    """The ``code`` of a verdict (one of :data:`CODES`); for a receiver older than codes, told from its text."""
    code = verdict.get("code")
    if isinstance(code, str) and code in CODES:
        return code
    if verdict.get("ok") is True:
        return "ok"
    # The only place that reads a verdict's words: older receivers wrote exactly these three.
    error = str(verdict.get("error") or "")
    if error.endswith("(receive with --force to overwrite)"):
        return "exists"
    if error.startswith("checksum mismatch for "):
        return "checksum"
    if re.search(r": \d+ bytes received of \d+$", error):
        return "incomplete"
    return "refused"


def _link_no_clobber(source: Path, target: Path) -> None:
    """Give ``source`` the name ``target`` unless ``target`` exists (FileExistsError), as one step: a hard link
    where the file system has them, else O_EXCL creation of the name, then a rename onto it."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network and FAT file systems)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)))
        os.replace(source, target)


def _settle(future: asyncio.Future[dict[str, Any]], verdict: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(verdict)


class Received(NamedTuple):
    """A file this phone received: its cleaned name, where it was written (None: not kept, or in memory),
    whether it was kept, and its verdict's code."""

    name: str
    path: Path | None
    ok: bool
    code: str


@dataclass
class _Incoming:
    ident: str
    name: str
    size: int
    sender: str
    file: Any
    path: Path | None
    temp: Path | None
    digest: Any = field(default_factory=hashlib.sha256)
    done: int = 0
    error: str = ""
    code: str = "ok"


class FileReceiver:
    """Recognizes file messages among a peer's received messages and writes the files.

    ``directory`` None keeps received files in memory (``FileMessage.data``).
    """

    def __init__(self, directory: str | Path | None, *, overwrite: bool = False) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.overwrite = overwrite
        self._incoming: dict[str, _Incoming] = {}
        self._verdicts: dict[tuple[str, str | None], Any] = {}
        #: Files received so far, with their verdicts' codes.
        self.received: list[Received] = []

    def busy(self, sender: str) -> bool:
        return sender in self._incoming

    def expect_verdict(self, ident: str, callback: Any, sender: str | None = None) -> None:
        """Call ``callback(verdict)`` when the verdict on file ``ident`` comes (from ``sender``, or anyone)."""
        self._verdicts[(ident, sender)] = callback

    def forget_verdicts(self, ident: str) -> None:
        """Stop waiting for verdicts on file ``ident`` (they did not come in time)."""
        for key in [key for key in self._verdicts if key[0] == ident]:
            del self._verdicts[key]

    def receive(
        self, sender: str, kind: str, data: Any
    ) -> tuple[dict[str, Any] | None, FileMessage | None, dict[str, Any] | None] | None:
        """Take one message; None if it is no file message, else ``(reply, finished, progress)``."""
        if kind == "json" and isinstance(data, dict) and KEY in data:
            return self._control(sender, data)
        incoming = self._incoming.get(sender)
        if incoming is None or kind != "bytes":
            return None
        if not incoming.error:
            incoming.file.write(data)
            incoming.digest.update(data)
        incoming.done += len(data)
        progress = {
            "direction": "in",
            "peer": sender,
            "name": incoming.name,
            "done": incoming.done,
            "total": incoming.size,
        }
        return None, None, progress

    def _control(
        self, sender: str, data: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, FileMessage | None, dict[str, Any] | None]:
        what, ident = data.get(KEY), str(data.get("id"))
        if what == "verdict":
            callback = self._verdicts.pop((ident, sender), None) or self._verdicts.pop((ident, None), None)
            if callback is not None:
                callback(data)
            return None, None, None
        if what == "start":
            name, size = clean_name(data.get("name")), data.get("size") or 0
            if isinstance(size, float) and size.is_integer():
                size = int(size)
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                # The peer's bug, or malice: refuse this file (its verdict says why at its end), keep the call.
                problem = f"{name}: its size {str(size)[:40]!r} is not a count of bytes"
                logger.warning("refused a file from %s: %s", sender, problem)
                self._start(sender, ident, name, 0, problem=problem)
            else:
                self._start(sender, ident, name, size)
            return None, None, None
        incoming = self._incoming.pop(sender, None)
        if what != "end" or incoming is None or incoming.ident != ident:
            return None, None, None
        return self._finish(incoming, str(data.get("sha256")))

    def _start(self, sender: str, ident: str, name: str, size: int, problem: str = "") -> None:
        old = self._incoming.pop(sender, None)
        if old is not None:
            self._discard(old)
        path = temp = None
        error, code = "", "ok"
        if problem:
            error, code = problem, "malformed"
            file: Any = io.BytesIO()  # nothing is written after a refusal
        elif self.directory is None:
            file = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)  # noqa: SIM115
        elif self._through_symlink(name):
            # A symlink in the receive directory may point anywhere: never write through one.
            error, code = (
                f"cannot write {name} in {self.directory}: it goes through a symbolic link",
                "unwritable",
            )
            file = io.BytesIO()  # nothing is written after a refusal
        else:
            path = self.directory / name
            if path.exists() and not self.overwrite:  # checked again, atomically, when the file is kept
                error, code = (
                    f"{name} exists in {self.directory} (receive with --force to overwrite)",
                    "exists",
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".nbcall-", suffix=".part")
            except OSError as exc:  # a name the sender chose: refuse it, never raise in a message handler
                reason = exc.strerror or exc
                error, code = f"cannot write {name} in {self.directory}: {reason}", "unwritable"
                file = io.BytesIO()  # nothing is written after a refusal
            else:
                temp = Path(temp_name)
                file = os.fdopen(handle, "wb")
        incoming = _Incoming(ident, name, size, sender, file, path, temp, error=error, code=code)
        self._incoming[sender] = incoming

    def _through_symlink(self, name: str) -> bool:
        """Whether writing ``name`` in the directory would follow a symbolic link (a folder of its path, or the
        directory's own entries: never the directory itself, which the user chose)."""
        assert self.directory is not None
        where = self.directory
        for part in name.split("/")[:-1]:
            where = where / part
            if where.is_symlink():
                return True
            if not where.exists():
                return False
        return False

    def _finish(
        self, incoming: _Incoming, sha256: str
    ) -> tuple[dict[str, Any], FileMessage | None, dict[str, Any]]:
        got = incoming.digest.hexdigest()
        error, code = incoming.error, incoming.code
        if not error and got != sha256:
            error = f"checksum mismatch for {incoming.name}: sent {sha256[:16]}..., received {got[:16]}..."
            code = "checksum"
        if not error and incoming.done != incoming.size:
            error, code = f"{incoming.name}: {incoming.done} bytes received of {incoming.size}", "incomplete"
        progress = {"direction": "in", "peer": incoming.sender, "name": incoming.name, "done": incoming.done,
                    "total": incoming.size}  # fmt: skip
        reply = {
            KEY: "verdict",
            "id": incoming.ident,
            "ok": not error,
            "sha256": got,
            "error": error,
            "code": code,
        }
        if error:
            self._discard(incoming)
            self.received.append(Received(incoming.name, None, False, code))
            return reply, None, progress
        data: Any = None
        if incoming.path is None:
            incoming.file.seek(0)
            data = incoming.file.read()
            incoming.file.close()
        else:
            incoming.file.close()
            assert incoming.temp is not None
            if self.overwrite:
                os.replace(incoming.temp, incoming.path)
            else:
                try:
                    # Check and rename as one step: a file made meanwhile (another sender's, say) is kept.
                    _link_no_clobber(incoming.temp, incoming.path)
                except FileExistsError:
                    self._discard(incoming)
                    error = f"{incoming.name} exists in {self.directory} (receive with --force to overwrite)"
                    reply.update(ok=False, error=error, code="exists")
                    self.received.append(Received(incoming.name, None, False, "exists"))
                    return reply, None, progress
                incoming.temp.unlink(missing_ok=True)
        self.received.append(Received(incoming.name, incoming.path, True, "ok"))
        message = FileMessage(
            data if data is not None else incoming.path,
            incoming.sender,
            "bytes",
            incoming.done,
            time.time(),
            name=incoming.name,
            path=incoming.path,
            sha256=got,
        )
        return reply, message, progress

    def _discard(self, incoming: _Incoming) -> None:
        incoming.file.close()
        if incoming.temp is not None:
            incoming.temp.unlink(missing_ok=True)

    def abort(self, sender: str | None = None) -> list[str]:
        """Drop unfinished files (the call ended); returns their names."""
        names = []
        for key in [sender] if sender else list(self._incoming):
            incoming = self._incoming.pop(key, None) if key else None
            if incoming is not None:
                self._discard(incoming)
                names.append(incoming.name)
        return names
