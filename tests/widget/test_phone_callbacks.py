"""Callbacks of a Phone (``observe``, ``on_message``) may use nbcall: make a phone, wait for this phone's own
updates, read its state, call it from another thread. Without a browser: the browser half is simulated as in test_phone.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from support import TIMEOUT, RawPeer, channel_open, observe_busily, phone_answering, returns_on_a_thread
from support import wait_until_sync as wait_until

from nbcall import Message, Phone
from nbcall.call import kernel
from nbcall.server.server import SignalingServer
from nbcall.wire.payload import encode


def test_an_observer_on_the_background_loop_makes_a_phone_without_waiting(
    server: SignalingServer, made: list[Any]
) -> None:
    a = Phone("A", server=server.url, timeout=TIMEOUT)
    made.append(a)
    inside: list[Any] = []

    def on_peers(change: dict[str, Any]) -> None:
        if "Q" in change["new"] and not inside:
            inside.append(threading.current_thread() is kernel._thread)
            started = time.monotonic()
            phone = Phone("C", server=server.url, timeout=TIMEOUT)  # registers once this returns
            made.append(phone)
            inside.extend([phone, time.monotonic() - started])

    a.observe(on_peers, "peers")
    made.append(RawPeer(server.url, "Q"))
    wait_until(lambda: len(inside) == 3, "the observer to make its phone")
    on_loop, c, took = inside
    assert on_loop, "the observer did not run on the background loop: this test shows nothing"
    assert took < 1, f"making a phone in the observer blocked the loop for {took:.1f} s"
    wait_until(lambda: c.online, "C to register")
    assert "A" in c.peers and c.error == ""


def test_a_phone_made_on_the_background_loop_shows_a_refused_id_in_error(
    server: SignalingServer, made: list[Any]
) -> None:
    made.append(RawPeer(server.url, "Taken"))
    a = Phone("A", server=server.url, timeout=TIMEOUT)
    made.append(a)
    inside: list[Phone] = []

    def on_peers(change: dict[str, Any]) -> None:
        if "Q" in change["new"] and not inside:
            inside.append(Phone("Taken", server=server.url, timeout=TIMEOUT))

    a.observe(on_peers, "peers")
    made.append(RawPeer(server.url, "Q"))
    wait_until(lambda: inside and "could not register" in inside[0].error, "the refusal to show")
    assert "ID 'Taken' is already registered" in inside[0].error and "pick another ID" in inside[0].error
    assert not inside[0].online
    made.append(inside[0])


def test_an_on_message_callback_may_wait_for_the_phones_own_updates_and_make_a_phone(
    server: SignalingServer, made: list[Any]
) -> None:
    """The callback used to run with the phone's lock held: the loop, updating this phone, waited for it."""
    phone, _ = phone_answering(server.url, made)
    phone._handle_custom_msg(channel_open("Caller"), [])
    outcome: list[Any] = []

    def on_message(message: Message) -> None:
        made.append(RawPeer(server.url, "Z"))  # P hears of it on the loop, which must take P's lock
        wait_until(lambda: "Z" in phone.peers, "P to hear that Z joined")
        made.append(Phone("C", server=server.url, timeout=TIMEOUT))
        outcome.append(message.data)

    phone.on_message(on_message)
    kind, payload = encode("hello")
    phone._handle_custom_msg(
        {"type": "message", "peer": "Caller", "kind": kind, "last": True}, [memoryview(payload)]
    )
    assert outcome == ["hello"]


def test_a_blocking_call_that_cannot_work_on_the_background_loop_raises_at_once_saying_what_to_do() -> None:
    raised: list[BaseException] = []

    async def on_the_loop(call: Callable[[], Any]) -> None:
        try:
            call()
        except RuntimeError as exc:
            raised.append(exc)

    started = time.monotonic()
    kernel.run(on_the_loop(lambda: kernel.run(_nothing(), timeout=30, what="Peer.flush()")), timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT
    assert len(raised) == 1
    text = str(raised[0])
    assert (
        "Peer.flush() waits for nbcall's background loop" in text and "from a cell or another thread" in text
    )


async def _nothing() -> None:
    pass


def test_an_observer_may_use_the_phone_and_nbcall_while_the_phone_changes(
    server: SignalingServer, made: list[Any]
) -> None:
    """Observers used to run with the phone's lock held: the loop, updating the phone meanwhile, and any other
    thread calling the phone waited for the observer, which waited for them."""
    phone, caller = phone_answering(server.url, made)

    def more() -> dict[str, Any]:
        phone.send("from the observer")
        c = Phone("C", server=server.url, timeout=TIMEOUT)
        made.append(c)
        return {"c online": c.online}

    done, seen = observe_busily(phone, server.url, made, "connected", more)
    handled = returns_on_a_thread(phone._handle_custom_msg, channel_open("Caller"), [], timeout=4 * TIMEOUT)
    assert handled, "the browser's message still has not been handled: deadlocked"
    assert "failed" not in done, done.get("failed")
    assert done == {"stats": {}, "c online": True, "hung up": True}
    wait_until(lambda: seen[-1:] == ["ended"], "the observer to hear of the hang-up")
    assert seen == ["connected", "ended"]  # each change heard once, in order
    assert caller.recv_type("hangup")["from"] == "P"
