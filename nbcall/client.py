"""One phone's connection to a signaling server, run on the kernel's background loop."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import kernel
from .exceptions import BadMessage, ServerUnreachable, SignalingError

__all__ = ["SignalingClient"]

logger = logging.getLogger("nbcall.client")

Handler = Callable[[dict[str, Any], int], None]


class SignalingClient:
    """Registers ``user_id`` at ``url``, then hands every message it receives to ``on_message``.

    ``on_message(message, size)`` and ``on_close(reason)`` run on the background loop's thread.
    """

    def __init__(self, url: str, user_id: str) -> None:
        self.url = url
        self.user_id = user_id
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def register(self, timeout: float = 10) -> dict[str, Any]:
        """Connect and register; returns the server's ``registered`` reply or raises :class:`SignalingError`."""
        try:
            self._ws = await asyncio.wait_for(connect(self.url, max_size=2**20), timeout)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            raise ServerUnreachable(
                f"could not connect to the signaling server at {self.url} ({exc or type(exc).__name__}); "
                "check the URL, or start one with nbcall.serve() or `python -m nbcall serve`",
            ) from None
        await self._ws.send(json.dumps({"type": "register", "from": self.user_id}))
        try:
            reply = json.loads(await asyncio.wait_for(self._ws.recv(), timeout))
        except (ConnectionClosed, asyncio.TimeoutError) as exc:
            await self._ws.close()
            raise ServerUnreachable(f"the server at {self.url} did not answer register: {exc}") from None
        if reply.get("type") == "error":
            await self._ws.close()
            raise SignalingError.from_wire(
                str(reply.get("code")), str(reply.get("message", "registration refused")), in_reply_to="register"
            )
        if reply.get("type") != "registered":
            await self._ws.close()
            raise BadMessage(f"expected 'registered' from {self.url}, got {reply!r:.200}")
        return reply

    def start(self, on_message: Handler, on_close: Callable[[str], None]) -> None:
        """Start reading and writing (call on the background loop, after :meth:`register`)."""
        self._tasks = [
            asyncio.create_task(self._read(on_message, on_close)),
            asyncio.create_task(self._write()),
        ]

    def send(self, message: dict[str, Any]) -> str:
        """Queue ``message`` for the server, from any thread; returns the JSON text that will be sent."""
        text = json.dumps(message)
        kernel.call_soon(self._outbox.put_nowait, text)
        return text

    def close(self) -> None:
        """Close the connection (the server frees the ID and tells the others), from any thread."""
        kernel.call_soon(self._outbox.put_nowait, None)

    async def _read(self, on_message: Handler, on_close: Callable[[str], None]) -> None:
        assert self._ws is not None
        reason = "closed"
        try:
            async for frame in self._ws:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                try:
                    message = json.loads(text)
                except json.JSONDecodeError:
                    logger.warning("ignoring a frame that is not JSON from %s: %.100r", self.url, text)
                    continue
                if isinstance(message, dict):
                    on_message(message, len(text.encode()))
        except ConnectionClosed as exc:
            reason = f"the signaling connection closed ({exc})"
        except Exception:
            logger.exception("signaling reader for %r failed", self.user_id)
            reason = "the signaling reader failed"
        finally:
            self._outbox.put_nowait(None)
            on_close(reason)

    async def _write(self) -> None:
        assert self._ws is not None
        try:
            while (text := await self._outbox.get()) is not None:
                await self._ws.send(text)
        except ConnectionClosed:
            pass
        finally:
            await self._ws.close()
