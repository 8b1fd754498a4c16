"""Two plain aiortc peers in two processes, one data channel: the baseline of a Peer -> Peer transfer.

    .venv/bin/python bench/raw_aiortc.py [--mib 20]      (inside a loopback-only namespace: bench/throughput.py)

No nbcall on the data path: the sender sends the payload in messages of 256 KiB - 1 (the size nbcall's frames
have) while at most 1 MiB is queued (``bufferedAmount``, resumed on ``bufferedamountlow``), as aiortc's
examples do; the receiver counts bytes and prints its clock when all arrived. The offer and answer go through
the receiver's stdin and stdout. The only nbcall part is ``allow_loopback`` (ICE candidates on 127.0.0.1, which
aioice never offers), so that the peers connect in a loopback-only namespace at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from nbcall.peer.aiortc_patches import allow_loopback

MIB = 2**20
MESSAGE = 256 * 1024 - 1
HIGH_WATER = MIB


def cpu_seconds() -> float:
    """This process's CPU time (user + system): compared per MiB, it holds on a machine shared with others."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def receive(size: int) -> None:
    pc = _pc()
    arrived = asyncio.get_running_loop().create_future()

    cpu_at_first: list[float] = []

    @pc.on("datachannel")
    def on_channel(channel) -> None:  # type: ignore[no-untyped-def]
        got = 0

        @channel.on("message")
        def on_message(data: bytes) -> None:
            nonlocal got
            if not got:
                cpu_at_first.append(cpu_seconds())
            got += len(data)
            if got >= size and not arrived.done():
                arrived.set_result(time.time())

    offer = json.loads(await asyncio.to_thread(sys.stdin.readline))
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    answer = await pc.createAnswer()
    allow_loopback(pc)
    await pc.setLocalDescription(answer)
    print(json.dumps({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}), flush=True)
    t_last = await arrived
    print(json.dumps({"t_last": t_last, "cpu": cpu_seconds() - cpu_at_first[0]}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the sender says when to close
    await pc.close()


def receiver(size: int) -> subprocess.Popen[str]:
    """The receiving peer, a process of its own."""
    command = [sys.executable, __file__, "--receive", str(size)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def send(size: int, proc: subprocess.Popen[str]) -> dict[str, float]:
    """Send ``size`` bytes to the receiver ``proc``; seconds from the first send to the last arrival."""
    assert proc.stdin is not None and proc.stdout is not None
    pc = _pc()
    channel = pc.createDataChannel("raw")
    opened = asyncio.get_running_loop().create_future()
    low = asyncio.Event()
    channel.bufferedAmountLowThreshold = HIGH_WATER // 2
    channel.on("open", lambda: opened.set_result(None))
    channel.on("bufferedamountlow", low.set)
    offer = await pc.createOffer()
    allow_loopback(pc)  # before gathering, which setLocalDescription does
    await pc.setLocalDescription(offer)
    proc.stdin.write(json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}) + "\n")
    proc.stdin.flush()
    answer = json.loads(await asyncio.to_thread(proc.stdout.readline))
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    await asyncio.wait_for(opened, 30)
    payload = memoryview(bytes(size))
    cpu0 = cpu_seconds()
    t0 = time.time()
    for offset in range(0, size, MESSAGE):
        while channel.bufferedAmount > HIGH_WATER:
            low.clear()
            await low.wait()
        channel.send(bytes(payload[offset : offset + MESSAGE]))
    cpu = cpu_seconds() - cpu0
    arrived = json.loads(await asyncio.to_thread(proc.stdout.readline))
    proc.stdin.write("close\n")
    proc.stdin.flush()
    await pc.close()
    proc.wait(30)
    return {"seconds": arrived["t_last"] - t0, "cpu": {"sender": cpu, "receiver": arrived["cpu"]}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--receive", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receive:
        asyncio.run(receive(args.receive))
        return
    result = asyncio.run(send(args.mib * MIB, receiver(args.mib * MIB)))
    cpu = result["cpu"]
    print(
        f"raw aiortc, {args.mib} MiB: {result['seconds']:.2f} s, {args.mib / result['seconds']:.2f} MiB/s; "
        f"MiB per CPU second: sender {args.mib / cpu['sender']:.1f}, receiver {args.mib / cpu['receiver']:.1f}"
    )


if __name__ == "__main__":
    main()
