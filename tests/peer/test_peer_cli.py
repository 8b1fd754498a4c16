"""``nbcall send`` and ``nbcall receive`` as a user runs them: real processes, a real signaling server.

The transfers do WebRTC and are marked ``webrtc`` (run in the loopback-only namespace); the bad-input cases
fail before any call and run anywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port, wait_until_sync

from nbcall import Peer
from nbcall.peer.transfer_cli import BAD_INPUT, CTRL_C, DECLINED, NO_SERVER, OK, PEER_UNKNOWN, REFUSED
from nbcall.server.server import SignalingServer

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


def nbcall_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "nbcall", *map(str, args)]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nbcall_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env(), check=False
    )


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def receiving(server: SignalingServer, user_id: str, out: Path) -> subprocess.Popen[str]:
    """``nbcall receive`` as ``user_id`` into ``out``, its stderr kept."""
    command = nbcall_cmd("receive", "--server", server.url, "--as", user_id, "--out", out)
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env())


def send_and_receive(
    server: SignalingServer, path: Path, out: Path, receiver_id: str = "R"
) -> tuple[subprocess.CompletedProcess[str], str]:
    """``nbcall send`` of ``path`` to an ``nbcall receive`` into ``out``; both exit 0. Returns the send and
    what the receiver said."""
    receiver = receiving(server, receiver_id, out)
    try:
        online(server, receiver_id)
        sent = run("send", "--server", server.url, "--as", f"S{receiver_id}", receiver_id, path, timeout=180)
        assert sent.returncode == OK, sent.stderr
        assert receiver.wait(60) == OK
    finally:
        receiver.kill()
    return sent, receiver.stderr.read() if receiver.stderr else ""


def online(server: SignalingServer, user_id: str) -> None:
    with Peer("watcher", server=server.url) as watcher:
        wait_until_sync(lambda: user_id in watcher.peers, f"{user_id} online", 30)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha\n")
    (folder / "sub" / "big.bin").write_bytes(os.urandom(3 * 2**20 + 7))
    (folder / "sub" / "empty").write_bytes(b"")
    return folder


@pytest.mark.webrtc
def test_a_directory_goes_from_one_terminal_to_another_with_checksums(
    server: SignalingServer, tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sent, received = send_and_receive(server, tree, out)
    assert digests(out / "tree") == digests(tree)
    assert "sent 3 file(s) to R" in sent.stderr and "100%" in sent.stderr  # the progress bar finished
    assert "received" in received and "big.bin" in received


@pytest.mark.webrtc
def test_a_quiet_receiver_exits_0_once_the_file_is_in(server: SignalingServer, tmp_path: Path) -> None:
    source, out = tmp_path / "data.bin", tmp_path / "out"
    source.write_bytes(os.urandom(8 * 2**20))  # several progress reports
    command = nbcall_cmd("receive", "-q", "--server", server.url, "--as", "RQ", "--out", out)
    receiver = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env())
    try:
        online(server, "RQ")
        sent = run("send", "-q", "--server", server.url, "--as", "SQ", "RQ", source, timeout=180)
        assert sent.returncode == OK, sent.stderr
        assert receiver.wait(60) == OK  # it raised once
    finally:
        receiver.kill()
    said = receiver.stderr.read() if receiver.stderr else ""
    assert "resumed" not in said, said  # it once took every progress report for a resume's first
    assert (out / "data.bin").read_bytes() == source.read_bytes()


@pytest.mark.webrtc
def test_a_terminal_sends_to_a_python_peer_which_keeps_existing_files(
    server: SignalingServer, tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "inbox"
    out.mkdir()
    (out / "a.txt").write_text("mine")
    with Peer("P", server=server.url, auto_answer=True, receive_dir=out) as p:
        sent = run("send", "-q", "--server", server.url, "--as", "S", "P", tree / "sub" / "big.bin")
        assert sent.returncode == OK, sent.stderr
        assert (out / "big.bin").read_bytes() == (tree / "sub" / "big.bin").read_bytes()
        assert p.messages[-1].name == "big.bin"
        refused = run("send", "-q", "--server", server.url, "--as", "S", "P", tree / "a.txt")
        assert refused.returncode == REFUSED
        assert "a.txt exists" in refused.stderr
        assert (out / "a.txt").read_text() == "mine"


@pytest.mark.webrtc
def test_an_exists_refusal_exits_8_whatever_the_receivers_folder_is_called(
    server: SignalingServer, tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "checksums"  # words in the refusal's text once picked the exit status
    out.mkdir()
    (out / "a.txt").write_text("mine")
    with Peer("P", server=server.url, auto_answer=True, receive_dir=out):
        refused = run("send", "-q", "--server", server.url, "--as", "S", "P", tree / "a.txt")
    assert refused.returncode == REFUSED, refused.stderr
    assert "a.txt exists in" in refused.stderr and (out / "a.txt").read_text() == "mine"


@pytest.mark.webrtc
def test_a_receiver_killed_mid_transfer_is_resumed_by_the_next_send(
    server: SignalingServer, tmp_path: Path
) -> None:
    big, out = tmp_path / "big.bin", tmp_path / "out"
    big.write_bytes(os.urandom(24 * 2**20))
    partial = out / ".big.bin.nbcall-partial"
    receiver = subprocess.Popen(
        nbcall_cmd("receive", "--server", server.url, "--as", "R", "--out", out), env=env()
    )
    sender = None
    try:
        online(server, "R")
        sender = subprocess.Popen(
            nbcall_cmd("send", "-q", "--server", server.url, "--as", "S", "R", big),
            env={**env(), "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
            stderr=subprocess.PIPE,
            text=True,
            # As at a terminal: a test run started in the background (`cmd &` in a script) has SIGINT ignored,
            # which children inherit, and Python then installs no KeyboardInterrupt handler.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
        )
        wait_until_sync(
            lambda: partial.exists() and partial.stat().st_size >= 4 * 2**20, "4 MiB to arrive", 60
        )
        receiver.kill()  # SIGKILL: no cleanup, its lock on the partial file dies with it
        receiver.wait()
        sender.send_signal(signal.SIGINT)  # the user gives up on the stalled send...
        # ...and it stops at once (in under a second here): it does not first wait out its 10 s for the bytes
        # under way to reach a receiver that is gone.
        try:
            _, said = sender.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            sender.send_signal(signal.SIGABRT)
            pytest.fail(f"nbcall send still ran 10 s after Ctrl-C; its threads:\n{sender.communicate()[1]}")
        assert sender.returncode == CTRL_C and said.strip().endswith("nbcall send: stopped"), said
    finally:
        for process in (receiver, sender):
            if process is not None:
                process.kill()
                process.wait()
    kept = partial.stat().st_size
    assert 0 < kept < big.stat().st_size and not (out / "big.bin").exists()

    # The ID R is held a while for the killed process: the new receiver registers as R2, into the same folder.
    again, received = send_and_receive(server, big, out, receiver_id="R2")
    assert re.search(r"big\.bin: resumed at \d+\.\d MiB of 24\.0 MiB", again.stderr), again.stderr
    assert not re.search(r"\b0%\|", again.stderr)  # the progress bar starts where the file resumed
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["big.bin"]  # no partial file left
    assert "big.bin: resumed at" in received


@pytest.mark.webrtc
def test_no_resume_sends_the_whole_file_and_a_directory_sent_again_is_skipped(
    server: SignalingServer, tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "inbox"
    out.mkdir()
    kept = out / ".big.bin.nbcall-partial"  # as a cut transfer left it: a true first MiB of the file
    kept.write_bytes((tree / "sub" / "big.bin").read_bytes()[: 2**20])
    with Peer("P", server=server.url, auto_answer=True, receive_dir=out):
        whole = run(
            "send", "-q", "--no-resume", "--server", server.url, "--as", "S", "P", tree / "sub" / "big.bin"
        )
        assert whole.returncode == OK, whole.stderr
        assert "resumed" not in whole.stderr and "started over" not in whole.stderr
        sent = run("send", "-q", "--server", server.url, "--as", "S", "P", tree)
        assert sent.returncode == OK, sent.stderr
        again = run("send", "-q", "--server", server.url, "--as", "S", "P", tree)  # exited 8 on a.txt once
        assert again.returncode == OK, again.stderr
    assert "tree/a.txt: P has it already (same sha256)" in again.stderr
    assert digests(out / "tree") == digests(tree)
    assert (out / "big.bin").read_bytes() == (tree / "sub" / "big.bin").read_bytes()
    assert not kept.exists()  # started over: the partial file went


@pytest.mark.webrtc
def test_unknown_and_declining_peers_have_their_exit_codes(server: SignalingServer, tree: Path) -> None:
    unknown = run("send", "--server", server.url, "--as", "S", "Nobody", tree / "a.txt")
    assert unknown.returncode == PEER_UNKNOWN
    assert "'Nobody' is not online" in unknown.stderr
    with Peer("D", server=server.url) as d:
        declined = subprocess.Popen(
            nbcall_cmd("send", "--server", server.url, "--as", "S", "D", tree / "a.txt"),
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        d.wait("ringing", timeout=30)
        d.decline()
        assert declined.wait(30) == DECLINED
        assert "D declined the call" in (declined.stderr.read() if declined.stderr else "")


def test_bad_input_gets_one_clear_line_and_its_exit_code(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    missing = run("send", "--server", url, "--as", "S", "P", tmp_path / "nope.txt")
    assert missing.returncode == BAD_INPUT
    assert missing.stderr.strip() == f"nbcall send: no such file or directory: {tmp_path / 'nope.txt'}"
    if os.geteuid() != 0:  # root reads any file
        secret = tmp_path / "secret"
        secret.write_text("x")
        secret.chmod(0)
        unreadable = run("send", "--server", url, "--as", "S", "P", secret)
        assert unreadable.returncode == BAD_INPUT and "cannot read" in unreadable.stderr
    (tmp_path / "ok.txt").write_text("x")
    unknown_server = run("send", "--server", url, "--as", "S", "P", tmp_path / "ok.txt")
    assert unknown_server.returncode == NO_SERVER
    lines = unknown_server.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not connect to the signaling server" in lines[0]
    bad_url = run("receive", "--server", "example.org", "--as", "R")
    assert bad_url.returncode == BAD_INPUT and "is not a websocket URL" in bad_url.stderr
    # A checksum mismatch (exit status 7) is decided by FileReceiver and its code: tests/call/test_transfer.py.
