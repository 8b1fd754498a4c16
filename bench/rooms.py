"""Rooms in a real JupyterLab + Chromium: how long a full mesh takes to connect, beside a 1:1 call in the same
run, and how long a broadcast takes to reach every member, beside a 1:1 send.

    .venv/bin/python bench/rooms.py [--trials 5] [--sizes 2,4,6] [--sends 30]

Room setup: every invitee rings (invited at once by the creator), then each answers in turn; measured from the
last ``answer()`` (the last acceptance) until every member's ``connections`` are all "connected" (each data
channel open, as Python sees it). Also reported: from ``invite()`` to the same end. 1:1 call setup: from
``a.call("B")`` (B answers automatically) until both are "connected", as bench/call.py measures it.
Broadcast: from ``send(data)`` in a room of four until the on_message callbacks of all three others ran; 1:1:
until the one peer's callback ran. All phones are data-only, in one kernel and one page (the browser holds
both ends of every link: a room of n costs the page n(n-1) peer connections, and Chrome allows a tab 500 in
its lifetime, so keep trials x sizes modest).
Runs itself inside a loopback-only network namespace (needs root), like the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e"), str(ROOT / "bench")]

from call import in_loopback_namespace, summary

SETUP = """\
import asyncio, json, time
import nbcall
a = nbcall.Phone("A"); b = nbcall.Phone("B", auto_answer=True)
p = [nbcall.Phone(f"P{{i}}", max_log=5_000) for i in range({most})]
display(a, b, *p)
"""

ONE_TO_ONE = """\
setup_ms = []
for _ in range({trials}):
    t0 = time.perf_counter()
    a.call("B")
    await a.wait_for("connected", timeout=30)
    await b.wait_for("connected", timeout=30)
    setup_ms.append((time.perf_counter() - t0) * 1000)
    a.hangup()
    await b.wait_for("ended")
    await asyncio.sleep(0.1)
print("@@" + json.dumps(setup_ms))
"""

ROOM = """\
async def all_connected(members, timeout=30):
    for m in members:
        await m.wait_for_members(timeout=timeout)

from_accept, from_invite = [], []
for _ in range({trials}):
    members = p[:{size}]
    t_invite = time.perf_counter()
    members[0].invite(*(m.user_id for m in members[1:]))
    for m in members[1:]:
        await m.wait_for("ringing", timeout=10)
    for m in members[1:]:
        m.answer()
    t_accept = time.perf_counter()
    await all_connected(members)
    t_end = time.perf_counter()
    from_accept.append((t_end - t_accept) * 1000)
    from_invite.append((t_end - t_invite) * 1000)
    for m in members:
        m.leave()
    await asyncio.sleep(0.3)
print("@@" + json.dumps({{"from_accept": from_accept, "from_invite": from_invite}}))
"""

# The callbacks run on the kernel's main thread: they count arrivals and set an asyncio.Event when all came.
SENDS = """\
async def timed_sends(sender, receivers, sends, **kw):
    done, got, loop = asyncio.Event(), [0], asyncio.get_running_loop()
    def arrived(m):
        got[0] += 1
        if got[0] == len(receivers):
            # Woken through the loop's own queue: the callback may run outside the loop's turn, where a bare
            # Event.set() is seen only when something else wakes the loop (about a second later, measured).
            loop.call_soon_threadsafe(done.set)
    for r in receivers:
        r.on_message(arrived)
    out = []
    for i in range(sends):
        done.clear(); got[0] = 0
        t0 = time.perf_counter()
        sender.send({{"seq": i, "payload": "x" * 100}}, **kw)
        await asyncio.wait_for(done.wait(), 10)
        out.append((time.perf_counter() - t0) * 1000)
    return out

a.call("B")
await a.wait_for("connected", timeout=30)
one = await timed_sends(a, [b], {sends})
a.hangup()
room = p[:4]
room[0].invite(*(m.user_id for m in room[1:]))
for m in room[1:]:
    await m.wait_for("ringing", timeout=10)
    m.answer()
for m in room:
    await m.wait_for_members(timeout=30)
broadcast = await timed_sends(room[0], room[1:], {sends})
for m in room:
    m.leave()
print("@@" + json.dumps({{"one": one, "broadcast": broadcast}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5, help="setups timed per size (default 5)")
    parser.add_argument("--sizes", default="2,4,6", help="room sizes (default 2,4,6)")
    parser.add_argument("--sends", type=int, default=30, help="messages timed (default 30)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not in_loopback_namespace():
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))

    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import sync_playwright

    def result(out: str) -> object:
        return json.loads(out.split("@@", 1)[1])

    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        nb = lab.open(page, lab.write_notebook("rooms-bench.ipynb", [SETUP.format(most=max(sizes + [4]))]))
        nb.run_all()
        page.wait_for_selector(f".nbcall-phone[data-user='P{max(sizes + [4]) - 1}']", timeout=30_000)
        nb.wait_idle()
        one_to_one = result(nb.run(ONE_TO_ONE.format(trials=args.trials)))
        rooms = {size: result(nb.run(ROOM.format(trials=args.trials, size=size))) for size in sizes}
        sends = result(nb.run(SENDS.format(sends=args.sends)))
        browser.close()

    assert isinstance(one_to_one, list) and isinstance(sends, dict)
    call = summary(one_to_one)
    print(f"\n{args.trials} setups per row, {args.sends} sends; one kernel, one page, data-only phones")
    print(f"{'':44}{'median':>8}{'p90':>8}{'min':>8}{'max':>8}{'x 1:1':>8}")

    def row(label: str, values: list[float]) -> None:
        s = summary(values)
        print(
            f"{label:44}{s['median']:8.1f}{s['p90']:8.1f}{s['min']:8.1f}{s['max']:8.1f}{s['median'] / call['median']:7.1f}x"
        )

    row("1:1 call setup (ms)", one_to_one)
    for size, r in rooms.items():
        assert isinstance(r, dict)
        row(f"room of {size}: last acceptance -> mesh up (ms)", r["from_accept"])
        row(f"room of {size}: invite -> mesh up (ms)", r["from_invite"])
    one = summary(sends["one"])
    print(f"\n{'':44}{'median':>8}{'p90':>8}{'min':>8}{'max':>8}{'x 1:1':>8}")
    for label, values in (
        ("1:1 send -> callback (ms)", sends["one"]),
        ("broadcast to 3 -> all callbacks (ms)", sends["broadcast"]),
    ):
        s = summary(values)
        print(
            f"{label:44}{s['median']:8.1f}{s['p90']:8.1f}{s['min']:8.1f}{s['max']:8.1f}{s['median'] / one['median']:7.1f}x"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    payload = {"one_to_one": one_to_one, "rooms": rooms, "sends": sends, "args": vars(args)}
    (out_dir / "rooms-latest.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
