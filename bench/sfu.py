"""Rooms on an SFU beside mesh rooms: a presenter sending 320x240 video to data-only members, on a real Janus.

    .venv/bin/python bench/sfu.py [--sizes 2,4,6,10,16] [--mesh 2,4,6] [--sends 10] [--window 4]

Every member is a Python peer (aiortc) in this one process, as every phone of bench/rooms.py is in one page: a
room of n is the presenter plus n - 1 data-only members (all auto-answering). For each room, SFU and mesh:

- connect: from ``invite()`` until every member's ``wait_members()`` returned (with auto-answer, the last
  acceptance comes a ring after the invitation);
- broadcast: from the presenter's ``send()`` of a small message until every member's ``on_message`` ran
  (median of ``--sends``);
- presenter upload: the bytes its RTP senders sent (getStats ``bytesSent``, all its links) per second, over
  ``--window`` seconds once the room is up: flat with the room's size on an SFU, growing with it in a mesh;
- CPU: this process's (every peer's encoders and decoders) and Janus's, over the same window, in % of a core.

In a mesh every member takes the presenter's video (an ``on_room_frame`` callback that does nothing), so that
the presenter encodes and sends once per member, as it would to browsers; on the SFU one member takes it and
the others are data-only, so that one process can hold 16 members.

Chromium is not part of it (bench/rooms.py measures pages): the presenter's upload is the same whoever encodes.
Runs itself inside a network namespace with the veth Janus needs for ICE (needs root), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VETH = "jns0"
NAMESPACE = (
    "ip link set lo up && ip link add jns0 type veth peer name jns1 && ip addr add 127.0.0.2/32 dev jns0 && "
    'ip link set jns1 up && ip link set jns0 up && exec "$@"'
)


def in_namespace() -> bool:
    return {name for _, name in socket.if_nameindex()} == {"lo", "jns0", "jns1"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upload_bytes(peer: Any) -> int:
    """The media bytes the presenter sent so far, over every link it has (mesh) or its publisher (SFU)."""
    return int(peer.upload()["media_bytes"])


def measure(
    server_url: str, janus_pid: int, size: int, sfu: bool, sends: int, window: float
) -> dict[str, Any]:
    from nbcall import Peer

    # Moving noise, so that the encoder has work every frame and its rate does not depend on luck.
    frames = np.random.default_rng(1).integers(0, 255, (8, 240, 320, 3), dtype=np.uint8)
    tick = iter(range(1 << 30))
    tag = f"{'s' if sfu else 'm'}{size}"
    presenter = Peer(f"T{tag}", server=server_url, video=lambda: frames[next(tick) % 8], fps=15)
    members = [Peer(f"M{tag}-{i}", server=server_url, auto_answer=True) for i in range(size - 1)]
    # In a mesh every member takes the presenter's video, as a browser phone answering its offer would; on the
    # SFU one member does (so that Janus forwards it) and the others are data-only: decoding 15 videos in this
    # one process would measure the process, not the SFU.
    for m in members if not sfu else members[:1]:
        m.on_room_frame(lambda member, frame, timestamp: None)
    try:
        t0 = time.perf_counter()
        presenter.invite(*(m.user_id for m in members), sfu=sfu)
        for m in members:
            m.wait("connected", timeout=60)
        for m in [*members, presenter]:
            m.wait_members(timeout=60)
        connect_ms = (time.perf_counter() - t0) * 1000

        arrived, done = [0], threading.Event()

        def on_message(message: Any) -> None:
            arrived[0] += 1
            if arrived[0] == len(members):
                done.set()

        for m in members:
            m.on_message(on_message)
        latencies = []
        for i in range(sends):
            arrived[0] = 0
            done.clear()
            start = time.perf_counter()
            presenter.send({"seq": i, "pad": "x" * 100})
            if not done.wait(20):
                print(f"broadcast {i} did not reach every member of {tag} within 20 s", file=sys.stderr)
                latencies.append(float("inf"))
                continue
            latencies.append((time.perf_counter() - start) * 1000)

        time.sleep(1.0)  # the encoder settles on its rate
        b0, c0, j0, w0 = (
            upload_bytes(presenter),
            time.process_time(),
            cpu_seconds(janus_pid),
            time.perf_counter(),
        )
        time.sleep(window)
        b1, c1, j1, w1 = (
            upload_bytes(presenter),
            time.process_time(),
            cpu_seconds(janus_pid),
            time.perf_counter(),
        )
        elapsed = w1 - w0
        return {
            "mode": "sfu" if sfu else "mesh",
            "size": size,
            "connect_ms": connect_ms,
            "broadcast_ms": statistics.median(latencies),
            "upload_kbit_s": (b1 - b0) * 8 / 1000 / elapsed,
            "peers_cpu_pct": (c1 - c0) / elapsed * 100,
            "janus_cpu_pct": (j1 - j0) / elapsed * 100,
        }
    finally:
        for peer in [presenter, *members]:
            peer.close()
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2,4,6,10,16", help="SFU room sizes, presenter included")
    parser.add_argument("--mesh", default="2,4,6", help="mesh room sizes (at most 6)")
    parser.add_argument("--sends", type=int, default=10, help="broadcasts timed per room")
    parser.add_argument("--window", type=float, default=4.0, help="seconds of upload and CPU measured")
    args = parser.parse_args()
    if not in_namespace():
        cmd = ["unshare", "-n", "sh", "-c", NAMESPACE, "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))
    sys.path.insert(0, str(ROOT))
    from nbcall.call import kernel
    from nbcall.server.server import serve
    from nbcall.teach.janus import start_janus

    rows = []
    with start_janus(interface=VETH) as janus:
        server = kernel.run(serve(sfu=janus.url, sfu_secret=janus.api_secret, max_room_size=6), timeout=20)
        pid = janus._process.pid
        for mode, sizes in (("mesh", args.mesh), ("sfu", args.sizes)):
            for size in (int(s) for s in sizes.split(",") if s):
                row = measure(server.url, pid, size, mode == "sfu", args.sends, args.window)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\npresenter 320x240 at 15 fps, {args.sends} broadcasts, {args.window:g} s measured; one process")
    head = ("mode", "size", "connect ms", "broadcast ms", "upload kbit/s", "peers CPU %", "Janus CPU %")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(
            f"| {r['mode']} | {r['size']} | {r['connect_ms']:.0f} | {r['broadcast_ms']:.1f} | "
            f"{r['upload_kbit_s']:.0f} | {r['peers_cpu_pct']:.0f} | {r['janus_cpu_pct']:.0f} |"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "sfu-latest.json").write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
