"""Data-channel throughput of a Python peer (aiortc) and of browser phones, in one run, with the time per hop.

    .venv/bin/python bench/throughput.py [--mib 20] [--no-browser]

Paths, each moving one message of ``--mib`` MiB (random bytes), timed from the send in Python until the
receiving side's Python has it whole (checked by size; the receiver answers with its clock's arrival time,
the same machine's wall clock):

- Peer -> Peer: two processes (the receiver is a subprocess), as two scripts would be.
- Peer -> Phone, Phone -> Peer: a Peer here, a Phone in a real JupyterLab + Chromium page.
- Phone -> Phone: two phones in one notebook page.
- ceiling: two RTCPeerConnections in one page with bufferedAmount backpressure (no Python): with the phones'
  64 KiB frames and 1 MiB queue, and with 256 KiB messages (SCTP's usual limit) and 4 or 8 MiB queued (Chrome refuses more than 16 MiB queued).

Hops: "webrtc" is the data channel (for a browser end, until its last message event, or from its first
channel send), "widget" the kernel <-> browser custom messages of a phone. Then the profile of a Peer -> Peer
transfer (both ends, by component) says where a Python peer's time goes, and the sender's peak memory
(tracemalloc) above the payload. Runs itself inside a loopback-only network namespace (needs root).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import inspect
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

MIB = 2**20

# Records, per page, when data-channel messages are sent and received (wall clock, ms) and how many bytes.
PAGE_INIT_JS = """(() => {
  const b = window.__bench = {sent_first: 0, sent_last: 0, sent: 0, recv_first: 0, recv_last: 0, recv: 0};
  const send = RTCDataChannel.prototype.send;
  // Only data messages count (1 KiB and more): the receivers' small answers would move the last arrival.
  RTCDataChannel.prototype.send = function (data) {
    if ((data.byteLength ?? data.length) < 1024) return send.call(this, data);
    const now = Date.now(); if (!b.sent_first) b.sent_first = now; b.sent_last = now;
    b.sent += data.byteLength ?? data.length; return send.call(this, data);
  };
  const Native = window.RTCPeerConnection;
  const watch = (ch) => ch.addEventListener('message', (e) => {
    if ((e.data.byteLength ?? e.data.length) < 1024) return;
    const now = Date.now(); if (!b.recv_first) b.recv_first = now; b.recv_last = now;
    b.recv += e.data.byteLength ?? e.data.length;
  });
  window.RTCPeerConnection = function (...args) {
    const pc = new Native(...args);
    pc.addEventListener('datachannel', (e) => watch(e.channel));
    const create = pc.createDataChannel.bind(pc);
    pc.createDataChannel = (...a) => { const ch = create(...a); watch(ch); return ch; };
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();"""

CEILING_JS = """async ([size, chunkSize, highWater]) => {
  const a = new RTCPeerConnection({iceServers: []}), b = new RTCPeerConnection({iceServers: []});
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const ch = a.createDataChannel('ceiling'); ch.binaryType = 'arraybuffer';
  const got = new Promise((resolve) => { b.ondatachannel = (e) => { let n = 0;
    e.channel.onmessage = (m) => { n += m.data.byteLength; if (n >= size) resolve(performance.now()); }; }; });
  await a.setLocalDescription(await a.createOffer()); await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer()); await a.setRemoteDescription(b.localDescription);
  await new Promise((r) => { ch.onopen = r; });
  const chunk = new Uint8Array(chunkSize); ch.bufferedAmountLowThreshold = highWater / 2;
  const t0 = performance.now();
  for (let sent = 0; sent < size; sent += chunk.length) {
    if (ch.bufferedAmount > highWater) await new Promise((r) => { ch.onbufferedamountlow = r; });
    ch.send(chunk);
  }
  const t1 = await got; a.close(); b.close();
  return (t1 - t0) / 1000;
}"""

PHONE_SETUP = """\
import nbcall, time, os
b = nbcall.Phone("B", auto_answer=True, server={url!r}); c = nbcall.Phone("C", auto_answer=True, server={url!r})
def ack(phone):
    def on(m):
        if m.kind == "bytes":
            phone.send({{"got": m.size, "t_last": time.time()}})
    return on
b.on_message(ack(b)); c.on_message(ack(c))
display(b, c)
"""

RECEIVER = """\
import cProfile, io, json, pstats, sys, threading, time
from typing import Any
sys.path.insert(0, {root!r})
from nbcall import Peer
from nbcall.call import kernel
from nbcall.call.progress import PROGRESS_MIN
profile = {profile!r}
r = Peer("R", server={url!r}, auto_answer=True)
first = []
r.on_progress(lambda p: first.append(time.time()) if p.get("direction") == "in" and not first else None)
prof = cProfile.Profile()
if profile:
    async def on(): prof.enable()
    kernel.run(on())
done = threading.Event()
def got(m):
    report = {{"got": m.size, "t_last": m.received_at, "t_first": first[0] if first else None}}
    if profile:
        async def off(): prof.disable()
        kernel.run(off())
        report["profile"] = by_component(prof)
    r.send(report)
    first.clear()
r.on_message(got)
{by_component}
print("ready", flush=True)
try:
    r.wait("connected", timeout=60); r.wait("ended", "failed", timeout=600)
except Exception:
    pass
r.close()
"""


def by_component(prof: Any) -> dict[str, float]:
    """Own time per component of the stack, in seconds."""
    import pstats

    groups: dict[str, float] = {}
    for (path, _, name), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():
        if "rtcsctptransport" in path:
            key = "aiortc SCTP (chunks, SACKs, reassembly)"
        elif "rtcdtlstransport" in path or "OpenSSL" in path or "openssl" in name or "SSL" in name:
            key = "DTLS (pyOpenSSL encrypt/decrypt)"
        elif "aioice" in path or "sendto" in name or "recvfrom" in name:
            key = "ICE/UDP (aioice, sockets)"
        elif "asyncio" in path or "selectors" in path or "poll" in name:
            key = "asyncio loop"
        elif "nbcall" in path:
            key = "nbcall (framing, callbacks)"
        else:
            key = "other"
        groups[key] = groups.get(key, 0) + tottime
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


BY_COMPONENT = inspect.getsource(by_component)  # the receiver subprocess defines it too


def in_loopback_namespace() -> bool:
    # Ask the kernel for this namespace's interfaces (/sys/class/net would show the host's).
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiting for {what}")
        time.sleep(0.005)


def receiver(url: str, profile: bool) -> subprocess.Popen[str]:
    code = RECEIVER.format(root=str(ROOT), url=url, profile=profile, by_component=BY_COMPONENT)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def acked(peer: Any, count: int) -> dict[str, Any]:
    wait_for(lambda: len([m for m in peer.messages if m.kind == "json"]) >= count, "the receiver's answer")
    return [m.data for m in peer.messages if m.kind == "json"][count - 1]


@contextlib.contextmanager
def call_to_receiver(server_url: str, profile: bool) -> Iterator[Any]:
    """A Peer "S" here in a call with the receiver subprocess "R"; the subprocess ends after its answer."""
    from nbcall import Peer

    proc = receiver(server_url, profile)
    try:
        with Peer("S", server=server_url) as s:
            wait_for(lambda: "R" in s.peers, "the receiver")
            s.call("R")
            s.wait("connected", timeout=30)
            yield s
    finally:
        proc.wait(30)


def peer_to_peer(server_url: str, blob: bytes, profile: bool = False) -> dict[str, Any]:
    from nbcall.call import kernel

    with call_to_receiver(server_url, profile) as s:
        prof = cProfile.Profile()
        if profile:

            async def on() -> None:
                prof.enable()

            kernel.run(on())
        t0 = time.time()
        handed = s.send(blob)
        handed.result(600)
        t_handed = time.time()
        ack = acked(s, 1)
        t_ack = time.time()
        result = {
            "seconds": ack["t_last"] - t0,
            "hops": {
                "handed to aiortc (sender)": t_handed - t0,
                "webrtc (to the receiver's Python)": ack["t_last"] - t0,
                "answer back": t_ack - ack["t_last"],
            },
        }
        if profile:

            async def off() -> None:
                prof.disable()

            kernel.run(off())
            result["profile"] = {"sender": by_component(prof), "receiver": ack.get("profile", {})}
        return result


def peak_memory(server_url: str, size: int) -> dict[str, float]:
    """The sender's peak traced memory above the payload, while a Peer -> Peer transfer runs."""
    with call_to_receiver(server_url, False) as s:
        blob = os.urandom(size)
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        s.send(blob)
        acked(s, 1)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return {"payload_mib": size / MIB, "peak_above_payload_mib": peak / MIB}


def browser_paths(server_url: str, blob: bytes, size: int) -> dict[str, dict[str, Any]]:
    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import sync_playwright

    from nbcall import Peer

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.add_init_script(PAGE_INIT_JS)
        nb = lab.run_notebook(
            page, "throughput.ipynb", [PHONE_SETUP.format(url=server_url)], phones=("B", "C")
        )
        bench = lambda: page.evaluate("() => ({...window.__bench})")
        reset = "() => Object.keys(window.__bench).forEach((k) => { window.__bench[k] = 0; })"
        with Peer("P", server=server_url, auto_answer=True) as peer:
            # Peer -> Phone
            peer.call("B")
            peer.wait("connected", timeout=30)
            page.evaluate(reset)
            t0 = time.time()
            peer.send(blob)
            ack = acked(peer, 1)
            page_times = bench()
            results["Peer -> Phone"] = {
                "seconds": ack["t_last"] - t0,
                "hops": {
                    "webrtc (to the browser's last message)": page_times["recv_last"] / 1000 - t0,
                    "widget (browser -> kernel)": ack["t_last"] - page_times["recv_last"] / 1000,
                },
            }
            # Phone -> Peer
            got = len(peer.messages)
            page.evaluate(reset)
            out = nb.run(f"import time\nt0 = time.time(); b.send(os.urandom({size})); print('@@', t0)")
            t0 = float(out.split("@@")[1].split()[0])
            wait_for(lambda: any(m.kind == "bytes" for m in peer.messages[got:]), "the phone's payload")
            arrived = next(m for m in peer.messages[got:] if m.kind == "bytes").received_at
            page_times = bench()
            results["Phone -> Peer"] = {
                "seconds": arrived - t0,
                "hops": {
                    "widget (kernel -> browser's first send)": page_times["sent_first"] / 1000 - t0,
                    "webrtc (to the Peer's Python)": arrived - page_times["sent_first"] / 1000,
                },
            }
            peer.hangup()
        # Phone -> Phone (C calls B; B answers with its arrival time).
        nb.run("import asyncio\nawait b.wait_for('ended', timeout=10)")
        page.evaluate(reset)
        out = nb.run(
            "c.call('B'); await c.wait_for('connected', timeout=30)\n"
            f"t0 = time.time(); c.send(os.urandom({size}))\n"
            "for _ in range(12000):\n"
            "    if any(m.kind == 'json' for m in c.messages): break\n"
            "    await asyncio.sleep(0.01)\n"
            "print('@@', t0, [m.data for m in c.messages if m.kind == 'json'][0]['t_last'])"
        )
        t0, t_last = (float(x) for x in out.split("@@")[1].split()[:2])
        page_times = bench()
        results["Phone -> Phone"] = {
            "seconds": t_last - t0,
            "hops": {
                "widget (kernel -> browser)": page_times["sent_first"] / 1000 - t0,
                "webrtc (browser -> browser)": (page_times["recv_last"] - page_times["sent_first"]) / 1000,
                "widget (browser -> kernel)": t_last - page_times["recv_last"] / 1000,
            },
        }
        # The ceiling with the phones' frame size and queue (64 KiB, 1 MiB), then with larger ones.
        for chunk, high_water in ((64 * 1024, MIB), (256 * 1024 - 1, 4 * MIB), (256 * 1024 - 1, 8 * MIB)):
            ceiling = page.evaluate(CEILING_JS, [size, chunk, high_water])
            name = f"ceiling: one page, {chunk // 1024} KiB messages, {high_water // MIB} MiB queued"
            results[name] = {"seconds": ceiling, "hops": {"webrtc": ceiling}}
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=20, help="payload size in MiB (default 20)")
    parser.add_argument("--no-browser", action="store_true", help="only the Peer -> Peer figures")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not in_loopback_namespace():
        if os.environ.get("NBCALL_BENCH_NETNS"):
            raise SystemExit(
                "bench/throughput.py: could not enter a loopback-only network namespace (needs root)"
            )
        os.environ["NBCALL_BENCH_NETNS"] = "1"
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))
    import nbcall

    size = args.mib * MIB
    blob = os.urandom(size)
    server = nbcall.serve()
    results: dict[str, Any] = {"Peer -> Peer": peer_to_peer(server.url, blob)}
    if not args.no_browser:
        results.update(browser_paths(server.url, blob, size))
    print(
        f"\n{args.mib} MiB, one message, from the send in Python to the receiver's Python having it whole\n"
    )
    print(f"{'path':52} {'seconds':>8} {'MiB/s':>7}   time per hop (s)")
    for name, figures in results.items():
        hops = ", ".join(f"{hop} {seconds:.2f}" for hop, seconds in figures["hops"].items())
        print(f"{name:52} {figures['seconds']:8.2f} {args.mib / figures['seconds']:7.2f}   {hops}")
    profiled = peer_to_peer(server.url, blob[: 8 * MIB], profile=True)
    print(
        "\nProfile of a Peer -> Peer transfer of 8 MiB (own time per component, s; cProfile slows it down):"
    )
    for side, groups in profiled["profile"].items():
        total = sum(groups.values()) or 1
        print(f"  {side}: " + ", ".join(f"{k} {v:.2f} ({v / total:.0%})" for k, v in groups.items()))
    memory = peak_memory(server.url, size)
    print(
        f"\nSender's peak memory above the {memory['payload_mib']:.0f} MiB payload: "
        f"{memory['peak_above_payload_mib']:.1f} MiB (frames in flight, chunk window, aiortc's queues)"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "profile": profiled["profile"], "memory": memory})
        )
    server.close()


if __name__ == "__main__":
    main()
