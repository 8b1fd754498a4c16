"""The receiving end of nbcall's file protocol (:mod:`nbcall.call.transfer`): :class:`FileReceiver` checks each
file and writes it, keeps what a cut transfer wrote for the next one to resume, and never raises on what a peer
sends (a bad message gets a verdict and one log line).

A receiver is used from one thread, its owner: the one that hands it the peer's messages (a Peer's background
loop, a Phone's kernel main thread), which also aborts its files when a call ends; only the sender's registry of
replies (:meth:`FileReceiver.expect_replies`, used by :func:`~nbcall.call.transfer.send_files` on the background
loop) takes a lock of its own. Hashing a partial file to offer it runs on a thread of its own, which touches only
that file and ``reply_later``; the receiver picks its result up when the sender's ``from`` comes, which the sender
sends only after the offer arrived.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import (
    KEY,
    MAX_IN_MEMORY,
    PARTIAL,
    RESUME,
    FileMessage,
    Received,
    clean_name,
    hash_prefix,
    partial_path,
)

try:
    import fcntl
except ImportError:  # Windows: a partial file is locked within this process only
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileReceiver"]

logger = logging.getLogger("nbcall.call.transfer")

Reply = dict[str, Any]
Handled = tuple[Reply | None, FileMessage | None, dict[str, Any] | None]
#: Partial files this process writes now (where ``fcntl`` locks them, they are also locked).
_writing: set[Path] = set()
_writing_lock = threading.Lock()


@dataclass
class _Incoming:
    ident: str
    name: str
    size: int
    sender: str
    file: Any  # where the bytes go; None once nothing more is written (refused, or too many bytes)
    path: Path | None  # where the file is kept (None: in memory)
    temp: Path | None  # where it is written until then
    digest: Any = field(default_factory=hashlib.sha256)
    done: int = 0
    error: str = ""
    code: str = "ok"
    #: "bytes" (its bytes come), "offered" (an offset was offered: waiting for ``from``), "whole" (the file
    #: is there already and was offered), "same" (the sender has the same file: only ``end`` comes).
    mode: str = "bytes"
    #: Whether a cut transfer leaves its partial file for the next one (negotiated, into a directory).
    keep: bool = False
    #: The offer being hashed: ``(offset, sha256 state)`` once done.
    offer: concurrent.futures.Future[tuple[int, Any]] | None = None
    #: Whether its verdict was sent already (an early refusal): ``end`` then gets no second one.
    answered: bool = False


class FileReceiver:
    """Recognizes file messages among a peer's received messages and writes the files.

    ``directory`` None keeps received files in memory (``FileMessage.data``), at most ``max_receive_size``
    bytes each. ``resume`` False forgets partial files (a cut transfer starts over). ``reply_later(sender,
    message)`` sends a reply that is ready only after :meth:`receive` returned (an offer of a partial file,
    hashed on a thread); without it that hashing is done at once.
    """

    def __init__(
        self,
        directory: str | Path | None,
        *,
        overwrite: bool = False,
        resume: bool = True,
        max_receive_size: int = MAX_IN_MEMORY,
        reply_later: Callable[[str, Reply], Any] | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.overwrite = overwrite
        self.resume = resume
        self.max_receive_size = max_receive_size
        self.reply_later = reply_later
        self._incoming: dict[str, _Incoming] = {}
        self._replies: dict[tuple[str, str | None], Callable[[Reply], Any]] = {}
        self._replies_lock = threading.Lock()
        #: Senders whose file a call's end cut: the rest of its bytes, still on their way, are dropped (they are
        #: no messages of their own) until the sender starts a file or a call again.
        self._cut: set[str] = set()
        #: How many bytes of cut files were dropped so.
        self.dropped_bytes = 0
        self._extensions: dict[str, frozenset[str]] = {}
        #: Files received so far, with their verdicts' codes.
        self.received: list[Received] = []

    # ------------------------------------------------------------------------------------ as a sender

    def busy(self, sender: str) -> bool:
        """Whether a file from ``sender`` is under way."""
        return sender in self._incoming

    def learn(self, signal: dict[str, Any]) -> None:
        """Note what the peer of a ``call`` or ``answer`` signal understands (its ``framing_ext``)."""
        sender, extensions = signal.get("from"), signal.get("framing_ext")
        if signal.get("type") in ("call", "answer") and isinstance(sender, str):
            self._cut.discard(sender)  # a new call: what comes is new
            listed = extensions if isinstance(extensions, list) and signal.get("framing") else []
            self._extensions[sender] = frozenset(str(e) for e in listed)

    def new_call(self) -> None:
        """A call or room begins: what any peer sends is new, none of it the rest of a cut file."""
        self._cut.clear()

    def resumes(self, peer: str) -> bool:
        """Whether ``peer`` answers a file's ``start`` with an offset (it said so in its call or answer)."""
        return RESUME in self._extensions.get(peer, ())

    def expect_replies(self, ident: str, callback: Callable[[Reply], Any], sender: str | None = None) -> None:
        """Call ``callback(reply)`` with each reply (offer, verdict) on file ``ident`` from ``sender`` (or
        anyone) until :meth:`forget_replies`."""
        with self._replies_lock:
            self._replies[(ident, sender)] = callback

    def forget_replies(self, ident: str) -> None:
        """Stop taking replies on file ``ident``."""
        with self._replies_lock:
            for key in [key for key in self._replies if key[0] == ident]:
                del self._replies[key]

    # ---------------------------------------------------------------------------------- as a receiver

    def receive(self, sender: str, kind: str, data: Any) -> Handled | None:
        """Take one message; None if it is no file message, else ``(reply, finished, progress)``."""
        try:
            if kind == "json" and isinstance(data, dict) and KEY in data:
                return self._control(sender, data)
            return self._bytes(sender, kind, data)
        except OSError as exc:  # the disk is full, a folder went away: that file fails, the call goes on
            incoming = self._incoming.pop(sender, None)
            if incoming is None:
                logger.warning("a file message from %s failed: %s", sender, exc)
                return None, None, None
            problem = f"cannot write {incoming.name} in {self.directory}: {exc.strerror or exc}"
            reply, _, _ = self._answer_now(incoming, problem, "unwritable")
            return reply, None, self._progress(incoming)

    def _bytes(self, sender: str, kind: str, data: Any) -> Handled | None:
        incoming = self._incoming.get(sender)
        if incoming is None and kind == "bytes" and sender in self._cut:
            self.dropped_bytes += len(data)  # the tail of a file the call's end cut
            return None, None, None
        if incoming is None or kind != "bytes":
            return None
        if incoming.mode != "bytes" and not incoming.error:
            # Bytes before the sender said where they start: they cannot be put anywhere.
            self._refuse(incoming, f"{incoming.name}: bytes came before the sender said where they start")
        if incoming.file is not None:
            if incoming.done + len(data) > incoming.size:
                problem = f"{incoming.name}: the sender sent more than the {incoming.size} bytes it announced"
                self._refuse(incoming, problem, "incomplete")
            else:
                incoming.file.write(data)
                incoming.digest.update(data)
        incoming.done += len(data)
        return None, None, self._progress(incoming)

    def abort(self, sender: str | None = None) -> list[str]:
        """Drop unfinished files (the call ended), keeping what can be resumed; returns their names. The rest of
        their bytes, still on the way, is dropped too (counted in :attr:`dropped_bytes`)."""
        names = []
        for key in [sender] if sender else list(self._incoming):
            incoming = self._incoming.pop(key, None) if key else None
            if incoming is not None:
                self._close(incoming, keep=True)
                names.append(incoming.name)
                self._cut.add(incoming.sender)
        return names

    # ------------------------------------------------------------------------------------- internals

    def _control(self, sender: str, data: dict[str, Any]) -> Handled:
        what, ident = data.get(KEY), str(data.get("id"))
        if what in ("verdict", "offset"):
            with self._replies_lock:
                callback = self._replies.get((ident, sender)) or self._replies.get((ident, None))
            if callback is not None:
                callback(data)
            return None, None, None
        if what == "start":
            return self._start(sender, ident, data)
        incoming = self._incoming.get(sender)
        if incoming is None or incoming.ident != ident:
            if what in ("from", "end", "cancel"):
                logger.info("ignored a file's %s from %s: no file %s is under way", what, sender, ident[:40])
            return None, None, None
        if what == "from":
            return self._from(incoming, data.get("offset"))
        if what == "cancel":
            del self._incoming[sender]
            logger.warning("%s cancelled %s: %s", sender, incoming.name, str(data.get("error"))[:200])
            self._close(incoming, keep=True)
            return None, None, None
        if what == "end":
            del self._incoming[sender]
            return self._finish(incoming, str(data.get("sha256")))
        return None, None, None  # a step of a newer version: ignored

    def _start(self, sender: str, ident: str, data: dict[str, Any]) -> Handled:
        self._cut.discard(sender)
        old = self._incoming.pop(sender, None)
        if old is not None:  # the sender gave that one up
            self._close(old, keep=True)
        name, size = clean_name(data.get("name")), data.get("size") or 0
        negotiated = "resume" in data
        if isinstance(size, float) and size.is_integer():
            size = int(size)
        incoming = _Incoming(ident, name, 0, sender, None, None, None)
        self._incoming[sender] = incoming
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            # The peer's bug, or malice: refuse this file (its verdict says why), keep the call.
            return self._refused(
                incoming, negotiated, f"{name}: its size {str(size)[:40]!r} is not a count of bytes"
            )
        incoming.size = size
        if self.directory is None:
            if size > self.max_receive_size:
                problem = (
                    f"{name} has {size} bytes, more than max_receive_size ({self.max_receive_size}) kept in "
                    "memory; raise max_receive_size on the receiver, or give it a receive_dir"
                )
                return self._refused(incoming, negotiated, problem, "too-large")
            incoming.file = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)  # noqa: SIM115
            return self._offer_now(incoming, negotiated, 0, hashlib.sha256())
        path = self.directory / name
        if name.endswith(PARTIAL):
            return self._refused(
                incoming,
                negotiated,
                f"cannot write {name}: nbcall keeps partial files under such names",
                "unwritable",
            )
        if self._through_symlink(name):
            # A symlink in the receive directory may point anywhere: never write through one.
            problem = f"cannot write {name} in {self.directory}: it goes through a symbolic link"
            return self._refused(incoming, negotiated, problem, "unwritable")
        incoming.path = path
        if os.path.lexists(path) and not self.overwrite:  # checked again, atomically, when the file is kept
            if negotiated and path.is_file() and not path.is_symlink():
                incoming.mode = "whole"  # offered: the sender may have this very file
                return self._offer(incoming, path, path.stat().st_size, whole=True)
            return self._refused(incoming, negotiated, self._exists(name), "exists")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if negotiated:
                return self._open_partial(incoming, bool(data.get("resume")) and self.resume)
            handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".nbcall-", suffix=".part")
        except OSError as exc:  # a name the sender chose: refuse it, never raise in a message handler
            problem = f"cannot write {name} in {self.directory}: {exc.strerror or exc}"
            return self._refused(incoming, negotiated, problem, "unwritable")
        incoming.temp = Path(temp_name)
        incoming.file = os.fdopen(handle, "wb")
        return None, None, None

    def _open_partial(self, incoming: _Incoming, resume: bool) -> Handled:
        """Open and lock the partial file of a negotiated transfer, and offer what it holds."""
        assert incoming.path is not None
        temp = partial_path(incoming.path)
        handle = os.open(temp, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        if not _lock(temp, handle):
            os.close(handle)
            problem = f"{incoming.name} is being received from another sender now: send it again later"
            return self._refused(incoming, True, problem, "busy")
        incoming.temp, incoming.keep = temp, self.resume
        incoming.file = os.fdopen(handle, "r+b")
        held = os.fstat(handle).st_size
        if not resume or held > incoming.size:  # a longer partial file is of another file
            held = 0
        if held == 0:
            incoming.file.truncate(0)
            return self._offer_now(incoming, True, 0, hashlib.sha256())
        incoming.mode = "offered"
        return self._offer(incoming, temp, held, whole=False)

    def _offer(self, incoming: _Incoming, path: Path, size: int, *, whole: bool) -> Handled:
        """Offer the first ``size`` bytes of ``path`` (a partial file, or the whole file there): hashed on a
        thread when there is a ``reply_later``, else now."""
        future: concurrent.futures.Future[tuple[int, Any]] = concurrent.futures.Future()
        incoming.offer = future
        message = {KEY: "offset", "id": incoming.ident, "offset": size, "sha256": "", "whole": whole}

        def work() -> Reply:
            held = size
            try:
                digest = hash_prefix(path, held)
            except OSError as exc:  # gone or unreadable meanwhile: offer nothing
                logger.info("offering none of %s: %s", path, exc)
                held, digest = 0, hashlib.sha256()
            future.set_result((held, digest))
            return {**message, "offset": held, "sha256": digest.hexdigest()}

        if incoming.mode == "bytes":
            incoming.mode = "offered"
        later = self.reply_later
        if later is None:
            return work(), None, None
        sender = incoming.sender

        def offer_later() -> None:
            try:
                later(sender, work())
            except Exception:  # the call ended meanwhile, say: the sender's wait for the offer ends it
                logger.exception("could not offer %s to %s", incoming.name, sender)

        threading.Thread(target=offer_later, name="nbcall-offer", daemon=True).start()
        return None, None, None

    def _offer_now(self, incoming: _Incoming, negotiated: bool, offset: int, digest: Any) -> Handled:
        if not negotiated:
            return None, None, None
        incoming.mode = "offered"
        future: concurrent.futures.Future[tuple[int, Any]] = concurrent.futures.Future()
        future.set_result((offset, digest))
        incoming.offer = future
        reply = {
            KEY: "offset",
            "id": incoming.ident,
            "offset": offset,
            "sha256": digest.hexdigest(),
            "whole": False,
        }
        return reply, None, None

    def _from(self, incoming: _Incoming, offset: Any) -> Handled:
        """The sender says where its bytes start: the offset offered (it has the same first bytes), or 0."""
        offer = incoming.offer
        if incoming.error or incoming.mode not in ("offered", "whole") or offer is None:
            if not incoming.error:
                self._refuse(
                    incoming, f"{incoming.name}: the sender said where its bytes start twice, or unasked"
                )
            return None, None, None
        if not offer.done():
            return self._answer_now(
                incoming, f"{incoming.name}: the sender went on before the offer was sent"
            )
        held, digest = offer.result()
        if isinstance(offset, bool) or offset not in (0, held):
            return self._answer_now(
                incoming,
                f"{incoming.name}: the sender's bytes start at {str(offset)[:40]!r}, neither 0 nor the {held} offered",
            )
        if incoming.mode == "whole":
            if offset != held or held != incoming.size:
                return self._answer_now(incoming, self._exists(incoming.name), "exists")
            incoming.mode, incoming.digest, incoming.done = "same", digest, held
            return None, None, None
        incoming.mode = "bytes"
        if offset == 0:
            incoming.file.seek(0)
            incoming.file.truncate(0)
            digest = hashlib.sha256()
        else:
            incoming.file.seek(offset)
            incoming.file.truncate(offset)
        incoming.digest, incoming.done = digest, offset
        return None, None, self._progress(incoming)

    def _finish(self, incoming: _Incoming, sha256: str) -> Handled:
        got = incoming.digest.hexdigest()
        error, code = incoming.error, incoming.code
        progress = self._progress(incoming)
        if not error and incoming.mode == "whole":
            error, code = self._exists(incoming.name), "exists"
        elif not error and incoming.mode == "offered":
            error, code = (
                f"{incoming.name}: the sender ended it before saying where its bytes start",
                "malformed",
            )
        if not error and got != sha256:
            if incoming.mode == "same":  # the sender's file is not the one here after all
                error, code = self._exists(incoming.name), "exists"
            else:
                error = (
                    f"checksum mismatch for {incoming.name}: sent {sha256[:16]}..., received {got[:16]}..."
                )
                code = "checksum"
        if not error and incoming.done != incoming.size:
            error, code = f"{incoming.name}: {incoming.done} bytes received of {incoming.size}", "incomplete"
        reply = {
            KEY: "verdict",
            "id": incoming.ident,
            "ok": not error,
            "sha256": got,
            "error": error,
            "code": code,
        }
        if error:
            self._close(incoming, keep=False)
            if not incoming.answered:
                self.received.append(Received(incoming.name, None, False, code))
            return (None if incoming.answered else reply), None, progress
        if incoming.mode == "same":
            reply["code"] = "same"
            self.received.append(Received(incoming.name, incoming.path, True, "same"))
            return reply, None, progress
        data: Any = None
        if incoming.path is None:
            incoming.file.seek(0)
            data = incoming.file.read()
            incoming.file.close()
        else:
            incoming.file.flush()
            assert incoming.temp is not None
            try:
                if self.overwrite:
                    os.replace(incoming.temp, incoming.path)
                else:
                    # Check and rename as one step: a file made meanwhile (another sender's, say) is kept.
                    _link_no_clobber(incoming.temp, incoming.path)
            except FileExistsError:
                self._close(incoming, keep=False)
                reply.update(ok=False, error=self._exists(incoming.name), code="exists")
                self.received.append(Received(incoming.name, None, False, "exists"))
                return reply, None, progress
            except OSError as exc:
                self._close(incoming, keep=False)
                reply.update(
                    ok=False, error=f"cannot write {incoming.name}: {exc.strerror or exc}", code="unwritable"
                )
                self.received.append(Received(incoming.name, None, False, "unwritable"))
                return reply, None, progress
            self._close(incoming, keep=False)
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

    def _exists(self, name: str) -> str:
        return f"{name} exists in {self.directory} (receive with --force to overwrite)"

    def _refuse(self, incoming: _Incoming, problem: str, code: str = "malformed") -> None:
        """Take no more of this file: what it wrote goes, its verdict says why (a peer's doing: one log line)."""
        if incoming.error:
            return
        logger.warning("refused a file from %s: %s", incoming.sender, problem)
        incoming.error, incoming.code = problem, code
        self._close(incoming, keep=False)

    def _refused(
        self, incoming: _Incoming, negotiated: bool, problem: str, code: str = "malformed"
    ) -> Handled:
        """Refuse a file at its start: a negotiated sender is told now, an older one at the file's end."""
        self._refuse(incoming, problem, code)
        return self._answer_now(incoming, problem, code) if negotiated else (None, None, None)

    def _answer_now(self, incoming: _Incoming, problem: str, code: str = "malformed") -> Handled:
        """Refuse the file now and say so at once; later bytes of it are dropped, its ``end`` gets no answer."""
        self._refuse(incoming, problem, code)
        incoming.answered = True
        self.received.append(Received(incoming.name, None, False, incoming.code))
        reply = {KEY: "verdict", "id": incoming.ident, "ok": False, "sha256": "", "error": incoming.error,
                 "code": incoming.code}  # fmt: skip
        return reply, None, None

    def _close(self, incoming: _Incoming, *, keep: bool) -> None:
        """Close the file's handle (unlocking it); remove what it wrote unless it is ``keep``-able."""
        file, incoming.file = incoming.file, None
        if file is not None:
            file.close()
        temp = incoming.temp
        if temp is not None:
            if not (keep and incoming.keep and not incoming.error):
                temp.unlink(missing_ok=True)
            with _writing_lock:
                _writing.discard(temp)

    def _progress(self, incoming: _Incoming) -> dict[str, Any]:
        return {"direction": "in", "peer": incoming.sender, "name": incoming.name, "done": incoming.done,
                "total": incoming.size}  # fmt: skip

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


def _lock(path: Path, handle: int) -> bool:
    """Lock the partial file open at ``handle`` for this receiver; False when another one writes it. The
    system drops the lock of a process that dies, so a killed receiver's partial file is taken again."""
    with _writing_lock:
        if path in _writing:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
        _writing.add(path)
        return True


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
        return
    source.unlink(missing_ok=True)
