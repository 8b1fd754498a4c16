"""``bench/throughput.py --bounds ROUNDS``: what bounds each phone path on this machine. Every path and every
ceiling, in one page, in rounds, each with the CPU seconds of every process it runs in.

One page with the phones B and C, one Peer P (this process). Each round: P calls B, Peer -> Phone and Phone ->
Peer; C calls B, Phone -> Phone; then the comm hop alone (kernel -> browser, browser -> kernel, the round trip)
and two bare connections in the page (12 message sizes and queue depths). Around each transfer,
:class:`sampling.CpuUse` reads the CPU time of the kernel, the Jupyter server, Chromium's processes, the Peer's
loop thread, the bench's own work (Playwright's calls and polling, its driver) and the whole machine.

A path's *CPU seconds per MiB* (every process it runs in, without the bench's own work) says how fast it could
go if it had the machine's cores to itself and used them all: ``cores / (CPU s per MiB)``. Where that is below
80% of a ceiling, no scheduling of the same work reaches the target on this machine; only less work per MiB
(in nbcall's parts: the kernel, the page's JavaScript, the Peer) moves it. ``NBCALL_BENCH_HIDE=1`` runs the
same with the phones not drawn (``display: none``): what drawing them costs the page.
``NBCALL_BENCH_PAGE_PROFILE=1`` profiles each path's transfers with the page's sampling profiler (CDP, 250 µs)
and prints the main thread's own time by function.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from comm_hop import comm_ceilings
from peer_phone import loop_seconds, peer_to_phone, phone_to_peer
from sampling import CpuUse

# The bench runs as a script: its helpers live in __main__ (throughput.py).
from __main__ import MIB, page_ceiling, phone_to_phone, phones_page, step  # type: ignore[attr-defined]

#: Roles whose CPU is the bench's own (Playwright's calls and polling, its driver), not the path's.
BENCH = ("bench: its own process", "bench: Playwright's driver")
PEER_THREAD = "the Peer (its loop thread)"

#: Each phone path, and the comm-hop ceiling it crosses (its other ceiling is the page's best).
PATHS = {
    "Peer -> Phone": "ceiling: comm browser -> kernel",
    "Phone -> Peer": "ceiling: comm kernel -> browser",
    "Phone -> Phone": "ceiling: comm kernel -> browser -> kernel",
}
PAGE_BEST = "ceiling: one page, best of 12"


def measured(run: Any, page: Any = None, name: str = "") -> dict[str, Any]:
    """Run one transfer (``run()`` gives its figures, with ``seconds``) with every process's CPU seconds; with
    ``NBCALL_BENCH_PAGE_PROFILE`` set, under the page's sampling profiler too (its top functions printed)."""
    profiling = page is not None and os.environ.get("NBCALL_BENCH_PAGE_PROFILE")
    if profiling:
        cdp = page.context.new_cdp_session(page)
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": 250})
        cdp.send("Profiler.start")
    use = CpuUse({PEER_THREAD: loop_seconds})
    figures = run()
    cpu = use.stop()
    if profiling:
        from phone_phone import self_times

        top = self_times(cdp.send("Profiler.stop")["profile"])
        cdp.detach()
        print(f"\n{name}: {figures['seconds']:.2f} s; the page's main thread, own time (ms) by function:")
        for fn, ms in list(top.items())[:20]:
            print(f"  {ms:8.1f}  {fn}")
    return {"seconds": figures["seconds"], "cpu": cpu}


def bounds_rounds(server_url: str, size: int, rounds: int) -> dict[str, Any]:
    from nbcall import Peer

    blob = os.urandom(size)
    out: dict[str, Any] = {"rounds": [], "cores": os.cpu_count()}
    with phones_page(server_url) as (page, nb), Peer("P", server=server_url, max_messages=4) as peer:
        nb.run(f"import asyncio\nblob = os.urandom({size})")
        if os.environ.get("NBCALL_BENCH_HIDE"):
            # What drawing the phones costs the page: the same transfers with the widgets not drawn at all.
            page.add_style_tag(content=".nbcall-phone { display: none !important; }")
        answers: list[dict[str, Any]] = []  # the phone's answers (the Peer keeps only its last messages)
        arrivals: list[float] = []  # when the phone's payloads arrived whole
        peer.on_message(
            lambda m: answers.append(m.data) if m.kind == "json" else arrivals.append(m.received_at)
        )
        for n in range(rounds):
            record: dict[str, Any] = {}
            peer.call("B")
            peer.wait("connected", timeout=30)
            step(f"round {n + 1} of {rounds}: Peer -> Phone, Phone -> Peer")
            record["Peer -> Phone"] = measured(
                lambda: peer_to_phone(page, peer, blob, answers), page, "Peer -> Phone"
            )
            record["Phone -> Peer"] = measured(
                lambda: phone_to_peer(page, peer, nb, arrivals), page, "Phone -> Peer"
            )
            peer.hangup()
            nb.run(
                "await b.wait_for('ended', timeout=10)\nc.call('B'); await c.wait_for('connected', timeout=30)"
            )
            step(f"round {n + 1} of {rounds}: Phone -> Phone")
            record["Phone -> Phone"] = measured(lambda: phone_to_phone(nb, page, {}), page, "Phone -> Phone")
            nb.run("c.hangup(); await b.wait_for('ended', timeout=10)")
            step(f"round {n + 1} of {rounds}: the comm hop alone, two connections in one page")
            record.update(comm_ceilings(nb, size))
            for name, figures in page_ceiling(page, size).items():
                record[PAGE_BEST if name.startswith(PAGE_BEST) else name] = figures
            record["load"] = os.getloadavg()[0]
            out["rounds"].append(record)
    out["summary"] = summarize(out, size / MIB)
    return out


def per_mib(cpu: dict[str, Any], mib: float) -> dict[str, float]:
    """CPU seconds per MiB by role, the path's total (without the bench's own work) and the cores it kept busy."""
    roles = {name: seconds / mib for name, seconds in cpu["by role"].items()}
    total = sum(v for name, v in roles.items() if name not in BENCH)
    return {
        **roles,
        "total": total,
        "cores": total * mib / cpu["wall"],
        "machine cores": cpu["machine"] / cpu["wall"],
    }


def summarize(out: dict[str, Any], mib: float) -> dict[str, Any]:
    cores = out["cores"]
    names = [name for name in out["rounds"][0] if name != "load"]
    summary: dict[str, Any] = {}
    for name in names:
        runs = [r[name] for r in out["rounds"]]
        shares = [per_mib(r["cpu"], mib) for r in runs]
        roles = {role for s in shares for role in s}
        summary[name] = {
            "MiB/s": statistics.median(mib / r["seconds"] for r in runs),
            "CPU s per MiB": {
                role: statistics.median(s.get(role, 0.0) for s in shares) for role in sorted(roles)
            },
        }
        summary[name]["bound"] = cores / summary[name]["CPU s per MiB"]["total"]
    print(f"\n{mib:.0f} MiB, medians of {len(out['rounds'])} rounds, {cores} cores")
    print("  MiB/s, the path's CPU ms per MiB (all its processes), the cores it kept busy / the machine's,")
    print(f"  and the bound: {cores} cores / CPU per MiB")
    for name, s in summary.items():
        c = s["CPU s per MiB"]
        print(
            f"  {name:44} {s['MiB/s']:6.2f} MiB/s  {1000 * c['total']:6.1f} ms/MiB  "
            f"{c['cores']:.2f} / {c['machine cores']:.2f} cores  bound {s['bound']:6.2f} MiB/s"
        )
        for role, v in sorted(c.items(), key=lambda kv: -kv[1]):
            if role not in ("total", "cores", "machine cores") and v >= 0.001:
                print(f"      {role:40} {1000 * v:6.1f} ms/MiB")
    print(
        "\n  The target, 80% of the lower ceiling, against what the path's CPU per MiB allows on this machine:"
    )
    for path, comm in PATHS.items():
        lower = min(summary[comm]["MiB/s"], summary[PAGE_BEST]["MiB/s"])
        s = summary[path]
        summary[path]["target"] = 0.8 * lower
        print(
            f"  {path:16} {s['MiB/s']:6.2f} MiB/s = {100 * s['MiB/s'] / lower:3.0f}% of {lower:.2f}; "
            f"target {0.8 * lower:6.2f}; bound {s['bound']:6.2f} ({100 * s['bound'] / lower:3.0f}% of the ceiling)"
        )
    return summary
