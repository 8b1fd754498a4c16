"""nbcall's own SCTP transport: aiortc's :class:`~aiortc.rtcsctptransport.RTCSctpTransport` with less work per
packet, given per transport by :func:`nbcall.peer.aiortc_patches.tune_sctp` (never to aiortc as a whole).

What changes, measured with py-spy in bench/throughput.py's Peer -> Peer step (docs/performance.md):

- Reassembly in linear time (:class:`FastInboundStream`): aiortc rescans the whole reassembly list for every
  DATA chunk, O(n^2) for a message of n fragments.
- Received TSNs in O(1) per chunk (``_mark_received``): aiortc sorts and filters its set of out-of-order TSNs,
  and rebuilds its list of duplicates, for every chunk, in order or not.
- Delayed SACKs: one per :data:`SACK_EVERY` DATA packets (RFC 4960 6.2, as browsers do), or per the number the
  peer negotiated (:data:`SACK_EVERY_PEER`, :data:`BURST_PEER`); at once after a gap or a duplicate, and within
  :data:`SACK_DELAY` otherwise.
- Sending new data skips aiortc's walk of every chunk in flight looking for one to retransmit when none can be
  marked (no SACK with gaps, no T3 expiry since), and sends up to ``burst`` packets per SACK (aiortc's 4, or
  :data:`BURST_PEER` towards a Peer that takes one SACK per as many).
- A packet goes to DTLS and UDP in one synchronous call where the DTLS transport allows
  (:meth:`~nbcall.peer.aiortc_dtls.FastDtlsTransport.send_packet`), not down six coroutines; the new DATA
  packets of one transmit go together (:meth:`~nbcall.peer.aiortc_dtls.FastDtlsTransport.send_packets`: one
  ``sendmsg`` for many datagrams).
- A batch of datagrams read at once (the DTLS transport's) gets one SACK for its DATA packets (at most
  :data:`SACK_BATCH` packets per SACK) and one transmit for its SACKs (as many new packets as the SACKs would
  have sent one by one, at most :data:`BURST_MAX`). Towards a browser that halved the SACKs a Peer sends, and
  the wake-ups of a Peer that sends.
- An INIT on the established association is ignored (aiortc would take it up and lose the association): Janus
  1.1.2 was seen sending an INIT again about 3, 10 and 22 s after the association was up (its T1-init timer's
  schedule), and a peer may restart an association. A DATA chunk beyond what a SACK can acknowledge is dropped, as
  if lost.

Nothing changes on the wire but when SACKs and bursts go: chunks, packets (at most 1,189 bytes, aiortc's
limit), datagrams and their bytes are aiortc's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiortc import rtcsctptransport as _sctp
from aiortc.utils import uint32_gt, uint32_gte

from .aiortc_dtls import FastDtlsTransport

__all__ = [
    "BURST",
    "BURST_MAX",
    "BURST_PEER",
    "SACK_BATCH",
    "SACK_DELAY",
    "SACK_EVERY",
    "SACK_EVERY_PEER",
    "FastInboundStream",
    "TunedSctpTransport",
]

logger = logging.getLogger("nbcall.peer.aiortc_patches")

_LAST_FRAG = _sctp.SCTP_DATA_LAST_FRAG
_MTU = _sctp.USERDATA_MAX_LENGTH
_TSN_MODULO = 2**32
#: The farthest a received TSN can be above our cumulative TSN and still be acknowledged: a SACK's gap block
#: gives its offset in 16 bits. A peer within its window never comes near (our window is 128 KiB).
_GAP_LIMIT = 0xFFFF

#: DATA packets acknowledged by one SACK, and how long the last of fewer waits for company (seconds). aiortc
#: sends a SACK for every DATA packet it receives: a DTLS record and a datagram for the receiver, and a walk
#: of the sent queue, an RTO update and a timer restart for the sender, per 1,160 bytes. RFC 4960 (6.2) has
#: a receiver acknowledge at least every second packet, and within 200 ms; browsers' SCTP stacks do so.
SACK_EVERY = 2
#: Towards an older nbcall Peer (it says ``"polite": false`` but lists no ``sctp_ext``): every fourth packet,
#: as many as aiortc's sender sends per SACK (its burst).
SACK_EVERY_PEER = 4
SACK_DELAY = 0.002
#: New DATA packets sent per SACK (or other wake-up) beyond those in flight: aiortc's Max.Burst (RFC 4960 6.1).
BURST = 4
#: Within a batch of datagrams read at once (:class:`~nbcall.peer.aiortc_dtls.FastDtlsTransport`): at most this
#: many DATA packets per SACK, and one SACK as the batch ends (RFC 9260 6.2 lets a receiver delay them). Not more:
#: a browser's SCTP (and Janus's) sends at most 4 new packets per SACK (its Max.Burst), so a SACK per 8 packets
#: left it 4 in flight and a Phone -> Peer at 7.1 MiB/s where a SACK per 4 gets 11.6 (bench/peer_phone.py,
#: 2026-12-07 late), and the Peer spends less CPU per MiB, as its batches fill.
SACK_BATCH = 4
#: The most new DATA packets one coalesced wake-up (the SACKs of a batch) sends.
BURST_MAX = 32
#: Between two Peers that both list ``"burst"`` in their signal's ``sctp_ext``: each sends up to this many
#: packets per SACK and acknowledges every this many (18.6 KB of data; the congestion window still applies).
BURST_PEER = 16


class FastInboundStream(_sctp.InboundStream):
    """aiortc's InboundStream, with reassembly in linear time (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._quiet = False

    def add_chunk(self, chunk: Any) -> None:
        at_end = not self.reassembly or uint32_gt(chunk.tsn, self.reassembly[-1].tsn)
        super().add_chunk(chunk)
        # The newest chunk, not a last fragment: its message still misses that one, and every other message's
        # completeness is unchanged, so nothing can be delivered now.
        self._quiet = at_end and not chunk.flags & _LAST_FRAG

    def pop_messages(self) -> Iterator[tuple[int, int, bytes]]:
        if self._quiet:
            self._quiet = False
            return iter(())
        return super().pop_messages()


class TunedSctpTransport(_sctp.RTCSctpTransport):
    """aiortc's RTCSctpTransport with the changes of the module's docstring; only transports given this class
    (:func:`~nbcall.peer.aiortc_patches.tune_sctp`)."""

    _nbcall_unsacked: int
    _nbcall_sack_every: int
    _nbcall_sack_timer: asyncio.TimerHandle | None
    _nbcall_tasks: set[asyncio.Task[None]]
    _nbcall_said: set[str]  # what it logged once
    _nbcall_burst: int
    #: Whether a chunk in flight may be marked for retransmission (a SACK with gaps or a T3 expiry came).
    _nbcall_may_retransmit: bool
    #: Packets per SACK within a batch of datagrams (0: as outside one), and whether the wake-ups to transmit of
    #: a batch's SACKs make one (per transport; class defaults, which bench/peer_phone.py compares).
    _nbcall_sack_batch: int = SACK_BATCH
    _nbcall_coalesce: bool = True
    #: Whether the new DATA packets of one transmit go to the DTLS transport together (one ``sendmsg``).
    _nbcall_gso: bool = True
    #: Set by the DTLS transport while it hands over a batch; the wake-ups to transmit it held back meanwhile.
    _nbcall_batching: bool = False
    _nbcall_wakeups: int = 0

    def _nbcall_setup(self) -> None:
        """Give a transport that was aiortc's the state this class keeps (before its class changes)."""
        self._nbcall_unsacked = 0
        self._nbcall_sack_every = SACK_EVERY
        self._nbcall_sack_timer = None
        self._nbcall_tasks = set()
        self._nbcall_said = set()
        self._nbcall_burst = BURST
        self._nbcall_may_retransmit = True  # until the first transmit has looked

    # ------------------------------------------------------------------------------------------ receiving

    async def _receive_chunk(self, chunk: Any) -> None:
        if isinstance(chunk, _sctp.InitChunk) and self._association_state == self.State.ESTABLISHED:
            # An association restart (RFC 4960 5.2.2), or Janus's opening INIT sent again (its T1-init timer's
            # schedule: about 3, 10, 22 s after the association is up). aiortc would take its TSN as the peer's
            # start, ack nothing the peer sends on the association it has, and keep the old TSNs as gaps that
            # no SACK can hold (struct.error). Keep the association we have.
            self._nbcall_once(
                "init", "an SCTP INIT on the established association (the peer restarted it): ignored"
            )
            return
        await super()._receive_chunk(chunk)

    def _nbcall_once(self, kind: str, what: str) -> None:
        """Log ``what`` the first time this transport meets a ``kind`` of trouble."""
        if kind not in self._nbcall_said:
            self._nbcall_said.add(kind)
            logger.warning("%s", what)

    def _get_inbound_stream(self, stream_id: int) -> Any:
        streams = self._inbound_streams
        if stream_id not in streams:
            streams[stream_id] = FastInboundStream()
        return streams[stream_id]

    def _mark_received(self, tsn: int) -> bool:
        # aiortc's bookkeeping, in O(1) per chunk: same duplicates, same cumulative TSN, same gaps.
        last = self._last_received_tsn
        misordered = self._sack_misordered
        if last is None:  # no INIT seen: aiortc's own (it fails the same way)
            return super()._mark_received(tsn)
        if uint32_gte(last, tsn) or tsn in misordered:
            self._sack_duplicates.append(tsn)
            return True
        if (tsn - last) % _TSN_MODULO > _GAP_LIMIT:
            # Far beyond anything the peer may send now (another association's, or a confused peer): a SACK
            # cannot say it came, so it is dropped, as if lost.
            self._nbcall_once(
                "far", f"an SCTP DATA chunk far beyond the cumulative TSN ({tsn} after {last}): dropped"
            )
            return True
        following = (last + 1) % _TSN_MODULO
        if tsn != following:
            misordered.add(tsn)  # beyond a gap: every entry stays above the cumulative TSN
        else:
            # The next in order, and then those that arrived early and follow it.
            last = tsn
            following = (last + 1) % _TSN_MODULO
            while misordered and following in misordered:
                misordered.discard(following)
                last = following
                following = (last + 1) % _TSN_MODULO
            self._last_received_tsn = last
        if self._sack_duplicates:  # as aiortc: only duplicates above the cumulative TSN are kept
            self._sack_duplicates = [x for x in self._sack_duplicates if uint32_gt(x, last)]
        return False

    async def _send_sack(self) -> None:
        # A gap or a duplicate is news the sender needs at once (fast retransmit); otherwise wait for the
        # next packet, or SACK_DELAY; within a batch, for its end (or _nbcall_sack_batch packets).
        self._nbcall_unsacked += 1
        batched = self._nbcall_batching and self._nbcall_sack_batch
        every = max(self._nbcall_sack_batch, self._nbcall_sack_every) if batched else self._nbcall_sack_every
        if self._sack_misordered or self._sack_duplicates or self._nbcall_unsacked >= every:
            await self._nbcall_sack_now()
        elif not batched:
            self._nbcall_sack_soon()

    def _nbcall_sack_soon(self) -> None:
        """A SACK within SACK_DELAY, unless one is already due."""
        if self._nbcall_sack_timer is None:
            self._nbcall_sack_timer = asyncio.get_running_loop().call_later(
                SACK_DELAY, self._nbcall_sack_late
            )

    def nbcall_batch_start(self) -> None:
        """The DTLS transport hands over several datagrams now: SACKs and transmits wait for its end."""
        self._nbcall_batching = True

    def nbcall_batch_cancel(self) -> None:
        """The batch ended in an error: hold nothing back any more."""
        self._nbcall_batching = False

    async def nbcall_batch_end(self) -> None:
        """The batch was handed over: one SACK for its DATA packets, one transmit for its SACKs."""
        self._nbcall_batching = False
        if self._nbcall_unsacked and self._sack_needed and self._association_state == self.State.ESTABLISHED:
            if self._nbcall_unsacked >= min(2, self._nbcall_sack_every):
                await self._nbcall_sack_now()
            else:
                self._nbcall_sack_soon()
        if self._nbcall_wakeups:
            await self._transmit()

    async def _nbcall_sack_now(self) -> None:
        if self._nbcall_sack_timer is not None:
            self._nbcall_sack_timer.cancel()
            self._nbcall_sack_timer = None
        self._nbcall_unsacked = 0
        last = self._last_received_tsn
        if last is not None and self._sack_misordered:
            far = {tsn for tsn in self._sack_misordered if (tsn - last) % _TSN_MODULO > _GAP_LIMIT}
            if far:  # never put in by _mark_received: only a state aiortc changed under us
                self._nbcall_once("gaps", f"{len(far)} received TSNs beyond a SACK's reach: left out of it")
                self._sack_misordered -= far
        await super()._send_sack()

    def _nbcall_sack_late(self) -> None:
        self._nbcall_sack_timer = None
        if self._sack_needed and self._association_state == self.State.ESTABLISHED:
            task = asyncio.ensure_future(self._nbcall_sack_now())
            self._nbcall_tasks.add(task)
            task.add_done_callback(self._nbcall_sack_sent)

    def _nbcall_sack_sent(self, task: asyncio.Task[None]) -> None:
        self._nbcall_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The association went away meanwhile: the sender learns that otherwise.
            logger.debug("a delayed SACK was not sent: %s", task.exception())

    # -------------------------------------------------------------------------------------------- sending

    async def _receive_sack_chunk(self, chunk: Any) -> None:
        if chunk.gaps:  # aiortc may mark chunks for fast retransmission
            self._nbcall_may_retransmit = True
        await super()._receive_sack_chunk(chunk)

    def _t3_expired(self) -> None:
        self._nbcall_may_retransmit = True  # aiortc marks every chunk in flight
        super()._t3_expired()

    async def _transmit(self) -> None:
        if self._nbcall_batching and self._nbcall_coalesce:
            self._nbcall_wakeups += 1  # nbcall_batch_end transmits once for them all
            return
        wakeups, self._nbcall_wakeups = max(1, self._nbcall_wakeups), 0
        if self._nbcall_may_retransmit or self._forward_tsn_chunk is not None:
            # aiortc's own: FORWARD TSN, then retransmissions (a walk of every chunk in flight), then new data.
            await super()._transmit()
            self._nbcall_may_retransmit = any(chunk._retransmit for chunk in self._sent_queue)
            if self._nbcall_may_retransmit or self._nbcall_burst <= BURST:
                return
        # New data only: as aiortc's, with our burst (half of it in fast recovery, as aiortc halves its own).
        burst = min(BURST_MAX, self._nbcall_burst * wakeups)  # as many as the wake-ups would have sent
        burst = burst if self._fast_recovery_exit is None else max(2, burst // 2)
        cwnd = min(self._flight_size + burst * _MTU, self._cwnd)
        queue = self._outbound_queue
        sent = self._sent_queue
        chunks = []
        while queue and self._flight_size < cwnd:
            chunk = queue.popleft()
            sent.append(chunk)
            self._flight_size_increase(chunk)
            chunk._sent_count += 1
            chunks.append(chunk)
        if not chunks:
            return
        now = time.time()  # aiortc's RTO takes wall-clock seconds
        for chunk in chunks:
            chunk._sent_time = now
        dtls = self.transport
        if self._nbcall_gso and type(dtls) is FastDtlsTransport and len(chunks) > 1:
            remote_port: Any = self._remote_port
            tag = self._remote_verification_tag
            packets = [_sctp.serialize_packet(self._local_port, remote_port, tag, chunk) for chunk in chunks]
            if not dtls.send_packets(packets):
                for packet in packets:
                    await dtls._send_data(packet)
        else:
            for chunk in chunks:
                await self._send_chunk(chunk)
        if not self._t3_handle:
            self._t3_start()

    async def _send_chunk(self, chunk: Any) -> None:
        dtls = self.transport
        remote_port: Any = self._remote_port  # set once the association is up, as aiortc assumes
        packet = _sctp.serialize_packet(self._local_port, remote_port, self._remote_verification_tag, chunk)
        if type(dtls) is FastDtlsTransport and dtls.send_packet(packet):
            return
        await dtls._send_data(packet)
