"""Every reach of nbcall's into aiortc's and aioice's internals, each applied per connection, never globally.

- :func:`allow_loopback`: aioice never offers loopback as a host candidate, so on a machine whose only
  interface is loopback (a network namespace, a sandbox) a peer would gather nothing and never connect.
  The connection's ICE connections become :class:`LoopbackConnection`, which falls back to 127.0.0.1.
- :func:`tune_sctp` gives a connection's SCTP transport the class
  :class:`~nbcall.peer.aiortc_sctp.TunedSctpTransport` and its DTLS transport
  :class:`~nbcall.peer.aiortc_dtls.FastDtlsTransport`: reassembly in linear time, received TSNs in O(1), a SACK
  per second DATA packet (per :data:`~nbcall.peer.aiortc_sctp.BURST_PEER` between Peers that negotiate it, with
  as many packets per burst), no walk of the chunks in flight when none can need a retransmission, a
  datagram's way through DTLS and UDP without a loop turn per packet, one SACK and one transmit per batch of
  datagrams read at once, and the new packets of a transmit in one ``sendmsg`` (``UDP_SEGMENT``). Packets, their size and their bytes stay
  aiortc's: only when SACKs and bursts go changes on the wire.
- :func:`start_media`: aiortc's connect step (run after each description) starts a transceiver's receiver
  and sender only if the DTLS transport is connected at that moment. A media section that a renegotiation adds
  while the first DTLS handshake is still running (an SFU's updated subscriber offer right after its first, a
  camera peer's offer right after answering a data-only member) keeps its receiver or sender unstarted, for
  good: its packets are dropped or never sent, nothing raises. Run once the connection is connected, it runs the
  connect step again, which starts them.
- :func:`unacknowledged`: the DATA chunks SCTP has queued or sent but the peer has not acknowledged yet, so
  that a hangup waits until what was sent has arrived.

Written for and tested with aiortc 1.16 and aioice 0.13; the same internals are in the sources of aiortc
1.9 to 1.15 and aioice 0.9 to 0.10. On versions outside :data:`WRITTEN_FOR` (see :func:`unavailable_reason`,
logged once at INFO on ``nbcall.peer.aiortc_patches``) every function leaves aiortc and aioice as they are:
a loopback-only machine gathers no candidates, SCTP and DTLS stay aiortc's own, and a hangup waits only until
the data channel has handed its messages to SCTP, not until the peer acknowledged them.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator
from typing import Any

import aioice
from aiortc import RTCPeerConnection
from aiortc import rtcdtlstransport as _dtls
from aiortc import rtcsctptransport as _sctp

from .aiortc_dtls import FastDtlsTransport
from .aiortc_sctp import BURST, SACK_EVERY, TunedSctpTransport

__all__ = [
    "VERSIONS",
    "WRITTEN_FOR",
    "LoopbackConnection",
    "allow_loopback",
    "start_media",
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


# ------------------------------------------------------------------------------------- SCTP and DTLS

_SCTP_INTERNALS = all(
    hasattr(_sctp.RTCSctpTransport, name)
    for name in (
        "_get_inbound_stream", "_receive_data_chunk", "_send_sack", "_handle_data", "_mark_received",
        "_receive_sack_chunk", "_t3_expired", "_transmit", "_send_chunk", "_flight_size_increase",
    )
) and all(hasattr(_sctp.InboundStream, name) for name in ("add_chunk", "pop_messages"))  # fmt: skip
_DTLS_INTERNALS = all(
    hasattr(_dtls.RTCDtlsTransport, name) for name in ("_recv_next", "_send_data", "_write_ssl")
) and hasattr(aioice.Connection, "data_received")


def tune_sctp(sctp: _sctp.RTCSctpTransport, sack_every: int = SACK_EVERY, burst: int = BURST) -> bool:
    """Make one RTCSctpTransport a :class:`TunedSctpTransport` that sends a SACK per ``sack_every`` DATA
    packets and up to ``burst`` new ones per SACK (again: changes them), and its DTLS transport a
    :class:`FastDtlsTransport`; False (and unchanged) if aiortc differs."""
    if (
        not _available()
        or not _SCTP_INTERNALS
        or type(sctp) not in (_sctp.RTCSctpTransport, TunedSctpTransport)
        or not isinstance(getattr(sctp, "_inbound_streams", None), dict)
    ):
        return False
    if type(sctp) is _sctp.RTCSctpTransport:
        TunedSctpTransport._nbcall_setup(sctp)  # type: ignore[arg-type]
        # Per transport (its class), so other aiortc users in the process keep aiortc's own.
        sctp.__class__ = TunedSctpTransport
    dtls = sctp.transport
    if _DTLS_INTERNALS and type(dtls) is _dtls.RTCDtlsTransport:
        dtls.__class__ = FastDtlsTransport
    sctp._nbcall_sack_every = max(1, sack_every)  # type: ignore[attr-defined]
    sctp._nbcall_burst = max(1, burst)  # type: ignore[attr-defined]
    return True


def unacknowledged(sctp: _sctp.RTCSctpTransport | None) -> int:
    """How many DATA chunks ``sctp`` holds that the peer has not acknowledged (0 where that is unknown)."""
    if sctp is None or not _available():
        return 0
    return len(getattr(sctp, "_outbound_queue", ())) + len(getattr(sctp, "_sent_queue", ()))


# --------------------------------------------------------------------------------- media of a renegotiation


async def start_media(pc: RTCPeerConnection) -> int:
    """Start the receivers and senders of ``pc`` that should run but were left unstarted; returns how many
    there were (0, doing nothing, on versions this was not written for)."""
    if not _available():
        return 0
    idle = [
        t
        for t in pc.getTransceivers()
        if (
            t.currentDirection in ("recvonly", "sendrecv")
            and not getattr(t.receiver, "_RTCRtpReceiver__started", True)
        )
        or (
            t.currentDirection in ("sendonly", "sendrecv")
            and not getattr(t.sender, "_RTCRtpSender__started", True)
        )
    ]
    connect = getattr(pc, "_RTCPeerConnection__connect", None)
    if idle and connect is not None and pc.connectionState == "connected":
        await connect()
    return len(idle)
