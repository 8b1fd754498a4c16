"""The messages a Phone's browser half sends it (docs/widget-protocol.md): checked, then handled each by its
``_on_browser_<type>`` method."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..call.progress import FIELDS as PROGRESS_FIELDS
from ..exceptions import CallError
from ..teach.diagnose import candidate_error
from ..wire.payload import Message, decode
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

    def _from_browser(self, _widget: Any, content: Any, buffers: list[bytes]) -> None:
        with self._lock:
            self._dispatch(content, buffers)
            due, self._due = self._due, []
        for callback, message in due:
            try:
                callback(message)
            except Exception:
                logger.exception("%s: on_message callback %r failed", self.user_id, callback)

    def _dispatch(self, content: Any, buffers: list[bytes]) -> None:
        """Handle one message from the browser (with the lock held)."""
        problem = widget_protocol.problem(content, widget_protocol.TO_PYTHON)
        if problem is not None:
            # A browser half of another nbcall version, or a bug: say so where people look.
            kind = content.get("type") if isinstance(content, dict) else None
            logger.warning("%s: ignored a message from the browser: %s", self.user_id, problem)
            self._log_entry("event", "protocol-error", {"type": kind, "problem": problem})
            return
        try:
            getattr(self, f"_on_browser_{content['type']}")(content, buffers)
        except Exception as exc:  # what the page or a peer sent must not break the comm
            problem = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "%s: a %s message from the browser failed: %s", self.user_id, content["type"], problem
            )
            logger.debug("handling a browser message failed", exc_info=True)
            self._log_entry("event", "protocol-error", {"type": content["type"], "problem": problem})
        self._carry_out()

    def _on_browser_batch(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """Several messages the browser sent within one task, in order (one kernel round for all)."""
        for message in content["messages"]:
            self._dispatch(message, [])

    def _on_browser_hello(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if self._frontend:
            # The page was reloaded: the browser's peer connections are gone with it.
            self._machine.engine_lost("the browser page was reloaded during the call")
        self._frontend = True
        self._send_custom({"type": "history", "log": self._log[-self.max_log :]})
        pending, self._to_browser = self._to_browser, []
        for msg, bufs in pending:
            self._send_custom(msg, bufs)

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

    def _on_browser_channel(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._log_entry("event", f"datachannel-{content['state']}", content, echo=False)
        self._machine.engine_channel(content["peer"], content["state"] == "open")

    def _on_browser_message(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        sender = content["peer"]
        if content.get("first"):  # a new message: parts of one cut off (its call ended) are dropped
            self._parts.pop(sender, None)
        parts = self._parts.setdefault(sender, [])
        parts.extend(bytes(b) for b in buffers)
        if not content["last"]:
            return
        payload = b"".join(self._parts.pop(sender))
        try:
            data = decode(content["kind"], payload)
        except (UnicodeDecodeError, ValueError) as exc:
            self._apply({"error": f"received a {content['kind']} message that does not decode: {exc}"})
            return
        message = self._file_part(sender, content["kind"], data, len(payload))
        if message is None:
            return  # a part of a file still coming, or a verdict on one sent
        kept = [*self.messages, message]
        self.set_trait("messages", kept[max(0, len(kept) - self.max_messages) :])
        self._due.extend((callback, message) for callback in self._callbacks)

    def _on_browser_progress(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._report_progress({key: content[key] for key in PROGRESS_FIELDS}, force=True)

    def _on_browser_send_failed(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._apply({"error": f"send #{content['id']} failed: {content['message']}"})

    def _on_browser_stats(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if self._machine.room:
            # In a room, one summary per member, each shaped as a 1:1 call's.
            self.stats = {**self.stats, content["peer"]: content["stats"]}
        else:
            self.stats = content["stats"]
        for loop, future in self._stats_waiters:
            loop.call_soon_threadsafe(settle, future, self.stats)

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
