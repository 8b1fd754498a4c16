"""Interoperability with a browser client written for the seed's server (its wire protocol, nothing more)."""

from __future__ import annotations

import functools
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from harness import Lab
from playwright.sync_api import BrowserContext, Page

HERE = Path(__file__).parent


# The seed app is registered once the server confirmed it (a reloaded app takes its ID back).
SEED_REGISTERED = "() => window.seed && window.seed.ignored.includes('registered')"
# The seed app's data-channel statistics: whether the browser counts the messages it sent as sent.
CHANNEL_STATS = """async () => {
  const pc = window.seedConnection?.();
  if (!pc) return "no connection";
  const out = [];
  (await pc.getStats()).forEach((r) => {
    if (r.type === "data-channel") out.push({label: r.label, state: r.state, sent: r.messagesSent, received: r.messagesReceived});
    if (r.type === "transport") out.push({dtls: r.dtlsState, ice: r.iceState, role: r.dtlsRole});
  });
  return JSON.stringify(out);
}"""


@pytest.fixture
def open_seed_client(context: BrowserContext) -> Iterator[Callable[..., Page]]:
    """Serve the seed-style page from a web server of its own, as the seed's app is, on 127.0.0.1."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(HERE))
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    pages: list[Page] = []

    def open_page(signaling_url: str, user: str, media: bool = False) -> Page:
        query = urllib.parse.urlencode({"signaling": signaling_url, "id": user, "media": int(media)})
        page = context.new_page()
        pages.append(page)
        page.goto(f"http://127.0.0.1:{http.server_port}/seed_client.html?{query}")
        page.wait_for_function(SEED_REGISTERED)
        return page

    yield open_page
    for page in pages:  # what the seed app saw: shown when a test fails
        if not page.is_closed():
            print("seed app log:", page.evaluate("document.getElementById('out').textContent"))
            print("seed app states:", page.evaluate("JSON.stringify(window.seed)"))
            print("seed app channel stats:", page.evaluate(CHANNEL_STATS))
    http.shutdown()
    http.server_close()


def test_seed_client_calls_a_phone_and_a_phone_calls_the_seed_client(
    lab: Lab, page: Page, open_seed_client: Callable[..., Page]
) -> None:
    nb = lab.run_notebook(
        page, "seed.ipynb", ["import nbcall, asyncio\nb = nbcall.Phone('B'); b"], phones=("B",)
    )
    seed = open_seed_client(nb.value("b.server_url"), "S")
    nb.wait_until("'S' in b.peers")
    assert nb.value("b.peers") == ["S"]

    # The seed client calls the phone.
    seed.evaluate("window.seed.call('B')")
    nb.run("await b.wait_for('ringing')\nb.answer()\nawait b.wait_for('connected', timeout=20)")
    nb.wait_until("b.messages")
    assert nb.value("[(m.kind, m.data) for m in b.messages]") == [["str", "Hello from S"]]
    nb.run("b.send('hi seed'); b.send({'n': 1}); b.send(b'\\x01\\x02')")
    seed.wait_for_function("() => window.seed.received.length >= 3")
    assert seed.evaluate("window.seed.received") == ["hi seed", '{"n":1}', "<binary 2>"]
    seed.evaluate("window.seed.send('typed in the seed app')")
    nb.wait_until("len(b.messages) >= 2")
    assert nb.value("b.messages[-1].data") == "typed in the seed app"

    # The seed client knows no hangup message: closing its connection ends the call through the data channel.
    seed.evaluate("window.seed.hangup()")
    nb.run("await b.wait_for('ended', timeout=20)")
    assert "closed" in nb.value("b.error")

    # The phone calls the seed client, which answers on its own: a fresh seed app, as in the media test. In the
    # same page, right after its own pc.close(), the app's greeting on the new connection went missing in 2 of
    # 5 full e2e runs (the app logged it as sent; once an nbcall phone, once a Python peer missed it), and in
    # none of 100 runs of that sequence alone; the logs printed here are there to catch it if it comes back.
    # Caught since, in 200-call runs (below), twice in about 1,000 calls: Chromium queued the greeting sent in
    # the open handler of the channel the phone opened (bufferedAmount 12, its length; getStats messagesSent 0)
    # and never sent it; a later message went out and the greeting was dropped. So a greeting the seed app's
    # browser did not send is not asked of the phone (seed.greetings says how many it sent on each channel).
    seed.reload()
    seed.wait_for_function(SEED_REGISTERED)
    nb.run("b.call('S')\nawait b.wait_for('connected', timeout=20)")
    if greeting_sent(seed):
        try:
            nb.wait_until("len(b.messages) >= 3")
        except AssertionError:  # what the phone saw, next to the seed app's log printed by the fixture
            print(
                "phone log:", nb.value("[(e['dir'], e['type'], str(e['detail'])[:300]) for e in b.log[-30:]]")
            )
            raise
        assert nb.value("b.messages[-1].data") == "Hello from S"
    nb.run("b.send('hello back')")
    seed.wait_for_function("() => window.seed.received.includes('hello back')")
    nb.run("b.hangup()")
    # Messages the seed client does not know (presence, hangup) are ignored by it, as old clients should.
    seed.wait_for_function("() => window.seed.ignored.includes('hangup')")


#: Calls in which the callee greets the moment its channel opens (issue 15, "Nothing lost"), and the time they
#: may take in all (about 0.5 s a call here).
GREETED_CALLS = 200
GREETED_WITHIN = 400.0
# A cell that makes calls to the seed app and counts the greetings; each call waits up to 5 s for its own.
GREETED_CELL = """\
for _i in range({count}):
    assert _time.monotonic() - _started < {within}, f"{{len(_greetings)}} calls within {within} s"
    _before = len(_got)
    b.call('S')
    await b.wait_for('connected', timeout=20)
    for _ in range(500):
        if len(_got) > _before:
            break
        await asyncio.sleep(0.01)
    _greetings.append(len(_got) - _before)
    b.hangup()
"""


def test_a_greeting_sent_as_the_channel_opens_reaches_the_phone_in_every_one_of_200_calls(
    lab: Lab, page: Page, open_seed_client: Callable[..., Page]
) -> None:
    nb = lab.run_notebook(
        page, "greetings.ipynb", ["import nbcall, asyncio\nb = nbcall.Phone('B'); b"], phones=("B",)
    )
    seed = open_seed_client(nb.value("b.server_url"), "S")
    nb.wait_until("'S' in b.peers")
    page.evaluate(COUNT_DELIVERED)
    nb.run("import time as _time\n_got, _greetings = [], []\nb.on_message(lambda m: _got.append(m.data))")
    nb.run("_started = _time.monotonic()")
    # In cells of 50 calls: a cell may run at most 180 s (harness.RUN_CELL_JS).
    for _ in range(GREETED_CALLS // 50):
        nb.run(GREETED_CELL.format(count=50, within=GREETED_WITHIN))
    greetings, took = nb.value("(_greetings, _time.monotonic() - _started)")
    print(f"{GREETED_CALLS} calls to the seed app in {took:.1f} s")
    assert nb.value("sorted(set(_got))") == ["Hello from S"]
    assert_every_greeting_sent_arrived(seed, greetings, lambda: int(nb.value("len(_got)")))
    # Whatever the seed app's browser did, all that the phone's browser received on its channels reached on_message.
    delivered, got = page.evaluate("window.nbcallDelivered"), nb.value("len(_got)")
    assert got == delivered, f"the phone's browser received {delivered} messages and on_message got {got}"


# Counts, in the phone's page, the messages its browser delivers on the data channels it opens (the phone calls):
# beside nbcall's own code, which must pass every one of them to on_message.
COUNT_DELIVERED = """() => {
  window.nbcallDelivered = 0;
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    channel.addEventListener("message", () => { window.nbcallDelivered += 1; });
    return channel;
  };
}"""


def greeting_sent(seed: Page) -> bool:
    """Whether the seed app's browser sent the greeting of its latest call (see seed.greetings)."""
    seed.wait_for_function("() => window.seed.greetings.length > 0", timeout=10_000)
    return bool(seed.evaluate("window.seed.greetings.at(-1)"))


def assert_every_greeting_sent_arrived(seed: Page, received: list[int], count: Callable[[], int]) -> None:
    """Each greeting the seed app's browser sent reached nbcall once (``count()`` says how many did, in all).

    The seed app's browser says how many it sent on each call's channel (see seed_client.html): Chromium now and
    then sends none (it never transmits a message sent as a channel it did not open opens), and now and then
    fires the channel's open event twice, so the app says hello twice and only one is sent. Neither is a loss on
    nbcall's side: both are counted, and must stay rare. A greeting may come after its call's wait (on a loaded
    machine), and is then counted with the next call: the total says whether one was lost, ``received`` (per
    call) only when each came."""
    seed.wait_for_function(f"() => window.seed.greetings.length >= {len(received)}", timeout=10_000)
    sent = seed.evaluate("window.seed.greetings")[-len(received) :]
    assert seed.evaluate("document.getElementById('out').textContent").count("said hello") >= len(received)
    expected = sum(sent)
    deadline = time.monotonic() + 10
    while count() < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    # At most one per channel. More than the browser counted may come: its count is read from statistics that a
    # loaded browser can fail to show before the channel closes (see seed_client.html).
    assert expected <= count() <= len(sent), f"the browser sent {expected} greetings and nbcall got {count()}"
    late = [i for i, (n, s) in enumerate(zip(received, sent, strict=True)) if n != s]
    print(f"calls whose greeting came after that call's wait (counted with the next): {late}")
    unsent, reopened = sent.count(0), seed.evaluate("window.seed.reopened")
    print(f"greetings the seed app's browser never sent: {unsent} of {len(sent)}")
    print(f"channels whose open event the seed app's browser fired twice: {reopened} of {len(sent)}")
    assert unsent <= len(sent) // 50, f"the browser sent no greeting in {unsent} calls"
    assert reopened <= len(sent) // 50, f"the browser opened {reopened} channels twice"


REMOTE_VIDEO_WIDTH = """user => {
  const v = document.querySelector(`.nbcall-phone[data-user='${user}'] .nbcall-remote-video`);
  return v ? v.videoWidth : 0;
}"""


def test_seed_media_client_and_a_video_phone_see_each_other_both_ways(
    lab: Lab, page: Page, open_seed_client: Callable[..., Page]
) -> None:
    cells = ["import nbcall, asyncio\nv = nbcall.Phone('V', video=True, audio=True); v"]
    nb = lab.run_notebook(page, "seed-media.ipynb", cells, phones=("V",))
    seed = open_seed_client(nb.value("v.server_url"), "M", media=True)
    nb.wait_until("'M' in v.peers")

    seed.evaluate("window.seed.call('V')")  # the seed's example 02 calls the phone
    nb.run("await v.wait_for('ringing')\nv.answer()\nawait v.wait_for('connected', timeout=20)")
    page.wait_for_function(f"() => ({REMOTE_VIDEO_WIDTH})('V') > 0", timeout=20_000)
    seed.wait_for_function("() => window.seed.remoteVideoWidth() > 0", timeout=20_000)
    nb.wait_until("v.remote_media.get('video') and v.remote_media.get('audio')")
    seed.evaluate("window.seed.hangup()")
    nb.run("try:\n    await v.wait_for('idle', timeout=30)\nexcept nbcall.CallError as e:\n    print(e)")

    seed.reload()  # a fresh seed app, then the phone calls it
    seed.wait_for_function(SEED_REGISTERED)
    nb.wait_until("'M' in v.peers")
    nb.run("v.call('M')\nawait v.wait_for('connected', timeout=20)")
    page.wait_for_function(f"() => ({REMOTE_VIDEO_WIDTH})('V') > 0", timeout=20_000)
    seed.wait_for_function("() => window.seed.remoteVideoWidth() > 0", timeout=20_000)
    nb.run("v.hangup()")
