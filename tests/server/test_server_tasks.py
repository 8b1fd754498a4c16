"""The server's own background tasks (the keepalive of the fast path, the clock of rooms) outlive a failure: the
connection concerned is closed and logged, and the task goes on for everyone else."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from support import TIMEOUT, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.server import ServerProtocol

from nbcall.server.server import serve


async def test_a_keepalive_ping_that_fails_closes_that_connection_and_the_others_are_still_checked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[int] = []
    send_ping = ServerProtocol.send_ping

    def fails_once(self: ServerProtocol, data: bytes) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("injected: sending a ping failed")
        return send_ping(self, data)

    monkeypatch.setattr(ServerProtocol, "send_ping", fails_once)
    async with await serve(ping_interval=0.1, ping_timeout=0.2, close_timeout=0.2) as server:
        if not server.fast_path:
            pytest.skip("the keepalive is websockets' own without the fast path")
        async with connect(server.url) as first:
            await first.send(json.dumps({"type": "register", "from": "First"}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(first.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        async with connect(server.url) as dead:
            await dead.send(json.dumps({"type": "register", "from": "Dead"}))
            await wait_until(lambda: server.protocol.peers == ["Dead"], "Dead to register")
            dead.transport.pause_reading()  # it stops answering pings: the keepalive must still drop it
            await wait_until(lambda: server.protocol.peers == [], "the keepalive to drop Dead")
    assert [r for r in caplog.records if "its keepalive failed" in r.getMessage()]


async def test_a_tick_that_fails_is_logged_and_the_clock_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="nbcall")
    async with await serve(invitation_ttl=0.2) as server:
        ticks: list[float] = []
        tick = server.protocol.tick

        def fails_first(now: float) -> Any:
            ticks.append(now)
            if len(ticks) == 1:
                raise RuntimeError("injected: a bug in the rooms' clock")
            return tick(now)

        monkeypatch.setattr(server.protocol, "tick", fails_first)
        await wait_until(lambda: len(ticks) >= 3, "the clock to tick on after a failure")
    assert [r for r in caplog.records if "error while expiring room invitations" in r.getMessage()]
