"""Helpers shared by the test modules: free ports, waiting with deadlines, client frames, sample SDP."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable

__all__ = ["OFFER", "SAMPLE_OFFER", "TIMEOUT", "free_port", "mask_frame", "wait_until", "wait_until_sync"]

#: Seconds a test waits for something that should happen at once.
TIMEOUT = 5.0

#: A browser's offer SDP (audio and a data channel), as ``RTCSessionDescription.sdp`` holds it.
SAMPLE_OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09\r\n"
    "a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=mid:1\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
)

#: The offer as the seed's browser code puts it in a ``call`` message's ``sdp`` field: JSON-encoded.
OFFER = json.dumps({"type": "offer", "sdp": SAMPLE_OFFER})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` on the running loop until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(0.01)


def wait_until_sync(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """:func:`wait_until` for a thread with no event loop (blocks it while polling)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.01)


def mask_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """One client frame as RFC 6455 puts it on the wire (clients mask every frame); text by default."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked
