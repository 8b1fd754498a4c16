"""Call setup and data latency of two phones in a real JupyterLab + Chromium, beside an in-page baseline.

    .venv/bin/python bench/call.py [--calls 10] [--sends 50] [--video-calls 5]

nbcall: from ``a.call("B")`` (B answers automatically) until both phones are "connected" in Python with the
data channel open; and from ``a.send(...)`` until B's on_message callback runs.
Baseline, measured in the same page and run: two RTCPeerConnections connected directly to each other (no
signaling at all), from createDataChannel to both channels open; and dc.send to the other side's onmessage.
Video (Chromium's fake camera and microphone): from ``va.call("VB")`` (wall clock, in the kernel) until the
caller's widget shows a first remote frame (wall clock, in the page; polled every animation frame, so up to
~17 ms late). Baseline: two connections in the page, from getUserMedia on both sides to a first frame in a
<video>, polled the same way.
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

NOTEBOOK_SETUP = """\
import asyncio, json, statistics, time
import nbcall
a = nbcall.Phone("A", max_log=10_000); b = nbcall.Phone("B", auto_answer=True, max_log=10_000)
va = nbcall.Phone("VA", video=True, audio=True); vb = nbcall.Phone("VB", video=True, audio=True, auto_answer=True)
display(a, b, va, vb)
"""

MEASURE_CALLS = """\
setup_ms, starts, ends = [], [], []
for _ in range({calls}):
    starts.append(time.time() * 1000)
    t0 = time.perf_counter()
    a.call("B")
    await a.wait_for("connected", timeout=30)
    await b.wait_for("connected", timeout=30)
    setup_ms.append((time.perf_counter() - t0) * 1000)
    ends.append(time.time() * 1000)
    if len(setup_ms) < {calls}:
        a.hangup()
        await b.wait_for("ended")
        await asyncio.sleep(0.05)
logs = {{"A": a.log, "B": b.log}}
print("@@" + json.dumps({{"setup": setup_ms, "starts": starts, "ends": ends, "logs": logs}}, default=repr))
"""

# Records when each RTCPeerConnection of the page reaches each step (wall clock, ms), for the timeline.
TIMELINE_INIT_JS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__timeline = [];
  let next = 0;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      const id = next++, mark = (step) => window.__timeline.push({pc: id, step, t: Date.now()});
      mark("created");
      this.addEventListener("connectionstatechange", () => mark("connection-" + this.connectionState));
      this.addEventListener("datachannel", (e) => e.channel.addEventListener("open", () => mark("channel-open")));
      this.__mark = mark;
    }
    createDataChannel(...args) {
      const channel = super.createDataChannel(...args);
      channel.addEventListener("open", () => this.__mark("channel-open"));
      return channel;
    }
    async setLocalDescription(...args) {
      await super.setLocalDescription(...args);
      this.__mark("local-" + this.localDescription.type);
    }
    async setRemoteDescription(...args) {
      await super.setRemoteDescription(...args);
      this.__mark("remote-" + this.remoteDescription.type);
    }
  };
})();"""

# The steps of one call setup, each ending at (side, source, event): "browser" events come from the page's
# RTCPeerConnections (caller = the offerer), "kernel" ones from the phones' logs (when Python saw it).
TIMELINE_STEPS = [
    ("call() -> A's browser makes its peer connection", "A", "browser", "created"),
    ("A's browser: media, createOffer, setLocalDescription", "A", "browser", "local-offer"),
    ("offer: A's browser -> A's kernel", "A", "kernel", ("out", "call")),
    ("offer: A's kernel -> server -> B's kernel", "B", "kernel", ("in", "call")),
    ("offer: B's kernel -> B's browser (peer connection made)", "B", "browser", "created"),
    ("B's browser: setRemoteDescription, createAnswer, setLocalDescription", "B", "browser", "local-answer"),
    ("answer: B's browser -> B's kernel", "B", "kernel", ("out", "answer")),
    ("answer: B's kernel -> server -> A's kernel", "A", "kernel", ("in", "answer")),
    ("answer: A's kernel -> A's browser, setRemoteDescription", "A", "browser", "remote-answer"),
    ("ICE checks, DTLS, SCTP: both data channels open", "AB", "browser", "channel-open"),
    (
        "channel open: browsers -> kernels (both phones connected)",
        "AB",
        "kernel",
        ("event", "datachannel-open"),
    ),
    ("kernel -> the awaiting cell resumes", "", "end", None),
]

# The callback runs on the kernel's main thread, so it may set an asyncio.Event; a busy loop waiting instead
# would compete for the GIL with the threads that carry the message.
MEASURE_SENDS = """\
arrived = asyncio.Event()
received_at = []
def on_message(m):
    received_at.append(time.perf_counter())
    arrived.set()
b.on_message(on_message)
latency_ms = []
for i in range({sends}):
    arrived.clear()
    t0 = time.perf_counter()
    a.send({{"seq": i, "payload": "x" * 100}})
    await asyncio.wait_for(arrived.wait(), 10)
    latency_ms.append((received_at[-1] - t0) * 1000)
print("@@" + json.dumps(latency_ms))
"""

# Resolves with the wall-clock time (ms) at which a <video> first has a frame to show.
FIRST_FRAME_JS = """(video) => new Promise((resolve) => {
  const poll = () => video.readyState >= 2 && video.videoWidth > 0
    ? resolve(performance.timeOrigin + performance.now()) : requestAnimationFrame(poll);
  poll();
})"""

WATCH_REMOTE_VIDEO_JS = f"""() => {{
  const video = document.querySelector(".nbcall-phone[data-user='VA'] .nbcall-remote-video");
  window.firstFrame = ({FIRST_FRAME_JS})(video);
}}"""

VIDEO_CALL = """\
t0 = time.time()
va.call("VB")
await va.wait_for("connected", timeout=30)
print("@@" + json.dumps(t0 * 1000))
"""

VIDEO_HANGUP = 'va.hangup()\nawait vb.wait_for("ended")\nawait asyncio.sleep(0.2)'

VIDEO_BASELINE_JS = f"""async (calls) => {{
  const firstFrame = {FIRST_FRAME_JS};
  const out = [];
  for (let i = 0; i < calls; i++) {{
    const t0 = performance.timeOrigin + performance.now();
    const media = {{audio: true, video: true}};
    const [s1, s2] = await Promise.all([navigator.mediaDevices.getUserMedia(media),
                                        navigator.mediaDevices.getUserMedia(media)]);
    const p1 = new RTCPeerConnection({{iceServers: []}}), p2 = new RTCPeerConnection({{iceServers: []}});
    p1.onicecandidate = (e) => e.candidate && p2.addIceCandidate(e.candidate);
    p2.onicecandidate = (e) => e.candidate && p1.addIceCandidate(e.candidate);
    s1.getTracks().forEach((t) => p1.addTrack(t, s1));
    s2.getTracks().forEach((t) => p2.addTrack(t, s2));
    const video = Object.assign(document.createElement("video"), {{muted: true, autoplay: true}});
    video.style = "position: fixed; top: 0; left: 0; width: 160px";
    document.body.append(video);
    p1.ontrack = (e) => {{ video.srcObject = e.streams[0]; }};
    await p1.setLocalDescription(await p1.createOffer());
    await p2.setRemoteDescription(p1.localDescription);
    await p2.setLocalDescription(await p2.createAnswer());
    await p1.setRemoteDescription(p2.localDescription);
    out.push((await firstFrame(video)) - t0);
    [...s1.getTracks(), ...s2.getTracks()].forEach((t) => t.stop());
    p1.close(); p2.close(); video.remove();
  }}
  return out;
}}"""

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


def timeline(calls: dict, browser: list[dict]) -> list[tuple[str, float]]:
    """Median milliseconds of each step of call setup (TIMELINE_STEPS), over the measured calls."""

    def kernel_time(side: str, direction: str, kind: str, n: int) -> float:
        entries = [e for e in calls["logs"][side] if (e["dir"], e["type"]) == (direction, kind)]
        return entries[n]["t"] * 1000

    def browser_time(pc: int, step: str) -> float:
        return next(e["t"] for e in browser if e["pc"] == pc and e["step"] == step)

    per_step: list[list[float]] = [[] for _ in TIMELINE_STEPS]
    for n, start in enumerate(calls["starts"]):
        pcs = {"A": 2 * n, "B": 2 * n + 1}  # per call, the caller's connection is made first
        previous = start
        for i, (_, sides, source, event) in enumerate(TIMELINE_STEPS):
            if source == "end":
                t = calls["ends"][n]
            elif source == "browser":
                t = max(browser_time(pcs[side], event) for side in sides)
            else:
                t = max(kernel_time(side, *event, n) for side in sides)
            per_step[i].append(t - previous)
            previous = t
    return [(step[0], statistics.median(ms)) for step, ms in zip(TIMELINE_STEPS, per_step)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=10, help="calls to set up (default 10)")
    parser.add_argument("--sends", type=int, default=50, help="messages to time (default 50)")
    parser.add_argument("--video-calls", type=int, default=5, help="video calls to time (default 5)")
    args = parser.parse_args()
    if not in_loopback_namespace():
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))

    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.add_init_script(script=TIMELINE_INIT_JS)
        nb = lab.open(page, lab.write_notebook("bench.ipynb", [NOTEBOOK_SETUP]))
        nb.run_all()
        page.wait_for_selector(".nbcall-phone[data-user='VB']", timeout=30_000)
        nb.wait_idle()
        calls = json.loads(nb.run(MEASURE_CALLS.format(calls=args.calls)).split("@@", 1)[1])
        steps = timeline(calls, page.evaluate("() => window.__timeline"))
        values = {"setup": calls["setup"]}
        values["latency"] = json.loads(nb.run(MEASURE_SENDS.format(sends=args.sends)).split("@@", 1)[1])
        values["first_frame"] = []
        for _ in range(args.video_calls):
            page.evaluate(WATCH_REMOTE_VIDEO_JS)
            t0 = json.loads(nb.run(VIDEO_CALL).split("@@", 1)[1])
            values["first_frame"].append(page.evaluate("() => window.firstFrame") - t0)
            nb.run(VIDEO_HANGUP)
        baseline = page.evaluate(BASELINE_JS, {"calls": args.calls, "sends": args.sends})
        baseline["first_frame"] = page.evaluate(VIDEO_BASELINE_JS, args.video_calls)
        browser.close()

    rows = [
        ("call setup (ms)", summary(values["setup"]), summary(baseline["setup"])),
        ("send -> callback (ms)", summary(values["latency"]), summary(baseline["latency"])),
        ("call -> 1st video frame (ms)", summary(values["first_frame"]), summary(baseline["first_frame"])),
    ]
    print(
        f"\n{args.calls} calls, {args.sends} sends, {args.video_calls} video calls; "
        "nbcall through the kernel relay vs in-page baseline"
    )
    print(f"{'':30}{'nbcall median':>14}{'p90':>8}{'baseline median':>17}{'p90':>8}{'ratio':>8}")
    for label, ours, base in rows:
        ratio = ours["median"] / base["median"] if base["median"] else float("nan")
        print(
            f"{label:30}{ours['median']:14.1f}{ours['p90']:8.1f}{base['median']:17.2f}{base['p90']:8.2f}"
            f"{ratio:7.1f}x"
        )
    print("\nWhere call setup's milliseconds go (median per step; wall clock in the page and the kernel):")
    for label, ms in steps:
        print(f"  {label:72}{ms:7.1f}")
    print(f"  {'sum of the step medians':72}{sum(ms for _, ms in steps):7.1f}")
    result = {"nbcall": values, "baseline": baseline, "timeline": steps, "args": vars(args)}
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "call-latest.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
