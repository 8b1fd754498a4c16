"""The Phone widget: a WebRTC phone in a notebook cell.

The Python half owns the signaling: it holds the phone's connection to the signaling server (on the kernel's
background loop) and relays between that server and the browser over the widget's own messages, so a phone
works wherever the browser can reach the kernel, even when it cannot reach the server. The browser half owns
the RTCPeerConnection, the data channel and the camera and microphone. The call's state lives here and is
synced to the browser.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import anywidget
import traitlets

from . import kernel
from .client import SignalingClient
from .exceptions import CallError
from .payload import Message, decode, encode

__all__ = ["STATES", "Phone"]

logger = logging.getLogger("nbcall.phone")

STATIC = pathlib.Path(__file__).parent / "static"

#: Every state a phone can be in. ``ended`` and ``failed`` are final for a call; a new call may follow.
STATES = ("idle", "calling", "ringing", "connecting", "connected", "ended", "failed")
_FREE = ("idle", "ended", "failed")
_IN_CALL = ("calling", "ringing", "connecting", "connected")
_DEVICE = {"audio": "microphone", "video": "camera"}
# getUserMedia's errors (DOMException names), as what happened and what to do.
_MEDIA_ERRORS = {
    "NotAllowedError": "permission to use the {device} was denied: allow it for this page in the browser "
    "(the icon left of the address bar) and call again",
    "NotFoundError": "no {device} was found: connect one, or create the phone without it",
    "NotReadableError": "the {device} could not be started (another application may be using it): "
    "close that application and call again",
    "OverconstrainedError": "no {device} satisfies the constraints {settings}: loosen them",
    "InsecureContext": "the browser gives no {device} to this page because it is not a secure context: "
    "open JupyterLab at https://... or http://localhost",
}


class Phone(anywidget.AnyWidget):
    """A phone registered as ``user_id`` on a signaling server; display it to see and use it.

    ``server`` is the URL of a signaling server (``ws://host:port/ws``); without one, the kernel starts a server
    on 127.0.0.1 on first use. ``auto_answer`` answers incoming calls at once. ``ice_servers`` lists STUN/TURN
    servers (URL strings or ``{"urls": ..., "username": ..., "credential": ...}``); none by default, which
    connects peers that can reach each other directly. ``max_messages`` bounds :attr:`messages`,
    ``max_log`` bounds :attr:`log`.

    ``video`` and ``audio`` say what this phone would like to send in a call: ``True``, or a dict of
    MediaTrackConstraints (for example ``{"width": 1280}``). The browser asks for the camera and microphone when
    a call starts or is answered, and stops them when it ends. A medium the browser cannot get (permission
    denied, no device) is left out and reported in :attr:`error`; the call goes on, and the phone still
    receives what the peer sends.
    """

    _esm = STATIC / "phone.js"
    _css = STATIC / "phone.css"

    # Lets the browser find this model's phone from any of its views (anywidget gives each its own proxy).
    _key = traitlets.Unicode().tag(sync=True)
    user_id = traitlets.Unicode(read_only=True).tag(sync=True)
    state = traitlets.Enum(STATES, default_value="idle", read_only=True).tag(sync=True)
    peer = traitlets.Unicode("", read_only=True).tag(sync=True)
    peers = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    error = traitlets.Unicode("", read_only=True).tag(sync=True)
    online = traitlets.Bool(False, read_only=True).tag(sync=True)
    server_url = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: What this phone would like to send: False, True, or MediaTrackConstraints.
    audio = traitlets.Union([traitlets.Bool(), traitlets.Dict()], default_value=False, read_only=True).tag(
        sync=True
    )
    video = traitlets.Union([traitlets.Bool(), traitlets.Dict()], default_value=False, read_only=True).tag(
        sync=True
    )
    #: Whether the microphone and camera tracks are enabled (see :meth:`mute` and :meth:`camera`).
    mic_on = traitlets.Bool(True, read_only=True).tag(sync=True)
    camera_on = traitlets.Bool(True, read_only=True).tag(sync=True)
    #: The media flowing in the current call: ``{"audio": bool, "video": bool}`` sent by us and by the peer.
    local_media = traitlets.Dict(read_only=True).tag(sync=True)
    remote_media = traitlets.Dict(read_only=True).tag(sync=True)
    #: Why a wanted medium is missing from the call, and what to do about it ("" when none is).
    media_error = traitlets.Unicode("", read_only=True).tag(sync=True)
    #: The received data-channel messages, oldest first (not synced: payloads may be large).
    messages: traitlets.List[Message] = traitlets.List(read_only=True)

    def __init__(
        self,
        user_id: str,
        *,
        server: str | None = None,
        video: bool | dict[str, Any] = False,
        audio: bool | dict[str, Any] = False,
        auto_answer: bool = False,
        ice_servers: Iterable[str | dict[str, Any]] = (),
        max_messages: int = 100,
        max_log: int = 500,
        timeout: float = 10,
    ) -> None:
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError(f"user_id must be a non-empty string, not {user_id!r}")
        for name, value in (("video", video), ("audio", audio)):
            if not isinstance(value, (bool, dict)):
                raise TypeError(
                    f"{name} must be True, False or a dict of MediaTrackConstraints, not {value!r}"
                )
        if max_messages < 0 or max_log < 0:
            raise ValueError(f"max_messages and max_log must be >= 0, not {max_messages} and {max_log}")
        url = server or kernel.default_server().url
        client = SignalingClient(url, user_id)
        # Register before the widget exists, so a refused ID (taken, invalid) leaves no dead widget behind.
        registered = kernel.run(client.register(timeout), timeout=timeout + 1)
        super().__init__()
        self._lock = threading.RLock()
        self._client = client
        self.auto_answer = auto_answer
        self.ice_servers = [s if isinstance(s, dict) else {"urls": s} for s in ice_servers]
        self.max_messages = max_messages
        self.max_log = max_log
        #: The last statistics summary of the current call (see the widget's statistics panel).
        self.stats: dict[str, Any] = {}
        #: The RTCPeerConnection's states, as the browser reported them.
        self.rtc: dict[str, str] = {}
        self._log: list[dict[str, Any]] = []
        self._callbacks: list[Callable[[Message], Any]] = []
        self._frontend = False
        self._to_browser: list[tuple[dict[str, Any], list[bytes]]] = []
        self._parts: list[bytes] = []
        self._send_ids = itertools.count(1)
        self._closing = False
        with self.hold_trait_notifications():
            self.set_trait("user_id", registered.get("id", user_id))
            self.set_trait("server_url", url)
            self.set_trait("peers", list(registered.get("peers", [])))
            self.set_trait("online", True)
            self.set_trait("video", video)
            self.set_trait("audio", audio)
            self.set_trait("local_media", {"audio": False, "video": False})
            self.set_trait("remote_media", {"audio": False, "video": False})
        register = {"type": "register", "from": user_id}
        self._log_entry("out", "register", register, len(json.dumps(register)))
        self._log_entry("in", "registered", registered, len(json.dumps(registered)))
        self.on_msg(self._from_browser)
        kernel.call_soon(client.start, self._on_signal, self._on_signaling_state)

    @traitlets.default("_key")
    def _new_key(self) -> str:
        return uuid.uuid4().hex

    # ----------------------------------------------------------------------------------------- public API

    def call(self, peer: str) -> None:
        """Call ``peer``: its phone rings, and the call connects once it answers."""
        if not isinstance(peer, str) or not peer:
            raise TypeError(
                f"call a peer by its ID, a non-empty str such as {self.peers[:1] or ['B']}, not {peer!r}"
            )
        with self._lock:
            if not self.online:
                raise CallError(f"{self.user_id} is offline: {self.error or 'not connected to a server'}")
            if self.state not in _FREE:
                raise CallError(f"{self.user_id} is {self.state} with {self.peer!r}; hang up first")
            if peer == self.user_id:
                raise CallError(f"{self.user_id} cannot call itself; call one of {self.peers}")
            self._set(state="calling", peer=peer, error="", media_error="")
            self._browser({"type": "start_call", "peer": peer, "ice_servers": self.ice_servers})

    def answer(self) -> None:
        """Answer the incoming call (the phone must be ringing)."""
        with self._lock:
            if self.state != "ringing":
                raise CallError(
                    f"{self.user_id} has no incoming call to answer (state {self.state!r}); "
                    "wait for one with `await phone.wait_for('ringing')`"
                )
            self._set(state="connecting")
            self._browser({"type": "accept"})

    def decline(self, reason: str = "declined") -> None:
        """Refuse the incoming call; the caller's phone ends with the reason."""
        with self._lock:
            if self.state != "ringing":
                raise CallError(f"{self.user_id} has no incoming call to decline (state {self.state!r})")
            self._signal({"type": "decline", "to": self.peer, "reason": reason})
            self._end("ended", "")

    def hangup(self) -> None:
        """End the current call on both sides (does nothing when there is no call)."""
        with self._lock:
            if self.state in _FREE:
                return
            self._signal({"type": "hangup", "to": self.peer})
            self._end("ended", "")

    def send(self, data: str | bytes | bytearray | memoryview | Any) -> None:
        """Send ``data`` to the peer on the data channel: str, bytes, or any JSON-serializable value.

        The peer's phone receives the same type. Large payloads are split into frames and reassembled.
        """
        kind, payload = encode(data)
        with self._lock:
            if self.state != "connected":
                raise CallError(
                    f"{self.user_id} is not in a connected call (state {self.state!r}); "
                    "call a peer and `await phone.wait_for('connected')` first"
                )
            self._browser({"type": "send", "id": next(self._send_ids), "kind": kind}, [payload])

    def mute(self) -> None:
        """Send silence instead of the microphone (the track stays, disabled); :meth:`unmute` undoes it."""
        self.set_trait("mic_on", False)

    def unmute(self) -> None:
        """Send the microphone's sound again."""
        self.set_trait("mic_on", True)

    def camera(self, on: bool = True) -> None:
        """Turn the camera's picture on or off: off, the peer receives black frames."""
        self.set_trait("camera_on", bool(on))

    def on_message(self, callback: Callable[[Message], Any]) -> Callable[[Message], Any]:
        """Call ``callback(message)`` for every data-channel message received (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    async def wait_for(self, *states: str, timeout: float = 10) -> str:
        """Wait until the phone reaches one of ``states``; raises :class:`CallError` if the call ends first."""
        unknown = set(states) - set(STATES)
        if not states or unknown:
            raise ValueError(f"wait for one or more of {STATES}, not {sorted(unknown) or 'nothing'}")
        loop = asyncio.get_running_loop()
        reached: asyncio.Future[str] = loop.create_future()

        def settle(state: str, now: bool) -> None:
            if reached.done():
                return
            if state in states:
                reached.set_result(state)
            elif state in ("ended", "failed") and not (now and "ringing" in states):
                # An ended call ends a wait for its progress; but "ringing" starts a new call, which may
                # come after a previous call's end.
                reason = f": {self.error}" if self.error else ""
                reached.set_exception(CallError(f"{self.user_id}'s call {state}{reason}"))

        def check(change: Any = None) -> None:
            loop.call_soon_threadsafe(settle, self.state, change is None)

        self.observe(check, "state")
        try:
            check()
            return await asyncio.wait_for(reached, timeout)
        except asyncio.TimeoutError:
            # The commonest cause: the phone was never displayed, so no browser does its WebRTC.
            hint = "" if self._frontend else f"; no browser shows {self.user_id} yet: display it in a cell"
            raise TimeoutError(
                f"{self.user_id} did not reach {' or '.join(states)} within {timeout} s (state {self.state!r}){hint}"
            ) from None
        finally:
            self.unobserve(check, "state")

    @property
    def log(self) -> list[dict[str, Any]]:
        """The signaling log: every message to and from the server, and the peer connection's events.

        Each entry has ``t`` (epoch seconds), ``dir`` ("out", "in" or "event"), ``type``, ``size`` (bytes
        on the wire) and ``detail`` (the message itself, or the event's value).
        """
        with self._lock:
            return list(self._log)

    def close(self) -> None:
        """Hang up, leave the signaling server, and close the widget."""
        if not getattr(self, "_closing", True):
            self._closing = True
            self.hangup()
            self._client.close()
        super().close()

    # ----------------------------------------------------------------------- messages from the server

    def _on_signal(self, message: dict[str, Any], size: int) -> None:
        """A message from the signaling server (runs on the background loop's thread)."""
        kind = str(message.get("type"))
        with self._lock:
            self._log_entry("in", kind, message, size)
            handler = getattr(self, f"_on_server_{kind}", None)
            if handler is not None:
                handler(message)

    def _on_server_registered(self, message: dict[str, Any]) -> None:
        self._set(peers=list(message.get("peers", [])))

    def _on_server_joined(self, message: dict[str, Any]) -> None:
        self._set(peers=sorted({*self.peers, message["id"]}))

    def _on_server_left(self, message: dict[str, Any]) -> None:
        gone = message["id"]
        self._set(peers=[p for p in self.peers if p != gone])
        if gone == self.peer and self.state in ("calling", "ringing", "connecting"):
            self._end("failed", f"{gone} went offline")

    def _on_server_call(self, message: dict[str, Any]) -> None:
        caller = message["from"]
        if self.state not in _FREE:
            reason = f"{self.user_id} is {self.state} with {self.peer}"
            self._signal({"type": "busy", "to": caller, "reason": reason})
            return
        self._set(state="ringing", peer=caller, error="", media_error="")
        self._browser({"type": "remote", "signal": message, "ice_servers": self.ice_servers})
        if self.auto_answer:
            self.answer()

    def _on_server_answer(self, message: dict[str, Any]) -> None:
        if self.state == "calling" and message["from"] == self.peer:
            self._set(state="connecting")
            self._browser({"type": "remote", "signal": message})

    def _on_server_ice(self, message: dict[str, Any]) -> None:
        if self.state in _IN_CALL and message["from"] == self.peer:
            self._browser({"type": "remote", "signal": message})

    def _on_server_hangup(self, message: dict[str, Any]) -> None:
        if self.state in _IN_CALL and message["from"] == self.peer:
            why = message.get("reason")
            self._end("ended", f"{self.peer} hung up" + (f": {why}" if why else ""))

    def _on_server_decline(self, message: dict[str, Any]) -> None:
        if self.state == "calling" and message["from"] == self.peer:
            self._end("ended", f"{self.peer} declined the call")

    def _on_server_busy(self, message: dict[str, Any]) -> None:
        if self.state == "calling" and message["from"] == self.peer:
            self._end("ended", f"{self.peer} is busy: {message.get('reason') or 'in another call'}")

    def _on_server_unavailable(self, message: dict[str, Any]) -> None:
        if self.state == "calling" and message.get("peer") == self.peer:
            self._end("failed", message.get("message") or f"{self.peer} is not online")

    def _on_server_error(self, message: dict[str, Any]) -> None:
        text = f"signaling server: {message.get('message', 'error')} ({message.get('code')})"
        logger.warning("%s: %s", self.user_id, text)
        if self.state == "calling" and message.get("in_reply_to") == "call":
            self._end("failed", text)
        else:
            self._set(error=text)

    def _on_signaling_state(self, online: bool, detail: Any) -> None:
        """The signaling connection dropped (detail: why) or came back (detail: the ``registered`` reply)."""
        with self._lock:
            if online:
                self._log_entry("in", "registered", detail)
                self._set(online=True, peers=list(detail.get("peers", [])), error="")
                return
            # A call in progress keeps going: the peer-to-peer connection does not need the server.
            self._set(online=False, peers=[])
            if not self._closing:
                self._set(error=f"offline: {detail}")
                logger.warning("%s is offline: %s", self.user_id, detail)

    # ---------------------------------------------------------------------- messages from the browser

    def _from_browser(self, _widget: Any, content: dict[str, Any], buffers: list[bytes]) -> None:
        handler = getattr(self, f"_on_browser_{content.get('type')}", None)
        if handler is None:
            logger.warning("%s: unknown message from the browser: %.200r", self.user_id, content)
            return
        with self._lock:
            handler(content, buffers)

    def _on_browser_batch(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """Several messages the browser sent within one task, in order (one kernel round for all)."""
        for message in content["messages"]:
            self._from_browser(self, message, [])

    def _on_browser_hello(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if self._frontend and self.state in _IN_CALL:
            # The page was reloaded: the browser's peer connection is gone with it.
            self._signal({"type": "hangup", "to": self.peer})
            self._end("failed", "the browser page was reloaded during the call")
        self._frontend = True
        self._send_custom({"type": "history", "log": self._log[-self.max_log :]})
        pending, self._to_browser = self._to_browser, []
        for msg, bufs in pending:
            self._send_custom(msg, bufs)

    def _on_browser_signal(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        signal = content["signal"]
        expected = {"call": ("calling",), "answer": ("connecting",), "ice": _IN_CALL}.get(
            signal.get("type"), ()
        )
        if self.state in expected:
            self._signal({**signal, "to": self.peer})

    def _on_browser_rtc(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        name, value = content["name"], content["value"]
        self.rtc[name] = value
        self._log_entry("event", name, value, echo=False)
        if name == "connectionState" and value == "failed" and self.state in _IN_CALL:
            if self.state == "connected":
                why = (
                    f"lost the connection to {self.peer}: it stopped answering (page closed or network down)"
                )
            else:
                why = f"could not connect to {self.peer}: ICE found no path between the two browsers"
            self._signal({"type": "hangup", "to": self.peer, "reason": "connection failed"})
            self._end("failed", why)

    def _on_browser_channel(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._log_entry("event", f"datachannel-{content['state']}", content, echo=False)
        if content["state"] == "open" and self.state in ("calling", "connecting"):
            self._set(state="connected")
        elif content["state"] == "closed" and self.state == "connected":
            self._end("ended", f"the data channel to {self.peer} closed")

    def _on_browser_message(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._parts.extend(bytes(b) for b in buffers)
        if not content.get("last", True):
            return
        payload, self._parts = b"".join(self._parts), []
        try:
            data = decode(content["kind"], payload)
        except (UnicodeDecodeError, ValueError) as exc:
            self._set(error=f"received a {content['kind']} message that does not decode: {exc}")
            return
        message = Message(data, self.peer, content["kind"], len(payload), time.time())
        kept = [*self.messages, message]
        self.set_trait("messages", kept[max(0, len(kept) - self.max_messages) :])
        for callback in list(self._callbacks):
            try:
                callback(message)
            except Exception:
                logger.exception("%s: on_message callback %r failed", self.user_id, callback)

    def _on_browser_send_failed(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._set(error=f"send #{content['id']} failed: {content['message']}")

    def _on_browser_stats(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self.stats = content["stats"]

    def _on_browser_media(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._set(local_media=content["local"], remote_media=content["remote"])
        self._log_entry("event", "media", {"local": content["local"], "remote": content["remote"]})
        # One sentence per cause: "camera and microphone" when both failed the same way.
        causes: dict[tuple[str, str], list[str]] = {}
        for problem in content.get("errors", []):
            causes.setdefault((problem["name"], problem["message"]), []).append(problem["kind"])
        for (name, message), kinds in causes.items():
            self._on_media_error(kinds, name, message)

    def _on_media_error(self, kinds: list[str], name: str, message: str) -> None:
        """Media this phone wanted are not in the call: say why, and that the call goes on without them."""
        device = " and ".join(_DEVICE.get(k, k) for k in sorted(kinds, reverse=True))
        if name == "NotOffered":
            # Not a fault: the caller offered no section for it (a data-only phone, say).
            self._log_entry(
                "event", "media", f"{self.peer} offered no {'/'.join(kinds)}: sending no {device}"
            )
            return
        advice = _MEDIA_ERRORS.get(name, "the browser could not open the {device}")
        settings = " and ".join(f"{k}={getattr(self, k)!r}" for k in kinds)
        text = f"{advice.format(device=device, settings=settings)} ({name}: {message}). "
        text += f"The call goes on without your {device}."
        if self.media_error and text not in self.media_error:
            text = f"{self.media_error}\n{text}"
        logger.warning("%s: %s", self.user_id, text)
        self._log_entry("event", "media-error", {"kinds": kinds, "name": name, "message": message})
        self._set(media_error=text, error=text)

    def _on_browser_failure(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        text = f"browser: {content['message']}"
        self._log_entry("event", "failure", content["message"])
        if self.state in _IN_CALL:
            self._signal({"type": "hangup", "to": self.peer, "reason": "failed"})
            self._end("failed", text)
        else:
            self._set(error=text)

    def _on_browser_ui(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """A button in the widget: the same path as the Python API, errors shown in the widget."""
        actions: dict[str, Callable[[], None]] = {
            "call": lambda: self.call(str(content.get("peer", ""))),
            "answer": self.answer,
            "decline": self.decline,
            "hangup": self.hangup,
            "mute": self.mute,
            "unmute": self.unmute,
            "camera_on": lambda: self.camera(True),
            "camera_off": lambda: self.camera(False),
        }
        action = actions.get(str(content.get("action")))
        try:
            if action:
                action()
        except (CallError, TypeError) as exc:
            self._set(error=str(exc))

    # ------------------------------------------------------------------------------------- internals

    def _set(self, **traits: Any) -> None:
        with self.hold_trait_notifications():
            for name, value in traits.items():
                self.set_trait(name, value)

    def _end(self, state: str, error: str) -> None:
        self._browser({"type": "close"})
        # The browser stops every track on "close"; say so now rather than when its report gets through.
        none = {"audio": False, "video": False}
        self._set(state=state, error=error, local_media=none, remote_media=dict(none))

    def _signal(self, message: dict[str, Any]) -> None:
        message = {"type": message["type"], "from": self.user_id, **message}
        text = self._client.send(message)
        self._log_entry("out", message["type"], message, len(text.encode()))

    def _browser(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        """Send to the browser half; held back until it said hello, since earlier messages would be lost."""
        if self._frontend:
            self._send_custom(content, buffers or [])
        else:
            self._to_browser.append((content, buffers or []))

    def _send_custom(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        """Send a custom message to the browser half (``Widget.send``, which ``Phone.send`` overrides)."""
        super().send(content, buffers)

    def _log_entry(self, direction: str, kind: str, detail: Any, size: int = 0, *, echo: bool = True) -> None:
        """Log an entry; ``echo=False`` for events the browser logged itself."""
        entry = {"t": time.time(), "dir": direction, "type": kind, "size": size, "detail": detail}
        self._log.append(entry)
        if len(self._log) > self.max_log:
            del self._log[: len(self._log) - self.max_log]
        if self._frontend and echo:
            self._send_custom({"type": "log", "entry": entry})

    def __repr__(self) -> str:
        peer = f" with {self.peer!r}" if self.state in _IN_CALL else ""
        return f"<Phone {self.user_id!r} {self.state}{peer} at {self.server_url}>"
