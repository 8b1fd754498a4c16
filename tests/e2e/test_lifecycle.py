"""A notebook used like a notebook: a phone shown in two cells, the notebook open in a second tab, a page
reloaded, a tab closed and a kernel restarted in the middle of a call."""

from __future__ import annotations

import re
import time

from harness import Lab, screenshot
from playwright.sync_api import BrowserContext, Page, expect

from nbcall import Peer

PHONES = (
    "import nbcall, asyncio\na = nbcall.Phone('A'); b = nbcall.Phone('B', auto_answer=True)\ndisplay(a, b)"
)
CALL = "a.call('B')\nawait a.wait_for('connected', timeout=20)\nawait b.wait_for('connected', timeout=20)"


def test_a_phone_shown_in_two_cells_is_one_phone_in_both(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(page, "two-cells.ipynb", [PHONES, "a"], phones=("B",))
    expect(nb.phone("A")).to_have_count(2, timeout=30_000)
    nb.run(CALL)
    expect(nb.phone("A", "connected")).to_have_count(2)  # both views follow the one call
    nb.run("got = []\nb.on_message(got.append)\na.send('once')")
    nb.wait_until("got")
    assert nb.value("[m.data for m in b.messages]") == ["once"]  # one browser half sent it, once
    for view in nb.phone("A").all():
        expect(view.locator(".nbcall-msg.nbcall-out .nbcall-msg-text")).to_have_text(["once"])
    nb.run("b.hangup()\nawait a.wait_for('ended', timeout=10)")
    expect(nb.phone("A", "ended")).to_have_count(2)


def test_a_second_tab_shows_the_call_and_leaves_it_alone_and_reloading_the_first_ends_it(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    first = lab.run_notebook(page, "tabs.ipynb", [PHONES], phones=("A", "B"))
    first.run(CALL)

    # The same notebook in a second tab of the same browser: it shows the phones, runs no WebRTC of its own,
    # and the call goes on in the first tab. Before, its hello was taken for a reload and ended the call.
    second = lab.open(context.new_page(), "tabs.ipynb")
    second.run("display(a)")
    shown = second.phone("A", "connected")
    expect(shown).to_be_visible(timeout=30_000)
    expect(shown.locator(".nbcall-viewer-note")).to_be_visible()
    expect(shown.locator(".nbcall-remote-video")).to_be_hidden()
    screenshot(shown, "phone-second-tab")
    second.run("a.send('still here')")
    second.wait_until("b.messages")
    assert second.value("(a.state, b.state, b.messages[-1].data)") == ["connected", "connected", "still here"]
    # The first tab still runs the call: its chat shows the message, and the second tab's reload is no news.
    expect(first.phone("B").locator(".nbcall-msg.nbcall-in .nbcall-msg-text")).to_have_text(["still here"])
    second.page.reload()
    second.wait_idle()
    assert second.value("(a.state, a.error)") == ["connected", ""]

    # Reloading the tab that runs the call takes its peer connections away: both calls end, saying why.
    page.reload()
    first.wait_idle()
    second.wait_until("a.state in ('ended', 'failed') and b.state in ('ended', 'failed')")
    assert "reloaded" in str(second.value("a.error"))  # said by the reloaded page's hello (or its bye)
    # The reloaded tab runs the next call.
    first.run("display(a, b)")
    first.run(CALL)
    expect(first.phone("A", "connected")).to_be_visible()


def test_a_kernel_restarted_mid_call_ends_the_peers_call_with_a_reason(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    first = lab.run_notebook(page, "restart1.ipynb", ["import nbcall, asyncio\nserver = nbcall.serve()"])
    url = first.value("server.url")
    first.run("a = nbcall.Phone('A'); a")
    second = lab.run_notebook(
        context.new_page(), "restart2.ipynb", [f"import nbcall\nb = nbcall.Phone('B', server={url!r}, auto_answer=True); b"],
        phones=("B",),
    )  # fmt: skip
    first.wait_until("'B' in a.peers")
    first.run("a.call('B')\nawait a.wait_for('connected', timeout=20)")

    second.page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()"
    )
    second.wait_idle()
    first.wait_until("a.state in ('ended', 'failed')", timeout=30)
    # B's kernel closes its phones as it exits (B hangs up); its page's connection may close first.
    reason = re.compile(r"B hung up|the data channel to B closed|lost the connection to B")
    assert reason.search(str(first.value("a.error")))
    expect(first.phone("A").locator(".nbcall-error")).to_have_text(reason)
    # The restarted kernel starts afresh: B registers again, and the call can be made again.
    second.run(f"import nbcall\nb = nbcall.Phone('B', server={url!r}, auto_answer=True); b")
    first.wait_until("'B' in a.peers")
    first.run("a.call('B')\nawait a.wait_for('connected', timeout=20)")


def test_closing_the_tab_that_runs_a_call_ends_the_peers_call_at_once_saying_why(
    lab: Lab, page: Page, context: BrowserContext
) -> None:
    """The page says ``bye`` as it goes (pagehide): the kernel hangs up for it at once, rather than the peer
    finding out when its connection times out."""
    nb = lab.run_notebook(
        page, "closed-tab.ipynb", ["import nbcall, asyncio\na = nbcall.Phone('A'); a"], phones=("A",)
    )
    peer = Peer("P", server=str(nb.value("a.server_url")), auto_answer=True)
    try:
        nb.wait_until("'P' in a.peers")
        nb.run("a.call('P')\nawait a.wait_for('connected', timeout=20)")
        peer.wait("connected", timeout=20)
        closed = time.monotonic()
        page.close(run_before_unload=True)
        deadline = closed + 15  # far below the 30 s in which a peer connection no one answers is given up
        while peer.state == "connected" and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - closed
        assert (peer.state, peer.error) == ("ended", "A hung up"), f"after {took:.1f} s"
        # The kernel knows why: the notebook opened again shows the phone's call ended, and the reason.
        again = lab.open(context.new_page(), "closed-tab.ipynb")
        reason = "the browser page running the call was closed or reloaded"
        assert again.value("(a.state, a.error)") == ["failed", reason]
        again.run("display(a)")
        expect(again.phone("A", "failed").locator(".nbcall-error")).to_have_text(reason, timeout=30_000)
    finally:
        peer.close()
