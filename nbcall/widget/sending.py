"""How a :class:`~nbcall.Phone` sends: messages go to its browser half in parts, no further ahead than the
browser takes them (:mod:`.outgoing`), files as nbcall file messages (:mod:`nbcall.call.transfer`), and the
answers to files it receives."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import pathlib
import time
from collections.abc import Sequence
from typing import Any

from ..exceptions import CallError
from ..wire.payload import Message, encode
from .phone_part import PhonePart, settle

__all__ = ["Sending"]

logger = logging.getLogger("nbcall.widget.phone")

#: The start of a message relayed by the server that its browser half gets, to show it: the chat shows at most
#: 2000 characters, and reads a file's step (a small JSON message) whole.
RELAYED_HEAD = 4096


class Sending(PhonePart):
    """Mixin of :class:`~nbcall.Phone`: ``send``, ``send_file`` and the flow of their parts to the browser."""

    _room_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]]
    _send_ids: itertools.count[int]
    room_mode: str

    def send(self, data: str | bytes | bytearray | memoryview | Any, to: str | None = None) -> None:
        """Send ``data`` on the data channel: str, bytes, or any JSON-serializable value.

        In a call it goes to the peer; in a room to every other member, or to the member ``to`` (in an SFU room
        through the signaling server, up to its ``max_message_size``). The receiver gets the same type. Large
        payloads are split into frames and reassembled.

        It returns at once: the payload goes to the browser in parts as its data channel takes them (the phone
        keeps a reference to ``data`` until then, no copy of bytes). The browser says what it took while the
        kernel is idle or the cell awaits: a cell that blocks (computes, sleeps) pauses the transfer after a few
        MiB until it ends or awaits (see the README, "Sending data").

        Parameters
        ----------
        data
            str, bytes-like, or anything JSON can encode.
        to
            In a room, the one member to send to; None sends to every other member (or to the peer of a call).

        Raises
        ------
        nbcall.CallError
            The phone is not in a connected call, or ``to`` is not a connected member of its room.
        TypeError
            ``data`` is neither str, bytes nor JSON-serializable.
        """
        kind, payload = encode(data)
        if self._sent_through_server(kind, payload, to):
            with self._lock:
                self._show_relayed("out", str(to), kind, payload)
            return
        with self._lock:
            self._machine.check_send(to)
            command = {"type": "send", "id": next(self._send_ids), "kind": kind}
            self._outgoing.add({**command, "to": to} if to is not None else command, payload)
            self._pump()

    def _show_relayed(self, direction: str, peer: str, kind: str, payload: bytes | memoryview) -> None:
        """A message to or from ``peer`` went through the signaling server, not the browser's data channels:
        the browser's chat shows it all the same (a file's verdict as its row), from its start (lock held)."""
        header = {"type": "relayed", "dir": direction, "peer": peer, "kind": kind, "size": len(payload)}
        self._browser(header, [bytes(payload[:RELAYED_HEAD])])

    def _pump(self) -> None:
        """Hand the browser what the send window allows; wake file senders once there is room (lock held)."""
        for header, part in self._outgoing.ready():
            self._browser(header, [part])
        if self._outgoing.has_room and self._room_waiters:
            waiters, self._room_waiters = self._room_waiters, []
            for loop, future in waiters:
                loop.call_soon_threadsafe(settle, future)

    async def _room(self) -> None:
        """Return once the browser took enough of what was sent for more to go (a file's next part)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._outgoing.has_room:
                return
            future: asyncio.Future[Any] = loop.create_future()
            self._room_waiters.append((loop, future))
        await future

    def send_file(
        self,
        path: str | pathlib.Path,
        *,
        name: str | None = None,
        to: str | None = None,
        timeout: float | None = 120,
        resume: bool = True,
    ) -> concurrent.futures.Future[dict[str, Any]]:
        """Send the file at ``path`` under its name (or ``name``); a directory goes file by file.

        It travels as nbcall file messages (``nbcall.call.transfer``) to the peer, or in a room to ``to`` or every
        member connected now, each of which checks its sha256; the files go one after the other, each once the
        last one's verdicts came (or ``timeout`` seconds after its last byte). Returns a future of the verdicts,
        ``{"ok", "files": [{"name", "peer", "sha256", "code", ...}], "error", "code"}`` (the first refusal ends
        the sending): ``await asyncio.wrap_future(phone.send_file(path))`` in a cell. A receiver that kept part
        of the file from a cut transfer gets the rest, one that has it gets nothing (``resume=False``: all again).

        Parameters
        ----------
        path
            A file, or a directory whose files go with their relative paths.
        name
            The name the receiver sees, instead of the file's own.
        to
            In a room, the one member to send to; None sends to every member connected now.
        timeout
            Seconds to wait for the receivers' verdicts after a file's last byte; None waits as long as it
            takes.

        Raises
        ------
        nbcall.CallError
            The phone is not in a connected call (or ``to`` is not a connected member).
        FileNotFoundError, PermissionError
            ``path`` is missing or unreadable.
        """
        return self._send_files(path, name, to, timeout, resume)

    async def send_file_part(
        self, data: Any, targets: Sequence[str], progress: dict[str, Any] | None
    ) -> None:
        """Send one message of a file to ``targets`` (see :class:`~nbcall.call.transfer.FileLink`); the
        browser sends it, measures its progress and reports that, so ``progress`` is not needed here."""
        # Read no further ahead than the browser takes: a file's parts would otherwise pile up in the kernel.
        await self._room()
        if self.room_mode == "sfu":  # the SFU relays one send to every member
            self.send(data)
            return
        # One send to all when the targets are every member connected now; else one to each target, so that a
        # member that refused the file (or joined after it started) gets none of its bytes.
        if len(targets) > 1 and set(targets) >= set(self.file_targets(None)):
            self.send(data)
            return
        for target in targets:
            self.send(data, to=target)

    def _file_part(self, sender: str, kind: Any, data: Any, size: int) -> Message | None:
        """A received message as the user sees it: itself, a whole file, or None (a file's part, a verdict)."""
        handled = self._files.receive(sender, kind, data)
        if handled is None:
            # A received message's bytes may still be the comm's buffer: the user gets bytes of their own.
            return Message(
                bytes(data) if isinstance(data, memoryview) else data, sender, kind, size, time.time()
            )
        reply, finished, _ = handled
        if reply is not None:
            self._send_reply(sender, reply)
        return finished

    def _send_reply(self, sender: str, reply: dict[str, Any]) -> None:
        """Answer ``sender`` on a file it sends (a verdict, an offer); any thread."""
        try:
            self.send(reply, to=sender)
        except CallError as exc:
            logger.warning("%s: could not answer %s on a file: %s", self.user_id, sender, exc)
