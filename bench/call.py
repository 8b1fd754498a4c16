"""Call setup and data latency of two phones in a real JupyterLab + Chromium, beside an in-page baseline.

    .venv/bin/python bench/call.py [--calls 10] [--sends 50]

nbcall: from ``a.call("B")`` (B answers automatically) until both phones are "connected" in Python with the
data channel open; and from ``a.send(...)`` until B's on_message callback runs.
Baseline, measured in the same page and run: two RTCPeerConnections connected directly to each other (no
signaling at all), from createDataChannel to both channels open; and dc.send to the other side's onmessage.
Runs itself inside a loopback-only network namespace (needs root), like the tests.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

NOTEBOOK_SETUP = """\
import asyncio, json, statistics, time
import nbcall
a = nbcall.Phone("A"); b = nbcall.Phone("B", auto_answer=True)
display(a, b)
"""

MEASURE_CALLS = """\
setup_ms = []
for _ in range({calls}):
    t0 = time.perf_counter()
    a.call("B")
    await a.wait_for("connected", timeout=30)
    await b.wait_for("connected", timeout=30)
    setup_ms.append((time.perf_counter() - t0) * 1000)
    if len(setup_ms) < {calls}:
        a.hangup()
        await b.wait_for("ended")
print("@@" + json.dumps(setup_ms))
"""

MEASURE_SENDS = """\
arrived = []
b.on_message(lambda m: arrived.append(time.perf_counter()))
latency_ms = []
for i in range({sends}):
    n = len(arrived)
    t0 = time.perf_counter()
    a.send({{"seq": i, "payload": "x" * 100}})
    while len(arrived) == n:
        await asyncio.sleep(0)
    latency_ms.append((arrived[-1] - t0) * 1000)
print("@@" + json.dumps(latency_ms))
"""

BASELINE_JS = """async ({calls, sends}) => {
  const setup = [], latency = [];
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now();
    const p1 = new RTCPeerConnection({iceServers: []}), p2 = new RTCPeerConnection({iceServers: []});
    p1.onicecandidate = (e) => e.candidate && p2.addIceCandidate(e.candidate);
    p2.onicecandidate = (e) => e.candidate && p1.addIceCandidate(e.candidate);
    const dc1 = p1.createDataChannel("bench");
    const open1 = new Promise((r) => (dc1.onopen = r));
    const dc2 = new Promise((r) => (p2.ondatachannel = (e) => {
      const ch = e.channel;
      if (ch.readyState === "open") r(ch); else ch.onopen = () => r(ch);
    }));
    await p1.setLocalDescription(await p1.createOffer());
    await p2.setRemoteDescription(p1.localDescription);
    await p2.setLocalDescription(await p2.createAnswer());
    await p1.setRemoteDescription(p2.localDescription);
    const [, ch2] = await Promise.all([open1, dc2]);
    setup.push(performance.now() - t0);
    if (i === calls - 1) {
      for (let s = 0; s < sends; s++) {
        const got = new Promise((r) => (ch2.onmessage = () => r(performance.now())));
        const t = performance.now();
        dc1.send(JSON.stringify({seq: s, payload: "x".repeat(100)}));
        latency.push((await got) - t);
      }
    }
    p1.close(); p2.close();
  }
  return {setup, latency};
}"""


def in_loopback_namespace() -> bool:
    # Ask the kernel for this namespace's interfaces (/sys/class/net would show the host's).
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "min": ordered[0],
        "max": ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=10, help="calls to set up (default 10)")
    parser.add_argument("--sends", type=int, default=50, help="messages to time (default 50)")
    args = parser.parse_args()
    if not in_loopback_namespace():
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))

    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        nb = lab.open(page, lab.write_notebook("bench.ipynb", [NOTEBOOK_SETUP]))
        nb.run_all()
        page.wait_for_selector(".nbcall-phone[data-user='B']", timeout=30_000)
        nb.wait_idle()
        values = {}
        for name, code in (("setup", MEASURE_CALLS), ("latency", MEASURE_SENDS)):
            out = nb.run(code.format(calls=args.calls, sends=args.sends))
            values[name] = json.loads(out.split("@@", 1)[1])
        baseline = page.evaluate(BASELINE_JS, {"calls": args.calls, "sends": args.sends})
        browser.close()

    rows = [
        ("call setup (ms)", summary(values["setup"]), summary(baseline["setup"])),
        ("send -> callback (ms)", summary(values["latency"]), summary(baseline["latency"])),
    ]
    print(f"\n{args.calls} calls, {args.sends} sends; nbcall through the kernel relay vs in-page baseline")
    print(f"{'':24}{'nbcall median':>14}{'p90':>8}{'baseline median':>17}{'p90':>8}{'ratio':>8}")
    for label, ours, base in rows:
        ratio = ours["median"] / base["median"] if base["median"] else float("nan")
        print(
            f"{label:24}{ours['median']:14.1f}{ours['p90']:8.1f}{base['median']:17.2f}{base['p90']:8.2f}"
            f"{ratio:7.1f}x"
        )
    result = {"nbcall": values, "baseline": baseline, "args": vars(args)}
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "call-latest.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
