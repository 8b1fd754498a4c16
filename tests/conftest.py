"""Fixtures shared by the server, phone, peer and command-line tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import TIMEOUT

from nbcall.call import kernel
from nbcall.server.server import SignalingServer, serve


@pytest.fixture
def server() -> Iterator[SignalingServer]:
    """A signaling server on the kernel's background loop, as a notebook starts one (closed afterwards)."""
    signaling = kernel.run(serve(), timeout=TIMEOUT)
    yield signaling

    async def stop() -> None:
        signaling.close()
        await signaling.wait_closed()

    kernel.run(stop(), timeout=TIMEOUT)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 and localhost, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """Phones, peers and raw clients a test made, closed at its end (the last made first)."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.close()
