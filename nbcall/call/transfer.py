"""Files over a call's data channel: what is sent, how a receiver checks it, where it is written.

A file travels as ordinary nbcall messages, so any phone can carry it:

1. ``{"nbcall_file": "start", "id": ID, "name": "dir/a.txt", "size": N}`` (JSON)
2. the content as bytes messages of :data:`CHUNK` bytes (the framing cuts them further)
3. ``{"nbcall_file": "end", "id": ID, "sha256": HEX}`` (JSON)

and the receiver answers ``{"nbcall_file": "verdict", "id": ID, "ok": bool, "sha256": HEX, "error": ...}``.
Received names are cleaned (:func:`clean_name`): no absolute paths, no ``..``; a file that exists is not
overwritten unless the receiver allows it. :class:`FileReceiver` is sans-I/O apart from writing the files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..wire.payload import Kind, Message, encode

if TYPE_CHECKING:
    from ..peer.peer import Peer

__all__ = [
    "CHUNK",
    "FileMessage",
    "FileReceiver",
    "SendItem",
    "clean_name",
    "end_message",
    "list_files",
    "send_files",
    "send_files_through",
    "start_message",
]

#: Bytes per data message of a file: large enough to keep aiortc's SCTP busy, small enough to bound memory.
CHUNK = 1024 * 1024
KEY = "nbcall_file"


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


async def send_files(
    peer: Peer, files: Sequence[SendItem], on_chunk: Any = None, to: str | None = None
) -> dict[str, Any]:
    """Send ``files`` to the peer's current call (in a room: to ``to``, or every member connected now) and wait
    for each receiver's verdict (runs on the peer's loop).

    Returns ``{"ok": bool, "files": [verdict, ...], "error": str}``, one verdict per file and receiver (each
    with its ``peer``); ``on_chunk(item, done)`` follows each file.
    """
    engine = peer._engine
    loop = asyncio.get_running_loop()
    targets = [to] if to is not None else engine.open_peers()
    if not targets:
        raise ConnectionError(f"no open data channel to {to or 'any peer'}")
    shown = targets[0] if len(targets) == 1 else ""

    async def out(kind: Kind, data: Any) -> None:
        payload = encode(data)[1]
        await asyncio.gather(*(engine.send(kind, payload, target) for target in targets))

    verdicts: list[dict[str, Any]] = []
    for item in files:
        ident = uuid.uuid4().hex[:12]
        waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        for target in targets:
            waiter = waiters[target] = loop.create_future()
            peer._files.expect_verdict(
                ident, lambda v, w=waiter: loop.call_soon_threadsafe(_settle, w, v), sender=target
            )
        await out("json", start_message(item, ident))
        digest = hashlib.sha256()
        done = 0
        with open(item.path, "rb") as file:  # noqa: ASYNC230 (reads go to a thread, below)
            while True:
                chunk = await loop.run_in_executor(None, file.read, CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                await out("bytes", chunk)
                done += len(chunk)
                peer._report_progress(
                    {"direction": "out", "peer": shown, "name": item.name, "done": done, "total": item.size}
                )
                if on_chunk is not None:
                    on_chunk(item, done)
        await out("json", end_message(ident, digest.hexdigest()))
        await asyncio.wait(waiters.values(), timeout=max(30.0, peer.timeout))
        peer._files.forget_verdicts(ident)
        for target, waiter in waiters.items():
            verdict = waiter.result() if waiter.done() else _NO_VERDICT
            verdicts.append(
                {**verdict, "id": ident, "name": item.name, "sent_sha256": digest.hexdigest(), "peer": target}
            )
        failed = [v for v in verdicts if not v.get("ok")]
        if failed:
            return {"ok": False, "files": verdicts, "error": str(failed[0].get("error") or "refused")}
    return {"ok": True, "files": verdicts, "error": ""}


_NO_VERDICT = {"ok": False, "error": "the receiver sent no verdict"}


def send_files_through(
    send: Callable[[Any], object], receiver: FileReceiver, files: Sequence[SendItem], targets: Sequence[str]
) -> tuple[concurrent.futures.Future[dict[str, Any]], Callable[[], None]]:
    """Send ``files`` through a synchronous ``send(data)`` that queues each message (a Phone's ``send``).

    Returns a future of the result :func:`send_files` gives, settled once every receiver in ``targets`` gave
    its verdict on every file, and ``expire()``, which settles it with the verdicts still missing as failures.
    """
    result: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
    lock = threading.Lock()
    got: dict[tuple[str, str], dict[str, Any]] = {}
    sent: list[tuple[str, SendItem, str]] = []

    def finish() -> None:
        verdicts = [
            {**got.get((ident, target), _NO_VERDICT), "id": ident, "name": item.name, "sent_sha256": digest,
             "peer": target}
            for ident, item, digest in sent
            for target in targets
        ]  # fmt: skip
        failed = [v for v in verdicts if not v.get("ok")]
        error = str(failed[0].get("error") or "refused") if failed else ""
        if not result.done():
            result.set_result({"ok": not failed, "files": verdicts, "error": error})

    def take(ident: str, target: str, verdict: dict[str, Any]) -> None:
        with lock:
            got[(ident, target)] = verdict
            if len(got) == len(files) * len(targets):
                finish()

    def expire() -> None:
        with lock:
            for ident, _, _ in sent:
                receiver.forget_verdicts(ident)
            finish()

    for item in files:
        ident = uuid.uuid4().hex[:12]
        for target in targets:
            receiver.expect_verdict(ident, lambda v, i=ident, t=target: take(i, t, v), sender=target)
        send(start_message(item, ident))
        digest = hashlib.sha256()
        with open(item.path, "rb") as file:
            while chunk := file.read(CHUNK):
                digest.update(chunk)
                send(chunk)
        with lock:
            sent.append((ident, item, digest.hexdigest()))
        send(end_message(ident, digest.hexdigest()))
    return result, expire


def _settle(future: asyncio.Future[dict[str, Any]], verdict: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(verdict)


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


class FileReceiver:
    """Recognizes file messages among a peer's received messages and writes the files.

    ``directory`` None keeps received files in memory (``FileMessage.data``).
    """

    def __init__(self, directory: str | Path | None, *, overwrite: bool = False) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.overwrite = overwrite
        self._incoming: dict[str, _Incoming] = {}
        self._verdicts: dict[tuple[str, str | None], Any] = {}
        #: Files received so far, as ``(name, path, ok)``.
        self.received: list[tuple[str, Path | None, bool]] = []

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
            self._start(sender, ident, clean_name(data.get("name")), int(data.get("size") or 0))
            return None, None, None
        incoming = self._incoming.pop(sender, None)
        if what != "end" or incoming is None or incoming.ident != ident:
            return None, None, None
        return self._finish(incoming, str(data.get("sha256")))

    def _start(self, sender: str, ident: str, name: str, size: int) -> None:
        old = self._incoming.pop(sender, None)
        if old is not None:
            self._discard(old)
        path = temp = None
        error = ""
        if self.directory is None:
            file: Any = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)  # noqa: SIM115
        else:
            path = self.directory / name
            if path.exists() and not self.overwrite:
                error = f"{name} exists in {self.directory} (receive with --force to overwrite)"
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".nbcall-", suffix=".part")
            temp = Path(temp_name)
            file = os.fdopen(handle, "wb")
        self._incoming[sender] = _Incoming(ident, name, size, sender, file, path, temp, error=error)

    def _finish(
        self, incoming: _Incoming, sha256: str
    ) -> tuple[dict[str, Any], FileMessage | None, dict[str, Any]]:
        got = incoming.digest.hexdigest()
        error = incoming.error
        if not error and got != sha256:
            error = f"checksum mismatch for {incoming.name}: sent {sha256[:16]}..., received {got[:16]}..."
        if not error and incoming.done != incoming.size:
            error = f"{incoming.name}: {incoming.done} bytes received of {incoming.size}"
        progress = {"direction": "in", "peer": incoming.sender, "name": incoming.name, "done": incoming.done,
                    "total": incoming.size}  # fmt: skip
        reply = {KEY: "verdict", "id": incoming.ident, "ok": not error, "sha256": got, "error": error}
        if error:
            self._discard(incoming)
            self.received.append((incoming.name, None, False))
            return reply, None, progress
        data: Any = None
        if incoming.path is None:
            incoming.file.seek(0)
            data = incoming.file.read()
            incoming.file.close()
        else:
            incoming.file.close()
            assert incoming.temp is not None
            os.replace(incoming.temp, incoming.path)
        self.received.append((incoming.name, incoming.path, True))
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
