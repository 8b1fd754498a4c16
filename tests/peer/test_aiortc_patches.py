"""nbcall's patches to aiortc's and aioice's internals: what they do on the versions they were written for, and
that on any other version they leave the libraries' own behaviour in place and say why."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc import rtcsctptransport as sctp
from hypothesis import given, settings
from hypothesis import strategies as st
from support import connected_pair as _connected_pair
from support import moved

from nbcall.peer import aiortc_dtls as tuned_dtls
from nbcall.peer import aiortc_patches as patches
from nbcall.peer import aiortc_sctp as tuned_sctp
from nbcall.peer.link import SCTP_EXTENSIONS, max_message_size, sctp_pace

UNKNOWN = {"aiortc": "1.17.0", "aioice": "0.13.0"}


@pytest.fixture
def other_versions(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """aiortc and aioice as if a release the patches were not written for were installed."""
    caplog.set_level(logging.INFO, logger="nbcall.peer.aiortc_patches")
    monkeypatch.setattr(patches, "VERSIONS", UNKNOWN)
    monkeypatch.setattr(patches, "_logged", set())


async def _pc_with_channel() -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("nbcall")
    return pc


def test_the_patches_run_only_on_the_versions_they_were_written_for() -> None:
    assert patches.unavailable_reason() is None  # the installed versions (pyproject.toml pins their range)
    (aiortc_first, aiortc_last), (aioice_first, aioice_last) = patches.WRITTEN_FOR.values()
    for a, b in [(aiortc_first, aioice_first), (aiortc_last, aioice_last)]:
        assert (
            patches.unavailable_reason({"aiortc": f"{a[0]}.{a[1]}.3", "aioice": f"{b[0]}.{b[1]}.0"}) is None
        )
    for versions, named in [
        ({"aiortc": "1.17.0", "aioice": "0.13.0"}, "aiortc 1.17.0"),
        ({"aiortc": "1.8.2", "aioice": "0.13.0"}, "aiortc 1.8.2"),
        ({"aiortc": "2.0", "aioice": "0.13.0"}, "aiortc 2.0"),
        ({"aiortc": "1.16.0", "aioice": "0.14.0"}, "aioice 0.14.0"),
        ({"aiortc": "1.16.0", "aioice": "dev"}, "aioice dev"),
    ]:
        why = patches.unavailable_reason(versions)
        assert why is not None and f"{named} is installed" in why, versions


# ---------------------------------------------------------------------------------------- SCTP reassembly


def _chunks(sizes: list[int], unordered: list[bool]) -> list[sctp.DataChunk]:
    """The DATA chunks of messages of ``sizes`` fragments each, with consecutive TSNs from near the wrap."""
    chunks, tsn, seq = [], 2**32 - 5, 0
    for number, (size, loose) in enumerate(zip(sizes, unordered)):
        for index in range(size):
            flags = (sctp.SCTP_DATA_FIRST_FRAG if index == 0 else 0) | (
                sctp.SCTP_DATA_LAST_FRAG if index == size - 1 else 0
            )
            chunk = sctp.DataChunk(flags=flags | (sctp.SCTP_DATA_UNORDERED if loose else 0))
            chunk.tsn, chunk.stream_seq = tsn % 2**32, seq
            chunk.user_data = f"{number}:{index};".encode()
            chunks.append(chunk)
            tsn += 1
        if not loose:
            seq += 1
    return chunks


def _delivered(stream: sctp.InboundStream, chunks: list[sctp.DataChunk]) -> Iterator[list[bytes]]:
    for chunk in chunks:  # as aiortc's _receive_data_chunk does: add, then pop what is complete
        stream.add_chunk(chunk)
        yield [data for _, _, data in stream.pop_messages()]


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.tuples(st.integers(1, 6), st.booleans()), min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
    shuffle=st.booleans(),
)
def test_fast_reassembly_delivers_what_aiortcs_own_does_in_the_same_steps(messages, seed, shuffle) -> None:
    chunks = _chunks([size for size, _ in messages], [loose for _, loose in messages])
    arrival = list(chunks)
    if shuffle:
        random.Random(seed).shuffle(arrival)
    ours = list(_delivered(tuned_sctp.FastInboundStream(), arrival))
    theirs = list(_delivered(sctp.InboundStream(), arrival))
    assert ours == theirs
    if not shuffle:  # in order, every message arrives whole with its last chunk
        assert sum(len(step) for step in ours) == len(messages)


def test_fast_reassembly_scans_once_per_message_not_once_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    scans = 0
    scan = sctp.InboundStream.pop_messages

    def counted(self: sctp.InboundStream) -> Iterator[tuple[int, int, bytes]]:
        nonlocal scans
        scans += 1
        return scan(self)

    monkeypatch.setattr(sctp.InboundStream, "pop_messages", counted)
    steps = list(_delivered(tuned_sctp.FastInboundStream(), _chunks([50, 1, 30], [False, False, True])))
    assert sum(len(step) for step in steps) == 3 and scans == 3
    scans = 0
    list(_delivered(sctp.InboundStream(), _chunks([50, 1, 30], [False, False, True])))
    assert scans == 81  # aiortc's own: one scan of the reassembly list per chunk


async def test_tune_sctp_gives_only_that_transport_the_fast_reassembly() -> None:
    tuned, plain = await _pc_with_channel(), await _pc_with_channel()
    try:
        assert patches.tune_sctp(tuned.sctp) is True
        assert patches.tune_sctp(tuned.sctp) is True  # twice is once
        assert type(tuned.sctp._get_inbound_stream(0)) is tuned_sctp.FastInboundStream
        assert type(plain.sctp._get_inbound_stream(0)) is sctp.InboundStream
    finally:
        await tuned.close()
        await plain.close()


async def test_on_other_versions_sctp_is_left_as_aiortc_made_it_and_the_log_says_why(
    other_versions: None, caplog: pytest.LogCaptureFixture
) -> None:
    pc = await _pc_with_channel()
    try:
        assert patches.tune_sctp(pc.sctp) is False
        assert type(pc.sctp._get_inbound_stream(0)) is sctp.InboundStream
        pc.sctp._outbound_queue.append(sctp.DataChunk())
        assert patches.unacknowledged(pc.sctp) == 0  # unknown: a hangup waits only for the channel's buffer
        assert patches.tune_sctp(pc.sctp) is False
    finally:
        await pc.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "nbcall.peer.aiortc_patches"]
    assert "leaving aiortc's and aioice's internals as they are" in line
    assert "aiortc 1.17.0 is installed" in line


async def test_unacknowledged_counts_the_chunks_the_peer_has_not_acknowledged() -> None:
    pc = await _pc_with_channel()
    try:
        assert patches.unacknowledged(pc.sctp) == 0 and patches.unacknowledged(None) == 0
        pc.sctp._outbound_queue.append(sctp.DataChunk())
        pc.sctp._sent_queue.append(sctp.DataChunk())
        assert patches.unacknowledged(pc.sctp) == 2
    finally:
        pc.sctp._outbound_queue.clear()
        pc.sctp._sent_queue.clear()
        await pc.close()


def test_the_largest_message_comes_from_the_peers_description() -> None:
    """Read from the description (public), as aiortc reads it: absent means 65536, 0 means no limit."""
    offer = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n"
    assert max_message_size(offer + "a=max-message-size:262144\r\n") == 262144
    assert max_message_size(offer) == 65536
    assert max_message_size(offer + "a=max-message-size:0\r\n") is None


# ------------------------------------------------------------------------------------ loopback candidates


async def _offer_candidates(allow: bool) -> list[str]:
    """The offer's candidates on 127.0.0.1 (the test namespace's veth adds 127.0.0.2 for Janus: not lo's)."""
    pc = await _pc_with_channel()
    try:
        offer = await pc.createOffer()
        if allow:
            patches.allow_loopback(pc)
        await pc.setLocalDescription(offer)
        lines = pc.localDescription.sdp.splitlines()
        return [line for line in lines if line.startswith("a=candidate:") and " 127.0.0.1 " in line]
    finally:
        await pc.close()


# The test namespace also has a veth carrying 127.0.0.2 for Janus, so "nothing else is there" needs a namespace of
# its own: a child process in a fresh one with only lo up (the webrtc tests run as root, in a namespace already).
LOOPBACK_ONLY_OFFER = """
import asyncio, json, sys
from aiortc import RTCConfiguration, RTCPeerConnection
from nbcall.peer import aiortc_patches

async def main():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("nbcall")
    if sys.argv[1] == "allow":
        aiortc_patches.allow_loopback(pc)
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    print(json.dumps([l for l in pc.localDescription.sdp.splitlines() if l.startswith("a=candidate:")]))

asyncio.run(main())
"""


def _loopback_only_offer_candidates(allow: bool) -> list[str]:
    shell = 'ip link set lo up && exec "$@"'
    command = ["unshare", "-n", "sh", "-c", shell, "sh", sys.executable, "-c", LOOPBACK_ONLY_OFFER]
    done = subprocess.run(
        [*command, "allow" if allow else "plain"], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.webrtc
def test_on_a_loopback_only_machine_only_patched_connections_offer_127_0_0_1() -> None:
    (candidate,) = _loopback_only_offer_candidates(allow=True)
    assert " 127.0.0.1 " in candidate and candidate.endswith("typ host")
    assert _loopback_only_offer_candidates(allow=False) == []  # aioice's own behaviour, for everyone else


@pytest.mark.webrtc
async def test_on_other_versions_allow_loopback_changes_nothing(
    other_versions: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert await _offer_candidates(allow=True) == []
    assert any("aiortc 1.17.0 is installed" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ delayed SACKs


async def _sacks_for(sack_every: int | None) -> tuple[int, int, bool]:
    """Send 2 MiB to a receiver tuned to SACK every ``sack_every`` DATA packets (None: aiortc's own):
    (DATA packets sent, SACKs the sender got, what arrived)."""
    a, b, channel, theirs = await _connected_pair()
    try:
        if sack_every is not None:
            assert patches.tune_sctp(b.sctp, sack_every)
        sacks = 0
        receive_sack = a.sctp._receive_sack_chunk

        async def counted(chunk: Any) -> None:
            nonlocal sacks
            sacks += 1
            await receive_sack(chunk)

        a.sctp._receive_sack_chunk = counted
        got: list[bytes] = []
        whole = asyncio.get_running_loop().create_future()
        payload = random.Random(7).randbytes(2 * 2**20)

        @theirs.on("message")
        def on_message(data: bytes) -> None:
            got.append(data)
            if sum(map(len, got)) >= len(payload):
                whole.set_result(None)

        first_tsn = a.sctp._local_tsn
        for offset in range(0, len(payload), 65536):
            channel.send(payload[offset : offset + 65536])
        await asyncio.wait_for(whole, 60)
        # The last SACK may still be on its way (delayed): wait until nothing is unacknowledged.
        for _ in range(400):
            if patches.unacknowledged(a.sctp) == 0:
                break
            await asyncio.sleep(0.01)
        assert patches.unacknowledged(a.sctp) == 0
        return (a.sctp._local_tsn - first_tsn) % 2**32, sacks, b"".join(got) == payload
    finally:
        await a.close()
        await b.close()


@pytest.mark.webrtc
@pytest.mark.parametrize("sack_every", [2, 4])
async def test_a_transfer_to_a_receiver_with_delayed_sacks_arrives_whole_and_all_of_it_is_acknowledged(
    sack_every: int,
) -> None:
    # _sacks_for waits until the sender holds nothing unacknowledged: the last packets' delayed SACK came.
    packets, sacks, arrived = await _sacks_for(sack_every)
    assert arrived and packets > 1000 and sacks > 0


async def test_delayed_sacks_go_every_nth_packet_at_once_after_a_gap_and_after_the_delay_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pc = await _pc_with_channel()
    sent: list[str] = []

    async def send_sack(self: sctp.RTCSctpTransport) -> None:  # aiortc's, as the network would see it
        sent.append("gap" if self._sack_misordered else "sack")
        self._sack_needed = False

    monkeypatch.setattr(sctp.RTCSctpTransport, "_send_sack", send_sack)
    try:
        transport = pc.sctp
        assert patches.tune_sctp(transport, 4)
        transport._association_state = sctp.RTCSctpTransport.State.ESTABLISHED
        for _ in range(8):  # eight DATA packets in order: two SACKs
            transport._sack_needed = True
            await transport._send_sack()
        assert sent == ["sack", "sack"]
        transport._sack_misordered.add(12345)  # a gap: each packet is acknowledged at once
        for _ in range(2):
            transport._sack_needed = True
            await transport._send_sack()
        assert sent == ["sack", "sack", "gap", "gap"]
        transport._sack_misordered.clear()
        transport._sack_needed = True
        await transport._send_sack()  # one packet alone: its SACK goes after SACK_DELAY
        assert len(sent) == 4
        for _ in range(100):
            if len(sent) == 5:
                break
            await asyncio.sleep(tuned_sctp.SACK_DELAY)
        assert sent == ["sack", "sack", "gap", "gap", "sack"]
    finally:
        transport._association_state = sctp.RTCSctpTransport.State.CLOSED
        await pc.close()


# ------------------------------------------------------------------------------ the tuned SCTP and DTLS path


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(st.integers(-3, 40), min_size=1, max_size=60),
    start=st.sampled_from([0, 12345, 2**31]),
)
def test_received_tsns_are_counted_as_aiortc_counts_them(arrivals: list[int], start: int) -> None:
    """Duplicates, the cumulative TSN and the early arrivals (the SACK's gaps) after every chunk."""

    async def compare() -> None:
        tuned, plain = await _pc_with_channel(), await _pc_with_channel()
        try:
            assert patches.tune_sctp(tuned.sctp)
            for transport in (tuned.sctp, plain.sctp):
                transport._last_received_tsn = start
            for offset in arrivals:
                tsn = (start + offset) % 2**32
                ours, theirs = tuned.sctp._mark_received(tsn), plain.sctp._mark_received(tsn)
                assert ours == theirs, tsn
                for name in ("_last_received_tsn", "_sack_duplicates", "_sack_misordered"):
                    assert getattr(tuned.sctp, name) == getattr(plain.sctp, name), (name, tsn)
        finally:
            await tuned.close()
            await plain.close()

    asyncio.run(compare())


async def test_received_tsns_move_on_across_the_wrap_where_aiortcs_sorting_sticks() -> None:
    tuned, plain = await _pc_with_channel(), await _pc_with_channel()
    try:
        assert patches.tune_sctp(tuned.sctp)
        for transport in (tuned.sctp, plain.sctp):
            transport._last_received_tsn = 2**32 - 3
            for tsn in (0, 2**32 - 2, 2**32 - 1, 1):  # 0 came early, then the rest in order
                assert transport._mark_received(tsn) is False
        assert (tuned.sctp._last_received_tsn, tuned.sctp._sack_misordered) == (1, set())
        # aiortc sorts the early TSNs as numbers: 0 comes first and is never "the next", so it never moves.
        assert plain.sctp._last_received_tsn == 2**32 - 3
    finally:
        await tuned.close()
        await plain.close()


def test_peers_that_list_burst_take_sixteen_packets_per_sack_and_others_get_what_they_had() -> None:
    peer = {"polite": False, "framing": "nbcall/1", "sctp_ext": ["burst"]}
    assert sctp_pace(peer) == (tuned_sctp.BURST_PEER, tuned_sctp.BURST_PEER) == (16, 16)
    older_peer = {"polite": False, "framing": "nbcall/1"}  # a Peer before sctp_ext: aiortc's bursts of 4
    assert sctp_pace(older_peer) == (tuned_sctp.SACK_EVERY_PEER, tuned_sctp.BURST) == (4, 4)
    for browser in ({"framing": "nbcall/1", "framing_ext": ["length"]}, {}, {"sctp_ext": "burst"}):
        assert sctp_pace(browser) == (tuned_sctp.SACK_EVERY, tuned_sctp.BURST) == (2, 4)
    assert "burst" in SCTP_EXTENSIONS


async def _tuned_transfer(
    size: int, drop_every: int = 0
) -> tuple[bytes, bytes, dict[str, int], RTCPeerConnection, RTCPeerConnection]:
    """``size`` random bytes between two connections tuned as two Peers tune them, dropping every
    ``drop_every``-th DATA packet at the receiver (the first 20 such): (sent, arrived, counts, a, b)."""
    a, b, channel, theirs = await _connected_pair()
    for pc in (a, b):
        assert patches.tune_sctp(pc.sctp, tuned_sctp.BURST_PEER, tuned_sctp.BURST_PEER)
    counts = {"handed_by_loop": 0, "data_packets": 0, "retransmitted": 0, "coroutine_sends": 0, "dropped": 0}
    pair = b.sctp.transport.transport._connection._nominated[1]
    by_loop = pair.protocol.datagram_received

    def counted_by_loop(data: bytes, addr: Any) -> None:
        counts["handled_by_loop"] = counts.get("handled_by_loop", 0) + 1
        by_loop(data, addr)

    pair.protocol.datagram_received = counted_by_loop
    handle = b.sctp._handle_data
    seen = 0

    async def lossy(data: bytes) -> None:
        nonlocal seen
        seen += 1
        if drop_every and seen % drop_every == 0 and counts["dropped"] < 20:
            counts["dropped"] += 1
            return
        await handle(data)

    b.sctp._handle_data = lossy
    send_chunk, send_data = a.sctp._send_chunk, a.sctp.transport._send_data

    async def counted_chunk(chunk: Any) -> None:
        if isinstance(chunk, sctp.DataChunk):  # (it is counted again, with every packet, in send_packets)
            counts["retransmitted"] += chunk._sent_count > 1
        await send_chunk(chunk)

    async def counted_data(data: bytes) -> None:
        counts["coroutine_sends"] += 1
        await send_data(data)

    a.sctp._send_chunk, a.sctp.transport._send_data = counted_chunk, counted_data
    send_packets = a.sctp.transport.send_packets

    def counted_packets(packets: list[bytes]) -> bool:
        counts["data_packets"] += len(packets)  # every packet: new DATA several at once, the rest one by one
        counts["sent_together"] = counts.get("sent_together", 0) + 1
        return send_packets(packets)

    a.sctp.transport.send_packets = counted_packets
    payload = random.Random(size).randbytes(size)
    arrived = await moved(channel, theirs, payload)
    counts["handled_by_loop"] = counts.pop("handled_by_loop", 0)
    counts["received_packets"] = b.sctp.transport._RTCDtlsTransport__rx_packets
    return payload, arrived, counts, a, b


@pytest.mark.webrtc
async def test_a_tuned_pair_sends_each_packet_in_one_call_and_reads_waiting_datagrams_in_batches() -> None:
    payload, arrived, counts, a, b = await _tuned_transfer(2 * 2**20)
    try:
        assert arrived == payload
        assert type(a.sctp.transport) is tuned_dtls.FastDtlsTransport
        # Every DATA packet went to DTLS and UDP without aiortc's coroutines (_send_data).
        assert counts["data_packets"] > 1800 and counts["coroutine_sends"] == 0
        # The event loop handed over fewer datagrams than arrived: the rest were read in the same turn.
        assert 0 < counts["handled_by_loop"] < counts["received_packets"]
        (stats,) = a.sctp.transport._get_stats().values()  # aiortc's counters still count every record
        assert stats.bytesSent > len(payload) and stats.packetsSent >= counts["data_packets"]
    finally:
        await a.close()
        await b.close()


@pytest.mark.webrtc
async def test_packets_lost_between_tuned_peers_are_sent_again_and_the_data_arrives_whole() -> None:
    payload, arrived, counts, a, b = await _tuned_transfer(2 * 2**20, drop_every=61)
    try:
        assert counts["dropped"] == 20 and counts["retransmitted"] >= 20
        assert arrived == payload
        for _ in range(400):  # and the sender learns it all arrived (the last SACK may be delayed)
            if patches.unacknowledged(a.sctp) == 0:
                break
            await asyncio.sleep(0.01)
        assert patches.unacknowledged(a.sctp) == 0
    finally:
        await a.close()
        await b.close()


async def test_a_peer_restarting_the_association_or_sending_tsns_out_of_reach_never_breaks_our_sacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Janus sends an INIT on an established association after giving up on it, then its old TSNs again."""
    pc = await _pc_with_channel()
    transport = pc.sctp
    sent: list[Any] = []

    async def send_chunk(chunk: Any) -> None:
        sent.append(chunk)
        bytes(chunk)  # what serialize_packet does: a gap offset over 65,535 raises struct.error here

    try:
        assert patches.tune_sctp(transport)
        transport._send_chunk = send_chunk
        transport._association_state = sctp.RTCSctpTransport.State.ESTABLISHED
        transport._last_received_tsn = 1000
        init = sctp.InitChunk()
        init.initiate_tag, init.advertised_rwnd, init.initial_tsn = 77, 131072, 3_000_000_000
        init.outbound_streams = init.inbound_streams = 300
        with caplog.at_level(logging.WARNING, logger="nbcall.peer.aiortc_patches"):
            await transport._receive_chunk(init)
            await transport._receive_chunk(init)
            assert transport._last_received_tsn == 1000 and sent == []  # no INIT ACK: the association stays
            assert transport._mark_received(1000 + 70_000) is True  # out of a SACK's reach: dropped
            assert transport._mark_received(1002) is False  # an ordinary gap is kept
            transport._sack_misordered.add(1000 + 2**20)  # as aiortc's own code could leave it
            await transport._nbcall_sack_now()
        (sack,) = sent
        assert (sack.cumulative_tsn, sack.gaps) == (1000, [(2, 2)])
        assert sum("INIT on the established" in r.message for r in caplog.records) == 1  # said once
        assert any("far beyond the cumulative TSN" in r.message for r in caplog.records)
    finally:
        transport._association_state = sctp.RTCSctpTransport.State.CLOSED
        await pc.close()
