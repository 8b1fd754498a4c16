"""nbcall.teach.coturn: Debian's coturn on loopback, answering STUN, allocating relays for the right user only.

A missing coturn fails these tests in CI (scripts/test.sh installs it) and skips them elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import socket
import struct
from collections.abc import Iterator

import pytest

from nbcall.teach.coturn import TurnServer, TurnServerError, find_turnserver, start_turn_server

MAGIC = 0x2112A442


@pytest.fixture
def turn() -> Iterator[TurnServer]:
    if shutil.which("turnserver") is None and shutil.which("turnserver", path="/usr/sbin") is None:
        if os.environ.get("CI"):
            pytest.fail("coturn is not installed: scripts/test.sh installs it (apt-get install coturn)")
        pytest.skip("coturn is not installed (apt-get install coturn)")
    with start_turn_server(username="learner", credential="s3cret", realm="nbcall-test") as server:
        yield server


def attributes(message: bytes) -> dict[int, bytes]:
    found, offset = {}, 20
    while offset + 4 <= len(message):
        kind, length = struct.unpack("!HH", message[offset : offset + 4])
        found[kind] = message[offset + 4 : offset + 4 + length]
        offset += 4 + length + (-length % 4)
    return found


def attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def allocate(turn: TurnServer, username: str, credential: str) -> tuple[int, dict[int, bytes]]:
    """A TURN Allocate with long-term credentials (RFC 8656): the challenge, then the signed request.
    Returns the final response's message type (0x0103 success, 0x0113 error) and its attributes."""
    transport = attribute(0x0019, bytes([17, 0, 0, 0]))  # REQUESTED-TRANSPORT: UDP
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)

        def ask(body: bytes, sign_with: bytes | None = None) -> bytes:
            transaction = secrets.token_bytes(12)
            if sign_with is not None:
                # MESSAGE-INTEGRITY covers the header with a length that already counts the 24-byte attribute.
                header = struct.pack("!HHI", 0x0003, len(body) + 24, MAGIC) + transaction
                body += attribute(0x0008, hmac.new(sign_with, header + body, hashlib.sha1).digest())
            sock.sendto(
                struct.pack("!HHI", 0x0003, len(body), MAGIC) + transaction + body, (turn.host, turn.port)
            )
            return sock.recv(4096)

        challenge = attributes(ask(transport))
        realm, nonce = challenge[0x0014], challenge[0x0015]
        key = hashlib.md5(f"{username}:{realm.decode()}:{credential}".encode()).digest()
        body = (
            transport
            + attribute(0x0006, username.encode())
            + attribute(0x0014, realm)
            + attribute(0x0015, nonce)
        )
        reply = ask(body, sign_with=key)
        return struct.unpack("!H", reply[:2])[0], attributes(reply)


def test_coturn_answers_on_loopback_with_its_url_and_ice_server(turn: TurnServer) -> None:
    assert turn.running and turn.host == "127.0.0.1"
    assert turn.url == f"turn:127.0.0.1:{turn.port}"
    assert turn.ice_server == {"urls": turn.url, "username": "learner", "credential": "s3cret"}
    assert "learner" in repr(turn) and "s3cret" not in repr(turn)


def test_the_right_credentials_get_a_relay_address_and_wrong_ones_a_401(turn: TurnServer) -> None:
    kind, found = allocate(turn, "learner", "s3cret")
    assert kind == 0x0103, found.get(0x0009)  # Allocate success
    relayed = found[0x0016]  # XOR-RELAYED-ADDRESS: 127.0.0.1 xor the cookie's top bytes
    address = bytes(a ^ b for a, b in zip(relayed[4:8], struct.pack("!I", MAGIC)))
    assert socket.inet_ntoa(address) == "127.0.0.1"
    kind, found = allocate(turn, "learner", "wrong")
    assert kind == 0x0113  # Allocate error
    code = found[0x0009]
    assert code[2] * 100 + code[3] == 401


def test_close_stops_coturn_and_removes_its_directory(turn: TurnServer) -> None:
    directory = turn.log_path.parent
    assert directory.is_dir()
    turn.close()
    turn.close()  # idempotent
    assert not turn.running and not directory.exists()


def test_a_random_credential_unless_given(turn: TurnServer) -> None:
    with start_turn_server() as other:
        assert other.port != turn.port and other.username == "nbcall" and len(other.credential) == 16


def test_a_missing_coturn_says_how_to_install_it(tmp_path) -> None:
    with pytest.raises(TurnServerError, match="apt-get install coturn"):
        find_turnserver(tmp_path / "turnserver")
    with pytest.raises(TurnServerError, match="apt-get install coturn"):
        start_turn_server(executable=tmp_path / "nothing-here")


def test_a_turnserver_that_does_not_answer_fails_with_its_log(tmp_path) -> None:
    fake = tmp_path / "turnserver"
    fake.write_text("#!/bin/sh\necho 'cannot bind' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(TurnServerError, match="(?s)did not answer.*cannot bind"):
        start_turn_server(executable=fake, timeout=2)


def test_a_turnserver_that_answers_late_is_still_found_ready(tmp_path) -> None:
    # A busy machine: each answer comes after the next request was sent. Waiting for the latest request's answer
    # only stayed one answer behind until the timeout (seen in CI under load).
    fake = tmp_path / "turnserver"
    fake.write_text(
        f"#!{shutil.which('python3')}\n"
        "import socket, sys, time\n"
        "port = int(next(a for a in sys.argv if a.startswith('--listening-port=')).split('=')[1])\n"
        "sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "sock.bind(('127.0.0.1', port))\n"
        "while True:\n"
        "    request, peer = sock.recvfrom(2048)\n"
        "    time.sleep(0.3)\n"
        "    sock.sendto(bytes([1, 1, 0, 0]) + request[4:20], peer)  # a Binding success, same transaction\n"
    )
    fake.chmod(0o755)
    with start_turn_server(executable=fake, timeout=5) as server:
        assert server.running


def test_the_credential_is_not_on_coturns_command_line(turn: TurnServer) -> None:
    """``ps`` shows every process's command line to every user of the machine."""
    with open(f"/proc/{turn.pid}/cmdline", "rb") as cmdline:
        assert b"s3cret" not in cmdline.read()
    status, _ = allocate(turn, "learner", "s3cret")  # the user is there all the same
    assert status == 0x0103
