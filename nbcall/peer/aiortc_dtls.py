"""nbcall's own DTLS transport: aiortc's :class:`~aiortc.rtcdtlstransport.RTCDtlsTransport` with a shorter way
for each datagram, given per transport by :func:`nbcall.peer.aiortc_patches.tune_sctp`.

aiortc hands each received datagram from the UDP socket to aioice's protocol (which tries to parse it as STUN
first), through an :class:`asyncio.Queue` to the DTLS transport's task: one turn of the event loop, a poll of
the sockets and a task switch per 1,200 bytes. :class:`FastDtlsTransport`, once it has handled a datagram,
reads those already waiting in the socket (at most :data:`BATCH`) and handles them in the same turn. Sending,
an SCTP packet goes down six coroutines (DTLS, aioice's connection, its protocol) to ``sendto``;
:meth:`FastDtlsTransport.send_packet` does the same in one call. And after each datagram received, aiortc
asks OpenSSL for a record to send by reading its memory BIO, which raises an exception when it is empty (as it
is for every DATA record): :func:`outgoing` asks how much it holds instead. Batching and sending only where the selected candidate pair
is a plain UDP socket of aioice's (host or server-reflexive, on asyncio's own loop): over TURN, or on another
event loop, aiortc's own way is taken. Datagrams and their bytes are those aiortc sends. Batching waits for the
SCTP transport to start: aiortc drops what DTLS decrypts before then, and a DTLS server (Janus, on every
subscriber connection) sends its SCTP INIT right behind its last handshake flight, so a batch read during the
handshake lost that INIT (aiortc's own loop leaves it queued for the SCTP transport).
"""

from __future__ import annotations

import socket
from typing import Any

from aioice import ice as _ice
from aiortc import rtcdtlstransport as _dtls
from OpenSSL import SSL

__all__ = ["BATCH", "FastDtlsTransport", "outgoing"]

#: Datagrams read from the socket and handled after each one the event loop handed over.
BATCH = 32
#: The largest datagram read (asyncio reads up to 256 KiB; a DTLS record here is under 1,300 bytes).
RECEIVE_SIZE = 65536


# pyOpenSSL's bindings of OpenSSL (private): asking the memory BIO how much it holds costs a C call, where
# aiortc's way (``bio_read``, which raises WantReadError when it is empty) builds and raises an exception for
# every datagram received: 10-15 us each, on the receiver about as much as the rest of DTLS.
_LIB = getattr(SSL, "_lib", None)
_FFI = getattr(SSL, "_ffi", None)
_MEM_DATA = getattr(_LIB, "BIO_get_mem_data", None)


def outgoing(ssl: SSL.Connection) -> int | None:
    """How many bytes OpenSSL has written for the network and not yet been read; None where unknown."""
    bio = getattr(ssl, "_from_ssl", None)
    if _MEM_DATA is None or _FFI is None or bio is None:
        return None
    return int(_MEM_DATA(bio, _FFI.NULL))


class FastDtlsTransport(_dtls.RTCDtlsTransport):
    """aiortc's RTCDtlsTransport with batched receiving and synchronous sending (see the module's docstring)."""

    def _nbcall_pair(self) -> Any:
        """The selected candidate pair, if its protocol is aioice's plain UDP one; else None."""
        pair = self.transport._connection._nominated.get(1)
        if pair is None or type(pair.protocol) is not _ice.StunProtocol:
            return None
        return pair

    def send_packet(self, data: bytes) -> bool:
        """Encrypt ``data`` into one record and send it now; False (nothing done) where aiortc's own
        ``_send_data`` must do it (not connected, or not a plain UDP pair)."""
        ssl = self._ssl
        if self._state != _dtls.State.CONNECTED or ssl is None:
            return False
        pair = self._nbcall_pair()
        if pair is None:
            return False
        ssl.send(data)
        try:
            record = ssl.bio_read(1500)
        except SSL.Error:
            return True  # as aiortc's _write_ssl: OpenSSL had nothing to send
        pair.protocol.transport.sendto(record, pair.remote_addr)
        # aiortc's counters (getStats): name-mangled attributes of its class.
        self._RTCDtlsTransport__tx_bytes += len(record)  # type: ignore[attr-defined]
        self._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]
        return True

    async def _write_ssl(self) -> None:
        if self._ssl is not None and outgoing(self._ssl) == 0:
            return  # nothing to send (as aiortc's, which finds out by an exception)
        await super()._write_ssl()

    async def _recv_next(self) -> None:
        await super()._recv_next()
        if self._data_receiver is None:
            return  # the handshake, or the SCTP transport not started yet: one datagram at a time, as aiortc
        pair = self._nbcall_pair()
        sock = getattr(getattr(pair, "protocol", None) and pair.protocol.transport, "_sock", None)
        if not isinstance(sock, socket.socket):
            return
        connection = self.transport._connection
        queue = connection._queue
        component = pair.protocol.local_candidate.component
        for _ in range(BATCH):
            try:
                data, addr = sock.recvfrom(RECEIVE_SIZE)
            except OSError:  # nothing waiting (BlockingIOError), or an error asyncio's reader will report
                return
            if data and (19 < data[0] < 64 or 127 < data[0] < 192):
                connection.data_received(data, component)  # DTLS, or SRTP: never STUN (RFC 7983)
            else:
                pair.protocol.datagram_received(data, addr)
            while queue.qsize():
                await super()._recv_next()
