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
event loop, aiortc's own way is taken. Within a batch, application data (every SCTP packet, once the handshake is
done) is decrypted at once instead of going through aioice's queue and aiortc's receive step; the SCTP transport
is told where a batch starts and ends, so that it acknowledges and transmits once per batch.
:meth:`FastDtlsTransport.send_packets` encrypts several packets and hands records of one size to the kernel in
one ``sendmsg`` with ``UDP_SEGMENT`` (Linux's UDP segmentation offload): it sends them as as many datagrams,
each one record, as one ``sendto`` each would (on loopback a ``sendto`` cost 26 us a datagram, this 7). A
kernel or path that refuses it turns it off for the transport: one ``sendto`` per record. Datagrams and their bytes are those aiortc sends. Batching waits for the
SCTP transport to start: aiortc drops what DTLS decrypts before then, and a DTLS server (Janus, on every
subscriber connection) sends its SCTP INIT right behind its last handshake flight, so a batch read during the
handshake lost that INIT (aiortc's own loop leaves it queued for the SCTP transport).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from aioice import ice as _ice
from aiortc import rtcdtlstransport as _dtls
from OpenSSL import SSL

__all__ = ["BATCH", "FastDtlsTransport", "outgoing"]

#: Datagrams read from the socket and handled after each one the event loop handed over.
BATCH = 32
#: The first byte of a DTLS record that carries application data (RFC 6347 4.1: content type 23).
_APPLICATION_DATA = 23
#: The largest datagram read (asyncio reads up to 256 KiB; a DTLS record here is under 1,300 bytes).
RECEIVE_SIZE = 65536
#: Linux's UDP generic segmentation offload (``UDP_SEGMENT``, Linux 4.18): one ``sendmsg`` of records of the
#: same size (the last may be shorter) leaves as as many datagrams, each its record, as ``sendto`` would send.
UDP_SEGMENT = 103
#: The most records per such ``sendmsg`` (the kernel takes up to 64 segments of one 64 KiB datagram).
GSO_MAX = 32
#: errno values that say this socket or its path cannot segment: send one datagram per record from then on.
_NO_GSO = {errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EMSGSIZE}


# pyOpenSSL's bindings of OpenSSL (private): asking the memory BIO how much it holds costs a C call, where
# aiortc's way (``bio_read``, which raises WantReadError when it is empty) builds and raises an exception for
# every datagram received: 10-15 us each, on the receiver about as much as the rest of DTLS.
_LIB = getattr(SSL, "_lib", None)
_FFI = getattr(SSL, "_ffi", None)
_MEM_DATA = getattr(_LIB, "BIO_get_mem_data", None)


# The same bindings' record calls, called straight: pyOpenSSL's ``bio_write``, ``recv``, ``send`` and ``bio_read``
# wrap each in checks for the handshake's callbacks, a type check and an allocation (about half of DTLS's time
# per packet in py-spy's profile of a Peer). Errors still go through pyOpenSSL's own handling.
_RAW = tuple(getattr(_LIB, name, None) for name in ("BIO_write", "SSL_read", "SSL_write", "BIO_read"))
_BIO_WRITE, _SSL_READ, _SSL_WRITE, _BIO_READ = _RAW
#: The largest record read from OpenSSL at once (aiortc's own limit).
RECORD_SIZE = 1500


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
        return self.send_packets([data])

    #: Whether several records go in one ``sendmsg`` with ``UDP_SEGMENT`` (per transport; turned off for good
    #: when the kernel refuses it).
    _nbcall_gso: bool = hasattr(socket.socket, "sendmsg") and socket.SOL_UDP == 17

    def send_packets(self, packets: list[bytes]) -> bool:
        """Encrypt each of ``packets`` into a record and send them now, records of one size in one
        ``sendmsg`` where the kernel segments them; False (nothing done) where aiortc's own ``_send_data``
        must send them (not connected, or not a plain UDP pair)."""
        ssl = self._ssl
        if self._state != _dtls.State.CONNECTED or ssl is None:
            return False
        pair = self._nbcall_pair()
        if pair is None:
            return False
        records = []
        for packet in packets:
            record = self._nbcall_encrypt(ssl, packet)
            if record is not None:  # else, as aiortc's _write_ssl: OpenSSL had nothing to send
                records.append(record)
        transport = pair.protocol.transport
        sock = getattr(transport, "_sock", None)
        self._RTCDtlsTransport__tx_bytes += sum(map(len, records))  # type: ignore[attr-defined]
        self._RTCDtlsTransport__tx_packets += len(records)  # type: ignore[attr-defined]
        if not self._nbcall_gso or not isinstance(sock, socket.socket) or transport.get_write_buffer_size():
            for record in records:  # one at a time, behind what asyncio holds for the socket
                transport.sendto(record, pair.remote_addr)
            return True
        for group in _same_size_runs(records):
            if len(group) > 1 and not transport.get_write_buffer_size():
                size = struct.pack("=H", len(group[0]))
                try:
                    sock.sendmsg(
                        [b"".join(group)], [(socket.SOL_UDP, UDP_SEGMENT, size)], 0, pair.remote_addr
                    )
                    continue
                except OSError as e:
                    if e.errno in _NO_GSO:
                        self._nbcall_gso = False
                    # The socket's buffer is full (asyncio queues what follows), or the kernel cannot
                    # segment: one datagram per record.
            for record in group:
                transport.sendto(record, pair.remote_addr)
        return True

    #: Whether a batch decrypts application data itself (per transport; bench/peer_phone.py compares).
    _nbcall_direct: bool = True

    async def _nbcall_record(self, data: bytes, receiver: Any) -> None:
        """One DTLS application-data record read by a batch: decrypted and handed to SCTP, as aiortc's
        ``_recv_next`` does with what aioice's queue gives it."""
        ssl = self._ssl
        assert ssl is not None  # the handshake is done
        self._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        self._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            plain = self._nbcall_decrypt(ssl, data)
        except SSL.ZeroReturnError:
            raise ConnectionError from None  # the peer shut DTLS down: as aiortc's
        except SSL.Error:
            plain = b""
        if outgoing(ssl) != 0:
            await super()._write_ssl()
        if plain and receiver is not None:
            await receiver._handle_data(plain)

    #: Whether records are written and read with OpenSSL's calls straight (per transport; the bench compares).
    _nbcall_raw: bool = None not in _RAW and _FFI is not None
    _nbcall_buffer: Any = None

    def _nbcall_decrypt(self, ssl: SSL.Connection, data: bytes) -> bytes:
        """``ssl.bio_write(data)`` then ``ssl.recv(RECORD_SIZE)``, raising as they do."""
        if not self._nbcall_raw:
            ssl.bio_write(data)
            return ssl.recv(RECORD_SIZE)
        into, read = (
            (_BIO_WRITE, ssl._into_ssl, ssl._handle_bio_errors),
            (_SSL_READ, ssl._ssl, ssl._raise_ssl_error),
        )
        return self._nbcall_pipe(into, read, data, quiet=False) or b""

    def _nbcall_encrypt(self, ssl: SSL.Connection, packet: bytes) -> bytes | None:
        """``ssl.send(packet)`` then ``ssl.bio_read(RECORD_SIZE)``: the record, or None if OpenSSL had none."""
        if not self._nbcall_raw:
            ssl.send(packet)
            try:
                return ssl.bio_read(RECORD_SIZE)
            except SSL.Error:
                return None
        into, read = (
            (_SSL_WRITE, ssl._ssl, ssl._raise_ssl_error),
            (_BIO_READ, ssl._from_ssl, ssl._handle_bio_errors),
        )
        return self._nbcall_pipe(into, read, packet, quiet=True)

    def _nbcall_pipe(
        self, into: tuple[Any, Any, Any], out: tuple[Any, Any, Any], data: bytes, quiet: bool
    ) -> bytes | None:
        """Write ``data`` with one of OpenSSL's calls, then read what it gives with another: each ``(binding,
        its object, pyOpenSSL's error handling for it)``. A failed read raises as pyOpenSSL does, or gives
        None if ``quiet``."""
        assert _FFI is not None
        call, target, fail = into
        written = call(target, data, len(data))
        if written <= 0:
            fail(target, written)
        buffer = self._nbcall_buffer
        if buffer is None:
            buffer = self._nbcall_buffer = _FFI.new("char[]", RECORD_SIZE)
        call, target, fail = out
        read = call(target, buffer, RECORD_SIZE)
        if read <= 0:
            try:
                fail(target, read)
            except SSL.Error:
                if quiet:
                    return None
                raise
        return _FFI.buffer(buffer, read)[:]

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
        # nbcall's SCTP transport holds back SACKs and transmits until the batch ends (aiortc_sctp.py).
        receiver: Any = self._data_receiver
        start = getattr(receiver, "nbcall_batch_start", None)
        batched = False
        # Application data (every SCTP packet) is decrypted here, not through aioice's queue, once the
        # handshake is done; what the loop queued before goes first, in order.
        direct = self._nbcall_direct and self._RTCDtlsTransport__handshake_done  # type: ignore[attr-defined]
        while queue.qsize():
            await super()._recv_next()
        try:
            for _ in range(BATCH):
                try:
                    data, addr = sock.recvfrom(RECEIVE_SIZE)
                except OSError:  # nothing waiting (BlockingIOError), or an error asyncio's reader will report
                    break
                if start is not None and not batched:
                    start()
                    batched = True
                if direct and data and data[0] == _APPLICATION_DATA:
                    await self._nbcall_record(data, receiver)
                elif data and (19 < data[0] < 64 or 127 < data[0] < 192):
                    connection.data_received(data, component)  # DTLS, or SRTP: never STUN (RFC 7983)
                else:
                    pair.protocol.datagram_received(data, addr)
                while queue.qsize():
                    await super()._recv_next()
        except BaseException:
            if batched:
                receiver.nbcall_batch_cancel()  # the association is going: nothing more to hold back
            raise
        if batched:
            await receiver.nbcall_batch_end()


def _same_size_runs(records: list[bytes]) -> list[list[bytes]]:
    """``records`` cut into runs that ``UDP_SEGMENT`` can send: all of the first's size, the last no larger,
    at most :data:`GSO_MAX` and 64,000 bytes each."""
    runs: list[list[bytes]] = []
    run: list[bytes] = []
    size = total = 0
    for record in records:
        n = len(record)
        if run and (n > size or len(run) >= GSO_MAX or total + n > 64000):
            runs.append(run)
            run = []
        if not run:
            size, total = n, 0
        run.append(record)
        total += n
        if n < size:  # a shorter record ends a run
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return runs
