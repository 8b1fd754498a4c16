"""The Phone widget: a WebRTC phone in a notebook cell, an adapter of the call machine (``nbcall.call.machine``).

The Python half owns the signaling: it holds the phone's connection to the signaling server (on the kernel's
background loop) and relays between that server and the browser over the widget's own messages
(docs/widget-protocol.md), so a phone works wherever the browser can reach the kernel, even when it cannot
reach the server. The browser half owns the RTCPeerConnection, the data channel and the camera and microphone.
The call's logic lives in :class:`~nbcall.call.machine.CallMachine`; this class feeds it events and carries out its
actions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import anywidget
import traitlets

from ..call import config, kernel, transfer
from ..call.adapter import CallAdapter
from ..call.client import SignalingClient, server_urls
from ..call.machine import FREE, IN_CALL, STATES, CallMachine, Changed, ToEngine, ToServer
from ..call.progress import FIELDS as PROGRESS_FIELDS
from ..call.progress import ProgressReporter
from ..exceptions import CallError
from ..teach import manual
from ..teach.diagnose import Diagnosis, candidate_error
from ..teach.sdp import Descriptions, Negotiation
from ..teach.steps import explain_step
from ..wire.faults import Faults, FaultyOutbox
from ..wire.payload import Message, decode, encode
from . import widget_protocol
from .media import device_names, media_advice

__all__ = ["STATES", "Phone"]

logger = logging.getLogger("nbcall.widget.phone")

STATIC = pathlib.Path(__file__).parent / "static"
_NO_MEDIA = {"audio": False, "video": False}
#: What the browser half needs to know of this side (see the widget protocol's settings).
_BROWSER_DEFAULTS = {
    "max_chat": 200,
    "stats_interval_ms": 1000,
    "stats_history": 60,
    # Frames of 256 KiB (cut to the peer's SCTP max-message-size when it is smaller) with 4 MiB queued: a
    # quarter of the sends and message events of 64 KiB frames. On a quiet machine both move the same 13-20
    # MiB/s (bench/throughput.py); in a loaded run two connections in one page moved 16 MiB/s with these and 5
    # with 64 KiB and 1 MiB queued. Chrome refuses to queue more than 16 MiB.
    "frame_size": 256 * 1024,
    "high_water": 4 * 1024 * 1024,
    # Received messages reach Python in parts: Jupyter's websocket refuses messages over 10 MiB by default.
    "part_size": 4 * 1024 * 1024,
}


class Phone(CallAdapter, anywidget.AnyWidget):
    """A phone registered as ``user_id`` on a signaling server; display it to see and use it.

    ``server`` is the URL of a signaling server (``ws://host:port/ws``), or a list of the nodes of one deployment
    (the phone moves to the next when its node goes away); without one, the kernel starts a server
    on 127.0.0.1 on first use. ``auto_answer`` answers incoming calls at once. ``ice_servers`` lists STUN/TURN
    servers (URL strings or ``{"urls": ..., "username": ..., "credential": ...}``); none by default, which
    connects peers that can reach each other directly. ``ice_transport_policy="relay"`` connects only through
    a TURN server (to see a relay at work, or to hide this machine's addresses). ``max_messages`` bounds :attr:`messages`,
    ``max_log`` bounds :attr:`log`. ``timeout`` bounds the registration with the server, in seconds;
    ``ring_timeout`` how long a call rings unanswered before it ends, ``connect_timeout`` how long an answered
    call may take to connect before it fails saying what ICE had.

    For learning: ``step=True`` holds each outgoing signaling message until :meth:`step` (see :attr:`held`);
    ``faults`` (a :class:`~nbcall.wire.faults.Faults` or a dict of its fields) drops, delays or reorders them;
    ``server=False`` makes a phone without a signaling server, connected by copying text
    (:meth:`create_offer`, :meth:`accept_offer`, :meth:`accept_answer`).

    ``video`` and ``audio`` say what this phone would like to send in a call: ``True``, or a dict of
    MediaTrackConstraints (for example ``{"width": 1280}``). The browser asks for the camera and microphone when
    a call starts or is answered, and stops them when it ends. A medium the browser cannot get (permission
    denied, no device) is left out and reported in :attr:`error`; the call goes on, and the phone still
    receives what the peer sends.

    A file sent with :meth:`send_file` (or from a :class:`~nbcall.Peer` or ``nbcall send``) arrives as one
    :class:`~nbcall.call.transfer.FileMessage` (``name``, ``sha256``), checked; its bytes are in ``data``, or with
    ``receive_dir`` it is written there under its name (``path``) and an existing file is kept.
    """

    _esm = STATIC / "phone.js"
    _css = STATIC / "phone.css"

    # Lets the browser find this model's phone from any of its views (anywidget gives each its own proxy).
    _key = traitlets.Unicode().tag(sync=True)
    #: What the browser half needs to know of this side (docs/widget-protocol.md, settings).
    _settings = traitlets.Dict(read_only=True).tag(sync=True)
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
    #: The room this phone is in ("" outside a room), its members in the order they joined (this phone
    #: included), and the connection to each other member: "connecting", "connected" or "failed".
    room = traitlets.Unicode("", read_only=True).tag(sync=True)
    members = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    connections = traitlets.Dict(read_only=True).tag(sync=True)
    #: The invitation ringing now, ``{"room", "from", "members"}``, or ``{}``.
    invitation = traitlets.Dict(read_only=True).tag(sync=True)
    #: Step-through negotiation: while on, outgoing signaling messages wait in :attr:`held` for :meth:`step`.
    stepping = traitlets.Bool(False).tag(sync=True)
    #: The signaling messages waiting for :meth:`step`, oldest first, each with what it will do
    #: (``{"message", "type", "to", "peer_will", "after_us", "after_peer"}``).
    held: traitlets.List[dict[str, Any]] = traitlets.List(read_only=True).tag(sync=True)
    #: The received data-channel messages, oldest first (not synced: payloads may be large).
    messages: traitlets.List[Message] = traitlets.List(read_only=True)
    #: The transfer under way on the data channel (a large message or a file), as the browser measures it:
    #: ``{"direction": "out"|"in", "peer", "name", "done", "total", "rate", "eta"}`` (see
    #: :mod:`nbcall.call.progress`); ``{}`` when none is. :meth:`on_progress` hears of each report.
    progress = traitlets.Dict(read_only=True)

    def __init__(
        self,
        user_id: str,
        *,
        server: str | Sequence[str] | Literal[False] | None = None,
        video: bool | dict[str, Any] = False,
        audio: bool | dict[str, Any] = False,
        auto_answer: bool = False,
        ice_servers: Iterable[str | dict[str, Any]] = (),
        ice_transport_policy: str = "all",
        max_messages: int = 100,
        max_log: int = 500,
        timeout: float = 10,
        ring_timeout: float = 30,
        connect_timeout: float = 20,
        step: bool = False,
        faults: Faults | dict[str, Any] | None = None,
        receive_dir: str | pathlib.Path | None = None,
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
        for name, seconds in (("ring_timeout", ring_timeout), ("connect_timeout", connect_timeout)):
            if not seconds > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, not {seconds!r}")
        servers = config.ice_servers(ice_servers)
        policy = config.ice_transport_policy(ice_transport_policy)
        self._faults = Faults.of(faults)
        machine = CallMachine(
            user_id,
            auto_answer,
            servers,
            ring_timeout=ring_timeout,
            connect_timeout=connect_timeout,
            ice_transport_policy=policy,
        )
        client: SignalingClient | None = None
        if server is False:
            # Manual signaling: the offer and answer travel as text the user copies (create_offer()).
            url, registered = "", {"type": "registered", "id": user_id, "peers": []}
        else:
            urls = server_urls(server) if server is not None else [kernel.default_server().url]
            client = SignalingClient(urls, user_id, register_fields=machine.register_fields)
            # Register before the widget exists, so a refused ID (taken, invalid) leaves no dead widget behind.
            registered = kernel.run(client.register(timeout), timeout=len(urls) * timeout + 1)
            url = client.url
        super().__init__()
        self._lock = threading.RLock()
        self._client = client
        self._machine = machine
        machine.user_id = str(registered.get("id", user_id))
        self._outbox = (
            self._transmit
            if self._faults is None
            else FaultyOutbox(self._faults, self._transmit, self._later, self._dropped)
        )
        self._manual_out: list[dict[str, Any]] = []
        self._gathered: dict[str, asyncio.Future[None]] = {}
        self.max_messages = max_messages
        self.max_log = max_log
        #: The last statistics summary of the current call (see the widget's statistics panel).
        self.stats: dict[str, Any] = {}
        #: The RTCPeerConnection's states, as the browser reported them.
        self.rtc: dict[str, str] = {}
        self._log: list[dict[str, Any]] = []
        self._descriptions = Descriptions()  # each peer's offer and answer, for explain() and the SDP panel
        #: Connectivity checks awaiting the browser's report: id -> (the awaiting loop, its future).
        self._diagnoses: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._callbacks: list[Callable[[Message], Any]] = []
        #: Waiters of next_stats(): (the awaiting loop, its future).
        self._stats_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]]] = []
        self._progress = ProgressReporter(user_id, lambda report: self.set_trait("progress", report))
        self._frontend = False
        self._to_browser: list[tuple[dict[str, Any], list[bytes]]] = []
        self._parts: dict[str, list[bytes]] = {}
        self._files = transfer.FileReceiver(receive_dir)
        self._send_ids = itertools.count(1)
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        with self.hold_trait_notifications():
            self.set_trait("_settings", {"max_log": max_log, **_BROWSER_DEFAULTS})
            self.set_trait("user_id", self._machine.user_id)
            self.set_trait("server_url", url)
            self.set_trait("video", video)
            self.set_trait("audio", audio)
            self.set_trait("local_media", dict(_NO_MEDIA))
            self.set_trait("remote_media", dict(_NO_MEDIA))
            self.set_trait("stepping", bool(step))
        if client is not None:
            register = {"type": "register", "from": user_id}
            self._log_entry("out", "register", register, len(json.dumps(register)))
            self._log_entry("in", "registered", registered, len(json.dumps(registered)))
        with self._lock:
            self._machine.registered(registered)
            self._carry_out()
        self.on_msg(self._from_browser)
        self.observe(self._on_stepping, "stepping")
        if client is not None:
            kernel.call_soon(client.start, self._on_signal, self._on_signaling_state)

    @traitlets.default("_key")
    def _new_key(self) -> str:
        return uuid.uuid4().hex

    # ----------------------------------------------------------------------------------------- public API

    def send(self, data: str | bytes | bytearray | memoryview | Any, to: str | None = None) -> None:
        """Send ``data`` on the data channel: str, bytes, or any JSON-serializable value.

        In a call it goes to the peer; in a room to every other member, or to the member ``to``. The receiver
        gets the same type. Large payloads are split into frames and reassembled.
        """
        kind, payload = encode(data)
        with self._lock:
            self._machine.check_send(to)
            command = {"type": "send", "id": next(self._send_ids), "kind": kind}
            self._browser({**command, "to": to} if to is not None else command, [payload])

    # ------------------------------------------------------------------------------------------- files

    def send_file(
        self,
        path: str | pathlib.Path,
        *,
        name: str | None = None,
        to: str | None = None,
        timeout: float | None = 120,
    ) -> concurrent.futures.Future[dict[str, Any]]:
        """Send the file at ``path`` under its name (or ``name``); a directory goes file by file.

        It travels as nbcall file messages (``nbcall.call.transfer``) to the peer, or in a room to ``to`` or every
        member connected now, each of which checks its sha256. Returns a future of the verdicts,
        ``{"ok", "files": [{"name", "peer", "sha256", ...}], "error"}``, settled when every receiver answered
        or ``timeout`` seconds passed: ``await asyncio.wrap_future(phone.send_file(path))`` in a cell.
        """
        files = transfer.list_files([pathlib.Path(path)], names=[name] if name else None)
        with self._lock:
            self._machine.check_send(to)
            if to is not None:
                targets = [to]
            elif self.room:
                targets = [m for m, state in self.connections.items() if state == "connected"]
            else:
                targets = [self.peer]
            result, expire = transfer.send_files_through(
                lambda data: self.send(data, to=to), self._files, files, targets
            )
        if timeout is not None:
            self._later(timeout, expire)
        return result

    def _file_part(self, sender: str, kind: Any, data: Any, size: int) -> Message | None:
        """A received message as the user sees it: itself, a whole file, or None (a file's part, a verdict)."""
        handled = self._files.receive(sender, kind, data)
        if handled is None:
            return Message(data, sender, kind, size, time.time())
        reply, finished, _ = handled
        if reply is not None:
            try:
                self.send(reply, to=sender)
            except CallError as exc:
                logger.warning(
                    "%s: could not send the verdict on a file to %s: %s", self.user_id, sender, exc
                )
        return finished

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

    def step(self) -> dict[str, Any] | None:
        """Send the oldest held signaling message (see :attr:`stepping`); returns it, or None if none waits."""
        with self._lock:
            if not self.held:
                return None
            first, rest = self.held[0], self.held[1:]
            self.set_trait("held", rest)
            self._outbox(first["message"])
            self._carry_out()
            return dict(first["message"])

    async def create_offer(self, peer: str = "peer", timeout: float = 10) -> str:
        """Manual signaling (``server=False``): start a call and return its offer, candidates included, as text.

        Give the text to the other phone's :meth:`accept_offer`, and its answer to :meth:`accept_answer`.
        ``peer`` names the other side in this phone's traits and log.
        """
        self._need_manual("create_offer")
        gathered = self._expect_gathering(peer)
        with self._lock:
            self._manual_out.clear()
            self._machine.call(peer, time.monotonic())
            self._carry_out()
        return await self._manual_text(peer, gathered, "an offer", timeout)

    async def accept_offer(self, offer: str, timeout: float = 10) -> str:
        """Manual signaling: answer the offer text from the other phone's :meth:`create_offer`; returns the
        answer as text for its :meth:`accept_answer`."""
        self._need_manual("accept_offer")
        messages = manual.unpack(offer, "call")
        caller = str(messages[0].get("from") or "peer")
        gathered = self._expect_gathering(caller)
        with self._lock:
            self._manual_out.clear()
            now = time.monotonic()
            for message in messages:
                self._log_entry("in", str(message.get("type")), message, len(json.dumps(message)))
                self._machine.receive({**message, "from": caller, "to": self.user_id}, now)
                if self._machine.state == "ringing":
                    self._machine.answer(now)
            self._carry_out()
        if self.peer != caller or self.state in FREE:
            raise CallError(
                f"{self.user_id} could not take the offer from {caller}: {self.error or self.state}"
            )
        return await self._manual_text(caller, gathered, "an answer", timeout)

    async def accept_answer(self, answer: str, timeout: float = 10) -> None:
        """Manual signaling: take the answer text from the other phone's :meth:`accept_offer`, and wait until
        the call is connected."""
        self._need_manual("accept_answer")
        messages = manual.unpack(answer, "answer")
        with self._lock:
            if self.state != "calling":
                raise CallError(
                    f"{self.user_id} has no offer out (state {self.state!r}): create_offer() first"
                )
            now = time.monotonic()
            for message in messages:
                self._log_entry("in", str(message.get("type")), message, len(json.dumps(message)))
                self._machine.receive({**message, "from": self.peer, "to": self.user_id}, now)
            self._carry_out()
        await self.wait_for("connected", timeout=timeout)

    async def next_message(self, timeout: float = 10) -> Message:
        """The next data-channel message this phone receives (one that arrives after this call).

        Raises :class:`TimeoutError` when none arrives within ``timeout`` seconds. Lessons and scripts use it
        instead of polling :attr:`messages`.
        """
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[Message] = loop.create_future()

        def take(message: Message) -> None:
            loop.call_soon_threadsafe(_settle, arrived, message)

        self._callbacks.append(take)
        try:
            return await asyncio.wait_for(arrived, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self.user_id} received no message within {timeout} s (state {self.state!r})"
            ) from None
        finally:
            self._callbacks.remove(take)

    async def next_stats(self, timeout: float = 10) -> dict[str, Any]:
        """The next statistics summary the browser reports (it samples ``getStats()`` once a second while
        connected): :attr:`stats` as it is then. Raises :class:`TimeoutError` when none comes within ``timeout``
        seconds (no call connected, or no browser shows the phone). Lessons use it instead of polling ``stats``.
        """
        loop = asyncio.get_running_loop()
        waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]] = (
            loop,
            loop.create_future(),
        )
        with self._lock:
            self._stats_waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter[1], timeout)
        except asyncio.TimeoutError:
            hint = "" if self._frontend else f"; no browser shows {self.user_id} yet: display it in a cell"
            raise TimeoutError(
                f"{self.user_id} reported no statistics within {timeout} s (state {self.state!r}){hint}"
            ) from None
        finally:
            with self._lock:
                if waiter in self._stats_waiters:
                    self._stats_waiters.remove(waiter)

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

    async def wait_for_members(self, *peer_ids: str, timeout: float = 10) -> list[str]:
        """Wait until the data channel to each of ``peer_ids`` (all other members when none) is open.

        Returns the members waited for; raises :class:`CallError` when this phone is not in a room (or the room
        ends meanwhile) or a named member leaves it, :class:`TimeoutError` naming who is not connected yet.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[str]] = loop.create_future()

        def settle() -> None:
            if done.done():
                return
            verdict = self._members_verdict(peer_ids)
            if isinstance(verdict, Exception):
                done.set_exception(verdict)
            elif verdict is not None:
                done.set_result(verdict)

        def check(change: Any = None) -> None:
            loop.call_soon_threadsafe(settle)

        self.observe(check, ["state", "room", "members", "connections"])
        try:
            check()
            return await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            waiting = {m: s for m, s in self.connections.items() if s != "connected"}
            hint = "" if self._frontend else f"; no browser shows {self.user_id} yet: display it in a cell"
            raise TimeoutError(
                f"{self.user_id}'s room did not connect within {timeout} s: {waiting or 'no other member yet'}{hint}"
            ) from None
        finally:
            self.unobserve(check, ["state", "room", "members", "connections"])

    @property
    def log(self) -> list[dict[str, Any]]:
        """The signaling log: every message to and from the server, and the peer connection's events.

        Each entry has ``t`` (epoch seconds), ``dir`` ("out", "in" or "event"), ``type``, ``size`` (bytes
        on the wire) and ``detail`` (the message itself, or the event's value).
        """
        with self._lock:
            return list(self._log)

    async def diagnose(self, timeout: float = 30) -> Diagnosis:
        """Check this phone's browser: secure context, cameras and microphones, and which candidate types each
        of :attr:`ice_servers` yields (TURN credentials accepted or refused), with advice for each failure."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        request = self._request_diagnosis((loop, reply))
        try:
            return Diagnosis(await asyncio.wait_for(reply, timeout))
        except asyncio.TimeoutError:
            hint = "" if self._frontend else f": no browser shows {self.user_id} yet, display it in a cell"
            raise TimeoutError(f"{self.user_id}'s browser did not report within {timeout} s{hint}") from None
        finally:
            with self._lock:
                self._diagnoses.pop(request, None)

    def _request_diagnosis(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None) -> str:
        request = uuid.uuid4().hex
        with self._lock:
            if waiter is not None:
                self._diagnoses[request] = waiter
            self._browser({"type": "diagnose", "id": request, "ice_servers": self.ice_servers})
        return request

    def _check_from_widget(self) -> None:
        self._request_diagnosis(None)

    def explain(self, peer: str | None = None) -> Negotiation | None:
        """The offer and answer exchanged with ``peer`` (the current or last peer by default), every line
        explained, and what the answer chose from the offer; None before any. Shows as tables in a notebook."""
        with self._lock:
            return self._descriptions.get(peer if peer is not None else self.peer)

    def close(self) -> None:
        """Hang up, leave the signaling server, and close the widget."""
        if not getattr(self, "_closing", True):
            self._closing = True
            self.hangup()
            if self._client is not None:
                self._client.close()
            kernel.call_soon(self._arm_timer, None)
        super().close()

    # ------------------------------------------------------------------------ the machine's actions

    def _carry_out(self) -> None:
        """Carry out what the call machine decided (with the lock held)."""
        for action in self._machine.actions_to_take():
            if isinstance(action, ToServer):
                self._signal(action.message)
            elif isinstance(action, ToEngine):
                self._browser(action.message)
            elif isinstance(action, Changed):
                self._apply(action.fields)
        self._schedule_tick()

    def _signal(self, message: dict[str, Any]) -> None:
        """A message for the signaling server: held while stepping, then through the faults, if any."""
        if self.stepping:
            self.set_trait("held", [*self.held, {"message": message, **explain_step(message)}])
            self._log_entry("event", "held", explain_step(message))
        else:
            self._outbox(message)

    def _transmit(self, message: dict[str, Any]) -> None:
        """Send to the server (or, with manual signaling, keep for the text); logs it as sent."""
        with self._lock:
            if self._client is None:
                self._manual_out.append(message)
                size = len(json.dumps(message))
            else:
                size = len(self._client.send(message).encode())
            self._log_entry("out", message["type"], message, size)

    def _dropped(self, message: dict[str, Any], why: str) -> None:
        with self._lock:
            self._log_entry(
                "event", "fault", f"not sent: the {message['type']} message to {message.get('to')} ({why})"
            )

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in ``delay`` seconds on the background loop (for delayed or reordered messages)."""
        kernel.call_soon(lambda: asyncio.get_running_loop().call_later(delay, fn))

    def _step_from_widget(self) -> None:
        self.step()

    def _on_stepping(self, change: Any) -> None:
        if not change["new"]:  # stepping off: what waited goes now, in order
            while self.step() is not None:
                pass

    def _check_can_dial(self, action: str) -> None:
        if self._client is None:
            raise CallError(
                f"{self.user_id} has no signaling server (server=False): it cannot {action} by ID; "
                "connect by copying text: offer = await a.create_offer(); answer = await b.accept_offer(offer); "
                "await a.accept_answer(answer)"
            )

    def _need_manual(self, action: str) -> None:
        if self._client is not None:
            raise CallError(
                f"{action}() is for phones without a signaling server (Phone(..., server=False)); "
                f"{self.user_id} has one: use call() and answer()"
            )

    def _expect_gathering(self, peer: str) -> asyncio.Future[None]:
        """A future resolved when the browser has gathered its candidates for ``peer`` (made before the call
        starts, so that a quick gathering is not missed)."""
        gathered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gathered[peer] = gathered
        return gathered

    async def _manual_text(self, peer: str, gathered: asyncio.Future[None], what: str, timeout: float) -> str:
        """Wait until the browser gathered its ICE candidates for ``peer``, then pack what it would have sent."""
        try:
            await asyncio.wait_for(gathered, timeout)
        except asyncio.TimeoutError:
            hint = "" if self._frontend else f"; no browser shows {self.user_id} yet: display it in a cell"
            raise TimeoutError(f"{self.user_id} made no {what[3:]} within {timeout} s{hint}") from None
        finally:
            self._gathered.pop(peer, None)
        with self._lock:
            return manual.pack(list(self._manual_out))

    def _apply(self, fields: dict[str, Any]) -> None:
        state = fields.get("state")
        if state in ("calling", "ringing") or "room" in fields:
            self.stats = {}  # a new call or room: the last one's statistics no longer apply
        if state in ("calling", "ringing"):
            fields = {**fields, "media_error": ""}
        elif state in FREE:
            self._files.abort()  # files still coming will not be finished
            # The browser stops every track on "close"; say so now rather than when its report gets through.
            fields = {**fields, "local_media": dict(_NO_MEDIA), "remote_media": dict(_NO_MEDIA)}
        with self.hold_trait_notifications():
            for name, value in fields.items():
                self.set_trait(name, value)

    # ----------------------------------------------------------------------- messages from the server

    # ---------------------------------------------------------------------- messages from the browser

    def _from_browser(self, _widget: Any, content: Any, buffers: list[bytes]) -> None:
        problem = widget_protocol.problem(content, widget_protocol.TO_PYTHON)
        with self._lock:
            if problem is not None:
                # A browser half of another nbcall version, or a bug: say so where people look.
                kind = content.get("type") if isinstance(content, dict) else None
                logger.warning("%s: ignored a message from the browser: %s", self.user_id, problem)
                self._log_entry("event", "protocol-error", {"type": kind, "problem": problem})
                return
            getattr(self, f"_on_browser_{content['type']}")(content, buffers)
            self._carry_out()

    def _on_browser_batch(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        """Several messages the browser sent within one task, in order (one kernel round for all)."""
        for message in content["messages"]:
            self._from_browser(self, message, [])

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
                gathered.get_loop().call_soon_threadsafe(_settle, gathered)
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
        for callback in list(self._callbacks):
            try:
                callback(message)
            except Exception:
                logger.exception("%s: on_message callback %r failed", self.user_id, callback)

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
            loop.call_soon_threadsafe(_settle, future, self.stats)

    def _on_browser_media(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._apply({"local_media": content["local"], "remote_media": content["remote"]})
        self._log_entry("event", "media", {"local": content["local"], "remote": content["remote"]})
        # One sentence per cause: "camera and microphone" when both failed the same way.
        causes: dict[tuple[str, str], list[str]] = {}
        for problem in content["errors"]:
            causes.setdefault((problem["name"], problem["message"]), []).append(problem["kind"])
        for (name, message), kinds in causes.items():
            self._media_error(kinds, name, message)

    def _media_error(self, kinds: list[str], name: str, message: str) -> None:
        """Media this phone wanted are not in the call: say why, and that the call goes on without them."""
        if name == "NotOffered":
            # Not a fault: the caller offered no section for it (a data-only phone, say).
            self._log_entry(
                "event",
                "media",
                f"{self.peer} offered no {'/'.join(kinds)}: sending no {device_names(kinds)}",
            )
            return
        settings = " and ".join(f"{k}={getattr(self, k)!r}" for k in kinds)
        text = media_advice(kinds, name, message, settings)
        if self.media_error and text not in self.media_error:
            text = f"{self.media_error}\n{text}"
        logger.warning("%s: %s", self.user_id, text)
        self._log_entry("event", "media-error", {"kinds": kinds, "name": name, "message": message})
        self._apply({"media_error": text, "error": text})

    def _on_browser_failure(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._log_entry("event", "failure", content["message"])
        self._machine.engine_failed(f"browser: {content['message']}")

    def _on_browser_diagnosis(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        waiter = self._diagnoses.get(str(content["id"]))
        if waiter is not None:  # None: the widget's button asked, and the widget shows the report
            loop, reply = waiter
            loop.call_soon_threadsafe(_settle, reply, content["report"])

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

    # ------------------------------------------------------------------------------------- internals

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
        if kind in ("call", "answer") and isinstance(detail, dict):
            # Kept as text; explained only when the widget's SDP panel asks (ui "explain"), so that no call's
            # setup waits for the parser.
            self._descriptions.record(direction, detail)

    def _send_sdp(self) -> None:
        """The widget's SDP panel asked: send it the explained offer and answer of each peer (protocol ``sdp``)."""
        for peer in self._descriptions.peers():
            negotiation = self._descriptions.get(peer)
            if negotiation is not None:
                self._browser(negotiation.to_json())

    def __repr__(self) -> str:
        peer = f" with {self.peer!r}" if self.state in IN_CALL else ""
        return f"<Phone {self.user_id!r} {self.state}{peer} at {self.server_url}>"


def _settle(future: asyncio.Future[Any], result: Any = None) -> None:
    """Resolve ``future`` unless it is already done (a timeout, say): run on its loop."""
    if not future.done():
        future.set_result(result)
