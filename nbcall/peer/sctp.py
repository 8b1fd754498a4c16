"""Tuning of aiortc's SCTP transport for bulk data, from the profile in bench/throughput.py.

aiortc's ``InboundStream.pop_messages`` scans the whole reassembly list each time a DATA chunk arrives, so
receiving a message of n fragments costs O(n^2): a 256 KiB frame is 226 chunks of 1,160 bytes, about 25,000
steps per frame, and the profile of a 20 MiB transfer showed it as the largest single cost. A chunk that
arrives in order and is not the last fragment of its message cannot complete any message, so
:class:`FastInboundStream` skips the scan for it: reassembly becomes linear. This reaches into aiortc's
internals (``_get_inbound_stream``, ``_inbound_streams``), so :func:`tune_sctp` checks they are there and
otherwise leaves the transport as it is (aiortc's own, slower path).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["FastInboundStream", "tune_sctp"]

logger = logging.getLogger("nbcall.peer.sctp")

try:
    from aiortc import rtcsctptransport as _sctp

    _Base: Any = _sctp.InboundStream
    _LAST_FRAG = _sctp.SCTP_DATA_LAST_FRAG
    _SUPPORTED = all(
        hasattr(_sctp.RTCSctpTransport, name) for name in ("_get_inbound_stream", "_receive_data_chunk")
    ) and all(hasattr(_Base, name) for name in ("add_chunk", "pop_messages"))
except ImportError:  # pragma: no cover - the peer extra is missing; Peer says so before this matters
    _Base, _LAST_FRAG, _SUPPORTED = object, 1, False


class FastInboundStream(_Base):  # type: ignore[misc]
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
        return super().pop_messages()  # type: ignore[no-any-return]


def tune_sctp(sctp: Any) -> bool:
    """Make one RTCSctpTransport reassemble in linear time; False (and unchanged) if aiortc differs."""
    if not _SUPPORTED or not isinstance(getattr(sctp, "_inbound_streams", None), dict):
        logger.debug("aiortc's SCTP internals are not as expected: leaving its reassembly as it is")
        return False
    if getattr(sctp, "_nbcall_tuned", False):
        return True

    def get_inbound_stream(stream_id: int) -> Any:
        streams = sctp._inbound_streams
        if stream_id not in streams:
            streams[stream_id] = FastInboundStream()
        return streams[stream_id]

    # Per transport (an instance attribute), so other aiortc users in the process keep aiortc's own.
    sctp._get_inbound_stream = get_inbound_stream
    sctp._nbcall_tuned = True
    return True
