"""Make the site's pictures from the real widget: JupyterLab and Debian's Chromium, as in the browser tests.

    .venv/bin/python scripts/screenshots.py [--out docs/_static/images]

Writes call.png (two phones in a call: the README's picture), call.gif (a call from the dial to the hang-up,
animated), video.png (a video call with Chromium's fake camera), stats.png (that call's statistics), room.png
(a room of three) and sequence.png (a phone's sequence diagram of its call). Nothing is drawn by hand: each picture is a screenshot of
the widget doing what its caption says. Runs itself inside a loopback-only network namespace (needs root), like
the browser tests; needs the test extra (Playwright, JupyterLab) and the docs extra (Pillow, for the animation).
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

SETUP = """\
import asyncio, ipywidgets, nbcall
a = nbcall.Phone("alice"); b = nbcall.Phone("bob")
ipywidgets.HBox([a, b])
"""
VIDEO = """\
va = nbcall.Phone("carol", video=True, audio=True); vb = nbcall.Phone("dave", video=True, audio=True)
ipywidgets.HBox([va, vb])
"""
ROOM = """\
r1 = nbcall.Phone("ann", auto_answer=True); r2 = nbcall.Phone("ben", auto_answer=True)
r3 = nbcall.Phone("cat", auto_answer=True)
ipywidgets.HBox([r1, r2, r3])
"""
# The animation's frames: (what runs in the kernel, how long the frame shows in ms).
CALL_STEPS = [
    ("", 1200),
    ('a.call("bob")\nawait b.wait_for("ringing")', 1500),
    (
        'b.answer()\nawait a.wait_for("connected", timeout=20)\nawait b.wait_for("connected", timeout=20)',
        1200,
    ),
    ('a.send("hello from alice")\nawait b.next_message()', 1200),
    ('b.send({"x": [1, 2, 3]})\nawait a.next_message()', 1200),
    ("a.send(bytes(3 * 2**20))\nawait b.next_message(timeout=30)", 1500),
    ('a.hangup()\nawait b.wait_for("ended")', 2000),
]


def in_loopback_namespace() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def phones_shot(page, *users: str) -> bytes:
    """A screenshot of the phones of ``users``, side by side in one output (an ipywidgets HBox), and nothing
    else."""
    boxes = []
    for user in users:
        phone = page.locator(f".nbcall-phone[data-user='{user}']")
        phone.scroll_into_view_if_needed()
        boxes.append(phone.bounding_box())
    left, top = min(b["x"] for b in boxes), min(b["y"] for b in boxes)
    right = max(b["x"] + b["width"] for b in boxes)
    bottom = max(b["y"] + b["height"] for b in boxes)
    clip = {"x": left - 2, "y": top - 2, "width": right - left + 4, "height": bottom - top + 4}
    return page.screenshot(clip=clip)


def save_gif(frames: list[tuple[bytes, int]], path: Path, width: int) -> None:
    """An animated GIF of ``frames`` (PNG bytes, milliseconds each), each on one white canvas of the largest
    frame's size (the phones grow and shrink as the call goes), scaled to ``width``."""
    from PIL import Image

    shots = [Image.open(io.BytesIO(png)).convert("RGB") for png, _ in frames]
    size = (max(s.width for s in shots), max(s.height for s in shots))
    images = []
    for shot in shots:
        canvas = Image.new("RGB", size, "white")
        canvas.paste(shot, (0, 0))
        canvas = canvas.resize((width, round(size[1] * width / size[0])), Image.Resampling.LANCZOS)
        images.append(canvas.quantize(colors=128, method=Image.Quantize.MEDIANCUT))
    durations = [ms for _, ms in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_static" / "images")
    args = parser.parse_args()
    if not in_loopback_namespace():
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd))

    from harness import CHROMIUM, CHROMIUM_ARGS, start_lab
    from playwright.sync_api import expect, sync_playwright

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home, start_lab(Path(home)) as lab, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100}, device_scale_factor=1)
        nb = lab.open(page, lab.write_notebook("pictures.ipynb", [SETUP]))
        nb.run_all()
        for user in ("alice", "bob"):
            page.locator(f".nbcall-phone[data-user='{user}']").wait_for(timeout=30_000)
        nb.wait_idle()
        page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")

        # The call, frame by frame; the connected frame with messages is the README's picture.
        frames: list[tuple[bytes, int]] = []
        for code, ms in CALL_STEPS:
            if code:
                nb.run(code)
            page.wait_for_timeout(400)  # the widget redraws once per animation frame
            frames.append((phones_shot(page, "alice", "bob"), ms))
            if code.startswith("b.send"):
                (out / "call.png").write_bytes(frames[-1][0])
        save_gif(frames, out / "call.gif", width=600)

        # The sequence diagram of that call, opened on alice's phone.
        alice = nb.phone("alice")
        alice.locator(".nbcall-sequence-details > summary").click()
        expect(alice.locator(".nbcall-sequence-svg")).to_be_visible()
        alice.locator(".nbcall-sequence").evaluate("(picture) => { picture.scrollTop = 0; }")
        page.wait_for_timeout(400)
        alice.screenshot(path=str(out / "sequence.png"))

        # A video call with Chromium's fake camera and microphone.
        nb.run(VIDEO)
        nb.run(
            'va.call("dave")\nawait vb.wait_for("ringing")\nvb.answer()\nawait va.wait_for("connected", timeout=20)'
        )
        nb.wait_until("va.remote_media.get('video') and vb.remote_media.get('video')", timeout=20)
        page.wait_for_timeout(1500)  # a few frames of the fake camera
        (out / "video.png").write_bytes(phones_shot(page, "carol", "dave"))
        # Its statistics, as the widget shows them.
        carol = nb.phone("carol")
        carol.locator(".nbcall-rtc-details > summary").click()
        nb.run("await va.next_stats()\nawait va.next_stats()")
        page.wait_for_timeout(400)
        carol.screenshot(path=str(out / "stats.png"))
        nb.run("va.hangup()")

        # A room of three: ann invites the others, who answer at once.
        nb.run(ROOM)
        nb.run('r1.invite("ben", "cat")\nawait r1.wait_for_members(timeout=30)')
        page.wait_for_timeout(600)
        (out / "room.png").write_bytes(phones_shot(page, "ann", "ben", "cat"))
        browser.close()
    for name in ("call.png", "call.gif", "video.png", "room.png", "sequence.png", "stats.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
