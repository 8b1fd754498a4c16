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
import collections
import functools
import itertools
import json
import logging
import pathlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import anywidget
import traitlets

from ..call import config, kernel, owners, transfer
from ..call.client import SignalingClient, server_urls
from ..call.machine import FREE, IN_CALL, STATES, CallMachine, Changed, Delivered, ToEngine, ToServer
from ..call.progress import ProgressReporter
from ..exceptions import CallError
from ..teach.sdp import Descriptions
from ..wire.faults import Faults, FaultyOutbox
from ..wire.payload import MAX_RECEIVE_SIZE, Message
from .backlog import Backlog
from .from_browser import FromBrowser
from .outgoing import Outgoing
from .phone_part import settle
from .sending import Sending

__all__ = ["STATES", "Phone"]

logger = logging.getLogger("nbcall.widget.phone")

STATIC = pathlib.Path(__file__).parent / "static"
#: How ``error`` begins once messages for a browser half that never came were dropped.
_NEVER_SHOWN = "no browser ever displayed this phone, so none runs its calls"
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
    # Received messages reach Python in parts (Jupyter's websocket refuses messages over 10 MiB by default) of
    # 1 MiB rather than 4: the page holds less of a message, and the hop after its last frame was shorter in
    # three loaded runs of bench/throughput.py --variants (0.5-0.9 s against 0.9-1.7 s of 20 MiB); the whole
    # transfer's speed was level within their noise (pooled medians 3.1 and 2.9 MiB/s).
    "part_size": 1024 * 1024,
    # A room's grid shows at most this many remote tiles; an SFU room's phone receives video for those only.
    "max_tiles": 9,
}


class Phone(FromBrowser, Sending, anywidget.AnyWidget):
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

    A message kept in memory has at most ``max_receive_size`` bytes (512 MiB by default): a larger one is
    dropped, and :attr:`error` says so; the call goes on.

    Its calls run in the browser that displays it: until one does, what that browser will need waits, at most
    the last 1,000 messages (16 MiB, ``nbcall.widget.backlog``); older ones are dropped and
    counted, and :attr:`error` says to display the phone.

    A file sent with :meth:`send_file` (or from a :class:`~nbcall.Peer` or ``nbcall send``) arrives as one
    :class:`~nbcall.call.transfer.FileMessage` (``name``, ``sha256``), checked; its bytes are in ``data``, or with
    ``receive_dir`` it is written there under its name (``path``) and an existing file is kept.

    Parameters
    ----------
    user_id
        The ID others call: a printable string of 1-64 characters. A live phone of this kernel with the same
        ID (the cell ran before) is closed first.
    server
        A signaling server URL (``ws://``, ``wss://``; ``http(s)://`` is taken as ``ws(s)://``), the URLs of a
        deployment's nodes, None for the kernel's own server, or False for none (manual signaling).
    video, audio
        What this phone sends in a call: False, True, or a dict of MediaTrackConstraints.
    auto_answer
        Answer incoming calls and room invitations at once.
    ice_servers
        STUN/TURN servers: URL strings or ``{"urls", "username", "credential"}`` dicts; none by default.
    ice_transport_policy
        ``"all"``, or ``"relay"`` to connect only through a TURN server.
    max_messages, max_log
        How many received messages and log entries are kept.
    timeout
        Seconds to wait for the server to accept the registration.
    ring_timeout
        Seconds a call rings unanswered before it ends.
    connect_timeout
        Seconds an answered call may take to connect before it fails.
    step
        Hold each outgoing signaling message until :meth:`step`.
    faults
        What to drop, delay or reorder of what this phone sends (:class:`~nbcall.Faults` or a dict of its
        fields).
    receive_dir
        Where received files are written; None keeps them in memory.

    Raises
    ------
    ValueError, TypeError
        An argument is malformed (the message names it and its value), such as an ``ice_servers`` entry.
    nbcall.exceptions.DuplicateID
        A phone of another kernel or process holds ``user_id``.
    nbcall.exceptions.BadID
        ``user_id`` breaks the server's naming rules.
    nbcall.exceptions.ServerUnreachable
        No signaling server answered within ``timeout`` seconds, or it refused the connection.
    """

    _esm = STATIC / "phone.js"
    _css = STATIC / "phone.css"

    # Lets the browser find this model's phone from any of its views (anywidget gives each its own proxy).
    _key = traitlets.Unicode().tag(sync=True)
    #: What the browser half needs to know of this side (docs/widget-protocol.md, settings).
    _settings = traitlets.Dict(read_only=True).tag(sync=True)
    #: The page ID (js/page.js) of the browser tab that runs this phone's calls; other tabs only show it.
    _engine_page = traitlets.Unicode("", read_only=True).tag(sync=True)
    user_id = traitlets.Unicode(read_only=True).tag(sync=True)
    state = traitlets.Enum(STATES, default_value="idle", read_only=True).tag(sync=True)
    peer = traitlets.Unicode("", read_only=True).tag(sync=True)
    peers = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    error = traitlets.Unicode("", read_only=True).tag(sync=True)
    online = traitlets.Bool(False, read_only=True).tag(sync=True)
    #: The signaling server's URL, token included: Python only (share it only with those who may call).
    server_url = traitlets.Unicode("", read_only=True)
    #: The same without its query (which may hold the token): what the browser shows.
    server_address = traitlets.Unicode("", read_only=True).tag(sync=True)
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
    #: The invitation ringing now, ``{"room", "from", "members"}`` (with ``"sfu": True`` into an SFU room), or
    #: ``{}``.
    invitation = traitlets.Dict(read_only=True).tag(sync=True)
    #: Whether this phone is closed for good while its widget stays on screen: a new phone of this process took
    #: its ID (its ``error`` says so), and every view shows it as replaced.
    closed = traitlets.Bool(False, read_only=True).tag(sync=True)
    #: "mesh" or "sfu" in a room ("" outside one); in an SFU room the state of this phone's own two connections
    #: to the SFU, ``{"publisher": ..., "subscriber": ...}`` (``connections`` stays keyed by member).
    room_mode = traitlets.Unicode("", read_only=True).tag(sync=True)
    sfu_links = traitlets.Dict(read_only=True).tag(sync=True)
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
    #: The largest message kept in memory, in bytes: a larger one is dropped (the browser stops taking it).
    max_receive_size = config.ReceiveSize()

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
        max_receive_size: int = MAX_RECEIVE_SIZE,
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
        receive_limit = config.max_receive_size(max_receive_size)
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
        registered: dict[str, Any] | None
        if server is False:
            # Manual signaling: the offer and answer travel as text the user copies (create_offer()).
            url, registered = "", {"type": "registered", "id": user_id, "peers": []}
        else:
            urls = server_urls(server) if server is not None else [kernel.default_server().url]
            # A live phone of this process with this ID (the cell ran before) gives it up first.
            secret = owners.take_over(user_id, urls)
            client = SignalingClient(urls, user_id, register_fields=machine.register_fields, secret=secret)
            # Register before the widget exists, so a refused ID (taken, invalid) leaves no dead widget behind.
            registered = self._register(client, timeout)
            url = client.url
        super().__init__()
        self._adopt(client, machine, registered)
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
        #: Waiters of next_stats(), called with each summary (see _next).
        self._stats_waiters: list[Callable[[dict[str, Any]], Any]] = []
        self._callbacks: list[Callable[[Message], Any]] = []
        self._due = []
        self._receiver_thread = self._receiver_loop = None
        self._receiver_work = collections.deque()
        self._progress = ProgressReporter(user_id, lambda report: self.set_trait("progress", report))
        self._frontend = False
        #: The page running the calls (None: none yet), and every page that showed the phone, last shown last.
        self._engine: str | None = None
        self._pages: list[str] = []
        self._to_browser = Backlog()
        self._outgoing = Outgoing()
        #: Senders of file parts waiting for the browser to take what was sent: (the awaiting loop, its future).
        self._room_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []
        self._parts: dict[str, list[bytes | memoryview]] = {}
        self._refusing: set[str] = set()  # senders whose message under way was too large
        self._files = transfer.FileReceiver(
            receive_dir, max_receive_size=receive_limit, reply_later=self._send_reply
        )
        self._send_ids = itertools.count(1)
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        with self.hold_trait_notifications():
            self.set_trait(
                "_settings", {"max_log": max_log, "max_receive_size": receive_limit, **_BROWSER_DEFAULTS}
            )
            self.max_receive_size = receive_limit
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
            if registered is not None:
                self._log_entry("in", "registered", registered, len(json.dumps(registered)))
        if registered is not None:
            with self._lock:
                self._machine.registered(registered)
                self._carry_out()
        self.on_msg(self._from_browser)
        self.observe(self._on_stepping, "stepping")
        if client is not None:
            owners.held(self, client.urls)
            start = functools.partial(client.start, self._on_signal, self._on_signaling_state)
            if registered is None:  # made on the background loop's thread: it registers now, without waiting
                asyncio.ensure_future(self._register_later(timeout, start))
            else:
                kernel.call_soon(start)

    @traitlets.observe("server_url")
    def _show_address(self, change: dict[str, Any]) -> None:
        self.set_trait("server_address", owners.urls_key([change["new"]])[0])

    @traitlets.observe("max_receive_size")
    def _tell_receive_size(self, change: dict[str, Any]) -> None:
        self._files.max_receive_size = change["new"]
        self.set_trait("_settings", {**self._settings, "max_receive_size": change["new"]})

    @traitlets.default("_key")
    def _new_key(self) -> str:
        return uuid.uuid4().hex

    # ----------------------------------------------------------------------------------------- public API

    def on_message(self, callback: Callable[[Message], Any]) -> Callable[[Message], Any]:
        """Call ``callback(message)`` for every data-channel message received (usable as a decorator).

        Parameters
        ----------
        callback
            Called with each :class:`~nbcall.Message`, on the kernel's main thread; returned as it is.
        """
        self._callbacks.append(callback)
        return callback

    async def next_message(self, timeout: float = 10) -> Message:
        """The next data-channel message this phone receives (one that arrives after this call).

        Raises :class:`TimeoutError` when none arrives within ``timeout`` seconds. Lessons and scripts use it
        instead of polling :attr:`messages`.

        Parameters
        ----------
        timeout
            Seconds to wait.

        Raises
        ------
        TimeoutError
            No message arrived within ``timeout`` seconds.
        """
        message: Message = await self._next(self._callbacks, timeout, "received no message")
        return message

    async def next_stats(self, timeout: float = 10) -> dict[str, Any]:
        """The next statistics summary the browser reports (it samples ``getStats()`` once a second while
        connected): :attr:`stats` as it is then. Raises :class:`TimeoutError` when none comes within ``timeout``
        seconds (no call connected, or no browser shows the phone). Lessons use it instead of polling ``stats``.

        Parameters
        ----------
        timeout
            Seconds to wait.

        Raises
        ------
        TimeoutError
            No summary came within ``timeout`` seconds.
        """
        stats: dict[str, Any] = await self._next(
            self._stats_waiters, timeout, "reported no statistics", self._timeout_hint
        )
        return stats

    async def _next(
        self,
        waiters: list[Callable[[Any], Any]],
        timeout: float,
        failure: str,
        hint: Callable[[], str] = str,
    ) -> Any:
        """The next value handed to ``waiters`` (a list of callbacks, called on any thread), waiting in a callback
        of the list; :class:`TimeoutError` saying ``failure`` (and ``hint()``, as it is then) when none comes within ``timeout``."""
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[Any] = loop.create_future()

        def take(value: Any) -> None:
            loop.call_soon_threadsafe(settle, arrived, value)

        with self._lock:
            waiters.append(take)
        try:
            return await asyncio.wait_for(arrived, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self.user_id} {failure} within {timeout} s (state {self.state!r}){hint()}"
            ) from None
        finally:
            with self._lock:
                waiters.remove(take)

    @property
    def log(self) -> list[dict[str, Any]]:
        """The signaling log: every message to and from the server, and the peer connection's events.

        Each entry has ``t`` (epoch seconds), ``dir`` ("out", "in" or "event"), ``type``, ``size`` (bytes
        on the wire) and ``detail`` (the message itself, or the event's value).
        """
        with self._lock:
            return list(self._log)

    def close(self) -> None:
        """Hang up, leave the signaling server (its ID is free when this returns), and close the widget."""
        self._shut_down()
        super().close()

    def _shut_down(self) -> None:
        if not getattr(self, "_closing", True):
            self._closing = True
            self.hangup()
            self._close_signaling()
            kernel.call_soon(self._arm_timer, None)

    def _retire(self) -> None:
        # Replaced by a new phone: everything closes but the widget, whose views go on showing why (a closed
        # widget's views vanish from the notebook, which would leave the user guessing). As with any ipywidget
        # that a re-run cell replaces, the kernel keeps the small object until it exits or close() is called.
        self._shut_down()
        with self._lock:
            self.set_trait("closed", True)

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
            elif isinstance(action, Delivered):  # through the server (an SFU room's directed send)
                self._show_relayed("in", action.peer, action.kind, action.payload)
                self._to_receiver(functools.partial(self._received, action.peer, action.kind, action.payload))
                kernel.call_soon(self._run_due)  # once the lock is released
        self._schedule_tick()

    def _timeout_hint(self) -> str:
        # The commonest cause: the phone was never displayed, so no browser does its WebRTC.
        return "" if self._frontend else f"; no browser shows {self.user_id} yet: display it in a cell"

    def _check_can_dial(self, action: str) -> None:
        if self._client is None:
            raise CallError(
                f"{self.user_id} has no signaling server (server=False): it cannot {action} by ID; "
                "connect by copying text: offer = await a.create_offer(); answer = await b.accept_offer(offer); "
                "await a.accept_answer(answer)"
            )

    def _apply(self, fields: dict[str, Any]) -> None:
        state = fields.get("state")
        if state in ("calling", "ringing") or "room" in fields:
            self.stats = {}  # a new call or room: the last one's statistics no longer apply
        if state in ("calling", "ringing") or fields.get("room"):
            self._to_receiver(self._files.new_call)
        if state in ("calling", "ringing"):
            fields = {**fields, "media_error": ""}
        elif state in FREE:
            self._to_receiver(self._files.abort)  # files still coming will not be finished
            self._outgoing.clear()  # the browser fails what it still had of them
            self._pump()  # wakes file senders: their next send says the call ended
            # The browser stops every track on "close"; say so now rather than when its report gets through.
            fields = {**fields, "local_media": dict(_NO_MEDIA), "remote_media": dict(_NO_MEDIA)}
        with self.hold_trait_notifications():
            for name, value in fields.items():
                self.set_trait(name, value)

    # ----------------------------------------------------------------------- messages from the server

    # ---------------------------------------------------------------------- messages from the browser

    # ------------------------------------------------------------------------------------- internals

    def _browser(self, content: dict[str, Any], buffers: list[bytes | memoryview] | None = None) -> None:
        """Send to the browser half; held back until it said hello, since earlier messages would be lost."""
        if self._frontend:
            self._send_custom(content, buffers or [])
        elif self._to_browser.add(content, buffers or []):
            self._never_shown()

    def _never_shown(self) -> None:
        """Messages for the browser half were dropped: no browser ever showed the phone (lock held)."""
        backlog = self._to_browser
        if backlog.dropped == 1 or self.error.startswith(_NEVER_SHOWN):
            if backlog.dropped == 1:
                logger.warning(
                    "%s was never displayed: dropping what its browser half would need", self.user_id
                )
            self._apply({
                "error": f"{_NEVER_SHOWN}: {backlog.dropped} messages for its browser half were dropped (it keeps "
                f"the last {backlog.max_count}, {backlog.max_bytes // 2**20} MiB); display it (put it last in "
                "a cell, or display(phone)) before calling or answering"
            })  # fmt: skip

    def _send_custom(self, content: dict[str, Any], buffers: list[bytes | memoryview] | None = None) -> None:
        """Send a custom message to the browser half (``Widget.send``, which ``Phone.send`` overrides)."""
        anywidget.AnyWidget.send(self, content, buffers)

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

    def __repr__(self) -> str:
        peer = f" with {self.peer!r}" if self.state in IN_CALL else ""
        return f"<Phone {self.user_id!r} {self.state}{peer} at {self.server_address}>"
