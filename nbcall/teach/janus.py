"""A Janus SFU for lessons and tests: Debian's ``janus`` with only its VideoRoom plugin, on loopback ports.

>>> with nbcall.teach.janus.start_janus() as janus:
...     server = await nbcall.server.serve(sfu=janus.url, sfu_secret=janus.api_secret)

Janus runs from a configuration folder made for it in a temporary directory: its plugin and transport folders
hold only ``libjanus_videoroom.so`` and the WebSocket and HTTP transports, both bound to 127.0.0.1 on free ports
with an ``api_secret`` (random unless given), the admin API off, a small RTP port range, mDNS candidates
ignored, and a ``reclaim_session_timeout`` (so that an SFU room outlives a restart of the nbcall server). Its system service is never started. Janus gathers ICE candidates on every interface but loopback, so
on a machine with a network it answers browsers on that machine's address; ``interface=`` limits ICE to the
interfaces named (the tests name a veth carrying 127.0.0.2 in their network namespace). Meant for learning and
testing: no TLS, and the API secret is the only lock.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..exceptions import NbcallError
from .local_server import LocalServer, spawn

__all__ = ["JanusError", "JanusServer", "start_janus"]

INSTALL_HINT = (
    "install Janus: `sudo apt-get install janus` on Debian or Ubuntu (never start its system service: nbcall "
    "starts its own); or pass executable= the path of janus and library= the folder holding its plugins/ and "
    "transports/"
)
#: Where Debian keeps Janus's plugins and transports.
DEBIAN_LIBRARY = "/usr/lib/x86_64-linux-gnu/janus"


class JanusError(NbcallError):
    """Janus is missing, or did not start (the message says why, with the end of its log)."""


class JanusServer(LocalServer):
    """A running Janus: ``url`` and ``api_secret`` for ``serve(sfu=..., sfu_secret=...)``; ``close()`` stops it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        directory: tempfile.TemporaryDirectory[str],
        host: str,
        ws_port: int,
        http_port: int,
        api_secret: str,
        rtp_ports: tuple[int, int],
    ) -> None:
        super().__init__(process, directory, "janus.log")
        self.host = host
        self.ws_port = ws_port
        self.http_port = http_port
        #: What every Janus API request must carry: give it to the nbcall server only, never to a browser.
        self.api_secret = api_secret
        #: The first and last UDP port Janus uses for media.
        self.rtp_ports = rtp_ports
        #: The configuration folder (``janus.jcfg`` and the plugin's and transports' files).
        self.config_dir = Path(directory.name)

    @property
    def url(self) -> str:
        """The WebSocket API, ``ws://127.0.0.1:PORT``: what ``nbcall serve --sfu`` takes."""
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def http_url(self) -> str:
        """The HTTP API, ``http://127.0.0.1:PORT/janus``."""
        return f"http://{self.host}:{self.http_port}/janus"

    def __repr__(self) -> str:
        return f"<JanusServer {self.url} {'running' if self.running else 'stopped'}>"


def find_janus(
    executable: str | os.PathLike[str] | None = None, library: str | os.PathLike[str] | None = None
) -> tuple[str, Path]:
    """Janus's executable and the folder of its ``plugins/`` and ``transports/``, or :class:`JanusError`."""
    if executable is not None:
        if not os.access(executable, os.X_OK):
            raise JanusError(f"{executable} is not an executable file; {INSTALL_HINT}")
        path = os.fspath(executable)
    else:
        found = shutil.which("janus") or shutil.which("janus", path="/usr/bin:/usr/local/bin:/opt/janus/bin")
        if found is None:
            raise JanusError(f"janus is not installed (not on PATH); {INSTALL_HINT}")
        path = found
    folder = Path(library) if library is not None else Path(DEBIAN_LIBRARY)
    if not (folder / "plugins" / "libjanus_videoroom.so").exists():
        raise JanusError(
            f"{folder}/plugins has no libjanus_videoroom.so (Janus's VideoRoom plugin); {INSTALL_HINT}"
        )
    return path, folder


def start_janus(
    *,
    host: str = "127.0.0.1",
    api_secret: str | None = None,
    interface: str | None = None,
    rtp_ports: tuple[int, int] | None = None,
    session_timeout: int = 60,
    reclaim_session_timeout: int = 60,
    executable: str | os.PathLike[str] | None = None,
    library: str | os.PathLike[str] | None = None,
    timeout: float = 15,
) -> JanusServer:
    """Start Janus on ``host`` (free ports) with only its VideoRoom plugin, and wait until its API answers.

    ``api_secret`` is random unless given. ``interface``: the only network interfaces Janus gathers ICE
    candidates on (comma-separated, as ``nat.ice_enforce_list``), every non-loopback one when ``None``.
    ``rtp_ports``: the UDP range for media (100 ports picked at random when ``None``). ``session_timeout``:
    seconds after which Janus drops a silent API session (its clients send keepalives).
    ``reclaim_session_timeout``: seconds a session outlives the connection that made it, so that a restarted
    nbcall server (or another node) can claim it and its rooms' media keep flowing (0: the session, and every
    room on it, ends with the connection). Raises
    :class:`JanusError` when Janus is missing or does not answer within ``timeout`` seconds (with the end of
    its log).
    """
    path, folder = find_janus(executable, library)
    api_secret = api_secret if api_secret is not None else secrets.token_urlsafe(24)
    if not api_secret or '"' in api_secret or "\\" in api_secret:
        raise ValueError("api_secret must be a non-empty string without quotes or backslashes")
    ws_port, http_port = _free_port(host), _free_port(host)
    if rtp_ports is None:
        first = random.randrange(20_000, 59_900, 100)
        rtp_ports = (first, first + 99)
    directory = tempfile.TemporaryDirectory(prefix="nbcall-janus-")
    work = Path(directory.name)
    for sub, names in (
        ("plugins", ["libjanus_videoroom.so"]),
        ("transports", ["libjanus_websockets.so", "libjanus_http.so"]),
        ("events", []),
        ("loggers", []),
    ):
        (work / sub).mkdir()
        for name in names:  # only these are loaded: Janus loads every .so in the folders it is given
            (work / sub / name).symlink_to(folder / sub / name)
    nat = f'  ice_enforce_list = "{interface}"\n' if interface else ""
    # Only this user may read the folder: its files hold the API secret (never on the command line, which
    # `ps` shows to everyone on the machine).
    os.chmod(work, 0o700)
    (work / "janus.jcfg").write_text(
        "general: {\n"
        f'  configs_folder = "{work}"\n'
        f'  plugins_folder = "{work / "plugins"}"\n'
        f'  transports_folder = "{work / "transports"}"\n'
        f'  events_folder = "{work / "events"}"\n'
        f'  loggers_folder = "{work / "loggers"}"\n'
        "  debug_level = 4\n"
        f'  api_secret = "{api_secret}"\n'
        f"  session_timeout = {int(session_timeout)}\n"
        f"  reclaim_session_timeout = {int(reclaim_session_timeout)}\n"
        '  server_name = "nbcall-janus"\n'
        "}\n"
        "media: {\n"
        f'  rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"\n'
        "}\n"
        "nat: {\n"
        f"{nat}"
        "  ignore_mdns = true\n"
        "  nice_debug = false\n"
        "}\n"
        "events: {\n  broadcast = false\n}\n",
        "utf-8",
    )
    (work / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n", "utf-8")  # no static rooms
    (work / "janus.transport.websockets.jcfg").write_text(
        "general: {\n"
        '  json = "compact"\n'
        "  ws = true\n"
        f"  ws_port = {ws_port}\n"
        f'  ws_ip = "{host}"\n'
        "  wss = false\n"
        "}\n"
        "admin: {\n  admin_ws = false\n  admin_wss = false\n}\n",
        "utf-8",
    )
    (work / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '  json = "compact"\n'
        '  base_path = "/janus"\n'
        "  http = true\n"
        f"  port = {http_port}\n"
        f'  ip = "{host}"\n'
        "  https = false\n"
        "}\n"
        "admin: {\n  admin_http = false\n  admin_https = false\n}\n",
        "utf-8",
    )
    command = [
        path,
        "-F",
        str(work),
        "-C",
        str(work / "janus.jcfg"),
        "-o",
        "-N",
        "-L",
        str(work / "janus.log"),
    ]
    server = JanusServer(spawn(command, work), directory, host, ws_port, http_port, api_secret, rtp_ports)
    server.wait_ready(
        lambda: _wait_until_listening(server, timeout),
        JanusError,
        f"janus ({path}) did not listen on {host}:{ws_port} within {timeout} s",
    )
    return server


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(server: JanusServer, timeout: float) -> None:
    """Wait until both transports accept connections (Janus loads its plugin before its transports)."""
    deadline = time.monotonic() + timeout
    for port in (server.ws_port, server.http_port):
        while True:
            if not server.running:
                raise JanusError("janus exited")
            try:
                with socket.create_connection((server.host, port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError from None
                time.sleep(0.05)
