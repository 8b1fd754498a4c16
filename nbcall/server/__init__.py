"""The signaling server: the sans-I/O registry of IDs and rooms (:mod:`~nbcall.server.protocol`, with its
parts :mod:`~nbcall.server.rate`, :mod:`~nbcall.server.room_dispatch` and :mod:`~nbcall.server.routing`), the
websockets server that pumps sockets through it (:mod:`~nbcall.server.server`, :mod:`~nbcall.server.pump`), its
command line (:mod:`~nbcall.server.cli`), and what a deployment adds (admission, limits, several nodes on Redis,
TURN credentials). It imports nothing from the call side, the widget,
the Python peer or the teaching tools.

:func:`serve` starts a server on the running asyncio loop (``nbcall serve`` on the command line);
:func:`nbcall.serve` starts one on a notebook kernel's background loop.
"""

from .server import SignalingServer, serve

__all__ = ["SignalingServer", "serve"]
