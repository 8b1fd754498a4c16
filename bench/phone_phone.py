"""``bench/throughput.py --phone-phone ROUNDS``: Phone -> Phone alone beside its two ceilings, in alternating rounds,
and optionally where the page's thread and the kernel spend their time (``--cpu-profile FILE``).

Each round measures, one after the other in the same page: Phone -> Phone (C sends to B), the comm round trip
(kernel -> browser -> kernel, no WebRTC), and then both hops at once but uncoupled ("side by side": a comm round
trip in the kernel while two bare connections in the page move the same bytes with the phones' 256 KiB frames and
4 MiB queued), which tells what the two hops get of the machine when they share it. Two bare connections in the
page, at the best of 12 settings, are measured once, after the phones hung up. A first Phone -> Phone warms up
and is not counted. Ratios are taken within a round, so that a machine whose load moves between rounds compares
like with like.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from comm_hop import HOP_SETUP

# The bench runs as a script: its helpers live in __main__ (throughput.py), with its LOADS record.
from __main__ import CEILING_JS, MIB, page_ceiling, phone_to_phone, phones_page, step  # type: ignore[attr-defined]

ROUND_TRIP = "print('@@', await hop.down(os.urandom({size}), True))"


def phone_phone_rounds(server_url: str, size: int, rounds: int, profile: Path | None) -> dict[str, Any]:
    mib = size / MIB
    out: dict[str, Any] = {"rounds": []}
    with phones_page(server_url) as (page, nb):
        nb.run(
            f"import asyncio\nc.call('B'); await c.wait_for('connected', timeout=30)\nblob = os.urandom({size})"
        )
        step("warm-up: Phone -> Phone, not counted")
        warm = phone_to_phone(nb, page, {})
        print(f"  warm-up: Phone -> Phone {mib / warm['seconds']:.2f} MiB/s", flush=True)
        nb.run(HOP_SETUP)
        for n in range(rounds):
            step(f"round {n + 1} of {rounds}: Phone -> Phone")
            p2p = phone_to_phone(nb, page, {})
            step(f"round {n + 1} of {rounds}: comm round trip")
            trip = float(nb.run(ROUND_TRIP.format(size=size)).split("@@")[1].split()[0])
            # The two hops at once but uncoupled: a comm round trip runs in the kernel while two bare connections
            # in the page move the same bytes (the phones' 256 KiB frames, 4 MiB queued).
            step(f"round {n + 1} of {rounds}: comm round trip beside two bare connections")
            nb.run(f"both = asyncio.ensure_future(hop.down(os.urandom({size}), True))")
            bare = page.evaluate(CEILING_JS, [size, 256 * 1024 - 1, 4 * MIB])
            beside = float(nb.run("print('@@', await both)").split("@@")[1].split()[0])
            load = step_load()
            r = {
                "phone -> phone": p2p,
                "comm round trip": trip,
                "load": load,
                "side by side": {"page": bare, "comm": beside},
            }
            out["rounds"].append(r)
            print(
                f"  round {n + 1}: Phone -> Phone {mib / p2p['seconds']:.2f} MiB/s "
                f"({', '.join(f'{k} {v:.2f}' for k, v in p2p['hops'].items())}); comm round trip "
                f"{mib / trip:.2f}; side by side: page {mib / bare:.2f}, comm {mib / beside:.2f}; "
                f"= {trip / p2p['seconds']:.0%} of the round trip; load {load:.1f}",
                flush=True,
            )
        if profile:
            out["profile"] = profiled(nb, page, size, profile)
        # As in throughput.py: the page's ceiling once the phones' call ended.
        nb.run("c.hangup(); await b.wait_for('ended', timeout=10)")
        step("two connections in one page, best of 12")
        out["page"] = page_ceiling(page, size)
    best = min(v["seconds"] for k, v in out["page"].items() if k.startswith("ceiling: one page, best"))
    ratios = [r["comm round trip"] / r["phone -> phone"]["seconds"] for r in out["rounds"]]
    rates = [mib / r["phone -> phone"]["seconds"] for r in out["rounds"]]
    trips = [mib / r["comm round trip"] for r in out["rounds"]]
    lower = min(statistics.median(trips), mib / best)
    out["summary"] = {
        "phone -> phone MiB/s, median": statistics.median(rates),
        "comm round trip MiB/s, median": statistics.median(trips),
        "page best MiB/s": mib / best,
        "% of the round trip in the same round, median": statistics.median(ratios),
        "% of the lower ceiling (medians)": statistics.median(rates) / lower,
        "side by side, comm MiB/s, median": statistics.median(
            mib / r["side by side"]["comm"] for r in out["rounds"]
        ),
        "side by side, page MiB/s, median": statistics.median(
            mib / r["side by side"]["page"] for r in out["rounds"]
        ),
    }
    print(
        f"\nPhone -> Phone, {rounds} rounds: median {statistics.median(rates):.2f} MiB/s "
        f"({' '.join(f'{x:.2f}' for x in rates)}); comm round trip median {statistics.median(trips):.2f} "
        f"({' '.join(f'{x:.2f}' for x in trips)}); page best {mib / best:.2f}\n"
        f"  per round, of the round trip: {' '.join(f'{x:.0%}' for x in ratios)} "
        f"(median {statistics.median(ratios):.0%}); medians against the lower ceiling: "
        f"{statistics.median(rates) / lower:.0%}\n"
        f"  side by side (uncoupled, at once), medians: comm round trip "
        f"{out['summary']['side by side, comm MiB/s, median']:.2f}, page "
        f"{out['summary']['side by side, page MiB/s, median']:.2f}"
    )
    return out


def step_load() -> float:
    return os.getloadavg()[0]


def profiled(nb: Any, page: Any, size: int, path: Path) -> dict[str, Any]:
    """One Phone -> Phone and one comm round trip under the page's CDP sampling profiler, with py-spy on the
    kernel during the Phone -> Phone: each's own time by function."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 250})
    kernel = int(nb.run("print('@@', os.getpid())").split("@@")[1].split()[0])
    result: dict[str, Any] = {}
    for name, run in (
        ("phone -> phone", lambda: phone_to_phone(nb, page, {})["seconds"]),
        ("comm round trip", lambda: float(nb.run(ROUND_TRIP.format(size=size)).split("@@")[1].split()[0])),
    ):
        step(f"profiled: {name}")
        spy_out = path.with_suffix(f".{name.split()[0]}.kernel.txt")
        spy = subprocess.Popen(
            [
                os.environ.get("NBCALL_PY_SPY") or shutil.which("py-spy") or "py-spy",
                "record",
                "-p",
                str(kernel),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(spy_out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        cdp.send("Profiler.start")
        seconds = run()
        prof = cdp.send("Profiler.stop")["profile"]
        spy.send_signal(2)
        spy.wait(30)
        Path(path.with_suffix(f".{name.split()[0]}.cpuprofile")).write_text(json.dumps(prof))
        page_top = self_times(prof)
        kernel_top = spy_times(spy_out)
        result[name] = {"seconds": seconds, "page": page_top, "kernel": kernel_top}
        print(f"\n{name}: {seconds:.2f} s. The page's thread, own time (ms) by function:")
        for fn, ms in list(page_top.items())[:25]:
            print(f"  {ms:8.1f}  {fn}")
        print("The kernel (py-spy, samples at 200 Hz, own time by function, all threads):")
        for fn, n in list(kernel_top.items())[:20]:
            print(f"  {n:6d}  {fn}")
    cdp.send("Profiler.disable")
    return result


def self_times(prof: dict[str, Any]) -> dict[str, float]:
    """Own time (ms) per function of a CDP ``Profiler.Profile``, highest first."""
    frames = {}
    for node in prof["nodes"]:
        cf = node["callFrame"]
        url = cf.get("url", "").rsplit("/", 1)[-1].split("?")[0]
        frames[node["id"]] = f"{cf['functionName'] or '(anonymous)'} {url}:{cf.get('lineNumber', 0) + 1}"
    own: collections.Counter[str] = collections.Counter()
    for sample, delta in zip(prof["samples"], prof["timeDeltas"][1:] + [0], strict=True):
        own[frames[sample]] += delta / 1000
    return {k: round(v, 1) for k, v in own.most_common()}


def spy_times(path: Path) -> dict[str, int]:
    """Own samples per innermost function of a py-spy raw (collapsed stacks) file, highest first."""
    own: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf] += int(count)
    return dict(own.most_common(40))
