"""nbcall.teach.janus: Debian's Janus as a lesson or a test starts it, locked with its API secret, with only the
VideoRoom plugin and without its admin API.

A missing janus fails these tests in CI (scripts/test.sh installs it) and skips them elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbcall.teach.janus import JanusError, JanusServer, start_janus


@pytest.fixture
def janus() -> Iterator[JanusServer]:
    if shutil.which("janus") is None:
        if os.environ.get("CI"):
            pytest.fail("janus is not installed: scripts/test.sh installs it (apt-get install janus)")
        pytest.skip("janus is not installed (apt-get install janus)")
    with start_janus() as server:
        yield server


def api(janus: JanusServer, path: str = "", body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Janus's HTTP API answer to ``body`` (a GET of ``path`` without one)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(janus.http_url + path, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its sockets' inodes matched in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_janus_answers_only_with_its_api_secret_and_runs_videoroom_alone_without_its_admin_api(
    janus: JanusServer,
) -> None:
    refused = api(janus, body={"janus": "create", "transaction": "t1"})
    assert refused["janus"] == "error" and refused["error"]["code"] == 403, refused
    made = api(janus, body={"janus": "create", "transaction": "t2", "apisecret": janus.api_secret})
    assert made["janus"] == "success" and made["data"]["id"], made
    info = api(janus, "/info")
    assert info["api_secret"] is True
    assert list(info["plugins"]) == ["janus.plugin.videoroom"]
    assert sorted(info["transports"]) == ["janus.transport.http", "janus.transport.websockets"]
    # The API's two ports and nothing else: no admin API on any transport.
    assert listening_ports(janus.pid) == {janus.ws_port, janus.http_port}
    first, last = janus.rtp_ports
    assert (
        last - first == 99
        and f'rtp_port_range = "{first}-{last}"' in (janus.config_dir / "janus.jcfg").read_text()
    )
    # The secret is in a folder only this user reads, never on the command line that `ps` shows to everyone.
    assert janus.config_dir.stat().st_mode & 0o777 == 0o700
    assert janus.api_secret not in Path(f"/proc/{janus.pid}/cmdline").read_text()


def test_a_missing_janus_or_videoroom_plugin_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(
        JanusError, match=r"is not an executable file; install Janus: `sudo apt-get install janus`"
    ):
        start_janus(executable=tmp_path / "janus")
    executable = tmp_path / "janus"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    with pytest.raises(JanusError, match=r"has no libjanus_videoroom.so .*apt-get install janus"):
        start_janus(executable=executable, library=tmp_path)
