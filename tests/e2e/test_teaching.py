"""The teaching tools through the real widget: step-through with the Next button, manual signaling by text,
and faults that say what they broke."""

from __future__ import annotations

from harness import Lab
from playwright.sync_api import Page, expect

SETUP = """\
import nbcall
a = nbcall.Phone("SA", step=True); b = nbcall.Phone("SB", auto_answer=True)
display(a, b)
"""


def test_step_through_holds_each_message_until_next(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(page, "steps.ipynb", [SETUP], phones=("SA", "SB"))
    nb.run('a.call("SB")')
    held = nb.phone("SA").locator(".nbcall-held-row").first
    expect(held).to_contain_text("call to SB")
    expect(held).to_contain_text("SB will: rings")
    nb.screenshot("steps-held", "SA")
    assert nb.value("[h['type'] for h in a.held][:1]") == ["call"]
    assert nb.value("b.state") == "idle"  # nothing went out yet
    nb.phone("SA").locator(".nbcall-next").click()
    nb.wait_until("b.state in ('ringing', 'connecting', 'connected')")
    # Let the candidates go one by one with Next, then switch stepping off: the call connects.
    nb.phone("SA").locator(".nbcall-next").click()
    nb.phone("SA").locator(".nbcall-step-toggle").uncheck()
    nb.run('await a.wait_for("connected", timeout=15)')
    expect(nb.phone("SA")).to_have_attribute("data-state", "connected")
    assert nb.value("a.held") == []


def test_two_phones_without_a_server_connect_by_copying_text(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(
        page,
        "manual.ipynb",
        [
            'import nbcall\nm1 = nbcall.Phone("M1", server=False); m2 = nbcall.Phone("M2", server=False)\ndisplay(m1, m2)'
        ],
        phones=("M1", "M2"),
    )
    expect(nb.phone("M1")).to_contain_text("no signaling server")
    out = nb.run(
        "offer = await m1.create_offer('M2')\nanswer = await m2.accept_offer(offer)\n"
        "await m1.accept_answer(answer)\nprint(len(offer), len(answer), offer[:8])"
    )
    sizes = out.split()
    assert sizes[2] == "nbcall1:" and int(sizes[0]) < 3000 and int(sizes[1]) < 3000, out
    nb.run('m1.send({"by": "text"})\nmessage = await m2.next_message(timeout=10)')
    assert nb.value("(m2.state, m2.peer, message.data, message.sender)") == [
        "connected",
        "M1",
        {"by": "text"},
        "M1",
    ]


def test_dropped_candidates_end_the_call_saying_why(lab: Lab, page: Page) -> None:
    nb = lab.run_notebook(
        page,
        "faults.ipynb",
        [
            "import nbcall\ndrop = nbcall.Faults(drop=('ice',))\n"
            + 'fa = nbcall.Phone("FA", faults=drop, connect_timeout=2)\n'
            + 'fb = nbcall.Phone("FB", faults=drop, connect_timeout=6, auto_answer=True)\ndisplay(fa, fb)'
        ],
        phones=("FA", "FB"),
    )
    nb.run(
        'fa.call("FB")\ntry:\n    await fa.wait_for("connected", timeout=15)\nexcept nbcall.CallError as e:\n    print(e)'
    )
    error = str(nb.value("fa.error"))
    assert "no ICE candidate arrived from it" in error and "dropped" in error, error
    expect(nb.phone("FA").locator(".nbcall-error")).to_contain_text("no ICE candidate arrived")
    nb.wait_until("fb.state == 'ended'")
    assert nb.value("fb.error") == "FA hung up: could not connect"
    faults = nb.value("[e['detail'] for e in fa.log if e['type'] == 'fault']")
    assert faults and all("faults drop 'ice' messages" in f for f in faults)
