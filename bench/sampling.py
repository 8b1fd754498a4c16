"""Memory sampling for bench/throughput.py: the RSS of processes (psutil, 10 Hz, on a thread) and the page's JS
heap (CDP), each as its idle value and its peak."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil

MIB = 2**20


class Peaks:
    """The resident memory (RSS) of processes, by name, sampled with psutil at 10 Hz on a thread: each one's idle
    RSS (the highest of a second's samples before the transfer starts) and its peak until stopped. A name may
    stand for several processes (Chromium's renderers), whose RSS is summed."""

    INTERVAL = 0.1

    def __init__(self, pids: dict[str, list[int]], idle_seconds: float = 1.0) -> None:
        self.procs = {name: [psutil.Process(pid) for pid in group] for name, group in pids.items()}
        self.idle = {name: 0 for name in self.procs}
        for _ in range(max(1, round(idle_seconds / self.INTERVAL))):
            for name, group in self.procs.items():
                self.idle[name] = max(self.idle[name], self.rss(group))
            time.sleep(self.INTERVAL)
        self.peak = dict(self.idle)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def watch(self, name: str, pid: int) -> None:
        """Sample one more process from now on (a command started after the sampling)."""
        self.procs[name] = [psutil.Process(pid)]
        self.idle.setdefault(name, 0)
        self.peak.setdefault(name, 0)

    @staticmethod
    def rss(group: list[psutil.Process]) -> int:
        total = 0
        for proc in group:
            with contextlib.suppress(psutil.Error):  # it ended: it holds nothing
                total += proc.memory_info().rss
        return total

    def sample(self) -> None:
        while not self.stopped.wait(self.INTERVAL):
            for name, group in list(self.procs.items()):
                self.peak[name] = max(self.peak[name], self.rss(group))

    def stop(self) -> dict[str, dict[str, float]]:
        """Each process's idle and peak RSS and the difference, in MiB."""
        self.stopped.set()
        self.thread.join()
        return {name: mib_figures(self.idle[name], self.peak[name]) for name in self.procs}


def mib_figures(idle: float, peak: float) -> dict[str, float]:
    return {"idle": idle / MIB, "peak": peak / MIB, "above": (peak - idle) / MIB}


class PageHeap:
    """The page's JS heap (``JSHeapUsedSize`` of CDP's ``Performance.getMetrics``): its value before a transfer
    and its peak, sampled by the bench's own thread whenever it waits (Playwright's API is not thread-safe)."""

    def __init__(self, page: Any) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Performance.enable")
        self.idle = self.read()
        self.peak = self.idle
        self.next = 0.0

    def read(self) -> int:
        metrics = self.cdp.send("Performance.getMetrics")["metrics"]
        return int(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))

    def tick(self) -> None:
        if time.monotonic() >= self.next:
            self.next = time.monotonic() + Peaks.INTERVAL
            self.peak = max(self.peak, self.read())

    def stop(self) -> dict[str, float]:
        self.tick()
        return mib_figures(self.idle, self.peak)

    def collect(self) -> None:
        """A full garbage collection in the page (ArrayBuffers no longer referenced are freed)."""
        self.cdp.send("HeapProfiler.collectGarbage")
        self.cdp.detach()


#: The role of Chromium's renderer processes (the page's JavaScript, and WebRTC's DTLS and SCTP).
RENDERERS = "Chromium: renderers (the page)"


def role(cmdline: list[str]) -> str:
    """The part a process of the bench plays, from its command line."""
    line = " ".join(cmdline)
    if "chrom" in (cmdline[0] if cmdline else ""):
        for flag, name in (
            ("--type=renderer", RENDERERS),
            ("--type=gpu-process", "Chromium: GPU"),
            ("network.mojom", "Chromium: network service"),
        ):
            if flag in line:
                return name
        kind = next((a.split("=", 1)[1] for a in cmdline if a.startswith("--type=")), None)
        if kind:
            return f"Chromium: {kind}"
        return (
            "Chromium: browser"
            if cmdline[0].endswith("/chromium")
            else f"Chromium: {cmdline[0].rsplit('/', 1)[-1]}"
        )
    if "ipykernel" in line:
        return "the kernel"
    if "jupyter" in line:
        return "the Jupyter server"
    if "playwright" in line or "run-driver" in line:
        return "bench: Playwright's driver"
    return "other: " + (cmdline[0].rsplit("/", 1)[-1] if cmdline else "?")


def renderers() -> list[int]:
    """The pids of Chromium's renderer processes started under this one (through Playwright's driver)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if role(proc.cmdline()) == RENDERERS:
                found.append(proc.pid)
    return found


class CpuUse:
    """CPU seconds, between its start and :meth:`stop`, of every process of the bench (itself and all it
    started) by :func:`role`, and of the whole machine (``/proc/stat``: every process, the kernel's network
    work included). ``threads`` names threads of this process whose time counts apart from the rest of it
    (``{name: callable giving its CPU seconds}``)."""

    def __init__(self, threads: dict[str, Any] | None = None) -> None:
        self.threads = threads or {}
        self.start = self.read()

    def read(self) -> tuple[dict[str, float], float, float]:
        me = psutil.Process()
        by_role: dict[str, float] = {}
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                name = "bench: its own process" if proc.pid == me.pid else role(proc.cmdline())
                times = proc.cpu_times()
                by_role[name] = by_role.get(name, 0.0) + times.user + times.system
        for name, seconds in self.threads.items():
            by_role[name] = seconds()
            by_role["bench: its own process"] -= by_role[name]
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return by_role, busy, time.monotonic()

    def stop(self) -> dict[str, Any]:
        """``{"wall", "machine", "by role"}``: seconds of wall clock, the machine's busy CPU seconds, and each
        role's CPU seconds (a process that ended meanwhile is left out)."""
        (before, busy0, t0), (after, busy1, t1) = self.start, self.read()
        return {
            "wall": t1 - t0,
            "machine": busy1 - busy0,
            "by role": {name: after[name] - before[name] for name in after if name in before},
        }
