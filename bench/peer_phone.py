"""``bench/throughput.py --peer-phone ROUNDS``: Phone -> Peer and Peer -> Phone beside their ceilings, in
alternating rounds of the Peer's SCTP settings, and optionally where the Peer's CPU goes (``--cpu-profile FILE``).

One page with the phone B, one Peer P (this process) in a call with it. Each round runs, for each setting of
:data:`SETTINGS` (applied to P's live SCTP transport; every round starts one setting further along), Peer ->
Phone then Phone -> Peer, each with P's CPU seconds (this process: the Peer, and Playwright's few calls). The
comm hop alone (kernel -> browser, browser -> kernel) and two bare connections in the page (the phones' 256 KiB
frames, 4 MiB queued, and the best of 12) are measured after the rounds, in the same run. With ``--cpu-profile``,
one more transfer each way under py-spy (this process, all threads, 250 Hz): own samples per function, and per
component of the stack.
"""

from __future__ import annotations

import collections
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from comm_hop import comm_ceilings

# The bench runs as a script: its helpers live in __main__ (throughput.py), with its LOADS record.
from __main__ import MIB, cpu_seconds, page_ceiling, phones_page, step, wait_for  # type: ignore[attr-defined]

#: The Peer's SCTP settings compared: attributes of its TunedSctpTransport and of its FastDtlsTransport.
#: "before" is how a Peer talked to a browser before 2026-12-07 (a SACK per second packet, aiortc's burst of 4).
SWITCHES = ("_nbcall_sack_batch", "_nbcall_coalesce", "_nbcall_gso", "_nbcall_direct", "_nbcall_raw")
SETTINGS: dict[str, dict[str, Any]] = {
    "before": {
        "_nbcall_sack_batch": 0,
        "_nbcall_coalesce": False,
        "_nbcall_gso": False,
        "_nbcall_direct": False,
        "_nbcall_raw": False,
    },
    "batched, one sendmsg": {"_nbcall_direct": False, "_nbcall_raw": False},
    "after": {},
}
#: ``NBCALL_BENCH_SACKS=1``: instead, the most DATA packets the Peer acknowledges with one SACK within a batch
#: (``SACK_BATCH``; a browser sends at most 4 new packets per SACK).
SACK_SETTINGS: dict[str, dict[str, Any]] = {f"SACK per {n}": {"_nbcall_sack_batch": n} for n in (8, 4, 3, 2)}
if os.environ.get("NBCALL_BENCH_SACKS"):
    SETTINGS = SACK_SETTINGS


def apply(peer: Any, setting: dict[str, Any]) -> None:
    from nbcall.call import kernel

    async def set_() -> None:
        link = next(iter(peer._engine.links.values()))  # the bench reaches into its own Peer
        sctp = link.pc.sctp
        for name in SWITCHES:  # back to the classes' defaults
            sctp.__dict__.pop(name, None)
            sctp.transport.__dict__.pop(name, None)
        for name, value in setting.items():  # on the SCTP transport, or the DTLS one where it is that's
            setattr(sctp.transport if name in ("_nbcall_direct", "_nbcall_raw") else sctp, name, value)

    kernel.run(set_())


def system_seconds() -> float:
    """This process's CPU time in the kernel (sendto, recvfrom, the loopback's delivery)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


_LOOP_THREAD: list[int] = []


def loop_seconds() -> float:
    """The CPU time of the thread the Peer runs on (nbcall's background loop), without Playwright's (the
    process's main thread): the first field of its schedstat, in ns."""
    if not _LOOP_THREAD:
        import threading

        from nbcall.call import kernel

        async def tid() -> int:
            return threading.get_native_id()

        _LOOP_THREAD.append(kernel.run(tid()))
    with open(f"/proc/self/task/{_LOOP_THREAD[0]}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


PAGE = "() => ({...window.__bench})"
RESET = "() => Object.keys(window.__bench).forEach((k) => { window.__bench[k] = 0; })"


def datagrams(peer: Any) -> tuple[int, int]:
    """Records (datagrams) the Peer's DTLS transport has received and sent so far."""
    dtls = next(iter(peer._engine.links.values())).pc.sctp.transport
    return dtls._RTCDtlsTransport__rx_packets, dtls._RTCDtlsTransport__tx_packets


def peer_to_phone(page: Any, peer: Any, blob: bytes, answers: list[dict[str, Any]]) -> dict[str, Any]:
    page.evaluate(RESET)
    count = len(answers)
    cpu0, sys0, loop0 = cpu_seconds(), system_seconds(), loop_seconds()
    in0, out0 = datagrams(peer)
    t0 = time.time()
    peer.send(blob)
    wait_for(lambda: len(answers) > count, "the phone's answer")
    ack = answers[-1]
    seen = page.evaluate(PAGE)
    return {
        "hops": {  # the data channel until the page's last message event; then the page -> kernel hop
            "webrtc": seen["recv_last"] / 1000 - t0,
            "widget": ack["t_last"] - seen["recv_last"] / 1000,
        },
        "seconds": ack["t_last"] - t0,
        "cpu": cpu_seconds() - cpu0,
        "system": system_seconds() - sys0,
        "loop": loop_seconds() - loop0,
        "datagrams": [n - n0 for n, n0 in zip(datagrams(peer), (in0, out0), strict=True)],
    }


def phone_to_peer(page: Any, peer: Any, nb: Any, arrivals: list[float]) -> dict[str, Any]:
    page.evaluate(RESET)
    count = len(arrivals)
    cpu0, sys0, loop0 = cpu_seconds(), system_seconds(), loop_seconds()
    in0, out0 = datagrams(peer)
    out = nb.run("t0 = time.time(); b.send(blob); print('@@', t0)")
    t0 = float(out.split("@@")[1].split()[0])
    wait_for(lambda: len(arrivals) > count, "the phone's payload")
    arrived = arrivals[-1]
    seen = page.evaluate(PAGE)
    return {
        "hops": {  # the kernel -> page hop until the page's first channel send; then the data channel
            "widget": seen["sent_first"] / 1000 - t0,
            "webrtc": arrived - seen["sent_first"] / 1000,
        },
        "seconds": arrived - t0,
        "cpu": cpu_seconds() - cpu0,
        "system": system_seconds() - sys0,
        "loop": loop_seconds() - loop0,
        "datagrams": [n - n0 for n, n0 in zip(datagrams(peer), (in0, out0), strict=True)],
    }


def peer_phone_rounds(server_url: str, size: int, rounds: int, profile: Path | None) -> dict[str, Any]:
    from nbcall import Peer

    mib = size / MIB
    blob = os.urandom(size)
    out: dict[str, Any] = {"rounds": [], "settings": {k: repr(v) for k, v in SETTINGS.items()}}
    with phones_page(server_url) as (page, nb), Peer("P", server=server_url, max_messages=4) as peer:
        nb.run(f"import asyncio\nblob = os.urandom({size})")
        peer.call("B")
        peer.wait("connected", timeout=30)
        answers: list[dict[str, Any]] = []  # the phone's answers (the Peer keeps only its last messages)
        arrivals: list[float] = []  # when the phone's payloads arrived whole
        peer.on_message(
            lambda m: answers.append(m.data) if m.kind == "json" else arrivals.append(m.received_at)
        )
        step("warm-up, not counted")
        peer_to_phone(page, peer, blob, answers)
        phone_to_peer(page, peer, nb, arrivals)
        names = list(SETTINGS)
        for n in range(rounds):
            record: dict[str, Any] = {}
            for name in names[n % len(names) :] + names[: n % len(names)]:
                apply(peer, SETTINGS[name])
                step(f"round {n + 1} of {rounds}, {name}: Peer -> Phone")
                down = peer_to_phone(page, peer, blob, answers)
                step(f"round {n + 1} of {rounds}, {name}: Phone -> Peer")
                up = phone_to_peer(page, peer, nb, arrivals)
                record[name] = {"Peer -> Phone": down, "Phone -> Peer": up}
                print(
                    f"  {name}: Peer -> Phone {mib / down['seconds']:.2f} MiB/s, {mib / down['loop']:.1f} MiB/CPU s, "
                    f"hops {down['hops']['webrtc']:.2f} + {down['hops']['widget']:.2f} s "
                    f"(process {mib / down['cpu']:.1f}, {down['system']:.2f} of {down['cpu']:.2f} s in the kernel, "
                    f"datagrams in/out {down['datagrams']}); "
                    f"Phone -> Peer {mib / up['seconds']:.2f} MiB/s, {mib / up['loop']:.1f} MiB/CPU s, "
                    f"hops {up['hops']['widget']:.2f} + {up['hops']['webrtc']:.2f} s "
                    f"(process {mib / up['cpu']:.1f}, {up['system']:.2f} of {up['cpu']:.2f} s in the kernel, "
                    f"datagrams in/out {up['datagrams']})",
                    flush=True,
                )
            record["load"] = os.getloadavg()[0]
            out["rounds"].append(record)
        if profile is not None:
            apply(peer, {})
            out["profile"] = {
                "Peer -> Phone": spied(
                    profile.with_suffix(".down.txt"), lambda: peer_to_phone(page, peer, blob, answers)
                ),
                "Phone -> Peer": spied(
                    profile.with_suffix(".up.txt"), lambda: phone_to_peer(page, peer, nb, arrivals)
                ),
            }
        peer.hangup()
        out["ceilings"] = {}
        if not os.environ.get("NBCALL_BENCH_NO_CEILINGS"):  # when only profiling
            step("the comm hop alone")
            out["ceilings"] = {name: f["seconds"] for name, f in comm_ceilings(nb, size).items()}
            step("two connections in one page")
            out["ceilings"].update({name: f["seconds"] for name, f in page_ceiling(page, size).items()})
    summarize(out, mib)
    return out


def summarize(out: dict[str, Any], mib: float) -> None:
    summary: dict[str, Any] = {}
    print(f"\n{mib:.0f} MiB, medians of {len(out['rounds'])} rounds (MiB/s; the Peer's MiB per CPU second)")
    for name in SETTINGS:
        for path in ("Peer -> Phone", "Phone -> Peer"):
            runs = [r[name][path] for r in out["rounds"]]
            rate = statistics.median(mib / r["seconds"] for r in runs)
            per_cpu = statistics.median(mib / r["loop"] for r in runs)
            summary[f"{name}: {path}"] = {"MiB/s": rate, "MiB per CPU second": per_cpu}
            print(f"  {name:8} {path:14} {rate:6.2f} MiB/s {per_cpu:6.1f} MiB/CPU s")
    for name, seconds in out["ceilings"].items():
        print(f"  {name:70} {mib / seconds:6.2f} MiB/s")
    out["summary"] = summary


def spied(path: Path, run: Any) -> dict[str, Any]:
    """``run()`` under py-spy on this process: own samples per function and per component."""
    spy = subprocess.Popen(
        [os.environ.get("NBCALL_PY_SPY") or shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy", "record", "-p", str(os.getpid()),
         "-r", "250", "-f", "raw", "-o", str(path), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)
    figures = run()
    spy.send_signal(2)
    spy.wait(30)
    own: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines() if path.exists() else ():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        own[frames[-1]] += int(count)
        parts[component(frames)] += int(count)
    print(f"\n{path.name}: {figures}\n  own samples by component:")
    for name, n in parts.most_common():
        print(f"  {n:6d}  {name}")
    print("  own samples by function:")
    for name, n in own.most_common(30):
        print(f"  {n:6d}  {name}")
    return {"run": figures, "components": dict(parts), "functions": dict(own.most_common(60))}


#: The part of the stack a frame belongs to, by what its name holds (the first match wins).
COMPONENTS = (
    (("Selector.select",), "idle (waiting in epoll)"),
    (("playwright", "greenlet"), "Playwright"),
    (("OpenSSL", "_cffi"), "DTLS (pyOpenSSL)"),
    (("crc32c",), "SCTP checksum"),
    (("aiortc_sctp", "rtcsctptransport"), "SCTP (aiortc + nbcall)"),
    (("aiortc_dtls", "rtcdtlstransport"), "DTLS transport (aiortc + nbcall)"),
    (("aioice",), "aioice"),
    (("nbcall",), "nbcall (channel, framing)"),
    (("asyncio",), "asyncio loop"),
)


def component(frames: list[str]) -> str:
    """The part of the stack a sample's innermost frames belong to."""
    for frame in reversed(frames):
        for needles, name in COMPONENTS:
            if any(needle in frame for needle in needles):
                return name
    return "other"
