"""The kernel's background event loop: it runs the signaling server and every phone's signaling connection.

A thread of its own keeps signaling alive while a notebook cell runs (even one blocked in ``time.sleep``):
an incoming call rings, and the server keeps relaying, whatever the kernel's main thread is doing.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import secrets
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .server import SignalingServer
from .server import serve as serve_async

__all__ = [
    "call_soon",
    "close_server",
    "default_server",
    "run",
    "serve",
    "shutdown",
    "shutting_down",
    "submit",
]

logger = logging.getLogger("nbcall.kernel")
T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_servers: list[SignalingServer] = []
_shutting_down = threading.Event()
#: The default token: a new random secret for each server.
AUTO: Any = type("Auto", (), {"__repr__": lambda self: "AUTO"})()


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="nbcall-signaling", daemon=True)
            _thread.start()
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the background loop from any thread."""
    return asyncio.run_coroutine_threadsafe(coro, _get_loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the background loop and wait for its result (never call this from that loop)."""
    future = submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"nbcall: no answer from the signaling loop within {timeout} s") from None


def call_soon(callback: Any, *args: Any) -> None:
    """Call ``callback(*args)`` on the background loop, from any thread."""
    _get_loop().call_soon_threadsafe(callback, *args)


def serve(
    host: str = "127.0.0.1", port: int = 0, *, token: str | None = AUTO, **options: Any
) -> SignalingServer:
    """Start a signaling server in this kernel; phones made afterwards without ``server=`` use it.

    Clients must present ``token``: by default a random one, which the returned server's ``url`` carries, so
    hand that URL to the phones of other kernels or machines that may call (``token=None`` lets anyone who
    can reach the port register). ``options`` are the limits of :func:`nbcall.server.serve`; bind
    ``host="0.0.0.0"`` to accept other machines.
    """
    if token is AUTO:
        token = secrets.token_urlsafe(16)
    server = run(serve_async(host, port, token=token, **options), timeout=30)
    with _lock:
        _servers.append(server)
    logger.info("signaling server listening on %s", server.url_without_token)
    return server


def close_server(server: SignalingServer) -> None:
    """Stop a server started with :func:`serve` (its phones go offline and keep trying to reconnect)."""

    async def close() -> None:
        server.close()
        await server.wait_closed()

    with _lock:
        if server in _servers:
            _servers.remove(server)
    run(close(), timeout=30)


def default_server() -> SignalingServer:
    """The server phones use when given no ``server=``: the latest one started here, else a new one."""
    with _lock:
        if _servers:
            return _servers[-1]
    return serve()


def shutting_down() -> bool:
    """Whether the interpreter is exiting: connections closing now are not lost, and are not reconnected."""
    return _shutting_down.is_set()


def shutdown() -> None:
    """Close every server started in this kernel and stop the background loop (runs at exit)."""
    _shutting_down.set()
    with _lock:
        servers, _servers[:] = list(_servers), []
        loop = _loop
    if loop is None or loop.is_closed():
        return

    async def close_all() -> None:
        for server in servers:
            server.close()
        await asyncio.gather(*(s.wait_closed() for s in servers), return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(close_all(), loop).result(5)
    except Exception:  # the kernel is exiting: never block it on a server that will not close
        logger.exception("could not close the signaling servers cleanly")
    loop.call_soon_threadsafe(loop.stop)


atexit.register(shutdown)
