"""nbcall's SCTP and DTLS transports handling a batch of datagrams read at once: one SACK for the batch's DATA
packets, one transmit for its SACKs, new DATA packets in one ``sendmsg`` (``UDP_SEGMENT``) that the receiver gets
as the same datagrams, and application data decrypted without aioice's queue."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
from typing import Any

import pytest
from support import connected_pair, moved

from nbcall.peer import aiortc_dtls as tuned_dtls
from nbcall.peer import aiortc_patches as patches


def test_records_are_cut_into_runs_that_udp_segment_sends_as_they_are() -> None:
    runs = tuned_dtls._same_size_runs
    full, short, other = b"f" * 10, b"s" * 4, b"o" * 12
    assert runs([]) == []
    assert runs([full]) == [[full]]
    # A shorter record ends a run (the kernel cuts every segment but the last at the first one's size).
    assert runs([full, full, short, full]) == [[full, full, short], [full]]
    assert runs([short, full, full]) == [[short], [full, full]]
    assert runs([full, other, other]) == [[full], [other, other]]  # a longer one starts a run
    assert [len(run) for run in runs([full] * (tuned_dtls.GSO_MAX + 3))] == [tuned_dtls.GSO_MAX, 3]
    for records in ([full, short, other, full, full, short], [other] * 70):
        assert [r for run in runs(records) for r in run] == records


async def _transfer(
    size: int, sack_batch: int | None = None, refuse_gso: bool = False
) -> tuple[bool, dict[str, int], Any, Any]:
    """``size`` random bytes from a to b, both tuned as a Peer tunes its connection to a browser (a SACK per
    second packet, bursts of 4); b's ``_nbcall_sack_batch`` set to ``sack_batch`` if given, and a's socket
    refusing ``UDP_SEGMENT`` if ``refuse_gso``: (arrived whole, counts, a, b)."""
    a, b, channel, theirs = await connected_pair()
    for pc in (a, b):
        assert patches.tune_sctp(pc.sctp, 2, 4)
    if sack_batch is not None:
        b.sctp._nbcall_sack_batch = sack_batch
    counts = {"sacks": 0, "runs": 0, "run_packets": 0, "queued": 0}
    receive_sack, send_packets = a.sctp._receive_sack_chunk, a.sctp.transport.send_packets

    async def counted_sack(chunk: Any) -> None:
        counts["sacks"] += 1
        await receive_sack(chunk)

    def counted_packets(packets: list[bytes]) -> bool:
        counts["runs"] += 1
        counts["run_packets"] += len(packets)
        return send_packets(packets)

    a.sctp._receive_sack_chunk, a.sctp.transport.send_packets = counted_sack, counted_packets
    connection = b.sctp.transport.transport._connection
    queued = connection.data_received

    def counted_queued(data: bytes, component: int) -> None:
        counts["queued"] += 1
        queued(data, component)

    connection.data_received = counted_queued
    udp = a.sctp.transport._nbcall_pair().protocol.transport
    own = udp._sock
    if refuse_gso:
        udp._sock = Refusing(own.family, own.type, own.proto, fileno=os.dup(own.fileno()))
    try:
        payload = random.Random(size).randbytes(size)
        first_tsn = a.sctp._local_tsn
        arrived = await moved(channel, theirs, payload)
        for _ in range(400):  # the last SACK may still be on its way (delayed)
            if patches.unacknowledged(a.sctp) == 0:
                break
            await asyncio.sleep(0.01)
        assert patches.unacknowledged(a.sctp) == 0
        counts["packets"] = (a.sctp._local_tsn - first_tsn) % 2**32
        counts["received"] = b.sctp.transport._RTCDtlsTransport__rx_packets
        return arrived == payload, counts, a, b
    finally:
        if refuse_gso:
            udp._sock.close()
            udp._sock = own


class Refusing(socket.socket):
    """A socket whose kernel cannot segment UDP (as some paths and older kernels answer)."""

    def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        raise OSError(errno.EIO, "no UDP segmentation here")


@pytest.mark.webrtc
async def test_a_receiver_acknowledges_a_batch_of_datagrams_with_one_sack_and_everything_arrives() -> None:
    sacks = {}
    for sack_batch in (0, None):  # 0: a SACK per second packet in a batch too, as before
        arrived, counts, a, b = await _transfer(2 * 2**20, sack_batch)
        try:
            assert arrived and counts["packets"] > 1800
            sacks[sack_batch] = counts["sacks"]
        finally:
            await a.close()
            await b.close()
    assert sacks[0] > 1800 / 3 and sacks[None] < 0.75 * sacks[0], sacks


@pytest.mark.webrtc
async def test_new_data_leaves_in_one_sendmsg_per_run_and_arrives_as_one_datagram_per_packet() -> None:
    arrived, counts, a, b = await _transfer(2 * 2**20)
    try:
        assert arrived
        # Most new DATA packets went several to a sendmsg, each still its own datagram at the receiver.
        assert counts["run_packets"] > 1500 and counts["runs"] < counts["run_packets"] / 2, counts
        assert counts["received"] >= counts["packets"]
        assert a.sctp.transport._nbcall_gso
        # Application data records of a batch were decrypted straight away, not queued for aioice.
        assert counts["queued"] < counts["received"] / 2, counts
    finally:
        await a.close()
        await b.close()


@pytest.mark.webrtc
async def test_where_the_kernel_cannot_segment_each_packet_goes_alone_and_everything_arrives() -> None:
    arrived, counts, a, b = await _transfer(2 * 2**20, refuse_gso=True)
    try:
        assert arrived and counts["received"] >= counts["packets"] > 1800
        assert not a.sctp.transport._nbcall_gso  # refused once: one datagram per record from then on
    finally:
        await a.close()
        await b.close()
