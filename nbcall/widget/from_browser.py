"""The messages a Phone's browser half sends it (docs/widget-protocol.md): checked, then handled each by its
``_on_browser_<type>`` method."""

from __future__ import annotations

import asyncio
import collections
import logging
import numbers
import reprlib
import threading
from collections.abc import Callable
from typing import Any

from ..call.machine import FREE
from ..call.progress import FIELDS as PROGRESS_FIELDS
from ..exceptions import CallError
from ..teach.diagnose import candidate_error
from ..wire.framing import KINDS
from ..wire.payload import Message, decode, oversize
from . import widget_protocol
from .devices import MediaControls
from .phone_part import settle
from .teaching import Teaching

__all__ = ["FromBrowser"]

logger = logging.getLogger("nbcall.widget.phone")


class FromBrowser(Teaching, MediaControls):
    """Handles what the browser half reports: signals, connection states, data-channel messages, progress,
    statistics, media, failures and the widget's buttons (as the same calls as the Python API)."""

    #: ``on_message`` callbacks due for the messages just handled: run once the lock is released, so that a
    #: callback may wait for the background loop (make a phone, say) while the loop handles this phone.
    _due: list[tuple[Callable[[Message], Any], Message]]
    #: The file receiver's owner: the thread that hands this phone the browser's messages (the kernel's main
    #: thread), and the event loop it runs (None: none, or no message came yet).
    _receiver_thread: int | None
    _receiver_loop: asyncio.AbstractEventLoop | None
    #: Work for the receiver from other threads (a call the peer ended, seen on the background loop), waiting
    #: for its owner, oldest first.
    _receiver_work: collections.deque[Callable[[], Any]]

    def _from_browser(self, _widget: Any, content: Any, buffers: list[bytes]) -> None:
        with self._lock:
            self._own_receiver()
            self._handle_from_browser(content, buffers, nested=False)
            self._carry_out()
        self._run_due()

    def _own_receiver(self) -> None:
        """On the thread that hands the browser's messages: own the file receiver, and do the work waiting for it
        (lock held)."""
        self._receiver_thread = threading.get_ident()
        try:
            self._receiver_loop = asyncio.get_running_loop()
        except RuntimeError:
            self._receiver_loop = None
        while self._receiver_work:
            self._receiver_work.popleft()()

    def _to_receiver(self, work: Callable[[], Any]) -> None:
        """Do ``work`` on the file receiver on its owner's thread (lock held). From another thread it is queued
        for the owner, after what is queued already: the file's bytes the browser still relays come on that
        thread, in order with it. Before any browser spoke, or where its messages come on a thread without an
        event loop to queue onto, the work is done at once."""
        owner, loop = self._receiver_thread, self._receiver_loop
        if owner is None or owner == threading.get_ident() or loop is None:
            while self._receiver_work:
                self._receiver_work.popleft()()
            work()
            return
        self._receiver_work.append(work)
        try:
            loop.call_soon_threadsafe(self._receiver_turn)
        except RuntimeError:  # that loop is closed (the kernel is exiting): nobody else will do it
            while self._receiver_work:
                self._receiver_work.popleft()()

    def _receiver_turn(self) -> None:
        """The owner's turn at the work queued for the receiver (see :meth:`_to_receiver`)."""
        with self._lock:
            self._own_receiver()
            self._carry_out()
        self._run_due()

    def _run_due(self) -> None:
        """Run the ``on_message`` callbacks due, without the lock (see :attr:`_due`)."""
        with self._lock:
            due, self._due = self._due, []
        for callback, message in due:
            try:
                callback(message)
            except Exception:
                logger.exception("%s: on_message callback %r failed", self.user_id, callback)

    def _handle_from_browser(self, content: Any, buffers: list[bytes], *, nested: bool) -> None:
        """Check one message from the page and act on it; what is wrong with it is logged in one line, never
        raised (it would break the comm, and the rest of a batch)."""
        problem = widget_protocol.problem(content, widget_protocol.TO_PYTHON)
        if problem is None and nested and content["type"] == "batch":
            problem = "a batch inside a batch"
        kind = content.get("type") if isinstance(content, dict) else None
        if problem is not None:
            # A browser half of another nbcall version, or a bug: say so where people look.
            logger.warning("%s: ignored a message from the browser: %s", self.user_id, problem)
            shown = kind if kind is None else _shown(kind)
            self._log_entry("event", "protocol-error", {"type": shown, "problem": problem})
            return
        try:
            getattr(self, f"_on_browser_{kind}")(content, buffers)
        except Exception as exc:  # what the page or a peer sent must not break the comm
            problem = f"{type(exc).__name__}: {_shown(str(exc), 200)}"
            logger.warning("%s: a %s message from the browser failed: %s", self.user_id, kind, problem)
            logger.debug("handling a browser message failed", exc_info=True)
            self._log_entry("event", "protocol-error", {"type": kind, "problem": problem})

    def _on_browser_batch(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """Several messages the browser sent within one task, in order (one kernel round for all)."""
        messages = content["messages"]
        if not isinstance(messages, list):
            raise TypeError(f"a batch's messages are a list, not {type(messages).__name__}")
        for message in messages:
            self._handle_from_browser(message, [], nested=True)

    def _on_browser_hello(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        # Every page showing the phone says hello, with the ID its tab keeps across reloads (js/page.js). One
        # page runs the calls (the WebRTC); the others only show the phone's state.
        page = str(content.get("page") or "")
        theirs = content.get("protocol")
        if theirs != widget_protocol.FINGERPRINT:
            # Messages of one side the other does not know would be dropped, or misread, one by one (a stale
            # bundle once left every file send waiting for answers its page never gave): say it once, plainly.
            named = _shown(theirs, 40) if theirs else "it names none"
            problem = (
                f"this phone's page was built from another widget protocol ({named}; this kernel's nbcall has "
                f"{widget_protocol.FINGERPRINT}): its nbcall/widget/static/phone.js is an old build "
                "or from another nbcall. Rebuild it (npm run build) or reinstall nbcall, restart the kernel and "
                "reload the page."
            )
            logger.warning("%s: %s", self.user_id, problem)
            self._log_entry("event", "protocol-error", {"type": "hello", "problem": problem})
            self._apply({"error": problem})
        if page in self._pages:
            self._pages.remove(page)
        self._pages.append(page)
        if self._frontend and page == self._engine:
            # The page running the calls was reloaded: its peer connections are gone with it.
            self._machine.engine_lost("the browser page was reloaded during the call")
            self._run_calls_in(page)
        elif self._engine is None or not self._busy():
            # The first page, or one opened while the phone is free: the calls run in the page opened last.
            self._run_calls_in(page)
        else:
            # Another tab while a call or room is on: it shows the phone, the call stays in the page running it.
            logger.info("%s: another browser tab shows the phone; its calls stay in the first", self.user_id)
        self._frontend = True
        self._send_custom({"type": "history", "log": self._log[-self.max_log :]})
        for msg, bufs in self._to_browser.take():
            self._send_custom(msg, bufs)

    def _on_browser_bye(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        page = str(content["page"])
        if page in self._pages:
            self._pages.remove(page)
        if page != self._engine:
            return  # a tab that only showed the phone
        # The page running the calls went away (reloaded or closed): its calls are gone. The page shown last
        # runs the next ones (a reloaded page takes over again when it says hello).
        self._machine.engine_lost("the browser page running the call was closed or reloaded")
        self._run_calls_in(self._pages[-1] if self._pages else None)

    def _run_calls_in(self, page: str | None) -> None:
        """Make ``page`` the one that runs the calls (None: none does); every page learns it from a trait."""
        self._engine = page
        self.set_trait("_engine_page", page or "")

    def _busy(self) -> bool:
        """Whether a call or room is on (ringing included): a new page must not take its WebRTC over."""
        machine = self._machine
        return machine.state not in FREE or bool(machine.room) or machine.room_asked

    def _on_browser_signal(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._machine.engine_signal(content["peer"], content["signal"])

    def _on_browser_rtc(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        name, value = content["name"], content["value"]
        self.rtc[name] = value
        self._log_entry("event", name, value, echo=False)
        if name == "connectionState":
            self._machine.engine_connection(content["peer"], value)
        elif name == "iceGatheringState" and value == "complete":
            gathered = self._gathered.get(content["peer"])
            if gathered is not None:
                gathered.get_loop().call_soon_threadsafe(settle, gathered)
        elif name == "icecandidateerror" and (problem := candidate_error(value)):
            self._apply({"error": problem})

    def _on_browser_sfu_signal(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._machine.engine_sfu_signal(content["role"], content["signal"])

    def _on_browser_sfu_view(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        video = content["video"]
        if isinstance(video, list) and all(isinstance(m, str) for m in video):
            self._machine.sfu_view(video)

    def _on_browser_sfu_rtc(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        role, name, value = content["role"], content["name"], content["value"]
        self._log_entry("event", name, {"sfu": role, "value": value}, echo=False)
        if name == "connectionState":
            self._machine.engine_sfu_connection(role, value)
        elif name == "icecandidateerror" and (problem := candidate_error(value)):
            self._apply({"error": problem})

    def _on_browser_channel(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if content["state"] not in ("open", "closed"):
            raise ValueError(f"a channel state {_shown(content['state'])}: 'open' or 'closed'")
        self._log_entry("event", f"datachannel-{content['state']}", content, echo=False)
        self._machine.engine_channel(content["peer"], content["state"] == "open")

    def _on_browser_message(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        sender, kind = _text(content, "peer"), content["kind"]
        if kind not in KINDS:
            raise ValueError(f"a message of kind {_shown(kind)}: one of {KINDS}")
        if content.get("first"):
            # A new message: the parts held of one cut off (its call ended) are dropped, saying so.
            cut = self._parts.pop(sender, None)
            if cut is not None and sender not in self._refusing:
                size = sum(map(len, cut))
                cut_off = f"dropped a message cut off after {size} bytes: the next one began"
                self._refuse_message(sender, cut_off)
            self._refusing.discard(sender)
        if sender in self._refusing:  # the rest of a message refused as too large
            if content["last"]:
                self._refusing.discard(sender)
            return
        payload: bytes | memoryview
        if content["last"] and sender not in self._parts and len(buffers) == 1:
            # A message in one part (a file's chunk is one): the comm's buffer itself, no copy. A file's bytes
            # go from it to the file; only a message the user receives in memory becomes bytes.
            payload = buffers[0]
            problem = oversize(len(payload), self.max_receive_size)
        else:
            # The comm's buffers are kept as they are (views of the received frames) until the last part.
            parts = self._parts.setdefault(sender, [])
            parts.extend(buffers)
            problem = oversize(sum(map(len, parts)), self.max_receive_size)
            if problem is None and not content["last"]:
                return
            payload = b"".join(self._parts.pop(sender)) if problem is None else b""
        if problem is not None:
            self._parts.pop(sender, None)
            if not content["last"]:
                self._refusing.add(sender)
            self._refuse_message(sender, problem)
            return
        self._received(sender, kind, payload)

    def _received(self, sender: str, kind: Any, payload: bytes | memoryview) -> None:
        """A whole message from ``sender``: from its data channel, or through the server (an SFU room's directed
        send)."""
        try:
            data = decode(kind, payload)
        except (UnicodeDecodeError, ValueError) as exc:
            self._refuse_message(sender, f"received a {kind} message that does not decode: {exc}")
            return
        message = self._file_part(sender, kind, data, len(payload))
        if message is None:
            return  # a part of a file still coming, or a verdict on one sent
        kept = [*self.messages, message]
        self.set_trait("messages", kept[max(0, len(kept) - self.max_messages) :])
        self._due.extend((callback, message) for callback in self._callbacks)

    def _on_browser_dropped(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """The browser dropped a message from a peer (malformed frames, or too large): so do its parts here."""
        sender = _text(content, "peer")
        self._parts.pop(sender, None)
        self._refuse_message(sender, _shown(_text(content, "problem"), 300))

    def _refuse_message(self, sender: str, problem: str) -> None:
        """A message from ``sender`` was dropped: one log line, and :attr:`error` says so while the call goes on.

        Once the call has ended, its reason stays in :attr:`error` (a message its end cut off is a consequence)."""
        logger.warning("%s: dropped a message from %s: %s", self.user_id, sender, problem)
        self._log_entry("event", "dropped", {"peer": sender, "problem": problem})
        if self.state not in ("ended", "failed"):
            self._apply({"error": f"from {sender}: {problem}"})

    def _on_browser_progress(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        report = {key: content[key] for key in PROGRESS_FIELDS}
        amounts = [report[key] for key in ("total", "rate", "eta")]
        if (
            report["direction"] not in ("in", "out")
            or not isinstance(report["peer"], str)
            or not isinstance(report["done"], numbers.Real)
            or not all(a is None or isinstance(a, numbers.Real) for a in amounts)
        ):
            raise ValueError(f"a progress report of the wrong shape: {_shown(report, 200)}")
        self._report_progress(report, force=True)

    def _on_browser_sent(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """The browser's data channels took part of a send: more may go (see :mod:`.outgoing`)."""
        self._outgoing.taken(content["id"], content["done"])
        self._pump()

    def _on_browser_send_failed(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._outgoing.failed(content["id"])
        self._pump()
        self._apply({"error": f"send #{content['id']} failed: {content['message']}"})

    def _on_browser_stats(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if not isinstance(content["stats"], dict):
            raise TypeError(f"statistics must be an object, not {_shown(content['stats'])}")
        if self._machine.room:
            # In a room, one summary per member, each shaped as a 1:1 call's.
            self.stats = {**self.stats, content["peer"]: content["stats"]}
        else:
            self.stats = content["stats"]
        for waiter in self._stats_waiters:
            waiter(self.stats)

    def _on_browser_failure(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._log_entry("event", "failure", content["message"])
        self._machine.engine_failed(f"browser: {content['message']}")

    def _on_browser_ui(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """A button in the widget: the same path as the Python API, errors shown in the widget."""
        actions: dict[str, Callable[[], None]] = {
            "call": lambda: self.call(content.get("peer", "")),
            "invite": lambda: self.invite(content.get("peer", "")),
            "leave": self.leave,
            "explain": self._send_sdp,
            "next": self._step_from_widget,
            "step_on": lambda: self.set_trait("stepping", True),
            "step_off": lambda: self.set_trait("stepping", False),
            "answer": self.answer,
            "decline": self.decline,
            "hangup": self.hangup,
            "mute": self.mute,
            "unmute": self.unmute,
            "camera_on": lambda: self.camera(True),
            "camera_off": lambda: self.camera(False),
            "diagnose": self._check_from_widget,
        }
        action = actions.get(str(content["action"]))
        if action is None:
            self._log_entry(
                "event", "protocol-error", {"type": "ui", "problem": f"unknown action {content['action']!r}"}
            )
            return
        try:
            action()
        except (CallError, TypeError, ValueError) as exc:
            self._apply({"error": str(exc)})


def _text(content: dict[str, Any], key: str) -> str:
    """The field ``key`` of a browser message, which must be a str."""
    value = content[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a str, not {_shown(value)}")
    return value


def _shown(value: Any, limit: int = 80) -> str:
    """``value`` for a log line: what the page sent may be long (or crafted to be)."""
    text = value if isinstance(value, str) else reprlib.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
