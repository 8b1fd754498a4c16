"""A Python peer: the phone with its WebRTC in Python (aiortc), an adapter of the call machine (``nbcall.call.machine``).

``Peer`` is to a script, a kernel with no browser or a server process what ``Phone`` is to a notebook page: it
registers on a signaling server, calls and answers, and sends and receives typed data framed exactly as two
browser phones do, so a Peer and a Phone talk to each other. The call's logic lives in
:class:`~nbcall.call.machine.CallMachine`; this class feeds it events and carries out its actions, with the aiortc
engine (:mod:`nbcall.peer.rtc`) in place of the browser half. It runs on the same background loop as phones do
(``nbcall.call.kernel``), so it works the same in a notebook, in a plain script (``peer.wait(...)``, ``with``) and
in async code (``await peer.wait_for(...)``, ``async with``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import traitlets

from ..call import config, kernel, owners
from ..call.client import SignalingClient
from ..call.machine import FREE, IN_CALL, STATES, CallMachine, Changed, Delivered, ToEngine, ToServer
from ..call.progress import PROGRESS_MIN, ProgressReporter
from ..call.transfer import FileReceiver
from ..wire.payload import MAX_RECEIVE_SIZE, Kind, Message, encode
from .card import PeerCard
from .from_engine import FromEngine

if TYPE_CHECKING:
    from typing_extensions import Self

    from .rtc import Engine

__all__ = ["Peer", "require_peer_dependencies"]

logger = logging.getLogger("nbcall.peer.peer")

INSTALL_HINT = 'pip install "nbcall[peer]"'


def require_peer_dependencies() -> None:
    """Raise an ImportError saying what to install when aiortc or numpy is missing."""
    missing = []
    for module in ("aiortc", "numpy", "av"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"nbcall.Peer runs WebRTC in Python and needs {', '.join(missing)}, which is not installed: "
            f"{INSTALL_HINT} (the browser Phone needs none of it)"
        )


def _abandoned(
    user_id: str,
    client: SignalingClient,
    media_pool: concurrent.futures.Executor,
    callback_pool: concurrent.futures.Executor,
) -> None:
    """A Peer was garbage-collected without :meth:`Peer.close`: say so once, and free its ID."""
    logger.warning(
        "Peer %r was garbage-collected without close(): its ID is freed now; "
        "close a Peer (peer.close(), or `with Peer(...) as peer:`) when done with it",
        user_id,
    )
    if not kernel.shutting_down():
        client.close()
    media_pool.shutdown(wait=False)
    callback_pool.shutdown(wait=False)


class Peer(FromEngine, PeerCard, traitlets.HasTraits):
    """A phone registered as ``user_id`` whose WebRTC runs in Python; see the module's docstring.

    Arguments are those of :class:`~nbcall.Phone` where they make sense. ``video`` and ``audio`` are what it
    sends in a call: an iterator of arrays or a callable returning one (video: height x width x 3 RGB uint8, at
    ``fps`` frames per second; audio: int16 samples at ``sample_rate`` Hz, ``channels`` channels), or None.
    Received video and audio go to :meth:`on_frame` and :meth:`on_audio` callbacks. Received files are written
    to ``receive_dir`` when one is given (an existing file is kept unless ``overwrite``), else kept in memory.
    A message kept in memory has at most ``max_receive_size`` bytes: a larger one is dropped, and
    :attr:`error` says so.

    Parameters
    ----------
    user_id, server, auto_answer, ice_servers, max_messages, max_log, ring_timeout
        As for :class:`~nbcall.Phone` (``server``: one URL, or None for a server of this process).
    video, audio
        What to send: an iterator of arrays or a callable returning one, or None.
    fps, sample_rate, channels
        The video's frames per second; the audio's rate in Hz and its channels (1 or 2), sent and received.
    receive_dir, overwrite
        Where received files are written (None: in memory), and whether one may replace an existing file.
    timeout
        Seconds to wait for the registration, and by default in :meth:`hangup` and :meth:`flush`.

    Raises
    ------
    ImportError
        aiortc or numpy is missing: ``pip install "nbcall[peer]"``.
    ValueError, TypeError, nbcall.exceptions.DuplicateID, nbcall.exceptions.ServerUnreachable
        As for :class:`~nbcall.Phone`.
    """

    _client: SignalingClient  # a Peer always has a server

    user_id = traitlets.Unicode(read_only=True)
    server_url = traitlets.Unicode("", read_only=True)
    state = traitlets.Enum(STATES, default_value="idle", read_only=True)
    peer = traitlets.Unicode("", read_only=True)
    peers = traitlets.List(traitlets.Unicode(), read_only=True)
    error = traitlets.Unicode("", read_only=True)
    online = traitlets.Bool(False, read_only=True)
    #: The received data-channel messages, oldest first (at most ``max_messages``).
    messages: traitlets.List[Message] = traitlets.List(read_only=True)
    #: The room this peer is in ("" outside a room), its members in the order they joined (this peer
    #: included), the connection to each other member ("connecting", "connected" or "failed"), and the
    #: invitation ringing now (``{"room", "from", "members"}``, or ``{}``): as on :class:`~nbcall.Phone`.
    room = traitlets.Unicode("", read_only=True)
    members = traitlets.List(traitlets.Unicode(), read_only=True)
    connections = traitlets.Dict(read_only=True)
    invitation = traitlets.Dict(read_only=True)
    #: "mesh" or "sfu" in a room ("" outside one); in an SFU room the state of this peer's own two connections
    #: to the SFU, ``{"publisher": ..., "subscriber": ...}`` (``connections`` stays keyed by member).
    room_mode = traitlets.Unicode("", read_only=True)
    sfu_links = traitlets.Dict(read_only=True)
    #: The transfer under way (a large message or a file): ``{"direction": "out"|"in", "peer", "name", "done",
    #: "total", "rate", "eta"}`` (see :mod:`nbcall.call.progress`); ``{}`` when none is.
    progress = traitlets.Dict(read_only=True)
    #: The largest message kept in memory, in bytes (default 512 MiB): a larger one is dropped, with an
    #: :attr:`error` and a log line, and the call goes on.
    max_receive_size = config.ReceiveSize()

    @traitlets.observe("max_receive_size")
    def _bound_files(self, change: dict[str, Any]) -> None:
        self._files.max_receive_size = change["new"]

    def __init__(
        self,
        user_id: str,
        *,
        server: str | None = None,
        auto_answer: bool = False,
        ice_servers: Iterable[str | dict[str, Any]] = (),
        video: Any = None,
        audio: Any = None,
        fps: float = 15,
        sample_rate: int = 48000,
        channels: int = 1,
        receive_dir: str | Path | None = None,
        overwrite: bool = False,
        max_messages: int = 100,
        max_log: int = 500,
        max_receive_size: int = MAX_RECEIVE_SIZE,
        timeout: float = 10,
        ring_timeout: float = 30,
    ) -> None:
        require_peer_dependencies()
        from . import rtc

        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError(f"user_id must be a non-empty string, not {user_id!r}")
        if max_messages < 0 or max_log < 0:
            raise ValueError(f"max_messages and max_log must be >= 0, not {max_messages} and {max_log}")
        if not fps > 0 or sample_rate <= 0 or channels not in (1, 2):
            raise ValueError(
                f"need fps > 0, sample_rate > 0 and channels 1 or 2, not {fps}, {sample_rate}, {channels}"
            )
        for name, source in (("video", video), ("audio", audio)):
            if source is not None and not callable(source) and not hasattr(source, "__iter__"):
                raise TypeError(
                    f"{name} must be an iterator of arrays or a callable returning one, not {source!r}"
                )
        servers = config.ice_servers(ice_servers)
        receive_limit = config.max_receive_size(max_receive_size)
        url = config.server_url(server) if server is not None else kernel.default_server().url
        machine = CallMachine(user_id, auto_answer, servers, ring_timeout=ring_timeout)
        # Registers with ``rooms: true`` (and, after a reconnect, the room it is in): a Peer can be invited.
        secret = owners.take_over(user_id, [url])  # a live Peer of this process with this ID gives it up
        client = SignalingClient(url, user_id, register_fields=machine.register_fields, secret=secret)
        registered = self._register(client, timeout)
        super().__init__()
        self._adopt(client, machine, registered)
        self.max_messages = max_messages
        self.max_log = max_log
        self.timeout = timeout
        self._log: list[dict[str, Any]] = []
        self._callbacks: list[Callable[[Message], Any]] = []
        self._progress = ProgressReporter(user_id, lambda report: self.set_trait("progress", report))
        self._media = rtc.MediaOptions(
            video=video, audio=audio, fps=fps, sample_rate=sample_rate, channels=channels
        )
        self._engine: Engine = rtc.Engine(self, self._media)
        self._files = FileReceiver(
            receive_dir, overwrite=overwrite, max_receive_size=receive_limit, reply_later=self._reply_later
        )
        self.max_receive_size = receive_limit
        self._transfers = itertools.count(1)
        # User callbacks run here, one at a time and in order, never on the signaling loop.
        self._callback_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbcall-peer")
        self._pending_callbacks = 0  # jobs in the pool's queue, bounded (see FromEngine)
        self._dropped_callbacks = 0
        self._callback_count_lock = threading.Lock()
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._display: Any = None
        #: Names of files whose reception a call's end interrupted (what came is kept for the next send of the
        #: file to resume when its sender asked for that, else deleted).
        self.interrupted_files: list[str] = []
        #: The peer connections' states, as aiortc reported them.
        self.rtc: dict[str, str] = {}
        with self.hold_trait_notifications():
            self.set_trait("user_id", self._machine.user_id)
            self.set_trait("server_url", url)
        if registered is not None:
            self._log_entry("in", "registered", registered, len(json.dumps(registered)))
            with self._lock:
                self._machine.registered(registered)
                self._carry_out()
        owners.held(self, [url])
        # The loop keeps only weak references to a Peer, so that one nobody holds is collected (and warns).
        self._finalizer = weakref.finalize(
            self, _abandoned, self._machine.user_id, client, self._engine.pool, self._callback_pool
        )
        self._finalizer.atexit = False  # at exit, owners.close_all closes the Peers still open
        start = functools.partial(
            client.start, owners.weak_method(self._on_signal), owners.weak_method(self._on_signaling_state)
        )
        if registered is None:  # made on the background loop's thread: it registers now, without waiting
            asyncio.ensure_future(self._register_later(timeout, start))
        else:
            kernel.call_soon(start)

    # ----------------------------------------------------------------------------------------- public API

    def leave(self) -> None:
        """Leave the room (after what was sent has arrived): the others see this peer go and go on.

        A pending invitation is declined.
        """
        if self.state == "connected" and not self._on_loop():
            self.flush()
        super().leave()

    def hangup(self, *, wait: bool = True) -> None:
        """End the current call on both sides, or leave the room, after what was sent has arrived (at most
        ``timeout`` s; ``wait=False``: at once, dropping what is still under way)."""
        if wait and self.state == "connected" and not self._on_loop():
            self.flush()
        super().hangup()

    def send(self, data: Any, *, to: str | None = None) -> concurrent.futures.Future[None]:
        """Send ``data`` on the data channel: str, bytes, or any JSON-serializable value, of any size.

        The peer receives the same type. Returns a future that is done once the whole message was handed to the
        connection (sends queue in order; :meth:`flush` waits until they have arrived). In a room it goes to
        every member connected now, or to the member ``to`` (in an SFU room through the signaling server, up to its
        ``max_message_size``).

        Raises
        ------
        nbcall.CallError, TypeError
            As :meth:`Phone.send <nbcall.Phone.send>` does.
        """
        kind, payload = encode(data)
        if self._sent_through_server(kind, payload, to):
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return done
        with self._lock:
            self._machine.check_send(to)
        return self._submit_send(kind, payload, to, name=None)

    def send_file(
        self, path: str | Path, *, name: str | None = None, to: str | None = None, resume: bool = True
    ) -> concurrent.futures.Future[dict[str, Any]]:
        """Send the file at ``path`` (its name travels with it, as ``name`` or the file's own name).

        Returns a future whose result is the receivers' verdict: ``{"ok": True, "files": [...], "code": "ok"}``
        or ``{"ok": False, "error": ..., "code": ...}`` (codes: :data:`nbcall.call.transfer.CODES`). A directory
        is sent file by file with its relative paths. In a room the file goes to every member connected now, or
        to the member ``to``. A receiver that kept part of the file from a cut transfer gets the rest, one that
        has it gets nothing (``resume=False``: the whole file again).

        Raises
        ------
        nbcall.CallError, FileNotFoundError, PermissionError
            As :meth:`Phone.send_file <nbcall.Phone.send_file>` does.
        """
        return self._send_files(path, name, to, timeout=max(30.0, self.timeout), resume=resume)

    async def send_file_part(
        self, data: Any, targets: Sequence[str], progress: dict[str, Any] | None
    ) -> None:
        """Send one message of a file to ``targets`` and report ``progress`` (see
        :class:`~nbcall.call.transfer.FileLink`); returns once aiortc took it."""
        kind, payload = encode(data)
        if self.room_mode == "sfu":  # the SFU relays one send to every member
            await self._engine.send(kind, payload, None)
        else:
            await asyncio.gather(*(self._engine.send(kind, payload, target) for target in targets))
        if progress is not None:
            self._report_progress(progress)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything sent has arrived at the peer (acknowledged); False if ``timeout`` passed."""
        wait = self.timeout if timeout is None else timeout
        try:
            return kernel.run(self._engine.flush(wait), timeout=wait + 1, what="Peer.flush()")
        except TimeoutError:
            return False

    def on_message(self, callback: Callable[[Message], Any]) -> Callable[[Message], Any]:
        """Call ``callback(message)`` for every data-channel message received (usable as a decorator).

        Callbacks run one at a time, in order, on a thread of the peer's own.
        """
        self._callbacks.append(callback)
        return callback

    def on_frame(self, callback: Callable[[Any, float], Any]) -> Callable[[Any, float], Any]:
        """Call ``callback(frame, timestamp)`` with each remote video frame (HxWx3 RGB uint8, seconds).

        Frames that arrive while the callback still runs are dropped, not queued. A peer with a frame callback
        offers (and answers) to receive video: set it before calling or answering.
        """
        self._media.on_frame.append(callback)
        return callback

    def on_room_frame(self, callback: Callable[[str, Any, float], Any]) -> Callable[[str, Any, float], Any]:
        """In a room (mesh or SFU), call ``callback(member, frame, timestamp)`` with each member's video frames
        (HxWx3 RGB uint8, seconds); :meth:`on_frame` stays for 1:1 calls.

        As with :meth:`on_frame`, frames that arrive while the callback runs are dropped, and a peer receives
        video only once it has a frame callback: set it before joining.
        """
        self._media.on_room_frame.append(callback)
        return callback

    def on_audio(self, callback: Callable[[Any, float], Any]) -> Callable[[Any, float], Any]:
        """Call ``callback(samples, timestamp)`` with remote audio: int16, ``sample_rate`` Hz, ``channels``."""
        self._media.on_audio.append(callback)
        return callback

    def wait(self, *states: str, timeout: float = 10) -> str:
        """The blocking twin of :meth:`wait_for`, for scripts: ``peer.wait("connected")``.

        Raises
        ------
        nbcall.CallError, TimeoutError
            As :meth:`wait_for` does.
        RuntimeError
            Called from a callback, on the background loop: ``await peer.wait_for(...)`` there.
        """
        self._refuse_on_loop(
            "Peer.wait() blocks: from a callback or async code use `await peer.wait_for(...)`"
        )
        return self._wait_states(states, timeout)

    def wait_members(self, *peer_ids: str, timeout: float = 10) -> list[str]:
        """The blocking twin of :meth:`wait_for_members`, for scripts: ``peer.wait_members("B", "C")``.

        Raises
        ------
        nbcall.CallError, TimeoutError
            As :meth:`wait_for_members` does.
        RuntimeError
            Called on the background loop: ``await peer.wait_for_members(...)`` there.
        """
        self._refuse_on_loop(
            "Peer.wait_members() blocks: from a callback or async code use `await peer.wait_for_members()`"
        )
        return self._wait_members(peer_ids, timeout)

    @property
    def log(self) -> list[dict[str, Any]]:
        """The signaling log: every message to and from the server, and the peer connections' events."""
        with self._lock:
            return list(self._log)

    @property
    def stats(self) -> dict[str, Any]:
        """What the current call has carried: bytes and messages each way, video frames in and out.

        In a room, one entry per member. In a mesh room each is that member's link, shaped as a 1:1 call's. In an
        SFU room a member's entry holds only what came from it through the SFU (``bytes_received``,
        ``messages_in``, ``frames_in``...), so that entries add up; this peer's own two links to the SFU are
        under its own ID, once: ``stats[peer.user_id]["publisher"]`` and ``["subscriber"]``."""
        if self._on_loop():  # a callback on the loop: the engine is its own, read it now
            per_peer = self._engine.stats()
        else:
            try:
                per_peer = kernel.run(self._stats(), timeout=2)
            except TimeoutError:
                return {}
        if self.room:  # in a room, one summary per member (as on a Phone)
            return {m: per_peer[m] for m in self.members if m in per_peer}
        return per_peer.get(self.peer, {}) if self.peer else {}

    def upload(self) -> dict[str, int]:
        """What this peer has sent so far over the connections it holds now: ``{"connections", "media_bytes",
        "data_bytes"}``. In a mesh room it holds one connection per member and sends its video once per member;
        in an SFU room one, to the SFU."""
        return kernel.run(self._engine.upload(), timeout=5)

    async def _stats(self) -> dict[str, dict[str, Any]]:
        return self._engine.stats()

    def close(self, *, wait: bool = True) -> None:
        """Hang up (after what was sent has arrived, unless ``wait=False``), leave the signaling server and close
        the connections."""
        if self._closing:
            return
        try:
            self.hangup(wait=wait)
        finally:
            self._closing = True
            self._finalizer.detach()
            self._close_signaling(self.timeout)
            kernel.call_soon(self._arm_timer, None)
            if self._on_loop():
                asyncio.ensure_future(self._engine.close())
            else:
                try:
                    kernel.run(self._engine.close(), timeout=self.timeout)
                except TimeoutError:
                    logger.warning(
                        "%s: the peer connections did not close within %s s", self.user_id, self.timeout
                    )
            self._callback_pool.shutdown(wait=False)

    async def aclose(self) -> None:
        """:meth:`close` for async code (runs it on a thread, so the caller's loop keeps going)."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------ the machine's actions

    def _carry_out(self) -> None:
        """Carry out what the call machine decided (with the lock held)."""
        for action in self._machine.actions_to_take():
            if isinstance(action, ToServer):
                text = self._client.send(action.message)
                self._log_entry("out", action.message["type"], action.message, len(text.encode()))
            elif isinstance(action, ToEngine):
                kernel.call_soon(self._engine.command, action.message)
            elif isinstance(action, Changed):
                self._apply(action.fields)
            elif isinstance(action, Delivered):
                self.engine_message(action.peer, action.kind, action.payload)
        self._schedule_tick()

    def _apply(self, fields: dict[str, Any]) -> None:
        if "room" in fields:
            self._media.room = bool(fields["room"])
        if fields.get("state") in ("calling", "ringing") or fields.get("room"):
            self._to_receiver(self._files.new_call)
        if fields.get("state") in FREE:
            # Files still coming when a call ends will not be finished: drop them, and say which.
            self._abort_files([None])
        elif "members" in fields:
            # So will those of a member who left.
            self._abort_files(list(set(self.members) - set(fields["members"])))
        with self._lock, self.hold_trait_notifications():
            for name, value in fields.items():
                self.set_trait(name, value)
        if self._display is not None:
            self._refresh_card()

    def _abort_files(self, senders: list[str | None]) -> None:
        """Drop the files still coming from ``senders`` (None: everyone) on the loop, which writes them."""
        if not self._on_loop():
            kernel.call_soon(self._abort_files, senders)
            return
        for sender in senders:
            self.interrupted_files += self._files.abort(sender)

    def _to_receiver(self, work: Callable[[], Any]) -> None:
        """The background loop owns a Peer's file receiver (aiortc hands it the messages there)."""
        if self._on_loop():
            work()
        else:
            kernel.call_soon(work)

    def _reply_later(self, peer: str, reply: dict[str, Any]) -> None:
        """Send ``peer`` a reply on a file that was ready after its message was handled (from any thread)."""
        kernel.submit(self._engine.send("json", encode(reply)[1], peer))

    # -------------------------------------------------------------------------------- sending, progress

    def _submit_send(
        self, kind: Kind, payload: bytes, to: str | None, name: str | None
    ) -> concurrent.futures.Future[None]:
        size = len(payload)
        progress = None
        if size >= PROGRESS_MIN:
            target = to or self.peer

            def progress(done: int) -> None:
                self._report_progress(
                    {"direction": "out", "peer": target, "name": name, "done": done, "total": size}
                )

        future = kernel.submit(self._engine.send(kind, payload, to, progress))
        future.add_done_callback(self._sent)
        return future

    def _sent(self, future: concurrent.futures.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._apply({"error": f"a send failed: {future.exception()}"})

    # ------------------------------------------------------------------------------------- internals

    def _refuse_on_loop(self, text: str) -> None:
        """A blocking wait on the background loop would stop the loop it waits for: refuse it."""
        if self._on_loop():
            raise RuntimeError(text)

    @staticmethod
    def _on_loop() -> bool:
        return kernel.on_loop()

    def _log_entry(self, direction: str, kind: str, detail: Any, size: int = 0) -> None:
        entry = {"t": time.time(), "dir": direction, "type": kind, "size": size, "detail": detail}
        with self._lock:
            self._log.append(entry)
            if len(self._log) > self.max_log:
                del self._log[: len(self._log) - self.max_log]

    def __repr__(self) -> str:
        peer = f" with {self.peer!r}" if self.state in IN_CALL else ""
        return f"<Peer {self.user_id!r} {self.state}{peer} at {config.server_url(self.server_url).split('?')[0]}>"
