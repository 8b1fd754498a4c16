"""What a :class:`~nbcall.Peer` hears from its aiortc engine (:mod:`.rtc`): signals, connection and channel
states, failures, and received messages, which it hands to the call machine, its file receiver, ``messages`` and
the ``on_message`` callbacks (the Peer's counterpart of the phone's :mod:`nbcall.widget.from_browser`)."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..call import kernel
from ..call.adapter import CallAdapter
from ..call.progress import PROGRESS_MIN
from ..exceptions import CallError
from ..wire.payload import Kind, Message, decode, encode

if TYPE_CHECKING:
    from .rtc import Engine

__all__ = ["MAX_PENDING_CALLBACKS", "FromEngine"]

logger = logging.getLogger("nbcall.peer.peer")

#: Received messages waiting for slow ``on_message`` callbacks; more are not handed to them (they stay in
#: ``messages``), and the log counts them.
MAX_PENDING_CALLBACKS = 1000


class FromEngine(CallAdapter):
    """The engine's reports to a Peer (``Peer.__init__`` sets the attributes below)."""

    _engine: Engine
    _callbacks: list[Callable[[Message], Any]]
    _callback_pool: concurrent.futures.ThreadPoolExecutor
    _callback_count_lock: threading.Lock
    _pending_callbacks: int
    _dropped_callbacks: int
    messages: list[Message]
    max_messages: int
    rtc: dict[str, str]

    def _apply(self, fields: dict[str, Any]) -> None:
        raise NotImplementedError

    def engine_signal(self, peer: str, signal: dict[str, Any]) -> None:
        with self._lock:
            self._machine.engine_signal(peer, signal)
            self._carry_out()

    def engine_connection(self, peer: str, state: str) -> None:
        with self._lock:
            self.rtc["connectionState"] = state
            self._log_entry("event", "connectionState", state)
            self._machine.engine_connection(peer, state)
            self._carry_out()

    def engine_channel(self, peer: str, open_: bool, framed: bool) -> None:
        with self._lock:
            detail = {"peer": peer, "state": "open" if open_ else "closed", "framed": framed}
            self._log_entry("event", f"datachannel-{detail['state']}", detail)
            self._machine.engine_channel(peer, open_)
            self._carry_out()

    def engine_sfu_signal(self, role: str, signal: dict[str, Any]) -> None:
        with self._lock:
            self._machine.engine_sfu_signal(role, signal)
            self._carry_out()

    def engine_sfu_connection(self, role: str, state: str) -> None:
        with self._lock:
            self._log_entry("event", "connectionState", {"sfu": role, "state": state})
            self._machine.engine_sfu_connection(role, state)
            self._carry_out()

    def engine_failure(self, peer: str, text: str) -> None:
        with self._lock:
            self._log_entry("event", "failure", text)
            logger.warning("%s: %s", self.user_id, text)
            self._machine.engine_failed(f"aiortc: {text}")
            self._carry_out()

    def engine_dropped(self, peer: str, problem: str) -> None:
        """The link dropped a message from ``peer`` (malformed, or over :attr:`max_receive_size`), and logged
        it: say so in :attr:`error`; the call goes on."""
        self._log_entry("event", "dropped", {"peer": peer, "problem": problem})
        self._apply({"error": f"from {peer}: {problem}"})

    def engine_receiving(self, peer: str, size: int, total: int | None) -> None:
        if (total or size) >= PROGRESS_MIN and not self._files.busy(peer):
            self._report_progress(
                {"direction": "in", "peer": peer, "name": None, "done": size, "total": total}
            )

    def engine_message(self, peer: str, kind: Kind, payload: bytes) -> None:
        try:
            data = decode(kind, payload)
        except (UnicodeDecodeError, ValueError) as exc:
            problem = f"received a {kind} message that does not decode: {exc}"
            logger.warning("%s: dropped a message from %s: %s", self.user_id, peer, problem)
            self.engine_dropped(peer, problem)
            return
        message: Message
        handled = self._files.receive(peer, kind, data)
        if handled is not None:
            reply, finished, progress = handled
            if reply is not None:
                self._reply(reply, peer)
            if progress is not None:
                self._report_progress(progress)
            if finished is None:
                return
            message = finished
        else:
            if len(payload) >= PROGRESS_MIN:  # its reception was reported: the last report says it is whole
                whole = len(payload)
                self._report_progress(
                    {"direction": "in", "peer": peer, "name": None, "done": whole, "total": whole}
                )
            message = Message(data, peer, kind, len(payload), time.time())
        kept = [*self.messages, message]
        self.set_trait("messages", kept[max(0, len(kept) - self.max_messages) :])
        for callback in list(self._callbacks):
            with self._callback_count_lock:
                full = self._pending_callbacks >= MAX_PENDING_CALLBACKS
                if full:
                    self._dropped_callbacks += 1
                    dropped = self._dropped_callbacks
                else:
                    self._pending_callbacks += 1
            if full:
                self._callback_fell_behind(dropped)
            else:
                self._callback_pool.submit(self._run_callback, callback, message)

    def _callback_fell_behind(self, dropped: int) -> None:
        if dropped == 1 or dropped % 100 == 0:  # a counted line now and then, not one per message
            text = (
                f"on_message callbacks fall behind: {dropped} messages were not handed to them, "
                f"{MAX_PENDING_CALLBACKS} wait already (they are in messages); make the callback quicker, or "
                "hand its work to a thread or queue of your own"
            )
            logger.warning("%s: %s", self.user_id, text)
            self._apply({"error": text})

    def _reply(self, reply: dict[str, Any], peer: str) -> None:
        """Answer a file's sender (its verdict): on the data channel, or in an SFU room through the server."""
        try:
            if not self._sent_through_server("json", encode(reply)[1], peer):
                kernel.submit(self._engine.send("json", encode(reply)[1], peer))
        except CallError as exc:
            logger.warning("%s: could not send the verdict on a file to %s: %s", self.user_id, peer, exc)

    def _run_callback(self, callback: Callable[[Message], Any], message: Message) -> None:
        try:
            callback(message)
        except Exception:
            logger.exception("%s: on_message callback %r failed", self.user_id, callback)
        finally:
            with self._callback_count_lock:
                self._pending_callbacks -= 1
