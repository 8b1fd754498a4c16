"""``python -m nbcall serve`` as a user runs it: a real process, real clients, real signals."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import nbcall.server.cli
from nbcall.cli import main, parser
from nbcall.server.cli import serve_until_stopped
from nbcall.server.limits import Limits
from nbcall.teach.janus import start_janus

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 10.0


@asynccontextmanager
async def nbcall_process(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m nbcall ARGS`` with stderr piped; killed at the end if still running."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "NBCALL_TOKEN"},
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nbcall", *args, stderr=asyncio.subprocess.PIPE, env=env, cwd=REPO
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def listening_url(proc: asyncio.subprocess.Process, seen: list[str] | None = None) -> str:
    """The URL the server logs once it listens; fails if it exits or stays silent."""
    assert proc.stderr is not None
    seen = [] if seen is None else seen

    async def scan() -> str:
        assert proc.stderr is not None
        while line := (await proc.stderr.readline()).decode():
            seen.append(line)
            if match := re.search(r"nbcall signaling server listening on (wss?://\S+)", line):
                return match.group(1)
        raise AssertionError(f"the server exited before listening; stderr: {''.join(seen)}")

    return await asyncio.wait_for(scan(), TIMEOUT)


async def stop(proc: asyncio.subprocess.Process, signum: int) -> tuple[int, str]:
    """Send ``signum``; return the exit status and the rest of stderr."""
    proc.send_signal(signum)
    _, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


async def test_serve_reports_its_real_url_relays_and_stops_cleanly_on_sigterm() -> None:
    async with nbcall_process("serve", "--port", "0") as proc:
        url = await listening_url(proc)
        assert re.fullmatch(r"ws://127\.0\.0\.1:[1-9]\d*/ws", url)
        async with connect(url) as a, connect(url) as b:
            await a.send('{"type":"register","from":"A","presence":true}')
            assert json.loads(await asyncio.wait_for(a.recv(), TIMEOUT))["type"] == "registered"
            await b.send('{"type":"register","from":"B","presence":true}')
            assert json.loads(await asyncio.wait_for(b.recv(), TIMEOUT))["peers"] == ["A"]
            call = '{"type":"call","from":"B","to":"A","sdp":"{\\"type\\":\\"offer\\",\\"sdp\\":\\"v=0\\"}"}'
            await b.send(call)
            assert await asyncio.wait_for(a.recv(), TIMEOUT) == '{"type":"joined","id":"B"}'
            assert await asyncio.wait_for(a.recv(), TIMEOUT) == call

            returncode, stderr = await stop(proc, signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(a.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # going away
    assert returncode == 0, stderr
    assert "'A' registered" in stderr and "'B' -> 'A': call" in stderr
    assert stderr.rstrip().endswith("nbcall signaling server stopped")
    assert "Traceback" not in stderr


async def test_ctrl_c_stops_the_server_cleanly() -> None:
    async with nbcall_process("serve", "--port", "0", "--path", "/signal") as proc:
        url = await listening_url(proc)
        assert url.endswith("/signal")
        returncode, stderr = await stop(proc, signal.SIGINT)
    assert returncode == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


async def test_port_already_in_use_is_reported_and_exits_with_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with nbcall_process("serve", "--port", str(port)) as proc:
            _, stderr_bytes = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    stderr = stderr_bytes.decode()
    assert proc.returncode == 1, stderr
    assert f"cannot start the signaling server on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


def test_missing_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "usage: nbcall" in capsys.readouterr().err


def test_serve_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--host", "--port", "--path", "--token", "NBCALL_TOKEN", "--allow-origin", "--certfile",
        "--keyfile", "--max-connections", "--open-timeout", "--max-message-size", "--max-rate",
        "--max-burst", "--max-refused", "--max-pending-bytes", "--ping-interval", "--ping-timeout",
        "--max-room-size", "--invitation-ttl", "--room-grace",
    ):  # fmt: skip
        assert option in out
    for field in dataclasses.fields(Limits):  # every limit, the two that had no flag included
        assert f"--{field.name.replace('_', '-')} {field.metadata['unit']}" in out, field.name


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], {"max_room_size": 6, "invitation_ttl": 60, "room_grace": 30}),
        (["--max-room-size", "3", "--invitation-ttl", "5", "--room-grace", "2.5"],
         {"max_room_size": 3, "invitation_ttl": 5, "room_grace": 2.5}),
        (["--max-room-size", "0", "--invitation-ttl", "0", "--room-grace", "0"],
         {"max_room_size": None, "invitation_ttl": None, "room_grace": 0}),
    ],
)  # fmt: skip
async def test_room_flags_reach_serve_and_zero_disables_them_but_room_grace_0_means_no_grace(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], expected: dict[str, object]
) -> None:
    seen: dict[str, object] = {}

    async def fake_serve(*args: object, **options: object) -> None:
        seen.update(options)
        raise OSError("stopped by the test")

    monkeypatch.setattr(nbcall.server.cli, "serve", fake_serve)
    assert await serve_until_stopped(parser().parse_args(["serve", *flags])) == 1
    assert {name: seen[name] for name in expected} == expected


async def test_without_a_token_the_server_warns_that_anyone_may_register() -> None:
    async with nbcall_process("serve", "--port", "0") as proc:
        seen: list[str] = []
        url = await listening_url(proc, seen)
        assert proc.stderr is not None
        seen.append((await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode())
        returncode, stderr = await stop(proc, signal.SIGTERM)
    assert returncode == 0, stderr
    warning = seen[-1]
    assert "WARNING" in warning and "ANYONE WHO CAN REACH" in warning and url in warning
    assert "--token" in warning and "NBCALL_TOKEN" in warning


async def test_token_from_the_environment_is_required_and_never_logged() -> None:
    async with nbcall_process("serve", "--port", "0", env={"NBCALL_TOKEN": "env-token-42"}) as proc:
        url = await listening_url(proc)
        assert "token" not in url
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        assert refused.value.response.status_code == 401
        async with connect(url + "?token=env-token-42") as ws:
            await ws.send('{"type":"register","from":"A"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "registered"
        returncode, stderr = await stop(proc, signal.SIGTERM)
    assert returncode == 0, stderr
    assert "env-token-42" not in stderr and "no token" in stderr and "WARNING" not in stderr


async def test_allow_origin_replaces_the_localhost_default() -> None:
    async with nbcall_process(
        "serve", "--port", "0", "--token", "t", "--allow-origin", "https://hub.example.org"
    ) as proc:
        url = await listening_url(proc) + "?token=t"
        async with connect(url, additional_headers={"Origin": "https://hub.example.org"}):
            pass
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers={"Origin": "http://localhost:8888"}):
                pass
        assert refused.value.response.status_code == 403


async def test_certfile_and_keyfile_serve_wss(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    async with nbcall_process(
        "serve", "--port", "0", "--token", "t", "--certfile", str(cert), "--keyfile", str(key)
    ) as proc:
        url = await listening_url(proc)
        assert url.startswith("wss://127.0.0.1:")
        async with connect(url + "?token=t", ssl=ssl.create_default_context(cafile=str(cert))) as ws:
            await ws.send('{"type":"register","from":"A"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "registered"


async def test_missing_certificate_file_is_reported_and_exits_with_status_1(tmp_path: Path) -> None:
    async with nbcall_process("serve", "--port", "0", "--certfile", str(tmp_path / "nope.pem")) as proc:
        _, stderr_bytes = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 1
    assert "cannot start the signaling server" in stderr_bytes.decode()
    assert "Traceback" not in stderr_bytes.decode()


async def sfu_server_says(janus: str, secret: str, what: str) -> tuple[dict[str, Any], str]:
    """Run ``nbcall serve --sfu JANUS`` with ``secret`` in ``NBCALL_SFU_SECRET``: what a phone registering gets,
    and the first line of the log that names Janus (it must say ``what``), with the log up to the end."""
    async with nbcall_process(
        "serve", "--port", "0", "--token", "t", "--sfu", janus, env={"NBCALL_SFU_SECRET": secret}
    ) as proc:
        seen: list[str] = []
        url = await listening_url(proc, seen)
        async with connect(url + "?token=t") as ws:
            await ws.send('{"type":"register","from":"A","rooms":true}')
            registered = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert proc.stderr is not None
        for _ in range(20):
            if any(janus in line for line in seen):
                break
            seen.append((await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode())
        returncode, stderr = await stop(proc, signal.SIGTERM)
    assert returncode == 0, stderr
    said = next((line for line in seen if janus in line), "")
    assert what in said, seen
    return registered, "".join(seen) + stderr


async def test_serve_sfu_takes_janus_s_secret_from_the_environment_and_never_logs_it() -> None:
    if shutil.which("janus") is None:
        pytest.skip("janus is not installed (apt-get install janus)")
    with start_janus() as janus:
        registered, log = await sfu_server_says(janus.url, janus.api_secret, "answers")
    assert registered["type"] == "registered" and registered["sfu"] is True, registered
    assert janus.api_secret not in log


async def test_serve_sfu_starts_while_janus_is_down_and_warns_naming_it() -> None:
    with socket.socket() as sock:  # a port nobody listens on: Janus is not up (yet)
        sock.bind(("127.0.0.1", 0))
        janus = f"ws://127.0.0.1:{sock.getsockname()[1]}"
    registered, log = await sfu_server_says(janus, "sfu-secret-42", "does not answer")
    assert registered["sfu"] is True
    warning = next(line for line in log.splitlines() if janus in line)
    assert "WARNING" in warning and "mesh rooms and calls work" in warning
    assert "sfu-secret-42" not in log
