"""The Python peer: :class:`Peer`, a phone whose WebRTC runs in Python on aiortc, and ``nbcall send`` /
``nbcall receive``. aiortc is imported only when a Peer first needs it (the ``peer`` extra)."""

from .peer import Peer

__all__ = ["Peer"]
