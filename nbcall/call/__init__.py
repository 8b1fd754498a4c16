"""What a phone does, whatever runs its WebRTC: the sans-I/O call machine (:mod:`~nbcall.call.machine`), the
adapter that Phone and Peer share, the connection to the signaling server, files and progress, and the kernel's
background loop. The widget and the Python peer are its two adapters."""

from .machine import CallMachine

__all__ = ["CallMachine"]
