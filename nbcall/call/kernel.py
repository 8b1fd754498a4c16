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
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..server.server import SignalingServer
from ..server.server import serve as serve_async

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ServerHandle",
    "call_soon",
    "close_server",
    "default_server",
    "on_loop",
    "run",
    "serve",
    "shutdown",
    "shutting_down",
    "submit",
]

logger = logging.getLogger("nbcall.call.kernel")
T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_servers: list[ServerHandle] = []
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


def on_loop() -> bool:
    """Whether the caller runs on the background loop's thread (where blocking on that loop would deadlock)."""
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the background loop from any thread."""
    return asyncio.run_coroutine_threadsafe(coro, _get_loop())


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None, *, what: str = "this call") -> T:
    """Run ``coro`` on the background loop and wait for its result.

    From that loop's own thread (an ``observe`` or ``on_message`` callback run there, say) waiting would stop
    the very loop it waits for: it raises :class:`RuntimeError` at once instead, saying what to do.
    """
    if on_loop():
        coro.close()
        raise RuntimeError(
            f"nbcall: {what} waits for nbcall's background loop, and this code runs on that loop's own thread "
            "(in a callback of a phone or a peer), where waiting would stop the loop; do it from a cell or "
            "another thread, or await its async twin in async code"
        )
    future = submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"nbcall: no answer from the signaling loop within {timeout} s") from None


def call_soon(callback: Any, *args: Any) -> None:
    """Call ``callback(*args)`` on the background loop, from any thread."""
    _get_loop().call_soon_threadsafe(callback, *args)


class ServerHandle:
    """A signaling server running on the kernel's background loop, safe to use from any thread.

    :func:`serve` returns one. Its address is plain data; :meth:`close` runs the server's close on
    its loop and waits for it. ``with nbcall.serve() as server:`` closes it at the end of the block.
    """

    def __init__(self, server: SignalingServer) -> None:
        self._server = server
        self._close_lock = threading.Lock()
        self._closed = False

    @property
    def server(self) -> SignalingServer:
        """The server itself: only for code running on the background loop (see :func:`run`)."""
        return self._server

    @property
    def url(self) -> str:
        """Where phones connect, token included: hand it only to those who may call."""
        return self._server.url

    @property
    def url_without_token(self) -> str:
        """The server's address without credentials, safe to log or show."""
        return self._server.url_without_token

    @property
    def host(self) -> str:
        """The address the server is bound to."""
        return self._server.host

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return self._server.port

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has completed."""
        return self._closed

    def close(self, timeout: float = 30) -> None:
        """Stop the server and wait until it is closed (its phones go offline and keep trying). Idempotent.

        From the background loop's own thread it cannot wait: it then only starts the close.

        Parameters
        ----------
        timeout
            Seconds to wait for the server to close.
        """
        with _lock:
            if self in _servers:
                _servers.remove(self)
        if on_loop():
            self._server.close()  # the loop runs this very code: waiting here would deadlock it
            return
        with self._close_lock:  # a second caller waits for the first close to finish
            if self._closed:
                return

            async def close() -> None:
                self._server.close()
                await self._server.wait_closed()

            run(close(), timeout=timeout)
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ServerHandle {self.url_without_token} {'closed' if self._closed else 'open'}>"


def serve(
    host: str = "127.0.0.1", port: int = 0, *, token: str | None = AUTO, **options: Any
) -> ServerHandle:
    """Start a signaling server in this kernel; phones made afterwards without ``server=`` use it.

    Clients must present ``token``: by default a random one, which the returned handle's ``url`` carries, so
    hand that URL to the phones of other kernels or machines that may call (``token=None`` lets anyone who
    can reach the port register). ``options`` are the limits of :func:`nbcall.server.serve`; bind
    ``host="0.0.0.0"`` to accept other machines. The handle may be used from any thread.

    Parameters
    ----------
    host
        The address to bind: ``"127.0.0.1"`` for this machine only, ``"0.0.0.0"`` for every interface.
    port
        The TCP port; 0 picks a free one (read it from the handle's ``port`` or ``url``).
    token
        The token clients must present: a random one by default, None for none.
    **options
        The keyword arguments of :func:`nbcall.server.serve`: its limits, ``origins``, ``room_key``,
        ``redis``...

    Raises
    ------
    ValueError, TypeError
        An option is malformed (the message names it and its value).
    OSError
        The address cannot be bound (the port is taken, or the host is not this machine's).
    """
    if token is AUTO:
        token = secrets.token_urlsafe(16)
    started = run(serve_async(host, port, token=token, **options), timeout=30, what="starting a server")
    handle = ServerHandle(started)
    with _lock:
        _servers.append(handle)
    logger.info("signaling server listening on %s", handle.url_without_token)
    return handle


def close_server(server: ServerHandle) -> None:
    """Stop a server started with :func:`serve` (same as ``server.close()``)."""
    server.close()


def default_server() -> ServerHandle:
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
        for handle in servers:
            handle.server.close()
        await asyncio.gather(*(h.server.wait_closed() for h in servers), return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(close_all(), loop).result(5)
    except Exception:  # the kernel is exiting: never block it on a server that will not close
        logger.exception("could not close the signaling servers cleanly")
    loop.call_soon_threadsafe(loop.stop)


atexit.register(shutdown)
