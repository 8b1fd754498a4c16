"""Rooms on a Janus SFU beside mesh rooms, in one real JupyterLab + Chromium run: setup, broadcast latency, the
presenter's upload, and Chromium's and Janus's CPU.

    .venv/bin/python bench/sfu.py [--sfu 2,4,6,10,16] [--mesh 1,3,5] [--browser-max 16] [--sends 10]

Every room has one presenter, the browser phone T with a 320x240 camera (Chromium's fake device), and N
data-only members (``--sfu`` and ``--mesh`` give the N of each room; a mesh room of N members plus T is a room
of N + 1, and nbcall's mesh stops at 6). Members are browser phones in the same page while N <= ``--browser-max``
and Python :class:`~nbcall.Peer` s (aiortc, in the kernel) past it: the report says which. One kernel runs the
signaling server and a Janus started with :func:`nbcall.teach.janus.start_janus`.

Per room:
- *setup*: the first member invites the others and T, each rings, then each answers in turn, T last (in a mesh
  the joiner offers, and a data-only member's offer has no video section for T to answer with its camera); from the last ``answer()`` until
  every member's ``wait_for_members()`` returned (each member has every other's feed or link open);
- *broadcast*: ``T.send(...)`` of a 100-byte message until every member's on_message callback ran (median of
  ``--sends``), and the time to the first member;
- *upload*: after ``--settle`` seconds of video, the ``bytesSent`` of every outbound-rtp stream in the page over
  ``--window`` seconds (only T sends media, so that is T's video upload), as kbit/s; in a mesh T sends one copy
  per member, through the SFU one in all;
- *CPU*: Chromium's (every process of the browser this bench started), Janus's and the kernel's, in % of one
  core, during setup + broadcasts and during the upload window.
Runs itself inside a loopback-only network namespace with the veth ``jns0`` carrying 127.0.0.2 (Janus skips
loopback interfaces for ICE), like scripts/test.sh; needs root. Writes bench/results/sfu-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

NAMESPACE = (
    "ip link set lo up && ip link add jns0 type veth peer name jns1 && ip addr add 127.0.0.2/32 dev jns0 && "
    'ip link set jns1 up && ip link set jns0 up && exec "$@"'
)

SETUP = """\
import asyncio, json, os, time
import nbcall
from nbcall.teach.janus import start_janus
janus = start_janus(interface="jns0")
server = nbcall.serve(sfu=janus.url, sfu_secret=janus.api_secret)
t = nbcall.Phone("T", video={{"width": 320, "height": 240}}, max_log=5_000)
phones = [nbcall.Phone(f"M{{i}}", max_log=5_000) for i in range({phones})]
peers = [nbcall.Peer(f"Q{{i}}") for i in range({peers})]
_handler = [None]
for _x in [t, *phones, *peers]:
    _x.on_message(lambda m: _handler[0] and _handler[0](m))
display(t, *phones)
print("@@" + json.dumps({{"janus": janus.pid, "kernel": os.getpid()}}))
"""

# The on_message callbacks count arrivals and wake the waiting cell through the loop's own queue (a callback may
# run outside the loop's turn, see bench/rooms.py).
ROOM = """\
members = ([*phones[:{n}]] if {n} <= len(phones) else [*peers[:{n}]])
everyone = [t, *members]
# The first member invites and T answers last: in a mesh the joiner offers, and only T's own offers carry its video
# (a data-only member's offer has no media section for T to answer with its camera).
invited = [*members[1:], t]
t_invite = time.perf_counter()
members[0].invite(*(m.user_id for m in invited), sfu={sfu})
for m in invited:
    await m.wait_for("ringing", timeout=30)
for m in invited:
    m.answer()
t_accept = time.perf_counter()
for m in everyone:
    await m.wait_for_members(timeout=120)
t_up = time.perf_counter()
loop = asyncio.get_running_loop()
to_all, to_first = [], []
for i in range({sends}):
    done, first, got = asyncio.Event(), asyncio.Event(), [0]
    def arrived(message, done=done, first=first, got=got):
        got[0] += 1
        if got[0] == 1:
            loop.call_soon_threadsafe(first.set)
        if got[0] == len(members):
            loop.call_soon_threadsafe(done.set)
    _handler[0] = arrived
    t0 = time.perf_counter()
    t.send({{"seq": i, "payload": "x" * 100}})
    await asyncio.wait_for(first.wait(), 30)
    to_first.append((time.perf_counter() - t0) * 1000)
    await asyncio.wait_for(done.wait(), 30)
    to_all.append((time.perf_counter() - t0) * 1000)
_handler[0] = None
print("@@" + json.dumps({{"setup_ms": (t_up - t_accept) * 1000, "invite_ms": (t_up - t_invite) * 1000,
    "to_all": to_all, "to_first": to_first, "mode": t.room_mode, "room_size": len(t.members)}}))
"""

LEAVE = """\
for m in everyone:
    m.leave()
for m in everyone:
    await m.wait_until(lambda m=m: m.room == "", "room", timeout=30)
print("@@" + json.dumps(True))
"""

# Every RTCPeerConnection the page makes, so that the bench can read their getStats().
PCS_INIT_JS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})()"""

UPLOAD_JS = """async () => {
  window.__pcs = window.__pcs.filter((pc) => pc.connectionState !== 'closed');
  let video = 0, streams = 0;
  for (const pc of window.__pcs) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') { video += s.bytesSent; streams += 1; }
    });
  }
  return {video, streams, t: performance.now()};
}"""


def in_namespace() -> bool:
    """True inside the namespace this bench makes (``ip`` sees the veth jns0 there)."""
    shown = subprocess.run(["ip", "-o", "link", "show", "jns0"], capture_output=True, text=True, check=False)
    return shown.returncode == 0


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of these processes so far (those gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> dict[int, str]:
    """Every process under ``root``: pid -> its command name."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        names[int(entry)] = name
        children.setdefault(int(rest.split()[1]), []).append(int(entry))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = names[child]
            todo.append(child)
    return found


class Cpu:
    """CPU % of one core of the browser's processes, Janus and the kernel, between ``start()`` and ``stop()``."""

    def __init__(self, janus: int, kernel: int) -> None:
        self.janus, self.kernel = janus, kernel

    def groups(self) -> dict[str, list[int]]:
        chromium = [pid for pid, name in descendants(os.getpid()).items() if "chrom" in name.lower()]
        return {"chromium": chromium, "janus": [self.janus], "kernel": [self.kernel]}

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.before = {k: cpu_seconds(v) for k, v in self.groups().items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        now = {k: cpu_seconds(v) for k, v in self.groups().items()}
        # A Chromium process that ended within the interval takes its CPU with it: a floor, not an exact figure.
        return {k: round(max(0.0, now[k] - self.before[k]) / wall * 100, 1) for k in now}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sfu", default="2,4,6,10,16", help="data-only members of each SFU room (default 2,4,6,10,16)"
    )
    parser.add_argument("--mesh", default="1,3,5", help="data-only members of each mesh room (default 1,3,5)")
    parser.add_argument("--browser-max", type=int, default=16, help="rooms with more members use Peers (16)")
    parser.add_argument("--sends", type=int, default=10, help="broadcasts timed per room (default 10)")
    parser.add_argument(
        "--settle", type=float, default=4, help="seconds of video before the upload window (4)"
    )
    parser.add_argument("--window", type=float, default=5, help="seconds the upload is measured over (5)")
    args = parser.parse_args()
    if not in_namespace():
        cmd = ["unshare", "-n", "sh", "-c", NAMESPACE, "sh", sys.executable, *sys.argv]
        if os.environ.get("NBCALL_SFU_BENCH_INNER"):
            raise SystemExit(
                "bench/sfu.py: the namespace has no jns0 (needs root for unshare -n and ip link)"
            )
        raise SystemExit(subprocess.call(cmd, env={**os.environ, "NBCALL_SFU_BENCH_INNER": "1"}))
    sfu = [int(s) for s in args.sfu.split(",") if s]
    mesh = [int(s) for s in args.mesh.split(",") if s]
    sizes = sfu + mesh
    phones = max([n for n in sizes if n <= args.browser_max], default=0)
    peers = max([n for n in sizes if n > args.browser_max], default=0)

    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import sync_playwright

    def result(out: str) -> object:
        return json.loads(out.split("@@", 1)[1])

    rows = []
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.add_init_script(PCS_INIT_JS)
        nb = lab.open(page, lab.write_notebook("sfu-bench.ipynb", []))
        pids = result(nb.run(SETUP.format(phones=phones, peers=peers)))
        assert isinstance(pids, dict)
        page.wait_for_selector(".nbcall-phone[data-user='T']", timeout=60_000)
        if phones:
            page.wait_for_selector(f".nbcall-phone[data-user='M{phones - 1}']", timeout=60_000)
        cpu = Cpu(pids["janus"], pids["kernel"])
        # Mesh and SFU rooms alternate by size, so that the machine's load drifts over both alike.
        order = [("mesh", n) for n in mesh] + [("sfu", n) for n in sfu]
        order.sort(key=lambda r: r[1])
        for mode, n in order:
            print(f"{mode} room: T + {n} members ...", flush=True)
            cpu.start()
            room = result(nb.run(ROOM.format(n=n, sfu=mode == "sfu", sends=args.sends)))
            assert isinstance(room, dict) and room["mode"] == mode, room
            busy = cpu.stop()
            time.sleep(args.settle)  # the video's bandwidth estimate ramps up
            cpu.start()
            first = page.evaluate(UPLOAD_JS)
            time.sleep(args.window)
            last = page.evaluate(UPLOAD_JS)
            steady = cpu.stop()
            kbps = (last["video"] - first["video"]) * 8 / (last["t"] - first["t"])
            result(nb.run(LEAVE))
            load.append(os.getloadavg())
            rows.append(
                {
                    "mode": mode,
                    "members": n,
                    "kind": "browser phones" if n <= args.browser_max else "Peers",
                    **room,
                    "upload_kbps": round(kbps, 1),
                    "video_streams": last["streams"],
                    "cpu_setup": busy,
                    "cpu_video": steady,
                }
            )
            print(json.dumps(rows[-1]["cpu_video"]), round(kbps), "kbit/s", flush=True)
        nb.run("t.close(); [p.close() for p in peers]; janus.close()")
        browser.close()

    print(
        f"\nOne kernel, one page; presenter T sends 320x240 video; {args.sends} broadcasts of ~120 B per room"
    )
    print(
        f"load average during the run: {min(x[0] for x in load):.1f} to {max(x[0] for x in load):.1f} (2 cores)"
    )
    head = (
        f"{'room':>5} {'size':>5} {'members':>8} {'as':>8} {'setup ms':>9} {'bcast all':>10} {'first':>6} "
        f"{'T up kbit/s':>12} {'streams':>8} {'per member':>11} {'chromium %':>11} {'janus %':>8} {'kernel %':>9}"
    )
    print(head)
    for r in rows:
        cv, cs = r["cpu_video"], r["cpu_setup"]
        print(
            f"{r['mode']:>5} {r['room_size']:>5} {r['members']:>8} {'browser' if r['kind'] == 'browser phones' else 'Peers':>8} "
            f"{r['setup_ms']:9.0f} {statistics.median(r['to_all']):10.1f} {statistics.median(r['to_first']):6.1f} "
            f"{r['upload_kbps']:12.0f} {r['video_streams']:8} {r['upload_kbps'] / r['members']:11.0f} "
            f"{cs['chromium']:5.0f}/{cv['chromium']:<5.0f} {cs['janus']:3.0f}/{cv['janus']:<4.0f} "
            f"{cs['kernel']:4.0f}/{cv['kernel']:<4.0f}"
        )
    print("(CPU: during setup + broadcasts / during the upload window, % of one core)")
    for mode in ("mesh", "sfu"):
        ups = [(r["members"], r["upload_kbps"]) for r in rows if r["mode"] == mode]
        if ups and ups[0][1] > 0:
            said = ", ".join(f"{n} members {u / ups[0][1]:.1f}x" for n, u in ups)
            print(f"T's upload in a {mode} room, against its smallest: {said}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    payload = {"rows": rows, "load": load, "args": vars(args)}
    (out_dir / "sfu-latest.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
