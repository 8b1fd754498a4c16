"""Data-channel throughput of a Python peer (aiortc) and of browser phones, in one run, with the time per hop.

    .venv/bin/python bench/throughput.py [--mib 20] [--no-browser] [--memory-mib 1024] [--json FILE]

Paths, each moving one message of ``--mib`` MiB (random bytes), timed from the send in Python until the
receiving side's Python has it whole (checked by size; the receiver answers with its clock's arrival time,
the same machine's wall clock):

- Peer -> Peer: two processes (the receiver is a subprocess), as two scripts would be.
- Peer -> Phone, Phone -> Peer: a Peer here, a Phone in a real JupyterLab + Chromium page.
- Phone -> Phone: two phones in one notebook page.
- raw aiortc -> aiortc: two plain aiortc peers in two processes (bench/raw_aiortc.py), the same size.
- ceiling, one page: two RTCPeerConnections in one page with bufferedAmount backpressure (no Python), every
  message size (16, 64, 256 KiB) and queue depth (1, 4, 8, 15 MiB; Chrome refuses 16) tried: the best.
- ceiling, comm: the kernel <-> browser hop alone (an anywidget, no WebRTC): kernel -> browser in the phone's
  1 MiB parts and 8 MiB window, browser -> kernel in 4 MiB parts, and kernel -> browser -> kernel.

A phone path's target is 80% of the lower of its two ceilings (the page's, and the comm hop it crosses).
Each Peer side's CPU seconds give MiB per CPU second: what it moves with a core of its own, which holds on a
machine shared with other jobs, where MiB/s does not. Then the peak memory above idle while a file of
``--memory-mib`` (1 GiB) is sent and received: ``nbcall send``/``nbcall receive`` (their peak above the peak of
moving one byte), a phone's kernel, the Jupyter server and the page's JS heap (above their values before).

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
import resource
import socket
import subprocess
import sys
import tempfile
import threading
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

# The comm hop alone, no WebRTC: an anywidget that takes parts from the kernel (answering each as the phone's
# browser half does, so that the kernel sends in the phone's window), sends parts up to the kernel (as a phone
# passes a received message on), or echoes each part back as it comes (kernel -> browser -> kernel).
HOP_SETUP = """\
import anywidget, asyncio, time
from nbcall.widget.outgoing import Outgoing
class Hop(anywidget.AnyWidget):
    _esm = '''
    export default { initialize({ model }) {
      let got = 0;
      model.on("msg:custom", (msg, buffers) => {
        if (msg.type === "part") {
          got += buffers[0].byteLength;
          if (msg.echo) {
            const copy = new Uint8Array(buffers[0].byteLength);
            copy.set(new Uint8Array(buffers[0].buffer, buffers[0].byteOffset, buffers[0].byteLength));
            model.send({ type: "up", last: got >= msg.size }, undefined, [copy.buffer]);
          }
          model.send({ type: "sent", id: msg.id, done: got });
          if (got >= msg.size) { if (!msg.echo) model.send({ type: "done", t: Date.now() }); got = 0; }
        } else if (msg.type === "upload") {
          model.send({ type: "start", t: Date.now() });
          for (let sent = 0; sent < msg.size; sent += msg.part) {
            const part = new Uint8Array(Math.min(msg.part, msg.size - sent));
            model.send({ type: "up", last: sent + part.length >= msg.size }, undefined, [part.buffer]);
          }
        }
      });
    } };'''
    def __init__(self):
        super().__init__()
        self.on_msg(self._got)
        self.done = None
    def _got(self, _, msg, buffers):
        if msg["type"] == "sent":
            self.out.taken(msg["id"], msg["done"])
            self._pump()
        elif msg["type"] == "start":
            self.t_start = msg["t"] / 1000
        elif msg["type"] == "done" or (msg["type"] == "up" and msg["last"]):
            self.done.set_result(msg["t"] / 1000 if "t" in msg else time.time())
    def _pump(self):
        for header, part in self.out.ready():
            self.send({**header, "type": "part", "echo": self.echo, "size": self.size}, [part])
    async def down(self, payload, echo=False):
        self.done, self.echo, self.size = asyncio.get_running_loop().create_future(), echo, len(payload)
        self.out = Outgoing()
        self.out.add({"id": 1}, payload)
        t0 = time.time()
        self._pump()
        return await self.done - t0
    async def up(self, size, part):
        self.done = asyncio.get_running_loop().create_future()
        self.send({"type": "upload", "size": size, "part": part})
        t1 = await self.done
        return t1 - self.t_start
hop = Hop()
display(hop)
"""

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
import resource
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
r = Peer("R", server={url!r}, auto_answer=True)
first = []
r.on_progress(lambda p: first.append((time.time(), cpu())) if p.get("direction") == "in" and not first else None)
prof = cProfile.Profile()
if profile:
    async def on(): prof.enable()
    kernel.run(on())
done = threading.Event()
def got(m):
    report = {{"got": m.size, "t_last": m.received_at, "t_first": first[0][0] if first else None,
              "cpu": cpu() - first[0][1] if first else None}}
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


def step(what: str) -> None:
    """Say what the bench does now (a run takes minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """This process's CPU time: per MiB it holds on a machine shared with other jobs, where MiB/s does not."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Peaks:
    """The peak resident memory (VmHWM) of processes, by name and pid, sampled on a thread until stopped."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: self.read(pid, "VmRSS") for name, pid in pids.items()}
        self.peak = dict(self.start)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    @staticmethod
    def read(pid: int, field: str) -> int:
        try:
            with open(f"/proc/{pid}/status") as status:
                return int(next(line for line in status if line.startswith(field)).split()[1]) * 1024
        except (OSError, StopIteration):
            return 0

    def sample(self) -> None:
        while not self.stopped.wait(0.02):
            for name, pid in self.pids.items():
                # The current RSS, not VmHWM: the peak since the process started would count its start-up.
                self.peak[name] = max(self.peak[name], self.read(pid, "VmRSS"))

    def stop(self) -> dict[str, float]:
        """Each process's peak above its RSS when sampling started, in MiB."""
        self.stopped.set()
        self.thread.join()
        return {name: (self.peak[name] - self.start[name]) / MIB for name in self.pids}


def by_component(prof: Any) -> dict[str, float]:
    """Own time per component of the stack, in seconds."""
    import pstats

    groups: dict[str, float] = {}
    for (path, _, name), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():
        # nbcall's own SCTP and DTLS transports (nbcall/peer/aiortc_sctp.py, aiortc_dtls.py) count as aiortc's.
        if "rtcsctptransport" in path or "aiortc_sctp" in path:
            key = "aiortc SCTP (chunks, SACKs, reassembly)"
        elif (
            "rtcdtlstransport" in path
            or "aiortc_dtls" in path
            or "OpenSSL" in path
            or "openssl" in name
            or "SSL" in name
        ):
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
        cpu0 = cpu_seconds()
        t0 = time.time()
        handed = s.send(blob)
        handed.result(600)
        t_handed = time.time()
        ack = acked(s, 1)
        t_ack = time.time()
        result = {
            "seconds": ack["t_last"] - t0,
            # The sender's CPU is this process's, from the send until the answer (it does little else).
            "cpu": {"sender": cpu_seconds() - cpu0, "receiver": ack["cpu"]},
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


def browser_paths(
    server_url: str, blob: bytes, size: int, memory_size: int, memory: dict[str, Any]
) -> dict[str, dict[str, Any]]:
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
            step("Peer -> Phone")
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
            step("Phone -> Peer")
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
        step("Phone -> Phone (C calls B; B answers with its arrival time)")
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
        if not os.environ.get("NBCALL_BENCH_NO_COMM"):
            step("the comm hop alone")
            # In a JupyterLab of its own. In some runs (2026-12-06, load average 20+) its cells waited for
            # answers from the hop widget that never came, next to the phones or not: an open question.
            with tempfile.TemporaryDirectory() as home2, start_lab(Path(home2)) as lab2:
                hop_page = browser.new_page()
                hop_nb = lab2.run_notebook(hop_page, "hop.ipynb", ["import asyncio, os"])
                results.update(comm_ceilings(hop_nb, size))
                hop_page.close()
        step("two connections in one page")
        results.update(page_ceiling(page, size))
        if memory_size:
            memory.update(phone_memory(nb, page, server_url, memory_size))
        browser.close()
    return results


def cli_memory(server_url: str, size: int) -> dict[str, float]:
    """Peak RSS of ``nbcall send`` and ``nbcall receive`` moving a file of ``size`` bytes, above the peak of the
    same commands moving a file of one byte (their idle: imports, the call), in MiB."""
    peaks: dict[int, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, size):
            source = Path(tmp) / f"file-{n}.bin"
            with open(source, "wb") as f:
                f.truncate(n)  # sparse: zeros, read without a disk's pace
            out = Path(tmp) / f"out-{n}"
            out.mkdir()
            cli = [sys.executable, "-m", "nbcall"]
            receive = subprocess.Popen(
                [*cli, "receive", "--server", server_url, "--as", f"R{n}", "--out", out, "-q"]
            )
            sampled = Peaks({"nbcall receive": receive.pid})
            for _ in range(100):  # until the receiver is online (exit status 4: not yet)
                send = subprocess.Popen(
                    [*cli, "send", "--server", server_url, "--as", f"S{n}", f"R{n}", source, "-q"]
                )
                sampled.pids["nbcall send"] = send.pid
                sampled.start["nbcall send"] = sampled.peak["nbcall send"] = 0
                if send.wait(1800) != 4:
                    break
                time.sleep(0.2)
            assert send.returncode == 0 and receive.wait(60) == 0, (send.returncode, receive.returncode)
            sampled.stop()
            peaks[n] = sampled.peak
    return {name: (peaks[size][name] - peaks[1][name]) / MIB for name in peaks[size]}


PHONE_MEMORY = """\
import pathlib, tempfile
spool = pathlib.Path(tempfile.mkdtemp())
with open(spool / "out.bin", "wb") as f:
    f.truncate({size})
d = nbcall.Phone("D", auto_answer=True, server={url!r}, receive_dir=spool / "in")
display(d)
print("@@", os.getpid(), os.getppid(), spool)
"""

HEAP_JS = """() => {
  window.__heapPeak = performance.memory.usedJSHeapSize;
  window.__heapStart = window.__heapPeak;
  setInterval(() => { window.__heapPeak = Math.max(window.__heapPeak, performance.memory.usedJSHeapSize); }, 20);
}"""


def phone_memory(nb: Any, page: Any, server_url: str, size: int) -> dict[str, dict[str, float]]:
    """Peak RSS of the kernel and the Jupyter server, and the page's peak JS heap, above their values before,
    while a phone sends a file of ``size`` bytes to a Peer, then receives one from it (MiB)."""
    from nbcall import Peer

    kernel_pid, server_pid, spool = (
        nb.run(PHONE_MEMORY.format(size=size, url=server_url)).split("@@")[1].split()
    )
    pids = {"Phone's kernel": int(kernel_pid), "Jupyter server": int(server_pid)}
    results = {}
    with (
        tempfile.TemporaryDirectory() as received,
        Peer("M", server=server_url, auto_answer=True, receive_dir=received) as m,
    ):
        nb.run("d.call('M'); await d.wait_for('connected', timeout=30)")
        for direction in ("Phone -> Peer", "Peer -> Phone"):
            step(f"memory, {direction}")
            page.evaluate(HEAP_JS)
            sampled = Peaks(pids)
            if direction == "Phone -> Peer":
                nb.start("sending = d.send_file(spool / 'out.bin', timeout=1800)")  # the cell ends: acks flow
                wait_for(
                    lambda: any(getattr(x, "path", None) for x in m.messages), "the file at the Peer", 1800
                )
            else:
                assert m.send_file(Path(spool) / "out.bin").result(1800)["ok"]
            heap = page.evaluate("() => [window.__heapStart, window.__heapPeak]")
            results[direction] = {**sampled.stop(), "page JS heap": (heap[1] - heap[0]) / MIB}
        nb.run("d.hangup()")
    return results


def comm_ceilings(nb: Any, size: int) -> dict[str, dict[str, Any]]:
    """The comm hop alone (no WebRTC), in the phones' notebook: kernel -> browser in the phone's parts and window,
    browser -> kernel in the phone's parts, and kernel -> browser -> kernel (each part echoed as it comes)."""
    nb.run(HOP_SETUP)
    results = {}
    for name, code in (
        (
            "ceiling: comm kernel -> browser",
            f"print('@@', await asyncio.wait_for(hop.down(os.urandom({size})), 170))",
        ),
        (
            "ceiling: comm browser -> kernel",
            f"print('@@', await asyncio.wait_for(hop.up({size}, {4 * MIB}), 170))",
        ),
        (
            "ceiling: comm kernel -> browser -> kernel",
            f"print('@@', await asyncio.wait_for(hop.down(os.urandom({size}), True), 170))",
        ),
    ):
        seconds = float(nb.run(code).split("@@")[1].split()[0])
        results[name] = {"seconds": seconds, "hops": {"widget": seconds}}
    return results


def page_ceiling(page: Any, size: int) -> dict[str, dict[str, Any]]:
    """Two RTCPeerConnections in one page: every message size and queue depth tried, and the best of them."""
    tried = {}
    for chunk in (16 * 1024, 64 * 1024, 256 * 1024 - 1):
        for high_water in (MIB, 4 * MIB, 8 * MIB, 15 * MIB):
            tried[(chunk, high_water)] = page.evaluate(CEILING_JS, [size, chunk, high_water])
    (chunk, high_water), best = min(tried.items(), key=lambda kv: kv[1])
    name = f"ceiling: one page, best of {len(tried)} ({chunk // 1024} KiB messages, {high_water // MIB} MiB queued)"
    phones = tried[(256 * 1024 - 1, 4 * MIB)]
    return {
        name: {"seconds": best, "hops": {"webrtc": best}},
        "ceiling: one page, the phones' 256 KiB, 4 MiB": {"seconds": phones, "hops": {"webrtc": phones}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=20, help="payload size in MiB (default 20)")
    parser.add_argument("--no-browser", action="store_true", help="only the Peer -> Peer figures")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--memory-mib",
        type=int,
        default=1024,
        help="file size for the peak-memory figures (default 1024; 0: none)",
    )
    args = parser.parse_args()
    if not in_loopback_namespace():
        if os.environ.get("NBCALL_BENCH_NETNS"):
            raise SystemExit(
                "bench/throughput.py: could not enter a loopback-only network namespace (needs root)"
            )
        os.environ["NBCALL_BENCH_NETNS"] = "1"
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))
    import asyncio

    import raw_aiortc

    import nbcall

    size = args.mib * MIB
    blob = os.urandom(size)
    server = nbcall.serve()
    step("Peer -> Peer")
    results: dict[str, Any] = {"Peer -> Peer": peer_to_peer(server.url, blob)}
    step("raw aiortc -> aiortc")
    raw = asyncio.run(raw_aiortc.send(size, raw_aiortc.receiver(size)))
    results["raw aiortc -> aiortc (two processes)"] = {**raw, "hops": {"webrtc": raw["seconds"]}}
    memory: dict[str, Any] = {}
    if args.memory_mib:
        step("memory, nbcall send -> nbcall receive")
        memory["nbcall send -> nbcall receive"] = cli_memory(server.url, args.memory_mib * MIB)
    if not args.no_browser:
        results.update(browser_paths(server.url, blob, size, args.memory_mib * MIB, memory))
    print(
        f"\n{args.mib} MiB, one message, from the send in Python to the receiver's Python having it whole\n"
    )
    print(f"{'path':62} {'seconds':>8} {'MiB/s':>7}   time per hop (s)")
    for name, figures in results.items():
        hops = ", ".join(f"{hop} {seconds:.2f}" for hop, seconds in figures["hops"].items())
        print(f"{name:62} {figures['seconds']:8.2f} {args.mib / figures['seconds']:7.2f}   {hops}")
    print("\nMiB per CPU second of each side (what a side moves with a core to itself):")
    for name in ("Peer -> Peer", "raw aiortc -> aiortc (two processes)"):
        cpu = results[name]["cpu"]
        print(f"  {name}: sender {args.mib / cpu['sender']:.1f}, receiver {args.mib / cpu['receiver']:.1f}")
    if not args.no_browser:
        rate = {name: args.mib / figures["seconds"] for name, figures in results.items()}
        page = max(v for k, v in rate.items() if k.startswith("ceiling: one page, best"))
        for path, comm in (
            ("Phone -> Peer", "ceiling: comm kernel -> browser"),
            ("Peer -> Phone", "ceiling: comm browser -> kernel"),
            ("Phone -> Phone", "ceiling: comm kernel -> browser -> kernel"),
        ):
            lower = min(page, rate.get(comm, page))
            print(
                f"  {path}: {rate[path]:.2f} MiB/s = {rate[path] / lower:.0%} of the lower ceiling ({lower:.2f})"
            )
    profiled = peer_to_peer(server.url, blob[: 8 * MIB], profile=True)
    print(
        "\nProfile of a Peer -> Peer transfer of 8 MiB (own time per component, s; cProfile slows it down):"
    )
    for side, groups in profiled["profile"].items():
        total = sum(groups.values()) or 1
        print(f"  {side}: " + ", ".join(f"{k} {v:.2f} ({v / total:.0%})" for k, v in groups.items()))
    traced = peak_memory(server.url, size)
    print(
        f"\nSender's peak memory above the {traced['payload_mib']:.0f} MiB payload: "
        f"{traced['peak_above_payload_mib']:.1f} MiB (frames in flight, chunk window, aiortc's queues)"
    )
    if memory:
        print(f"\nPeak memory above idle while a {args.memory_mib} MiB file is sent or received (MiB):")
        for what, peaks in memory.items():
            print(f"  {what}: " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"results": results, "profile": profiled["profile"], "traced": traced, "memory": memory}
            )
        )
    server.close()


if __name__ == "__main__":
    main()
