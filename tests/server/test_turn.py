"""Short-lived TURN credentials (nbcall.turn_credentials), checked by a real coturn with use-auth-secret."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port

import nbcall

SECRET = "north-pole-shared-secret"


def test_credentials_follow_the_turn_rest_scheme() -> None:
    server = nbcall.turn_credentials(SECRET, "alice", 600, urls="turn:127.0.0.1:3478", now=1_800_000_000)
    assert server["urls"] == "turn:127.0.0.1:3478"
    assert server["username"] == "1800000600:alice"
    expected = hmac.new(SECRET.encode(), b"1800000600:alice", hashlib.sha1).digest()
    assert base64.b64decode(server["credential"]) == expected
    for bad in ("", "a:b"):
        with pytest.raises(ValueError, match="user must be"):
            nbcall.turn_credentials(SECRET, bad)


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[int]:
    """coturn with use-auth-secret on a free port of 127.0.0.1."""
    if shutil.which("turnserver") is None:
        pytest.skip("needs turnserver: apt-get install coturn (scripts/test.sh does)")
    port, relay = free_port(), free_port()
    process = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={relay}", f"--max-port={relay + 20}", "--use-auth-secret", f"--static-auth-secret={SECRET}",
         "--realm=nbcall", "--fingerprint", "--no-tls", "--no-dtls", "--allow-loopback-peers", "--no-cli",
         f"--log-file={tmp_path / 'turn.log'}", "--simple-log", "--no-stdout-log",
         f"--pidfile={tmp_path / 'turn.pid'}", f"--userdb={tmp_path / 'turndb'}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


async def allocate(port: int, username: str, password: str) -> tuple[str, int]:
    """A TURN allocation on coturn (aioice's TURN client): the relayed address, or an exception."""
    from aioice.turn import create_turn_endpoint

    for _ in range(50):  # coturn takes a moment to listen
        try:
            transport, _protocol = await asyncio.wait_for(
                create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", port), username, password), 2
            )
        except (ConnectionRefusedError, asyncio.TimeoutError):
            await asyncio.sleep(0.1)
            continue
        relayed = transport.get_extra_info("sockname")
        transport.close()
        return relayed
    raise AssertionError("coturn never answered")


async def test_coturn_accepts_fresh_credentials_and_refuses_expired_or_forged_ones(coturn: int) -> None:
    pytest.importorskip("aioice")
    fresh = nbcall.turn_credentials(SECRET, "alice", 60)
    host, port = await allocate(coturn, fresh["username"], fresh["credential"])
    assert host == "127.0.0.1" and port > 0
    expired = nbcall.turn_credentials(SECRET, "alice", 60, now=1_000_000_000)
    forged = nbcall.turn_credentials("not-the-secret", "alice", 60)
    for bad in (expired, forged):
        with pytest.raises(Exception, match="401|Unauthorized"):
            await allocate(coturn, bad["username"], bad["credential"])
