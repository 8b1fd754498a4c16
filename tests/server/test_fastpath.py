"""The fast path's version guard: on another websockets version the server uses websockets' public API."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from support import TIMEOUT
from websockets.asyncio.client import connect

from nbcall.server import fastpath
from nbcall.server.connection import Connection
from nbcall.server.server import serve


def test_the_fast_path_runs_only_on_the_websockets_version_it_was_written_for() -> None:
    written_for = ".".join(map(str, fastpath.WRITTEN_FOR))
    assert fastpath.unavailable_reason(f"{written_for}.0") is None
    assert fastpath.unavailable_reason(f"{written_for}.3") is None
    for other in ("14.2", "18.0", f"{fastpath.WRITTEN_FOR[0]}.{fastpath.WRITTEN_FOR[1] + 1}", "17", "dev"):
        why = fastpath.unavailable_reason(other)
        assert why is not None and f"websockets {other} is installed" in why, other


async def test_on_an_unexpected_websockets_version_the_server_falls_back_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nbcall.server.server")
    monkeypatch.setattr(fastpath, "WEBSOCKETS_VERSION", "18.0")
    async with await serve() as server:
        assert server.fast_path is False
        async with connect(server.url) as ws:
            await ws.send('{"type":"register","from":"A"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {"type": "registered", "id": "A"}
            (conn,) = server.open_connections
            assert type(conn) is Connection  # not a FastConnection
    lines = [r.getMessage() for r in caplog.records if r.name == "nbcall.server.server"]
    assert "using websockets' public API, not nbcall's fast path: it was written for websockets" in lines[0]
    assert "websockets 18.0 is installed" in lines[0]


async def test_the_fast_path_is_used_when_available_unless_switched_off() -> None:
    if (why := fastpath.unavailable_reason()) is not None:
        pytest.skip(f"no fast path here: {why}")
    async with await serve() as fast, await serve(fast_path=False) as public:
        assert (fast.fast_path, public.fast_path) == (True, False)
