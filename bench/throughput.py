"""Data-channel throughput of a Python peer (aiortc) and of browser phones, in one run, with the time per hop.

    .venv/bin/python bench/throughput.py [--mib 20] [--no-browser] [--memory-mib 1024] [--json FILE]
    .venv/bin/python bench/throughput.py --phone-phone ROUNDS [--cpu-profile FILE]   # bench/phone_phone.py
    .venv/bin/python bench/throughput.py --peer-phone ROUNDS [--cpu-profile FILE]    # bench/peer_phone.py
    .venv/bin/python bench/throughput.py --bounds ROUNDS                             # bench/bounds.py

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
import statistics
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

from comm_hop import comm_ceilings
from sampling import CpuUse, PageHeap, Peaks, mib_figures, renderers

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
  // Bounded waits: Playwright's evaluate has none, and a stall must say where it was.
  const within = (promise, seconds, what) => Promise.race([promise, new Promise((_, reject) => setTimeout(
    () => reject(new Error(`one-page ceiling (${chunkSize} B, ${highWater} B queued): ${what} after ${seconds} s`)),
    seconds * 1000))]);
  const a = new RTCPeerConnection({iceServers: []}), b = new RTCPeerConnection({iceServers: []});
  try {
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
    const ch = a.createDataChannel('ceiling'); ch.binaryType = 'arraybuffer';
    const opened = new Promise((r) => { ch.onopen = r; });
    let n = 0;
    const got = new Promise((resolve) => { b.ondatachannel = (e) => {
      e.channel.onmessage = (m) => { n += m.data.byteLength; if (n >= size) resolve(performance.now()); }; }; });
    await a.setLocalDescription(await a.createOffer()); await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer()); await a.setRemoteDescription(b.localDescription);
    if (ch.readyState !== 'open') await within(opened, 30, 'the channel did not open');
    const chunk = new Uint8Array(chunkSize); ch.bufferedAmountLowThreshold = highWater / 2;
    const t0 = performance.now();
    for (let sent = 0; sent < size; sent += chunk.length) {
      if (ch.bufferedAmount > highWater) {
        await within(new Promise((r) => { ch.onbufferedamountlow = r; }), 60, `the queue did not drain at ${sent} B`);
      }
      ch.send(chunk);
    }
    const t1 = await within(got, 120, `not all received (${n} of ${size} B)`);
    return (t1 - t0) / 1000;
  } finally { a.close(); b.close(); }
}"""

PHONE_SETUP = """\
import nbcall, time, os
# Two messages kept each: the bench's 20 MiB payloads would pile up in the kernel (100 by default).
b = nbcall.Phone("B", auto_answer=True, server={url!r}, max_messages=2)
c = nbcall.Phone("C", auto_answer=True, server={url!r}, max_messages=2)
def ack(phone):
    def on(m):
        if m.kind == "bytes":
            phone.send({{"got": m.size, "t_last": time.time()}})
    return on
answers = []  # the receiving phone's answers (counted here: each phone keeps only its last two messages)
b.on_message(ack(b)); c.on_message(ack(c))
c.on_message(lambda m: answers.append(m.data) if m.kind == "json" else None)
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


#: (time, step, 1-minute load average) at each step: the machine is shared, so every figure comes with its load.
LOADS: list[tuple[str, str, float]] = []


def step(what: str) -> None:
    """Say what the bench does now (a run takes minutes), with the load average."""
    now, load = time.strftime("%H:%M:%S"), os.getloadavg()[0]
    LOADS.append((now, what, load))
    print(f"[{now}] {what} (load average {load:.1f})", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """This process's CPU time: per MiB it holds on a machine shared with other jobs, where MiB/s does not."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def wait_for(condition: Any, what: str, timeout: float = 120, tick: Any = None) -> None:
    """Wait until ``condition()``, calling ``tick()`` meanwhile (a sampler); raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiting for {what} ({timeout} s)")
        if tick is not None:
            tick()
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
    server_url: str,
    blob: bytes,
    size: int,
    memory_size: int,
    memory: dict[str, Any],
    variants: dict[str, list[dict[str, Any]]],
    variant_rounds: int,
) -> dict[str, dict[str, Any]]:
    from nbcall import Peer

    results: dict[str, dict[str, Any]] = {}
    with phones_page(server_url) as (page, nb):
        bench = lambda: page.evaluate("() => ({...window.__bench})")
        reset = "() => Object.keys(window.__bench).forEach((k) => { window.__bench[k] = 0; })"
        with Peer("P", server=server_url, auto_answer=True) as peer:
            step("Peer -> Phone")
            peer.call("B")
            peer.wait("connected", timeout=30)
            page.evaluate(reset)
            cpu0 = cpu_seconds()
            t0 = time.time()
            peer.send(blob)
            ack = acked(peer, 1)
            page_times = bench()
            results["Peer -> Phone"] = {
                "seconds": ack["t_last"] - t0,
                # This process's CPU: the Peer's, and Playwright's few calls.
                "cpu": {"sender": cpu_seconds() - cpu0},
                "hops": {
                    "webrtc (to the browser's last message)": page_times["recv_last"] / 1000 - t0,
                    "widget (browser -> kernel)": ack["t_last"] - page_times["recv_last"] / 1000,
                },
            }
            step("Phone -> Peer")
            got = len(peer.messages)
            page.evaluate(reset)
            cpu0 = cpu_seconds()
            out = nb.run(
                f"import time\nblob = os.urandom({size})\nt0 = time.time(); b.send(blob); print('@@', t0)"
            )
            t0 = float(out.split("@@")[1].split()[0])
            wait_for(lambda: any(m.kind == "bytes" for m in peer.messages[got:]), "the phone's payload")
            arrived = next(m for m in peer.messages[got:] if m.kind == "bytes").received_at
            page_times = bench()
            results["Phone -> Peer"] = {
                "seconds": arrived - t0,
                "cpu": {"receiver": cpu_seconds() - cpu0},
                "hops": {
                    "widget (kernel -> browser's first send)": page_times["sent_first"] / 1000 - t0,
                    "webrtc (to the Peer's Python)": arrived - page_times["sent_first"] / 1000,
                },
            }
            peer.hangup()
        step("Phone -> Phone (C calls B; B answers with its arrival time)")
        nb.run("import asyncio\nawait b.wait_for('ended', timeout=10)")
        nb.run(f"c.call('B'); await c.wait_for('connected', timeout=30)\nblob = os.urandom({size})")
        results["Phone -> Phone"] = phone_to_phone(nb, page, {})
        names = list(VARIANTS)
        for round_ in range(variant_rounds):
            # Each round starts one further along: no setting always runs first, or last, in a round.
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                variant = VARIANTS[name]
                step(f"Phone -> Phone, {name} (round {round_ + 1} of {variant_rounds})")
                variants.setdefault(name, []).append(phone_to_phone(nb, page, variant))
        nb.run("c.hangup(); await b.wait_for('ended', timeout=10)")
        if not os.environ.get("NBCALL_BENCH_NO_COMM"):
            step("the comm hop alone")
            results.update(comm_ceilings(nb, size))
        step("two connections in one page")
        results.update(page_ceiling(page, size))
        if memory_size:
            memory.update(phone_memory(nb, page, server_url, memory_size))
    return results


@contextlib.contextmanager
def phones_page(server_url: str) -> Iterator[tuple[Any, Any]]:
    """A JupyterLab, a Chromium page and its notebook with the phones B and C shown: (page, notebook)."""
    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.add_init_script(PAGE_INIT_JS)
            nb = lab.run_notebook(
                page, "throughput.ipynb", [PHONE_SETUP.format(url=server_url)], phones=("B", "C")
            )
            yield page, nb
        finally:
            browser.close()


# Settings of the phones' send and receive paths that Phone -> Phone is measured with (``--variants``), each
# beside the phones' defaults in alternating rounds of the same run: the browser's frame size and queue depth
# (``high_water``: the bufferedAmount above which sending waits, resumed below half of it), the parts of a
# received message passed up to the kernel (``part_size``), and the kernel's parts and window down to the browser.
VARIANTS: dict[str, dict[str, int]] = {
    "phone defaults": {},
    "4 MiB parts up (before 2026-12-06)": {"part_size": 4 * MIB},
    "512 KiB parts up": {"part_size": MIB // 2},
    "64 KiB frames, 1 MiB queued": {"frame_size": 64 * 1024, "high_water": MIB},
    "256 KiB frames, 8 MiB queued": {"high_water": 8 * MIB},
    "4 MiB parts down, 16 MiB window": {"part": 4 * MIB, "window": 16 * MIB},
}

CONFIGURE = """\
from nbcall.widget import outgoing
base = getattr(b, "bench_base", None) or dict(b._settings)
for phone in (b, c):
    phone.bench_base = base
    phone.set_trait("_settings", {{**base, **{browser!r}}})
    phone._outgoing.part = {part}
    phone._outgoing.window = {window}
"""


def phone_to_phone(nb: Any, page: Any, variant: dict[str, int]) -> dict[str, Any]:
    """C sends ``blob`` to B in the call they are in, with the phones' settings changed by ``variant``; B
    answers with the arrival time of its last byte."""
    from nbcall.widget.outgoing import PART, WINDOW

    browser = {k: v for k, v in variant.items() if k in ("frame_size", "high_water", "part_size")}
    nb.run(
        CONFIGURE.format(
            browser=browser, part=variant.get("part", PART), window=variant.get("window", WINDOW)
        )
    )
    page.evaluate("() => Object.keys(window.__bench).forEach((k) => { window.__bench[k] = 0; })")
    out = nb.run(
        "answered = len(answers)\n"
        "t0 = time.time(); c.send(blob)\n"
        "for _ in range(12000):\n"
        "    if len(answers) > answered: break\n"
        "    await asyncio.sleep(0.01)\n"
        "else:\n"
        "    raise TimeoutError('B did not answer within 120 s')\n"
        "print('@@', t0, answers[-1]['t_last'])"
    )
    t0, t_last = (float(x) for x in out.split("@@")[1].split()[:2])
    page_times = page.evaluate("() => ({...window.__bench})")
    return {
        "seconds": t_last - t0,
        "hops": {
            "widget (kernel -> browser)": page_times["sent_first"] / 1000 - t0,
            "webrtc (browser -> browser)": (page_times["recv_last"] - page_times["sent_first"]) / 1000,
            "widget (browser -> kernel)": t_last - page_times["recv_last"] / 1000,
        },
    }


def cli_memory(server_url: str, size: int) -> dict[str, dict[str, float]]:
    """Peak RSS of ``nbcall send`` and ``nbcall receive`` (each a Peer) moving a file of ``size`` bytes, beside
    their idle: the peak of the same commands moving a file of one byte (imports, the call, no data), in MiB."""
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
            sampled = Peaks({"nbcall receive": [receive.pid]}, idle_seconds=0)
            for _ in range(100):  # until the receiver is online (exit status 4: not yet)
                send = subprocess.Popen(
                    [*cli, "send", "--server", server_url, "--as", f"S{n}", f"R{n}", source, "-q"]
                )
                sampled.watch("nbcall send", send.pid)
                if send.wait(3600) != 4:
                    break
                time.sleep(0.2)
            assert send.returncode == 0 and receive.wait(60) == 0, (send.returncode, receive.returncode)
            sampled.stop()
            peaks[n] = sampled.peak
            (out / source.name).unlink(missing_ok=True)
    return {name: mib_figures(peaks[1][name], peaks[size][name]) for name in peaks[size]}


PHONE_MEMORY = """\
import pathlib, tempfile
spool = pathlib.Path(tempfile.mkdtemp())
with open(spool / "out.bin", "wb") as f:
    f.truncate({size})
d = nbcall.Phone("D", auto_answer=True, server={url!r}, receive_dir=spool / "in")
display(d)
print("@@", os.getpid(), os.getppid(), spool)
"""


def phone_memory(nb: Any, page: Any, server_url: str, size: int) -> dict[str, dict[str, dict[str, float]]]:
    """Idle and peak RSS of the kernel, the Jupyter server, Chromium's renderers and the Peer (this process), and
    the page's JS heap, while a phone sends a file of ``size`` bytes to a Peer, then receives one from it (MiB).
    The files live in temporary folders, removed after."""
    from nbcall import Peer

    kernel_pid, server_pid, spool = (
        nb.run(PHONE_MEMORY.format(size=size, url=server_url)).split("@@")[1].split()
    )
    pids = {
        "Phone's kernel": [int(kernel_pid)],
        "Jupyter server": [int(server_pid)],
        "Chromium renderers": renderers(),
        "Peer (the bench's process)": [os.getpid()],
    }
    results = {}
    try:
        with (
            tempfile.TemporaryDirectory() as received,
            Peer("M", server=server_url, auto_answer=True, receive_dir=received) as m,
        ):
            nb.run("d.call('M'); await d.wait_for('connected', timeout=30)")
            for direction in ("Phone -> Peer", "Peer -> Phone"):
                step(f"memory, {direction}, {size / MIB:.0f} MiB")
                heap = PageHeap(page)
                sampled = Peaks(pids)
                if direction == "Phone -> Peer":
                    # The cell ends at once: the browser's acknowledgements reach the idle kernel.
                    nb.start("sending = d.send_file(spool / 'out.bin', timeout=3600)")
                    wait_for(
                        lambda: any(getattr(x, "path", None) for x in m.messages),
                        "the file at the Peer",
                        3600,
                        heap.tick,
                    )
                else:
                    sent = m.send_file(Path(spool) / "out.bin")
                    wait_for(sent.done, "the phone's verdict on the file", 3600, heap.tick)
                    assert sent.result()["ok"], sent.result()
                results[direction] = {**sampled.stop(), "page JS heap": heap.stop()}
                # Garbage or held? After a full collection in the page, what the renderers still hold.
                heap.collect()
                time.sleep(2)
                collected = Peaks.rss(sampled.procs["Chromium renderers"])
                results[direction]["Chromium renderers, after a GC"] = mib_figures(
                    sampled.idle["Chromium renderers"], collected
                )
                for path in Path(received).iterdir():
                    path.unlink()
            nb.run("d.hangup()")
    finally:
        nb.run(f"import shutil\nshutil.rmtree({spool!r}, ignore_errors=True)")
    return results


def page_ceiling(page: Any, size: int) -> dict[str, dict[str, Any]]:
    """Two RTCPeerConnections in one page: every message size and queue depth tried, and the best of them."""
    tried, cpu = {}, {}
    for chunk in (16 * 1024, 64 * 1024, 256 * 1024 - 1):
        for high_water in (MIB, 4 * MIB, 8 * MIB, 15 * MIB):
            use = CpuUse()
            tried[(chunk, high_water)] = page.evaluate(CEILING_JS, [size, chunk, high_water])
            cpu[(chunk, high_water)] = use.stop()
    (chunk, high_water), best = min(tried.items(), key=lambda kv: kv[1])
    name = f"ceiling: one page, best of {len(tried)} ({chunk // 1024} KiB messages, {high_water // MIB} MiB queued)"
    phones = tried[(256 * 1024 - 1, 4 * MIB)]
    step(
        "one page: "
        + ", ".join(f"{c // 1024} KiB/{h // MIB} MiB {size / t / MIB:.1f}" for (c, h), t in tried.items())
    )
    return {
        name: {
            "seconds": best,
            "hops": {"webrtc": best},
            "tried": {f"{c}/{h}": t for (c, h), t in tried.items()},
            "cpu": cpu[(chunk, high_water)],
        },
        "ceiling: one page, the phones' 256 KiB, 4 MiB": {
            "seconds": phones,
            "hops": {"webrtc": phones},
            "cpu": cpu[(256 * 1024 - 1, 4 * MIB)],
        },
    }


def print_memory(memory: dict[str, Any], mib: int) -> None:
    print(f"\nMemory while a {mib} MiB file is sent or received: idle / peak (peak - idle), MiB")
    for what, peaks in memory.items():
        print(f"  {what}:")
        for name, m in peaks.items():
            print(f"    {name:32} {m['idle']:8.1f} / {m['peak']:8.1f} ({m['above']:+.1f})")


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
    parser.add_argument(
        "--variants",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also Phone -> Phone with each of the phones' settings in VARIANTS, in ROUNDS alternating rounds",
    )
    parser.add_argument(
        "--phone-phone",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only Phone -> Phone beside its two ceilings, in ROUNDS rounds (no Peer paths, no memory)",
    )
    parser.add_argument(
        "--peer-phone",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only Phone -> Peer and Peer -> Phone, with each of the Peer's SCTP settings in bench/peer_phone.py, "
        "in ROUNDS alternating rounds, beside the ceilings (no other paths, no memory)",
    )
    parser.add_argument(
        "--bounds",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only the phone paths and their ceilings, in ROUNDS rounds, each with every process's CPU seconds "
        "per MiB and the rate that allows on this machine's cores (bench/bounds.py)",
    )
    parser.add_argument(
        "--cpu-profile",
        type=Path,
        metavar="FILE",
        help="with --phone-phone: one more Phone -> Phone under the page's CDP profiler and the kernel's "
        "cProfile; the page's profile goes to FILE (.cpuprofile), a summary is printed; with --peer-phone: one "
        "more transfer each way under py-spy (FILE's name, .down.txt and .up.txt)",
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory figures (no throughput, no profile)"
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
    server = nbcall.serve()
    if args.phone_phone or args.peer_phone or args.bounds:
        # Rounds of one kind of path beside its ceilings: bench/phone_phone.py, peer_phone.py, bounds.py.
        if args.bounds:
            from bounds import bounds_rounds

            figures = bounds_rounds(server.url, size, args.bounds)
        else:
            if args.phone_phone:
                from phone_phone import phone_phone_rounds as rounds_of
            else:
                from peer_phone import peer_phone_rounds as rounds_of
            figures = rounds_of(server.url, size, args.phone_phone or args.peer_phone, args.cpu_profile)
        if args.json:
            args.json.write_text(json.dumps({**figures, "load_average": LOADS}))
        server.close()
        return
    if args.memory_only:
        step("memory, nbcall send -> nbcall receive")
        memory = {"nbcall send -> nbcall receive": cli_memory(server.url, args.memory_mib * MIB)}
        if not args.no_browser:
            with phones_page(server.url) as (page, nb):
                memory.update(phone_memory(nb, page, server.url, args.memory_mib * MIB))
        step("done")
        print_memory(memory, args.memory_mib)
        if args.json:
            args.json.write_text(json.dumps({"memory": memory, "load_average": LOADS}))
        server.close()
        return
    blob = os.urandom(size)
    step("Peer -> Peer")
    results: dict[str, Any] = {"Peer -> Peer": peer_to_peer(server.url, blob)}
    step("raw aiortc -> aiortc")
    raw = asyncio.run(raw_aiortc.send(size, raw_aiortc.receiver(size)))
    results["raw aiortc -> aiortc (two processes)"] = {**raw, "hops": {"webrtc": raw["seconds"]}}
    memory: dict[str, Any] = {}
    variants: dict[str, list[dict[str, Any]]] = {}
    if args.memory_mib:
        step("memory, nbcall send -> nbcall receive")
        memory["nbcall send -> nbcall receive"] = cli_memory(server.url, args.memory_mib * MIB)
    if not args.no_browser:
        results.update(
            browser_paths(server.url, blob, size, args.memory_mib * MIB, memory, variants, args.variants)
        )
    step("done")
    loads = [load for _, _, load in LOADS]
    print(
        f"\n{args.mib} MiB, one message, from the send in Python to the receiver's Python having it whole "
        f"(load average {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores)\n"
    )
    print(f"{'path':62} {'seconds':>8} {'MiB/s':>7}   time per hop (s)")
    for name, figures in results.items():
        hops = ", ".join(f"{hop} {seconds:.2f}" for hop, seconds in figures["hops"].items())
        print(f"{name:62} {figures['seconds']:8.2f} {args.mib / figures['seconds']:7.2f}   {hops}")
    print("\nMiB per CPU second of each side (what a side moves with a core to itself):")
    for name in ("Peer -> Peer", "raw aiortc -> aiortc (two processes)", "Peer -> Phone", "Phone -> Peer"):
        if name in results:
            cpu = results[name]["cpu"]
            print(f"  {name}: " + ", ".join(f"{side} {args.mib / s:.1f}" for side, s in cpu.items()))
    if not args.no_browser:
        rate = {name: args.mib / figures["seconds"] for name, figures in results.items()}
        page = max(v for k, v in rate.items() if k.startswith("ceiling: one page, best"))
        print("\nThe phone paths against the two ceilings (the target: 80% of the lower):")
        for path, comm in (
            ("Phone -> Peer", "ceiling: comm kernel -> browser"),
            ("Peer -> Phone", "ceiling: comm browser -> kernel"),
            ("Phone -> Phone", "ceiling: comm kernel -> browser -> kernel"),
        ):
            hop = (
                f"{rate[path] / rate[comm]:.0%} of the comm hop ({rate[comm]:.2f})"
                if comm in rate
                else "no comm hop"
            )
            lower = min(page, rate.get(comm, page))
            print(
                f"  {path}: {rate[path]:.2f} MiB/s = {rate[path] / page:.0%} of one page ({page:.2f}), {hop}: "
                f"{rate[path] / lower:.0%} of the lower"
            )
    if variants:
        print(
            f"\nPhone -> Phone by the phones' settings, {args.variants} alternating rounds: MiB/s of each round"
        )
        print(f"{'settings':40} {'median':>7}   rounds   median time per hop (s)")
        for name, runs in variants.items():
            rates = sorted(args.mib / r["seconds"] for r in runs)
            hops = {hop: statistics.median(r["hops"][hop] for r in runs) for hop in runs[0]["hops"]}
            print(
                f"{name:40} {statistics.median(rates):7.2f}   "
                + " ".join(f"{args.mib / r['seconds']:.2f}" for r in runs)
                + "   "
                + ", ".join(f"{hop} {v:.2f}" for hop, v in hops.items())
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
        print_memory(memory, args.memory_mib)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "variants": variants,
                    "profile": profiled["profile"],
                    "traced": traced,
                    "memory": memory,
                    "load_average": LOADS,
                }
            )
        )
    server.close()


if __name__ == "__main__":
    main()
