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


def renderers() -> list[int]:
    """The pids of Chromium's renderer processes started under this one (through Playwright's driver)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "--type=renderer" in proc.cmdline():
                found.append(proc.pid)
    return found
