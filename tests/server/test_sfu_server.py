"""SFU rooms on a real server and a real Janus, without media: the VideoRoom's locks, and the faults.

These need Debian's janus (scripts/test.sh installs it) but no ICE, so they run with the other server tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sfu_support import SfuMember, janus_or_skip
from support import OFFER, free_port, wait_until

from nbcall.server import janus as janus_api
from nbcall.server.janus import JanusSession, RequestFailed
from nbcall.server.server import SignalingServer, serve
from nbcall.teach.janus import JanusServer


@contextlib.asynccontextmanager
async def members(server: SignalingServer, *ids: str) -> AsyncIterator[list[SfuMember]]:
    """Members registered at ``server``, closed at the end of the block."""
    out = [SfuMember(member_id) for member_id in ids]
    try:
        for member in out:
            await member.open(server.url)
        yield out
    finally:
        for member in out:
            await member.close()


async def sfu_room(a: SfuMember, b: SfuMember) -> str:
    """``a`` invites ``b`` into an SFU room and ``b`` accepts: the room's ID, once both have its state."""
    await a.send(type="room-invite", to=b.id, sfu=True)
    room = (await a.next("room-state"))["room"]
    await b.send(type="room-accept", room=room)
    await b.next("room-state")
    return room


async def sfu_room_on_janus(server: SignalingServer, a: SfuMember, b: SfuMember) -> str:
    """:func:`sfu_room`, returning once the server has made the room on Janus."""
    room = await sfu_room(a, b)
    bridge = server.sfu
    assert bridge is not None
    await wait_until(lambda: bridge.janus_room(room) is not None, "the room on Janus")
    return room


async def raw_janus(janus: JanusServer) -> tuple[JanusSession, int]:
    """Janus's API as anyone holding its API secret sees it: a session and a VideoRoom handle."""
    session = await JanusSession.open(
        janus.url, janus.api_secret, lambda handle, event: None, lambda why: None
    )
    return session, await session.attach("janus.plugin.videoroom")


async def test_a_room_on_janus_is_locked_and_goes_when_the_room_ends(
    sfu_server: SignalingServer, janus: JanusServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with members(sfu_server, "A", "B") as (a, b):
        session, handle = await raw_janus(janus)
        try:
            room = await sfu_room(a, b)
            bridge = sfu_server.sfu
            assert bridge is not None
            number = bridge.janus_room(room)
            assert number is not None

            async def exists() -> bool:
                try:
                    await session.message(handle, {"request": "listparticipants", "room": number})
                except RequestFailed as exc:
                    assert exc.code == 426, exc  # no such room
                    return False
                return True

            await wait_until_async(exists, "the VideoRoom exists")
            # Private: not listed; nobody joins without the pin, or with a guessed one; nor with the pin but
            # without a member's token (VideoRoom's allowed list), or with a guessed one.
            listed, _ = await session.message(handle, {"request": "list"})
            assert number not in [entry["room"] for entry in listed["list"]]
            pin = bridge.secrets()[1]  # the API secret, then this room's pin (as the server alone holds it)
            joiner = await session.attach("janus.plugin.videoroom")
            for body, code in (
                ({}, 429),
                ({"pin": "guess"}, 433),
                ({"pin": pin}, 433),
                ({"pin": pin, "token": "guess"}, 433),
            ):
                with pytest.raises(RequestFailed) as refused:
                    await session.message(
                        joiner, {"request": "join", "ptype": "publisher", "room": number, **body}
                    )
                assert refused.value.code == code
            # The pin with a member's token opens it: the refusals above were those locks at work.
            token = bridge.secrets()[3]
            joined, _ = await session.message(
                joiner, {"request": "join", "ptype": "publisher", "room": number, "pin": pin, "token": token}
            )
            assert joined["videoroom"] == "joined", joined
            await session.message(joiner, {"request": "leave"})
            # The room's end destroys it on Janus.
            await b.send(type="room-leave", room=room)
            await a.send(type="room-leave", room=room)
            await wait_until_async(not_(exists), "the VideoRoom is destroyed")
            assert janus.api_secret not in caplog.text
        finally:
            await session.destroy()


async def test_janus_unreachable_the_server_starts_and_an_sfu_room_ends_with_an_error_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    caplog.set_level(logging.WARNING, logger="nbcall.server.sfu")
    async with await serve(sfu=url, sfu_secret="not-used") as server:
        await wait_until(lambda: url in caplog.text, "a warning naming Janus's URL")
        async with members(server, "A", "B", "C", "D") as (a, b, c, d):
            started = time.monotonic()
            await a.send(type="room-invite", to="B", sfu=True)
            room = (await a.next("room-state"))["room"]
            error = await a.next("error", 10)
            assert error["code"] == "sfu-unavailable" and f"Janus at {url}" in error["message"]
            ended = await a.next("room-ended", 10)
            assert ended["room"] == room and url in ended["reason"]
            assert time.monotonic() - started < 10
            assert (await b.next("room-cancelled"))["room"] == room
            # Mesh rooms and calls are unaffected.
            await c.send(type="room-invite", to="D")
            mesh = (await c.next("room-state"))["room"]
            await d.send(type="room-accept", room=mesh)
            assert (await d.next("room-state"))["members"] == ["C", "D"]
            await a.send(type="call", to="B", sdp=OFFER)
            call = await b.next("call")
            assert (call["from"], call["sdp"]) == ("A", OFFER)
            await b.send(type="answer", to="A", sdp=OFFER)
            assert (await a.next("answer"))["from"] == "B"


async def test_janus_killed_mid_room_ends_the_room_on_every_member_saying_so() -> None:
    with janus_or_skip(media=False) as janus:
        async with (
            await serve(sfu=janus.url, sfu_secret=janus.api_secret) as server,
            members(server, "A", "B") as (a, b),
        ):
            room = await sfu_room_on_janus(server, a, b)
            await asyncio.sleep(0.5)  # made there
            janus.kill()
            for member in (a, b):
                ended = await member.next("room-ended", 10)
                assert ended["room"] == room and "stopped or restarted" in ended["reason"], ended
                assert f"Janus at {janus.url}" in ended["reason"]


async def wait_until_async(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        await asyncio.sleep(0.05)


def not_(condition: Any) -> Any:
    async def negated() -> bool:
        return not await condition()

    return negated


async def test_keepalives_hold_the_session_past_janus_session_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(janus_api, "KEEPALIVE", 1.0)
    with janus_or_skip(media=False, session_timeout=3) as janus:
        async with (
            await serve(sfu=janus.url, sfu_secret=janus.api_secret) as server,
            members(server, "A", "B") as (a, _),
        ):
            await a.send(type="room-invite", to="B", sfu=True)
            room = (await a.next("room-state"))["room"]
            # Janus drops a session silent for 3 s (its watchdog looks every 2 s): the room outlives that.
            await asyncio.sleep(8)
            assert not [msg for msg in a.pending() if msg["type"] in ("room-ended", "error")]
            assert server.sfu is not None and server.sfu.janus_room(room) is not None


async def test_the_api_secret_and_the_rooms_locks_never_reach_a_debug_log(
    janus: JanusServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        await serve(sfu=janus.url, sfu_secret=janus.api_secret) as server,
        members(server, "A", "B") as (a, b),
    ):
        room = await sfu_room_on_janus(server, a, b)
        assert server.sfu is not None
        secrets = server.sfu.secrets()  # the API secret, the room's pin and secret, the members' tokens
        assert len(secrets) == 5
        await wait_until(
            lambda: f"SFU room {room!r} is on Janus" in caplog.text, "the room made on Janus", 10
        )
        await a.send(type="room-leave", room=room)
        await b.send(type="room-leave", room=room)
        for secret in secrets:  # nor any 10 characters of one (websockets logs frames shortened)
            assert not [
                secret[i : i + 10] for i in range(len(secret) - 9) if secret[i : i + 10] in caplog.text
            ]
        assert "Janus at" in caplog.text  # the log is there, without its secrets
