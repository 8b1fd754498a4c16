"""Every reach of nbcall's into aiortc's and aioice's internals, each applied per connection, never globally.

- :func:`allow_loopback`: aioice never offers loopback as a host candidate, so on a machine whose only
  interface is loopback (a network namespace, a sandbox) a peer would gather nothing and never connect.
  The connection's ICE connections become :class:`LoopbackConnection`, which falls back to 127.0.0.1.
- :func:`tune_sctp` makes a transport a :class:`TunedSctpTransport`. aiortc's ``InboundStream.pop_messages``
  rescans the whole reassembly list for every DATA chunk, so a message of n fragments costs O(n^2) (a 256 KiB
  frame is 226 chunks; the largest single cost in bench/throughput.py's profile). :class:`FastInboundStream`
  skips the scan for a chunk that arrives in order and is not a last fragment, since it cannot complete any
  message: reassembly becomes linear. And it acknowledges every second DATA packet (:data:`SACK_EVERY`) rather
  than each, as RFC 4960 allows and browsers do: nothing changes on the wire but how often a SACK comes.
- :func:`start_receivers`: aiortc's connect step (run after each description) starts a transceiver's receiver
  only if the DTLS transport is connected at that moment. A media section that a renegotiation adds while the
  first DTLS handshake is still running (an SFU's updated subscriber offer right after its first) keeps its
  receiver unstarted, for good: its packets are dropped, nothing raises. Run once the connection is connected,
  it runs the connect step again, which starts it.
- :func:`unacknowledged`: the DATA chunks SCTP has queued or sent but the peer has not acknowledged yet, so
  that a hangup waits until what was sent has arrived.

Written for and tested with aiortc 1.16 and aioice 0.13; the same internals are in the sources of aiortc
1.9 to 1.15 and aioice 0.9 to 0.10. On versions outside :data:`WRITTEN_FOR` (see :func:`unavailable_reason`,
logged once at INFO on ``nbcall.peer.aiortc_patches``) every function leaves aiortc and aioice as they are:
a loopback-only machine gathers no candidates, reassembly stays quadratic, and a hangup waits only until
the data channel has handed its messages to SCTP, not until the peer acknowledged them.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from collections.abc import Iterator
from typing import Any

import aioice
from aiortc import RTCPeerConnection
from aiortc import rtcsctptransport as _sctp

__all__ = [
    "SACK_DELAY",
    "SACK_EVERY",
    "SACK_EVERY_PEER",
    "VERSIONS",
    "WRITTEN_FOR",
    "FastInboundStream",
    "LoopbackConnection",
    "TunedSctpTransport",
    "allow_loopback",
    "start_receivers",
    "tune_sctp",
    "unacknowledged",
    "unavailable_reason",
]

logger = logging.getLogger("nbcall.peer.aiortc_patches")

#: The (major, minor) releases, first and last, whose internals this module was written against.
WRITTEN_FOR = {"aiortc": ((1, 9), (1, 16)), "aioice": ((0, 9), (0, 13))}
#: The installed versions.
VERSIONS = {name: importlib.metadata.version(name) for name in WRITTEN_FOR}

_logged: set[str] = set()


def unavailable_reason(versions: dict[str, str] | None = None) -> str | None:
    """Why the patches cannot run with these versions (default: the installed ones), or ``None``."""
    versions = VERSIONS if versions is None else versions
    for name, (first, last) in WRITTEN_FOR.items():
        version = versions[name]
        try:
            major_minor = tuple(int(part) for part in version.split(".")[:2])
        except ValueError:
            major_minor = ()
        if len(major_minor) != 2 or not first <= major_minor <= last:
            span = f"{first[0]}.{first[1]} to {last[0]}.{last[1]}"
            return f"they were written for {name} {span} and {name} {version} is installed"
    return None


def _available() -> bool:
    why = unavailable_reason()
    if why is not None and why not in _logged:
        _logged.add(why)
        logger.info(
            "leaving aiortc's and aioice's internals as they are (no loopback candidates, quadratic SCTP "
            "reassembly, a hangup does not wait for acknowledgements): %s",
            why,
        )
    return why is None


# ------------------------------------------------------------------------------------- loopback candidates


class LoopbackConnection(aioice.Connection):
    """An aioice connection that falls back to 127.0.0.1 when it found no other host address.

    Only connections given this class (by :func:`allow_loopback`) do it: other aioice users in the process
    are unaffected.
    """

    async def gather_candidates(self) -> None:
        first = not self._local_candidates_start
        await super().gather_candidates()
        no_host = not any(c.type == "host" for c in self._local_candidates)
        if first and no_host and self._transport_policy == aioice.TransportPolicy.ALL:
            for component in self._components:
                self._local_candidates += await self.get_component_candidates(
                    component=component, addresses=["127.0.0.1"]
                )


def allow_loopback(pc: RTCPeerConnection) -> bool:
    """Let the ICE gatherers of ``pc`` use 127.0.0.1 when nothing else is there (call before gathering);
    False (and ``pc`` unchanged) on versions this was not written for."""
    if not _available():
        return False
    for gatherer in _gatherers(pc):
        connection = getattr(gatherer, "_connection", None)
        if type(connection) is aioice.Connection:
            connection.__class__ = LoopbackConnection
    return True


def _gatherers(pc: RTCPeerConnection) -> Iterator[Any]:
    for transceiver in pc.getTransceivers():
        yield transceiver.receiver.transport.transport.iceGatherer
    if pc.sctp is not None:
        yield pc.sctp.transport.transport.iceGatherer


# ------------------------------------------------------------------------------------- SCTP reassembly

_LAST_FRAG = _sctp.SCTP_DATA_LAST_FRAG
_SCTP_INTERNALS = all(
    hasattr(_sctp.RTCSctpTransport, name)
    for name in ("_get_inbound_stream", "_receive_data_chunk", "_send_sack", "_handle_data")
) and all(hasattr(_sctp.InboundStream, name) for name in ("add_chunk", "pop_messages"))


class FastInboundStream(_sctp.InboundStream):
    """aiortc's InboundStream, with reassembly in linear time (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._quiet = False

    def add_chunk(self, chunk: Any) -> None:
        at_end = not self.reassembly or _sctp.uint32_gt(chunk.tsn, self.reassembly[-1].tsn)
        super().add_chunk(chunk)
        # The newest chunk, not a last fragment: its message still misses that one, and every other message's
        # completeness is unchanged, so nothing can be delivered now.
        self._quiet = at_end and not chunk.flags & _LAST_FRAG

    def pop_messages(self) -> Iterator[tuple[int, int, bytes]]:
        if self._quiet:
            self._quiet = False
            return iter(())
        return super().pop_messages()


#: DATA packets acknowledged by one SACK, and how long the last of fewer waits for company (seconds). aiortc
#: sends a SACK for every DATA packet it receives: a DTLS record and a datagram for the receiver, and a walk
#: of the sent queue, an RTO update and a timer restart for the sender, per 1,160 bytes. RFC 4960 (6.2) has
#: a receiver acknowledge at least every second packet, and within 200 ms; browsers' SCTP stacks do so.
SACK_EVERY = 2
#: The same towards another nbcall Peer (it says so: ``"polite": false``), whose sender is aiortc's: every
#: fourth packet. Measured in bench/throughput.py: 2 -> 4 cut the receiver's SACK work by half again.
SACK_EVERY_PEER = 4
SACK_DELAY = 0.002


class TunedSctpTransport(_sctp.RTCSctpTransport):
    """aiortc's RTCSctpTransport with reassembly in linear time (:class:`FastInboundStream`) and delayed
    SACKs (one per :data:`SACK_EVERY` DATA packets); only transports given this class (:func:`tune_sctp`)."""

    _nbcall_unsacked: int
    _nbcall_sack_every: int
    _nbcall_sack_timer: asyncio.TimerHandle | None
    _nbcall_tasks: set[asyncio.Task[None]]

    def _get_inbound_stream(self, stream_id: int) -> Any:
        streams = self._inbound_streams
        if stream_id not in streams:
            streams[stream_id] = FastInboundStream()
        return streams[stream_id]

    async def _send_sack(self) -> None:
        # A gap or a duplicate is news the sender needs at once (fast retransmit); otherwise wait for the
        # next packet, or SACK_DELAY.
        self._nbcall_unsacked += 1
        if self._sack_misordered or self._sack_duplicates or self._nbcall_unsacked >= self._nbcall_sack_every:
            await self._nbcall_sack_now()
        elif self._nbcall_sack_timer is None:
            loop = asyncio.get_running_loop()
            self._nbcall_sack_timer = loop.call_later(SACK_DELAY, self._nbcall_sack_late)

    async def _nbcall_sack_now(self) -> None:
        if self._nbcall_sack_timer is not None:
            self._nbcall_sack_timer.cancel()
            self._nbcall_sack_timer = None
        self._nbcall_unsacked = 0
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


def tune_sctp(sctp: _sctp.RTCSctpTransport, sack_every: int = SACK_EVERY) -> bool:
    """Make one RTCSctpTransport a :class:`TunedSctpTransport` that sends a SACK per ``sack_every`` DATA
    packets (again: changes it); False (and unchanged) if aiortc differs."""
    if (
        not _available()
        or not _SCTP_INTERNALS
        or type(sctp) not in (_sctp.RTCSctpTransport, TunedSctpTransport)
        or not isinstance(getattr(sctp, "_inbound_streams", None), dict)
    ):
        return False
    if type(sctp) is _sctp.RTCSctpTransport:
        sctp._nbcall_unsacked = 0  # type: ignore[attr-defined]
        sctp._nbcall_sack_timer = None  # type: ignore[attr-defined]
        sctp._nbcall_tasks = set()  # type: ignore[attr-defined]
        # Per transport (its class), so other aiortc users in the process keep aiortc's own.
        sctp.__class__ = TunedSctpTransport
    sctp._nbcall_sack_every = max(1, sack_every)  # type: ignore[attr-defined]
    return True


def unacknowledged(sctp: _sctp.RTCSctpTransport | None) -> int:
    """How many DATA chunks ``sctp`` holds that the peer has not acknowledged (0 where that is unknown)."""
    if sctp is None or not _available():
        return 0
    return len(getattr(sctp, "_outbound_queue", ())) + len(getattr(sctp, "_sent_queue", ()))


# ------------------------------------------------------------------------------- receivers of a renegotiation


async def start_receivers(pc: RTCPeerConnection) -> int:
    """Start the receivers of ``pc`` that should receive but were left unstarted; returns how many there were
    (0, doing nothing, on versions this was not written for)."""
    if not _available():
        return 0
    idle = [
        t
        for t in pc.getTransceivers()
        if t.currentDirection in ("recvonly", "sendrecv")
        and not getattr(t.receiver, "_RTCRtpReceiver__started", True)
    ]
    connect = getattr(pc, "_RTCPeerConnection__connect", None)
    if idle and connect is not None and pc.connectionState == "connected":
        await connect()
    return len(idle)
