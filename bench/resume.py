"""The time to resume a file transfer cut half way, against sending it whole again, with `nbcall send` and
`nbcall receive` as a user runs them (real processes, a real signaling server, aiortc).

    unshare -n sh -c 'ip link set lo up && exec "$@"' sh .venv/bin/python bench/resume.py [--mib 1024] [--json F]

Phases, each with a receiver (`nbcall receive`) started fresh into its own folder and timed from the start of
`nbcall send` until it exits 0 (so the figures include each process's start, the call, and hashing):

- whole: the file sent to an empty folder;
- cut: the same, the receiver killed (SIGKILL) once half the file is in its partial file, the sender stopped;
- resumed: a new receiver into the cut folder, the file sent again: it offers what was kept (hashed), the sender
  hashes as much of its file, and only the rest travels.

It runs in a loopback-only network namespace (the command above, as root), as bench/throughput.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import in_loopback_namespace

MIB = 2**20


def nbcall(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "nbcall", *map(str, args)]


def wait_for(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/resume.py: timed out waiting until {what}")
        time.sleep(0.05)


def receiver(url: str, user_id: str, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        nbcall("receive", "-q", "--server", url, "--as", user_id, "--out", out), stderr=subprocess.DEVNULL
    )


def online(url: str, user_id: str) -> None:
    from nbcall import Peer

    with Peer(f"watch-{user_id}", server=url) as watcher:
        wait_for(lambda: user_id in watcher.peers, f"{user_id} is online", 60)


def timed_send(url: str, sender: str, to: str, path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(nbcall("send", "-q", "--server", url, "--as", sender, to, path), capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"bench/resume.py: nbcall send exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stderr


def run_once(url: str, source: Path, work: Path, n: int) -> dict[str, Any]:
    size = source.stat().st_size
    whole_out, cut_out = work / f"whole{n}", work / f"cut{n}"
    got = receiver(url, f"C{n}", cut_out)
    online(url, f"C{n}")
    partial = cut_out / f".{source.name}.nbcall-partial"
    sender = subprocess.Popen(nbcall("send", "-q", "--server", url, "--as", f"SC{n}", f"C{n}", source))
    try:
        wait_for(
            lambda: partial.exists() and partial.stat().st_size >= size // 2, "half the file arrived", 7200
        )
    finally:
        got.kill()
        got.wait()
        sender.send_signal(signal.SIGINT)
        sender.wait(60)
    kept = partial.stat().st_size
    say(f"cut at {kept / MIB:.0f} MiB of {size / MIB:.0f} MiB")

    got = receiver(url, f"R{n}", cut_out)
    online(url, f"R{n}")
    resumed, said = timed_send(url, f"SR{n}", f"R{n}", source)
    got.wait(60)
    if (cut_out / source.name).stat().st_size != size or partial.exists():
        raise SystemExit("bench/resume.py: the resumed file is not whole")
    note = next((line.split(": ", 1)[-1] for line in said.splitlines() if "resumed at" in line), "")
    say(f"resumed in {resumed:.1f} s ({note})")

    got = receiver(url, f"W{n}", whole_out)
    online(url, f"W{n}")
    whole, _ = timed_send(url, f"SW{n}", f"W{n}", source)
    got.wait(60)
    say(f"sent whole in {whole:.1f} s")
    return {
        "whole_s": whole,
        "resumed_s": resumed,
        "kept_bytes": kept,
        "sent_bytes": size - kept,
        "note": note,
    }


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=1, help="runs of the three phases (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not in_loopback_namespace():  # other interfaces would add candidates and routes to every call
        raise SystemExit(
            "bench/resume.py: run it in a loopback-only network namespace (as root): unshare -n sh -c "
            """'ip link set lo up && exec "$@"' sh .venv/bin/python bench/resume.py"""
        )
    import nbcall

    server = nbcall.serve()
    runs = []
    with tempfile.TemporaryDirectory(prefix="nbcall-resume-") as folder:
        work = Path(folder)
        source = work / "data.bin"
        with open(source, "wb") as file:
            file.writelines(os.urandom(MIB) for _ in range(args.mib))
        for n in range(args.runs):
            runs.append(run_once(server.url, source, work, n))
            figures = runs[-1]
            print(
                f"run {n + 1}: {args.mib} MiB sent whole in {figures['whole_s']:.1f} s; cut at "
                f"{figures['kept_bytes'] / MIB:.0f} MiB and resumed in {figures['resumed_s']:.1f} s "
                f"({figures['resumed_s'] / figures['whole_s']:.0%} of the whole send); {figures['note']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"mib": args.mib, "runs": runs}))
    server.close()


if __name__ == "__main__":
    main()
