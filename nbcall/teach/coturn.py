"""A TURN server for lessons and tests: Debian's coturn (``turnserver``) on loopback, with a user and a realm.

>>> with nbcall.teach.coturn.start_turn_server() as turn:
...     a = nbcall.Phone("A", ice_servers=[turn.ice_server], ice_transport_policy="relay")

The server listens on 127.0.0.1 on a free port, keeps its log, pid file and user database in a temporary
directory of its own, and relays to loopback peers too (``--allow-loopback-peers``: coturn refuses them by
default, which would make a one-machine lesson impossible). It is meant for learning and testing, not as a
production TURN server: no TLS, a static user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..exceptions import NbcallError
from .local_server import LocalServer, spawn

__all__ = ["TurnServer", "TurnServerError", "start_turn_server"]

INSTALL_HINT = (
    "install coturn: `sudo apt-get install coturn` on Debian or Ubuntu (scripts/lab.sh does it where it can), "
    "`brew install coturn` on macOS; or pass executable= the path of turnserver"
)


class TurnServerError(NbcallError):
    """coturn is missing, or did not start (the message says why and where its log is)."""


class TurnServer(LocalServer):
    """A running coturn: ``url`` and ``ice_server`` (for ``Phone(ice_servers=[...])``); ``close()`` stops it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        directory: tempfile.TemporaryDirectory[str],
        host: str,
        port: int,
        username: str,
        credential: str,
        realm: str,
    ) -> None:
        # coturn's log (``-v``: each allocation and permission is logged) is turn.log.
        super().__init__(process, directory, "turn.log")
        self.host = host
        self.port = port
        self.username = username
        self.credential = credential
        self.realm = realm

    @property
    def url(self) -> str:
        """``turn:127.0.0.1:PORT`` (UDP)."""
        return f"turn:{self.host}:{self.port}"

    @property
    def ice_server(self) -> dict[str, Any]:
        """The entry for ``Phone(ice_servers=[...])`` and ``RTCPeerConnection``'s ``iceServers``."""
        return {"urls": self.url, "username": self.username, "credential": self.credential}

    def __repr__(self) -> str:
        return f"<TurnServer {self.url} user {self.username!r} realm {self.realm!r} {'running' if self.running else 'stopped'}>"


def find_turnserver(executable: str | os.PathLike[str] | None = None) -> str:
    """The path of coturn's ``turnserver``; :class:`TurnServerError` saying how to install it when missing."""
    if executable is not None:
        if not os.access(executable, os.X_OK):
            raise TurnServerError(f"{executable} is not an executable file; {INSTALL_HINT}")
        return os.fspath(executable)
    # Debian puts it in /usr/bin; some systems in /usr/sbin, which a user's PATH may lack.
    found = shutil.which("turnserver") or shutil.which("turnserver", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise TurnServerError(f"coturn's turnserver is not installed (not on PATH); {INSTALL_HINT}")
    return found


def start_turn_server(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    username: str = "nbcall",
    credential: str | None = None,
    realm: str = "nbcall",
    executable: str | os.PathLike[str] | None = None,
    timeout: float = 10,
) -> TurnServer:
    """Start coturn on ``host`` (a free port unless ``port``) with one long-term user, and wait until it answers.

    ``credential`` is random unless given. Raises :class:`TurnServerError` when coturn is missing or does not
    answer within ``timeout`` seconds (with the end of its log).
    """
    path = find_turnserver(executable)
    port = port or _free_port(host)
    credential = credential if credential is not None else secrets.token_hex(8)
    directory = tempfile.TemporaryDirectory(prefix="nbcall-turn-")
    work = Path(directory.name)
    # The user and its credential go in a configuration file only this user may read, not on the command line,
    # which `ps` shows to everyone on the machine.
    config = work / "turnserver.conf"
    config.touch(mode=0o600)
    config.write_text(f"user={username}:{credential}\n", "utf-8")
    command = [
        path,
        "-c",
        str(config),
        f"--listening-ip={host}",
        f"--relay-ip={host}",
        f"--listening-port={port}",
        f"--realm={realm}",
        "--lt-cred-mech",
        "--fingerprint",
        "--no-tls",
        "--no-dtls",
        "--allow-loopback-peers",
        "--no-cli",
        "-v",
        f"--log-file={work / 'turn.log'}",
        "--simple-log",
        "--no-stdout-log",
        f"--pidfile={work / 'turn.pid'}",
        f"--userdb={work / 'turndb'}",
    ]
    server = TurnServer(spawn(command, work), directory, host, port, username, credential, realm)
    server.wait_ready(
        lambda: _wait_until_answering(server, timeout),
        TurnServerError,
        f"coturn ({path}) did not answer on {host}:{port} within {timeout} s",
    )
    return server


def _free_port(host: str) -> int:
    # A port free for UDP and TCP both: coturn listens on both.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind((host, 0))
        port = tcp.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host, port))
    return int(port)


def _wait_until_answering(server: TurnServer, timeout: float) -> None:
    """Send STUN Binding requests until coturn answers one (it is then ready for allocations)."""
    deadline = time.monotonic() + timeout
    # An answer to any request sent counts: on a busy machine coturn may answer one after the next was sent,
    # and waiting for the latest only would stay one answer behind for ever.
    sent: set[bytes] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while True:
            if not server.running:
                raise TurnServerError("coturn exited")
            transaction = secrets.token_bytes(12)
            sent.add(transaction)
            # RFC 8489: type Binding request, length 0, the magic cookie, a transaction ID.
            sock.sendto(struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction, (server.host, server.port))
            try:
                reply = sock.recv(2048)
                if reply[8:20] in sent:
                    return
            except OSError:
                pass  # no answer yet (a timeout, or ICMP port unreachable while it starts)
            if time.monotonic() > deadline:
                raise TimeoutError
