"""Video and audio calls in real JupyterLab + Chromium, with Chromium's fake camera and microphone."""

from __future__ import annotations

import json

from harness import CHROMIUM, CHROMIUM_ARGS, TOKEN, Lab, Notebook
from playwright.sync_api import Browser, BrowserType, Page, expect

# What each phone's widget shows, measured in the page: the remote <video>'s size, decoded frames and mean
# brightness (0-255, from a 32x24 copy of the current frame).
VIDEO_JS = """(user) => {
  const v = document.querySelector(`.nbcall-phone[data-user='${user}'] .nbcall-remote-video`);
  if (!v || !v.videoWidth) return {width: 0, frames: 0, luma: 0};
  const c = document.createElement('canvas'); c.width = 32; c.height = 24;
  const g = c.getContext('2d'); g.drawImage(v, 0, 0, 32, 24);
  const d = g.getImageData(0, 0, 32, 24).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
  return {width: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames, luma: sum / (d.length / 4)};
}"""

# Audio and video flowing into both phones, from their statistics.
MEDIA_FLOWING = (
    "all((p.stats.get('audio_in') or {}).get('packets', 0) > 10"
    " and (p.stats.get('video_in') or {}).get('frames', 0) > 10 for p in (a, b))"
)

# Sound energy the peer received over two seconds, measured after a stats sample that follows the change.
ENERGY = """\
async def energy_received(p, seconds=2.0):
    await asyncio.sleep(1.2)
    e0 = p.stats["audio_in"]["total_audio_energy"]
    await asyncio.sleep(seconds)
    return p.stats["audio_in"]["total_audio_energy"] - e0

async def energy_until(p, ok, tries=5):
    # The energy of successive windows until ok(energy) holds (at most `tries`): the stats lag under load.
    for _ in range(tries):
        energy = await energy_received(p)
        if ok(energy):
            break
    return energy
"""


REAL_REFUSAL_JS = """async () => {
  try { await navigator.mediaDevices.getUserMedia({audio: true, video: true}); return null; }
  catch (e) { return [e.name, e.message]; }
}"""


def video(nb: Notebook, user: str) -> dict:
    return nb.page.evaluate(VIDEO_JS, user)


def wait_video(nb: Notebook, user: str, condition: str, timeout: float = 10_000) -> None:
    """Wait until ``condition`` (JS over v = {width, frames, luma}) holds for ``user``'s remote video."""
    nb.page.wait_for_function(
        f"(user) => {{ const v = ({VIDEO_JS})(user); return {condition}; }}", arg=user, timeout=timeout
    )


def open_phones(lab: Lab, page: Page, name: str, *cells: str) -> Notebook:
    nb = lab.open(page, lab.write_notebook(name, ["import nbcall, asyncio", *cells]))
    nb.run_all()
    for cell in cells:
        user = cell.split('"')[1]
        expect(nb.phone(user, "idle")).to_be_visible(timeout=30_000)
    nb.wait_idle()
    return nb


def test_video_call_shows_video_both_ways_carries_sound_mutes_and_hangs_up(lab: Lab, page: Page) -> None:
    nb = open_phones(
        lab,
        page,
        "video.ipynb",
        'a = nbcall.Phone("A", video=True, audio=True); a',
        'b = nbcall.Phone("B", video=True, audio=True); b',
    )
    nb.run('a.call("B")\nawait b.wait_for("ringing")\nb.answer()\nawait a.wait_for("connected", timeout=20)')
    for user in "AB":
        wait_video(nb, user, "v.width > 0")
    first = {user: video(nb, user)["frames"] for user in "AB"}
    for user in "AB":  # decoded frames keep coming
        wait_video(nb, user, f"v.frames >= {first[user] + 15}")
    assert video(nb, "A")["width"] == 640 and video(nb, "B")["luma"] > 20

    nb.wait_until(MEDIA_FLOWING)
    # Bitrates need two samples, a second apart.
    nb.wait_until("a.stats.get('receive_kbps') is not None and a.stats.get('send_kbps') is not None")
    stats = nb.value("a.stats")
    assert isinstance(stats, dict)
    assert 0 <= stats["rtt_ms"] < 200 and stats["pair"] == "host ↔ host"
    assert stats["receive_kbps"] > 50 and stats["send_kbps"] > 50  # about 300-2,500 kbit/s of video
    assert stats["video_in"]["width"] == 640 and stats["video_in"]["fps"] > 5
    assert stats["video_out"]["frames"] > 10 and stats["video_in"]["packets_lost"] >= 0
    for p in "ab":  # audio both ways
        assert nb.value(f"{p}.stats['audio_in']['packets']") > 10
        assert nb.value(f"{p}.stats['audio_out']['packets']") > 10
    assert nb.value("(a.local_media, a.remote_media, b.remote_media)") == [{"audio": True, "video": True}] * 3
    nb.phone("A").locator(".nbcall-rtc-details > summary").click()
    expect(nb.phone("A").locator(".nbcall-spark")).to_have_count(2)
    nb.screenshot("video-call-A", "A")
    nb.screenshot("video-call-B", "B")

    # Mute: the peer receives silence. Camera off: the peer's picture turns black, and back.
    nb.run(ENERGY)
    loud = nb.value("await energy_received(b)")
    assert isinstance(loud, float) and loud > 1e-4  # the fake microphone beeps
    nb.run("a.mute()")
    expect(nb.phone("A").locator(".nbcall-mic")).to_contain_text("Unmute")
    silent = nb.value(f"await energy_until(b, lambda e: e < {loud} / 1000)")
    assert silent < loud / 1000, (silent, loud)  # silence (a decoder's tail is not 0)
    nb.phone("A").locator(".nbcall-mic").click()  # the widget's button unmutes
    heard = nb.value(f"await energy_until(b, lambda e: e > {loud} / 10)")
    assert heard > loud / 10 and nb.value("a.mic_on") is True, (heard, loud)
    nb.run("a.camera(False)")
    wait_video(nb, "B", "v.luma < 3")
    nb.screenshot("video-call-camera-off", "B")
    nb.run("a.camera(True)")
    wait_video(nb, "B", "v.luma > 20")

    # Hang-up stops every local track on both sides (camera light off).
    tracks = nb.page.evaluate(
        "() => { window.localTracks = [...document.querySelectorAll('.nbcall-local-video')]"
        ".flatMap((v) => v.srcObject.getTracks()); return window.localTracks.map((t) => t.kind).sort(); }"
    )
    assert tracks == ["audio", "audio", "video", "video"]
    nb.run('a.hangup()\nawait b.wait_for("ended")')
    nb.page.wait_for_function("() => window.localTracks.every((t) => t.readyState === 'ended')")
    assert nb.value("(a.local_media, b.local_media)") == [{"audio": False, "video": False}] * 2


def test_phone_without_camera_receives_video_and_data_only_phone_calls_media_phone(
    lab: Lab, page: Page
) -> None:
    nb = open_phones(
        lab,
        page,
        "recvonly.ipynb",
        # A constraint no camera meets: getUserMedia fails for video, as on a machine without a camera.
        'c = nbcall.Phone("C", video={"deviceId": {"exact": "no-such-camera"}}, audio=True); c',
        'd = nbcall.Phone("D", video=True, audio=True, auto_answer=True); d',
        'e = nbcall.Phone("E"); e',
    )
    nb.run('c.call("D")\nawait c.wait_for("connected", timeout=20)')
    wait_video(nb, "C", "v.width > 0")  # C receives D's video
    nb.run("for _ in range(50):\n    if d.remote_media.get('audio'): break\n    await asyncio.sleep(0.1)")
    assert nb.value("(c.local_media, d.remote_media, c.remote_media)") == [
        {"audio": True, "video": False},
        {"audio": True, "video": False},
        {"audio": True, "video": True},
    ]
    error = nb.value("c.media_error")
    assert isinstance(error, str)
    assert "no camera satisfies the constraints" in error and "goes on without your camera" in error
    expect(nb.phone("C").locator(".nbcall-error")).to_contain_text("OverconstrainedError")
    expect(nb.phone("D").locator(".nbcall-media-note")).to_contain_text("sound only")
    nb.run(
        "c.send('still here')\nfor _ in range(50):\n    if d.messages: break\n    await asyncio.sleep(0.05)"
    )
    assert nb.value("d.messages[-1].data") == "still here"
    nb.run('c.hangup()\nawait d.wait_for("ended")')

    # A data-only phone calls a media phone: a data call, and D's camera is not left on.
    nb.run('e.call("D")\nawait e.wait_for("connected", timeout=20)\nawait d.wait_for("connected")')
    nb.run(
        "e.send('data only')\nfor _ in range(50):\n    if len(d.messages) > 1: break\n    await asyncio.sleep(0.05)"
    )
    assert nb.value("d.messages[-1].data") == "data only"
    assert nb.value("(d.local_media, d.media_error)") == [{"audio": False, "video": False}, ""]
    assert "E offered no audio/video: sending no camera and microphone" in nb.value(
        "[e['detail'] for e in d.log if e['type'] == 'media']"
    )
    nb.run("e.hangup()")


def test_refused_camera_and_microphone_give_a_clear_error_and_a_working_data_channel(
    lab: Lab, browser: Browser, browser_type: BrowserType
) -> None:
    # What Chromium really does when the user blocks the camera: --use-fake-ui-for-media-stream=deny clicks
    # "Block" for us. A page refused media permission also gets no ICE candidate but the default route's, and
    # this loopback-only namespace has no default route, so that page could not connect to anyone here.
    args = [a + "=deny" if a == "--use-fake-ui-for-media-stream" else a for a in CHROMIUM_ARGS]
    refusing = browser_type.launch(executable_path=CHROMIUM, args=args)
    try:
        probe = refusing.new_page()
        probe.goto(f"{lab.url}/api/status?token={TOKEN}")  # any page of 127.0.0.1 is a secure context
        refusal = probe.evaluate(REAL_REFUSAL_JS)
    finally:
        refusing.close()
    assert refusal == ["NotAllowedError", "Permission denied"]

    # So the call runs in the usual browser, its getUserMedia refusing with that same exception.
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.add_init_script(f"""
      navigator.mediaDevices.getUserMedia = async () => {{
        throw new DOMException({json.dumps(refusal[1])}, {json.dumps(refusal[0])});
      }};""")
    try:
        nb = open_phones(
            lab,
            context.new_page(),
            "refused.ipynb",
            'f = nbcall.Phone("F", video=True, audio=True); f',
            'g = nbcall.Phone("G", video=True, audio=True, auto_answer=True); g',
        )
        nb.run('f.call("G")\nawait f.wait_for("connected", timeout=20)\nawait g.wait_for("connected")')
        nb.run("for _ in range(50):\n    if f.media_error: break\n    await asyncio.sleep(0.05)")
        error = nb.value("f.media_error")
        assert isinstance(error, str)
        assert error.startswith("permission to use the camera and microphone was denied")
        assert "NotAllowedError" in error and "The call goes on without your camera and microphone." in error
        expect(nb.phone("F").locator(".nbcall-error")).to_contain_text("permission to use the camera")
        assert nb.value("(f.local_media, f.remote_media)") == [{"audio": False, "video": False}] * 2
        nb.run(
            "f.send('no camera, still talking')\nfor _ in range(50):\n    if g.messages: break\n"
            "    await asyncio.sleep(0.05)"
        )
        assert nb.value("g.messages[-1].data") == "no camera, still talking"
        nb.screenshot("media-refused", "F")
        nb.run("f.hangup()")
    finally:
        context.close()
