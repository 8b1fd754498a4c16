"""Soak: many call/hang-up cycles, each followed by a 1 MiB send, and whether the process comes back to its level.

    .venv/bin/python bench/soak.py [--peer-cycles 1000] [--phone-cycles 200] [--warmup 20] [--only peers|phones]
                                   [--trace 15]

Peers: two :class:`~nbcall.Peer` in this process (aiortc, the kernel's background loop, its signaling server).
Phones: two browser phones in one page of a real JupyterLab + Chromium; the cycles run in the kernel, and the
figures are the kernel process's. For each: the process's RSS, open file descriptors, asyncio tasks on nbcall's
background loop and threads, after ``--warmup`` cycles, in the middle and at the end (each after a short settle
and a garbage collection), and the RSS once more after glibc's ``malloc_trim(0)`` gave the allocator's free pages
back: what the first keeps above the second is fragmentation, not memory in use. Verdict: fds, tasks and threads
back to their warm-up level, RSS within 10% of it. ``--trace N`` (Peers) also compares tracemalloc snapshots and
the live objects by type between the warm-up and the end, and prints the N largest growths.
Runs itself inside a loopback-only network namespace (needs root), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

#: What a settled process is made of; the same code runs here and in the notebook's kernel.
MEASURE = '''
import asyncio as _asyncio, ctypes as _ctypes, gc as _gc, os as _os, time as _time
from nbcall.call import kernel as _kernel

def soak_rss():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])

def soak_trim():
    """Have glibc give its free pages back (malloc_trim); False where there is no glibc."""
    try:
        return bool(_ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False

def soak_figures(settle=1.0):
    """The process's RSS (MiB), open fds, tasks on nbcall's loop and threads, once calls have wound down."""
    _time.sleep(settle)  # connections retire a moment after a hang-up (Engine.close_grace)
    _gc.collect()
    async def tasks():
        return len(_asyncio.all_tasks())
    rss, threads = soak_rss()
    figures = {
        "rss_mib": rss,
        "fds": len(_os.listdir("/proc/self/fd")),
        "tasks": _kernel.run(tasks(), timeout=10),
        "threads": threads,
    }
    if soak_trim():
        figures["trimmed_mib"] = soak_rss()[0]
    return figures
'''

PHONES_SETUP = (
    """import asyncio, json, os, time
import nbcall
a = nbcall.Phone("A", max_log=50, max_messages=1)
b = nbcall.Phone("B", auto_answer=True, max_log=50, max_messages=1)
display(a, b)
"""
    + MEASURE
)

PHONE_CYCLES = """\
_t0 = time.perf_counter()
for _ in range({n}):
    a.call("B")
    await a.wait_for("connected", timeout=30)
    await b.wait_for("connected", timeout=30)
    _arrived = asyncio.ensure_future(b.next_message(timeout=60))
    await asyncio.sleep(0)
    a.send(os.urandom(2**20))
    assert len((await _arrived).data) == 2**20
    a.hangup()
    await b.wait_for("ended", timeout=30)
    await a.wait_for("ended", timeout=30)
print("@@" + json.dumps({{**soak_figures(), "seconds": time.perf_counter() - _t0}}))
"""


PAGE_HEAP_JS = """async () => {
  if (window.gc) window.gc();
  await new Promise((resolve) => setTimeout(resolve, 500));
  return performance.memory ? performance.memory.usedJSHeapSize / 2 ** 20 : null;
}"""


def in_loopback_namespace() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


class Trace:
    """tracemalloc snapshots and live objects by type, to tell a leak in Python from the allocator's keeping."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.before: tuple[object, dict[str, int]] | None = None

    @staticmethod
    def _take() -> tuple[object, dict[str, int]]:
        import collections
        import gc
        import tracemalloc

        gc.collect()
        counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        return tracemalloc.take_snapshot(), dict(counts)

    def mark(self) -> None:
        """Start here: what is allocated from now on and still held at the end is the growth (tracemalloc slows
        the cycles down several times, so the warm-up runs without it)."""
        import tracemalloc

        tracemalloc.start(1)
        self.before = self._take()

    def report(self, cycles: int) -> str:
        assert self.before is not None
        (old, old_counts), (new, new_counts) = self.before, self._take()
        diffs = new.compare_to(old, "lineno")  # type: ignore[attr-defined]
        lines = [
            f"tracemalloc, the warm-up to the end ({cycles} cycles): {sum(d.size_diff for d in diffs) / 2**20:+.2f} MiB"
        ]
        for d in diffs[: self.top]:
            lines.append(f"  {d.size_diff / 1024:+9.1f} KiB {d.count_diff:+7d} blocks  {d.traceback[0]}")
        growth = sorted(((new_counts.get(k, 0) - old_counts.get(k, 0), k) for k in new_counts), reverse=True)
        lines.append("live objects by type, the largest growths:")
        lines += [f"  {n:+7d} {name}" for n, name in growth[: self.top] if n > 0] or ["  none"]
        return "\n".join(lines)


def peer_soak(cycles: int, warmup: int, trace: int = 0) -> list[tuple[str, dict[str, float]]]:
    import threading

    from nbcall import Peer

    namespace: dict[str, object] = {}
    exec(MEASURE, namespace)  # noqa: S102 (our own code, shared with the notebook)
    figures = namespace["soak_figures"]
    # Each keeps its last message only: 100 messages of 1 MiB kept (the default) are not a leak.
    a, b = Peer("A", max_log=50, max_messages=1), Peer("B", auto_answer=True, max_log=50, max_messages=1)
    arrived = threading.Event()
    b.on_message(lambda m: arrived.set() if m.size == 2**20 else None)
    points = sorted({warmup, warmup + (cycles - warmup) // 2, cycles})
    rows: list[tuple[str, dict[str, float]]] = []
    tracing = Trace(trace) if trace else None
    t0 = time.perf_counter()
    try:
        for n in range(1, cycles + 1):
            arrived.clear()
            a.call("B")
            a.wait("connected", timeout=30)
            b.wait("connected", timeout=30)
            a.send(os.urandom(2**20)).result(30)
            if not arrived.wait(30 if tracing is None else 300):
                raise TimeoutError(f"cycle {n}: the 1 MiB message did not arrive")
            a.hangup()
            b.wait("ended", timeout=30)
            a.wait("ended", timeout=30)
            if n in points:
                label = "warm-up" if n == warmup else "end" if n == cycles else "middle"
                rows.append((f"{label} ({n})", {**figures(), "seconds": time.perf_counter() - t0}))  # type: ignore[operator]
                t0 = time.perf_counter()
                print(f"  peers {label:8} after {n:5} cycles: {rows[-1][1]}", flush=True)
                if tracing is not None and n == warmup:
                    tracing.mark()
        if tracing is not None:
            print(tracing.report(cycles - warmup), flush=True)
    finally:
        a.close()
        b.close()
    return rows


def phone_soak(cycles: int, warmup: int) -> list[tuple[str, dict[str, float]]]:
    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import sync_playwright

    rows: list[tuple[str, dict[str, float]]] = []
    middle = (cycles - warmup) // 2
    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        nb = lab.open(page, lab.write_notebook("soak.ipynb", [PHONES_SETUP]))
        nb.run_all()
        page.wait_for_selector(".nbcall-phone[data-user='B']", timeout=30_000)
        nb.wait_idle()
        done = 0
        for label, n in (("warm-up", warmup), ("middle", middle), ("end", cycles - warmup - middle)):
            result = json.loads(nb.run(PHONE_CYCLES.format(n=n)).split("@@", 1)[1])
            # For information (no verdict): the page's JavaScript heap, after a collection where Chromium allows.
            result["page_heap_mib"] = page.evaluate(PAGE_HEAP_JS)
            done += n
            rows.append((f"{label} ({done})", result))
            print(f"  phones {label:8} after {done:5} cycles: {result}", flush=True)
        browser.close()
    return rows


def verdict(rows: list[tuple[str, dict[str, float]]]) -> list[str]:
    """What did not come back to its warm-up level (empty: all did)."""
    base, end = rows[0][1], rows[-1][1]
    problems = [
        f"{key} {base[key]:.0f} after warm-up, {end[key]:.0f} at the end"
        for key in ("fds", "tasks", "threads")
        if end[key] > base[key]
    ]
    if end["rss_mib"] > 1.10 * base["rss_mib"]:
        problems.append(
            f"RSS {base['rss_mib']:.1f} MiB after warm-up, {end['rss_mib']:.1f} MiB at the end (> +10%)"
        )
    return problems


def table(title: str, rows: list[tuple[str, dict[str, float]]]) -> str:
    # seconds: the wall time of the cycles since the row before (calls on a shared machine vary).
    # trimmed: the RSS once malloc_trim(0) gave the allocator's free pages back (nan without glibc).
    lines = [title, f"{'':18}{'RSS MiB':>10}{'trimmed':>9}{'fds':>6}{'tasks':>7}{'threads':>9}{'seconds':>9}"]
    for label, f in rows:
        lines.append(
            f"{label:18}{f['rss_mib']:10.1f}{f.get('trimmed_mib', float('nan')):9.1f}{f['fds']:6.0f}"
            f"{f['tasks']:7.0f}{f['threads']:9.0f}{f['seconds']:9.0f}"
        )
    heap = [f["page_heap_mib"] for _, f in rows if f.get("page_heap_mib") is not None]
    if heap:
        lines.append("page JS heap MiB, for information: " + ", ".join(f"{h:.1f}" for h in heap))
    problems = verdict(rows)
    lines.append(
        "verdict: " + ("OK, back to the warm-up level" if not problems else "LEAK: " + "; ".join(problems))
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--peer-cycles", type=int, default=1000, help="cycles between two Peers (default 1000)"
    )
    parser.add_argument(
        "--phone-cycles", type=int, default=200, help="cycles between two phones (default 200)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="cycles before the first figures (default 20)")
    parser.add_argument("--only", choices=("peers", "phones"), help="run one of the two soaks")
    parser.add_argument(
        "--trace", type=int, default=0, metavar="N", help="Peers: print the N largest growths (tracemalloc)"
    )
    args = parser.parse_args()
    if not in_loopback_namespace():
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))
    reports, failed = [], False
    if args.only in (None, "peers"):
        rows = peer_soak(args.peer_cycles, args.warmup, args.trace)
        reports.append(table(f"Two Peers, {args.peer_cycles} cycles (call, 1 MiB, hang up)", rows))
        failed |= bool(verdict(rows))
    if args.only in (None, "phones"):
        rows = phone_soak(args.phone_cycles, args.warmup)
        reports.append(
            table(f"Two browser phones in one page, {args.phone_cycles} cycles (kernel process)", rows)
        )
        failed |= bool(verdict(rows))
    print("\n" + "\n\n".join(reports))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
