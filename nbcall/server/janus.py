"""A client of Janus's JSON API (WebSocket or HTTP transport): one session, its handles, its events.

:class:`JanusSession` is what :mod:`nbcall.server.sfu` drives Janus with: :meth:`~JanusSession.attach` a
plugin handle, send it :meth:`~JanusSession.message` (a plugin request, with a JSEP offer or answer) and
:meth:`~JanusSession.trickle` candidates, :meth:`~JanusSession.detach` it. Every request carries the API
secret and a transaction; a plugin's asynchronous answer (``ack`` then an ``event`` with the same
transaction) is awaited as one reply. Events nobody awaits (a handle's ``webrtcup``, ``hangup``, a plugin's
notifications) go to ``on_event``. The session is kept alive every :data:`KEEPALIVE` seconds; when the
transport closes or a keepalive fails (Janus stopped or restarted, which loses every session), ``on_lost``
is called once with the reason.

The URL chooses the transport: ``ws://`` or ``wss://`` (Janus's WebSocket transport, subprotocol
``janus-protocol``; its events arrive on the same connection) or ``http://`` / ``https://`` (Janus's REST API
at its base path, usually ``/janus``, and its events by long poll). The secret is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

__all__ = ["KEEPALIVE", "JanusSession", "JanusUnreachable", "RequestFailed", "SessionLost"]

logger = logging.getLogger("nbcall.server.janus")
#: websockets' logger for the connection to Janus: never at DEBUG, where it would log frames, which carry the
#: API secret.
frames_logger = logging.getLogger("nbcall.server.janus.frames")
frames_logger.setLevel(logging.INFO)

#: Seconds between keepalives (Janus drops a session silent for its ``session_timeout``, 60 s by default).
KEEPALIVE = 25.0
#: Seconds a request may take before it counts as failed.
REQUEST_TIMEOUT = 10.0

Event = dict[str, Any]


class JanusUnreachable(Exception):
    """Janus did not answer at its URL (not running, wrong URL, wrong API secret)."""


class SessionLost(Exception):
    """The session is gone: Janus stopped or restarted, or the connection to it closed."""


class RequestFailed(Exception):
    """Janus (or its plugin) refused a request: ``code`` and ``reason`` as it said them."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (error {code})")
        self.code = code
        self.reason = reason


class JanusSession:
    """One Janus session over ``url``, authenticated with ``secret``; create it with :meth:`open`."""

    def __init__(
        self,
        url: str,
        secret: str | None,
        on_event: Callable[[int, Event], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self.url = url
        self._secret = secret
        self._on_event = on_event
        self._on_lost = on_lost
        self.session_id = 0
        self._pending: dict[str, asyncio.Future[Event]] = {}
        self._ack_final: set[str] = set()  # transactions whose ack is the whole answer
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws: ClientConnection | None = None
        self._http = url.startswith(("http://", "https://"))
        self.lost: str | None = None  # why the session ended, once it has

    @classmethod
    async def open(
        cls,
        url: str,
        secret: str | None,
        on_event: Callable[[int, Event], None],
        on_lost: Callable[[str], None],
        *,
        claim: int = 0,
        timeout: float = 5.0,
    ) -> JanusSession:
        """Connect to Janus at ``url`` and create a session, or ``claim`` the session of that ID (one whose
        connection went away, kept by Janus for its ``reclaim_session_timeout``): its handles, and the rooms they
        publish and subscribe in, carry on. :class:`JanusUnreachable` when Janus does not answer;
        :class:`RequestFailed` (error 458) when there is no session ``claim`` any more.
        """
        session = cls(url, secret, on_event, on_lost)
        try:
            await asyncio.wait_for(session._start(claim), timeout)
        except RequestFailed as exc:
            session._close("could not connect")
            if claim and exc.code == 458:  # no such session: it expired, or Janus restarted
                raise
            raise JanusUnreachable(_describe(exc)) from None
        except (
            OSError,
            asyncio.TimeoutError,
            websockets.WebSocketException,
            ValueError,
        ) as exc:
            session._close("could not connect")
            raise JanusUnreachable(_describe(exc)) from None
        return session

    async def _start(self, claim: int) -> None:
        if not self._http:
            self._ws = await ws_connect(
                self.url,
                subprotocols=[Subprotocol("janus-protocol")],
                max_size=2**22,
                ping_interval=None,
                logger=frames_logger,
            )
            self._spawn(self._read_ws())
        if claim:
            self.session_id = claim
            await self._request({"janus": "claim"})
        else:
            reply = await self._request({"janus": "create"}, path="")
            self.session_id = int(reply["data"]["id"])
        if self._http:
            self._spawn(self._poll())
        self._spawn(self._keepalive())

    # -- requests ---------------------------------------------------------------

    async def attach(self, plugin: str) -> int:
        """Attach a handle to ``plugin`` (``janus.plugin.videoroom``): its ID."""
        reply = await self._request({"janus": "attach", "plugin": plugin})
        return int(reply["data"]["id"])

    async def detach(self, handle: int) -> None:
        """Detach ``handle`` (its peer connection closes); a handle already gone is no error."""
        try:
            await self._request({"janus": "detach"}, handle=handle)
        except RequestFailed:
            pass

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send ``body`` (a plugin request) to ``handle``: the plugin's data and JSEP in its reply.

        A plugin's error (``error_code`` in its data) raises :class:`RequestFailed`.
        """
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._request(request, handle=handle)
        data = reply.get("plugindata", {}).get("data", {})
        if "error_code" in data:
            raise RequestFailed(int(data["error_code"]), str(data.get("error", "")))
        return data, reply.get("jsep")

    async def trickle(self, handle: int, candidate: dict[str, Any] | None) -> None:
        """Send ``handle`` one ICE candidate (``None``: no more candidates)."""
        await self._request(
            {"janus": "trickle", "candidate": candidate if candidate is not None else {"completed": True}},
            handle=handle,
            ack=True,
        )

    async def destroy(self) -> None:
        """End the session (its handles and their peer connections go with it) and close the connection."""
        if self.lost is None and self.session_id:
            try:
                await self._request({"janus": "destroy"})
            except (RequestFailed, SessionLost, asyncio.TimeoutError):
                pass
        self._close("destroyed")

    async def release(self) -> None:
        """Close the connection and leave the session to Janus: it lives on for its ``reclaim_session_timeout``
        (with its handles and their media), for a restarted server to :meth:`open` with ``claim``."""
        self._close("released")
        if self._ws is not None:
            await self._ws.close()

    # -- the transport ------------------------------------------------------------

    async def _request(
        self, request: dict[str, Any], *, handle: int = 0, path: str | None = None, ack: bool = False
    ) -> Event:
        """Send ``request``; its reply (``success``, or the ``event`` after an ``ack``), or raise."""
        if self.lost is not None:
            raise SessionLost(self.lost)
        transaction = secrets.token_hex(8)
        request["transaction"] = transaction
        if self._secret is not None:
            request["apisecret"] = self._secret
        if self.session_id and path is None:
            request["session_id"] = self.session_id
        if handle:
            request["handle_id"] = handle
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        if ack:
            self._ack_final.add(transaction)
        try:
            if self._ws is not None:
                await self._ws.send(json.dumps(request))
            else:
                if path is None:
                    path = f"/{self.session_id}" + (f"/{handle}" if handle else "")
                self._dispatch(await _http_json("POST", self.url + path, request))
            return await asyncio.wait_for(asyncio.shield(future), REQUEST_TIMEOUT)
        except websockets.ConnectionClosed:
            raise SessionLost(self.lost or "the connection to Janus closed") from None
        finally:
            self._pending.pop(transaction, None)
            self._ack_final.discard(transaction)

    def _dispatch(self, msg: Event) -> None:
        """One message from Janus: the reply a request awaits, or an event for ``on_event``."""
        kind = msg.get("janus")
        future = self._pending.get(msg.get("transaction") or "")
        if kind == "ack":
            # A plugin request's answer follows as an event; a keepalive's or a trickle's ends here.
            if future is not None and not future.done() and msg.get("transaction") in self._ack_final:
                future.set_result(msg)
            return
        if future is not None and not future.done() and kind in ("success", "event", "error"):
            if kind == "error":
                error = msg.get("error", {})
                future.set_exception(RequestFailed(int(error.get("code", 0)), str(error.get("reason", ""))))
            else:
                future.set_result(msg)
            return
        if kind == "timeout" or (kind == "error" and msg.get("error", {}).get("code") == 458):
            self._close("Janus ended the session (no such session: it restarted, or the session timed out)")
            return
        sender = msg.get("sender")
        if sender is not None:
            try:
                self._on_event(int(sender), msg)
            except Exception:  # a bug in one handle's event must not stop the session
                logger.exception("error while handling a Janus event")

    async def _read_ws(self) -> None:
        ws = self._ws
        assert ws is not None
        reason = "the connection to Janus closed"
        try:
            async for text in ws:
                try:
                    msg = json.loads(text)
                except ValueError:
                    continue
                if isinstance(msg, dict):
                    self._dispatch(msg)
        except websockets.ConnectionClosed:
            pass
        except (OSError, websockets.WebSocketException) as exc:
            reason = f"the connection to Janus failed: {_describe(exc)}"
        self._close(reason)

    async def _poll(self) -> None:
        """HTTP transport: the session's events, by long poll."""
        query = "?maxev=10" + (f"&apisecret={urllib.parse.quote(self._secret)}" if self._secret else "")
        while self.lost is None:
            try:
                events = await asyncio.wait_for(
                    _http_json("GET", f"{self.url}/{self.session_id}{query}", None), 45
                )
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                self._close(f"Janus stopped answering: {_describe(exc)}")
                return
            for msg in events if isinstance(events, list) else [events]:
                if isinstance(msg, dict) and msg.get("janus") != "keepalive":
                    self._dispatch(msg)

    async def _keepalive(self) -> None:
        while self.lost is None:
            await asyncio.sleep(KEEPALIVE)
            try:
                await self._request({"janus": "keepalive"}, ack=True)
            except (RequestFailed, SessionLost, asyncio.TimeoutError, OSError) as exc:
                self._close(f"a keepalive failed ({_describe(exc)}): Janus stopped or restarted")
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _close(self, reason: str) -> None:
        """End the session here (once): fail what waits, stop the tasks, tell ``on_lost``."""
        if self.lost is not None:
            return
        self.lost = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SessionLost(reason))
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._ws is not None:
            self._spawn(self._ws.close())
        if reason not in ("destroyed", "released", "could not connect"):
            try:
                self._on_lost(reason)
            except Exception:
                logger.exception("error while handling the loss of the Janus session")


def _describe(exc: BaseException) -> str:
    """An exception for people, without a traceback."""
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    if isinstance(exc, RequestFailed) and exc.code == 403:
        return "Janus refused the API secret (error 403): give the server Janus's api_secret"
    return str(exc) or type(exc).__name__


async def _http_json(method: str, url: str, body: dict[str, Any] | None) -> Any:
    """One HTTP/1.1 request with a JSON body (or none), its JSON answer; a connection per request."""
    parts = urllib.parse.urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if tls else 80)
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl.create_default_context() if tls else None
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        status_line = await reader.readline()
        status = status_line.split(b" ", 2)
        if len(status) < 2 or not status[1].isdigit():
            raise ValueError(f"not an HTTP answer from {host}:{port}")
        length, chunked = None, False
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
        if chunked:
            data = b""
            while (size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16)) > 0:
                data += await reader.readexactly(size)
                await reader.readline()  # the chunk's CRLF
        else:
            data = await (reader.readexactly(length) if length is not None else reader.read())
        if int(status[1]) >= 400 and not data.startswith(b"{"):
            raise ValueError(f"HTTP {int(status[1])} from {url.split('?')[0]}")
        return json.loads(data)
    finally:
        writer.close()
