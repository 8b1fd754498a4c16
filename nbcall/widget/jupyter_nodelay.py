"""A Jupyter server extension that sends kernel messages to the browser without Nagle's delay.

jupyter_server never sets TCP_NODELAY on its kernel websockets (and tornado turns it off after the upgrade).
A kernel that answers a browser message writes several small frames in a row (a "busy" status, the reply, an
"idle" status); with Nagle's algorithm each frame after the first waits for the browser's delayed ACK, about
40 ms on Linux. A phone relays signaling and data through such messages, so every hop paid that delay.
The extension turns Nagle off on each kernel websocket as it opens; nothing else changes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_jupyter_server_extension"]

_PATCHED = "_nbcall_nodelay"


def load_jupyter_server_extension(serverapp: Any) -> None:
    """Patch the kernel websocket handler once, whichever server app loads us."""
    from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

    if getattr(KernelWebsocketHandler, _PATCHED, False):
        return
    original_open = KernelWebsocketHandler.open

    async def open_without_nagle(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.set_nodelay(True)
        return await original_open(self, *args, **kwargs)

    KernelWebsocketHandler.open = open_without_nagle  # type: ignore[method-assign]
    setattr(KernelWebsocketHandler, _PATCHED, True)
    serverapp.log.info("nbcall: kernel websockets send without Nagle's delay (TCP_NODELAY)")


_load_jupyter_server_extension = load_jupyter_server_extension
