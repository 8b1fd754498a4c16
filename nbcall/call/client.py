"""One phone's connection to a signaling server, run on the kernel's background loop.

It registers the phone's ID with a secret of its own, so that when the connection drops (the server restarts,
the network hiccups) it can reconnect with backoff and reclaim the same ID, which nobody else can take.
Messages queued while offline are sent once it is back.

Given several URLs (the nodes of one deployment, ``serve(redis=...)``), it registers at the first that answers
and, when its connection drops, tries the next one at each attempt: the phone's ID moves to that node with it.

A URL's ``?token=`` travels as an ``Authorization: Bearer`` header, never in the request line, which proxies
and servers log.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..exceptions import BadMessage, CallError, DuplicateID, ServerUnreachable, SignalingError
from ..server.server import RedactingLogger
from . import config, kernel

__all__ = ["SignalingClient", "server_urls", "token_header"]

logger = logging.getLogger("nbcall.call.client")

OnMessage = Callable[[dict[str, Any], int], None]
#: ``on_state(online, detail)``: detail is the ``registered`` reply when back online, else the reason.
OnState = Callable[[bool, Any], None]


def server_urls(server: str | Sequence[str]) -> list[str]:
    """One signaling server URL, or several (the nodes of one deployment), checked and as ``ws(s)://``."""
    if isinstance(server, str):
        return [config.server_url(server)]
    urls = [config.server_url(url) for url in server]
    if not urls:
        raise ValueError("server is an empty list: give at least one URL such as 'ws://127.0.0.1:8765/ws'")
    return urls


def token_header(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its ``token`` query parameter, and the ``Authorization`` header that carries it instead."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    tokens = [value for key, value in query if key == "token"]
    if not tokens:
        return url, {}
    rest = urllib.parse.urlencode([(key, value) for key, value in query if key != "token"])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), {"Authorization": f"Bearer {tokens[-1]}"}


#: websockets' client logger, minus the token in the handshake's headers.
_WS_LOGGER = RedactingLogger(logging.getLogger("websockets.client"))


class SignalingClient:
    """Registers ``user_id`` at ``url`` (with ``secret``, random unless given), then hands every message it
    receives to ``on_message``.

    ``url`` may be a list of URLs, the nodes of one deployment: the client registers at the first that
    answers, and after losing its connection tries the next one at each attempt to reconnect.

    Callbacks run on the background loop's thread. ``reconnect_delays`` are the waits between attempts to
    reconnect (the last one repeats); ``None`` disables reconnecting. ``register_fields()`` returns what to add
    to each ``register`` message. At most ``max_outbox`` messages wait for the server (while offline, say):
    :meth:`send` refuses more.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        user_id: str,
        *,
        reconnect_delays: tuple[float, ...] | None = (0.25, 0.5, 1, 2, 4, 8),
        register_fields: Callable[[], dict[str, Any]] = dict,
        secret: str | None = None,
        max_outbox: int = 1000,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("no signaling server URL given")
        self._current = 0  # index in urls of the server registered at (or tried last)
        self.user_id = user_id
        self.reconnect_delays = reconnect_delays
        #: What to add to each ``register`` (asked anew at every reconnect: a room to rejoin, say).
        self.register_fields = register_fields
        self._secret = secret or secrets.token_urlsafe(24)
        self._ws: ClientConnection | None = None
        self._outbox: collections.deque[str] = collections.deque()
        self.max_outbox = max_outbox
        # Messages sent and not yet written (the outbox, and those on their way to it from other threads).
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The URL of the server this client is registered at (or tried last)."""
        return self.urls[self._current]

    async def register(self, timeout: float = 10) -> dict[str, Any]:
        """Connect and register at the first URL that answers; returns its ``registered`` reply.

        Raises the last :class:`SignalingError` when none did, at once for a :class:`DuplicateID`.
        """
        error: SignalingError | None = None
        for _ in self.urls:
            try:
                return await self._register(timeout)
            except DuplicateID:
                raise
            except SignalingError as exc:
                error = exc
                if len(self.urls) > 1:
                    logger.info("%r could not register at %s: %s", self.user_id, self._safe_url, exc)
                self._current = (self._current + 1) % len(self.urls)
        assert error is not None
        raise error

    async def _register(self, timeout: float) -> dict[str, Any]:
        """Open a connection and register on it; every way this can fail is a :class:`SignalingError`."""
        url, headers = token_header(self.url)
        try:
            opening = connect(
                url, additional_headers=headers, max_size=2**20, compression=None, logger=_WS_LOGGER
            )
            ws = await asyncio.wait_for(opening, timeout)
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else ""
            raise ServerUnreachable(
                f"the server at {self._safe_url} refused the connection (HTTP {exc.response.status_code}): {body}"
            ) from None
        except (OSError, asyncio.TimeoutError, ValueError, InvalidHandshake) as exc:
            # InvalidHandshake: something answered that is not a websocket server (a web page, another
            # protocol): as unreachable as nothing at all.
            raise ServerUnreachable(
                f"could not connect to the signaling server at {self._safe_url} ({exc or type(exc).__name__}); "
                "check the URL, or start one with nbcall.serve() or `python -m nbcall serve`"
            ) from None
        try:
            reply = await self._registration(ws, timeout)
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        return reply

    async def _registration(self, ws: ClientConnection, timeout: float) -> dict[str, Any]:
        """Send ``register`` on ``ws`` and return the server's ``registered``."""
        register = {
            "type": "register",
            "from": self.user_id,
            "secret": self._secret,
            "presence": True,
            **self.register_fields(),
        }
        try:
            await ws.send(json.dumps(register))
            text = await asyncio.wait_for(ws.recv(), timeout)
        except ConnectionClosed as exc:
            raise ServerUnreachable(f"the server at {self._safe_url} closed during register: {exc}") from None
        except asyncio.TimeoutError:
            raise ServerUnreachable(
                f"the server at {self._safe_url} did not answer register within {timeout} s"
            ) from None
        try:
            reply = json.loads(text)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise BadMessage(
                f"the server at {self._safe_url} answered register with {str(text)[:100]!r}, not a JSON "
                "object: is that URL an nbcall signaling server?"
            )
        if reply.get("type") == "error":
            raise SignalingError.from_wire(
                str(reply.get("code")),
                str(reply.get("message", "registration refused")),
                in_reply_to="register",
            )
        if reply.get("type") != "registered":
            raise BadMessage(f"expected 'registered' from {self._safe_url}, got {reply!r:.200}")
        return reply

    def start(self, on_message: OnMessage, on_state: OnState) -> None:
        """Start relaying (call on the background loop, after :meth:`register`)."""
        self._task = asyncio.create_task(self._run(on_message, on_state))

    def send(self, message: dict[str, Any]) -> str:
        """Queue ``message`` for the server, from any thread; returns the JSON text that will be sent.

        Raises :class:`~nbcall.exceptions.CallError` when ``max_outbox`` messages wait already: they would be
        sent late, or never, and what is sent on signaling (a call, an answer) is stale by then.
        """
        text = json.dumps(message)
        with self._waiting_lock:
            if self._waiting >= self.max_outbox:
                state = (
                    "it is offline" if self._ws is None or self._ws.close_code is not None else "it is slow"
                )
                raise CallError(
                    f"{self.user_id}: {self._waiting} signaling messages already wait for the server at "
                    f"{self._safe_url} ({state}), the limit; wait until the phone is online again and try then"
                )
            self._waiting += 1
        kernel.call_soon(self._enqueue, text)
        return text

    @property
    def secret(self) -> str:
        """What this client registers with: a new client given it takes the ID over (see ``nbcall.call.owners``)."""
        return self._secret

    def close(self) -> None:
        """Close the connection for good (the server frees the ID and tells the others), from any thread."""
        kernel.call_soon(self._close)

    async def aclose(self) -> None:
        """:meth:`close`, returning once the connection is closed (the ID is free then)."""
        self._close()
        ws = self._ws
        if ws is not None:
            if self._task is None:  # registered but never started: no relay is there to close it
                await ws.close()
            await ws.wait_closed()

    @property
    def _safe_url(self) -> str:
        """The URL without its query, which may hold a token."""
        return self.url.split("?", 1)[0]

    def _enqueue(self, text: str) -> None:
        self._outbox.append(text)
        self._wakeup.set()

    def _close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def _run(self, on_message: OnMessage, on_state: OnState) -> None:
        """Relay, and reconnect whenever the connection drops, until closed or the ID is lost.

        Nothing ends it silently: every failure reaches ``on_state`` (the phone's ``error``) and the log.
        """
        while True:  # _relay closes the connection itself when closed, even before it starts
            reason = await self._relay_safely(on_message)
            # Shutting down (closed here, or the interpreter exiting) is not a lost connection.
            if self._closed or kernel.shutting_down() or self.reconnect_delays is None:
                self._tell(on_state, False, reason)
                return
            self._tell(on_state, False, f"{reason}; reconnecting")
            registered = await self._reconnect(on_state, reason)
            if isinstance(registered, str):
                self._tell(on_state, False, f"{reason}; {registered}")
                return
            self._tell(on_state, True, registered)

    def _tell(self, on_state: OnState, online: bool, detail: Any) -> None:
        try:
            on_state(online, detail)
        except Exception:  # the phone's bug: log it, and keep its connection going
            logger.exception("%r: handling a change of the signaling connection failed", self.user_id)

    async def _relay_safely(self, on_message: OnMessage) -> str:
        try:
            return await self._relay(on_message)
        except Exception as exc:  # a bug here must not leave the phone offline for good: reconnect
            logger.exception("the signaling relay of %r failed", self.user_id)
            if self._ws is not None:
                await self._ws.close()
            return f"the signaling relay failed ({type(exc).__name__}: {exc})"

    async def _relay(self, on_message: OnMessage) -> str:
        """Pump both ways until the connection ends; returns why it ended."""
        ws = self._ws
        assert ws is not None
        reader = asyncio.create_task(self._read(ws, on_message))
        try:
            # Closing sends what is queued first: a phone's last hangup must reach the server before it leaves.
            while not reader.done() and (self._outbox or not self._closed):
                if self._outbox:
                    try:
                        await ws.send(self._outbox[0])
                    except ConnectionClosed:
                        # Keep the message for after reconnecting. Leave the loop: on a closed connection
                        # send() raises without yielding, so retrying here would never let the reader run.
                        break
                    self._outbox.popleft()
                    with self._waiting_lock:
                        self._waiting -= 1
                    continue
                self._wakeup.clear()
                wakeup = asyncio.create_task(self._wakeup.wait())
                await asyncio.wait({reader, wakeup}, return_when=asyncio.FIRST_COMPLETED)
                wakeup.cancel()
        finally:
            if self._closed:
                await ws.close()
            reason = await reader
        return reason

    async def _read(self, ws: ClientConnection, on_message: OnMessage) -> str:
        try:
            async for frame in ws:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                try:
                    message = json.loads(text)
                except json.JSONDecodeError:
                    logger.warning("ignoring a frame that is not JSON from %s: %.100r", self._safe_url, text)
                    continue
                if not isinstance(message, dict):
                    logger.warning(
                        "ignoring a message that is not an object from %s: %.100r", self._safe_url, text
                    )
                    continue
                try:
                    on_message(message, len(text.encode()))
                except Exception:  # the phone's bug: log it, and keep reading
                    logger.exception("%r: handling a %.40r message failed", self.user_id, message.get("type"))
        except ConnectionClosed:
            pass
        except Exception as exc:
            logger.exception("the signaling reader of %r failed", self.user_id)
            return f"the signaling reader failed ({type(exc).__name__}: {exc})"
        code, why = ws.close_code, ws.close_reason
        detail = f" (code {code}: {why})" if why else ""
        return f"the signaling connection closed{detail}"

    async def _reconnect(self, on_state: OnState, reason: str) -> dict[str, Any] | str:
        """Register again with the same ID and secret: the ``registered`` reply, or why it gave up.

        Every failure but a lost ID is retried: a server restarting, answering garbage or refusing the token
        may be fixed meanwhile. The phone's ``error`` shows the latest one, with what to do.
        """
        assert self.reconnect_delays
        attempt = 0
        shown = ""
        while not self._closed:
            delay = self.reconnect_delays[min(attempt, len(self.reconnect_delays) - 1)]
            attempt += 1
            try:
                await asyncio.wait_for(self._wakeup_on_close(), delay)
            except asyncio.TimeoutError:
                pass
            if self._closed:
                break
            if len(self.urls) > 1:  # the next node: the one this phone was on may be gone for good
                self._current = (self._current + 1) % len(self.urls)
            try:
                registered = await self._register(10)
            except DuplicateID:
                logger.warning("%r was taken by another phone while offline", self.user_id)
                return (
                    f"gave up reconnecting: another phone registered {self.user_id!r} meanwhile; close it, "
                    "or make this phone again with another ID"
                )
            except SignalingError as exc:
                problem = str(exc)
                logger.info("reconnecting %r: attempt %d failed: %s", self.user_id, attempt, problem)
            except Exception as exc:  # a bug: say so, and keep trying (the next attempt may well work)
                logger.exception("reconnecting %r: attempt %d failed unexpectedly", self.user_id, attempt)
                problem = f"{type(exc).__name__}: {exc}"
            else:
                logger.info(
                    "%r is back online at %s after %d attempts", self.user_id, self._safe_url, attempt
                )
                return registered
            if problem != shown:  # say why it is still offline, once per new reason
                shown = problem
                self._tell(on_state, False, f"{reason}; reconnecting, the last attempt failed: {problem}")
        return "closed while reconnecting"

    async def _wakeup_on_close(self) -> None:
        while not self._closed:
            self._wakeup.clear()
            await self._wakeup.wait()
