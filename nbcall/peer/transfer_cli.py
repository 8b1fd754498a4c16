"""``nbcall send`` and ``nbcall receive``: files between a terminal and a phone, a Python peer or another
terminal, over a call's data channel (:mod:`nbcall.call.transfer`), with a progress bar on each side.

Exit codes say what happened (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ..call import config, transfer
from ..call.files import SUCCESS
from ..call.progress import size_text
from ..exceptions import CallError, NbcallError

__all__ = ["CODE_EXITS", "EXIT_CODES", "add_commands", "exit_code", "receive", "send"]

logger = logging.getLogger("nbcall.cli")

OK = 0
BAD_INPUT = 2  # as argparse's usage errors: a missing or unreadable file, a malformed URL
NO_SERVER = 3
PEER_UNKNOWN = 4
DECLINED = 5
INTERRUPTED = 6
CHECKSUM = 7
REFUSED = 8
CTRL_C = 130

#: Every exit status of ``nbcall send`` and ``nbcall receive``, and what it means.
EXIT_CODES = {
    OK: "every file arrived and its sha256 matched",
    BAD_INPUT: "bad input: a missing or unreadable file, a malformed server URL or ID",
    NO_SERVER: "the signaling server is unknown, unreachable or refused the ID",
    PEER_UNKNOWN: "the peer is not online",
    DECLINED: "the peer declined, was busy or did not answer",
    INTERRUPTED: "the call ended before every file arrived",
    CHECKSUM: "a file arrived with another sha256 than was sent (it was not kept)",
    REFUSED: "the receiver refused a file: one of that name exists (receive with --force), another sender sends "
    "one of that name now, or it cannot write it",
    CTRL_C: "stopped with Ctrl-C",
}
#: The exit status for a verdict's code (:data:`nbcall.call.transfer.CODES`); any other code: INTERRUPTED.
CODE_EXITS = {
    "ok": OK,
    "same": OK,
    "checksum": CHECKSUM,
    "exists": REFUSED,
    "busy": REFUSED,
    "unwritable": REFUSED,
    "too-large": REFUSED,
}


def add_commands(commands: Any) -> None:
    """Add the ``send`` and ``receive`` subcommands to the ``nbcall`` parser."""
    epilog = "exit status:\n" + "\n".join(f"  {code:3}  {text}" for code, text in EXIT_CODES.items())
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server", required=True, metavar="URL", help="the signaling server (ws://HOST:PORT/ws?token=...)"
    )
    common.add_argument("--as", dest="user_id", required=True, metavar="ID", help="the ID to register as")
    common.add_argument("--timeout", type=float, default=30, metavar="SECONDS", help="wait this long for an answer (default: %(default)s)")  # fmt: skip
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    send_cmd = commands.add_parser(
        "send",
        parents=[common],
        help="send files to a phone or peer",
        description="Call PEER and send it files (a directory: its files, with their relative paths); each is "
        "checked by sha256 on arrival.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send_cmd.add_argument("peer", metavar="PEER", help="the ID to call")
    send_cmd.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="files or directories")
    send_cmd.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="send each file whole, even to a receiver that kept part of it from a cut transfer",
    )
    receive_cmd = commands.add_parser(
        "receive",
        parents=[common],
        help="receive files from the next call",
        description="Register, answer the next call and write the files it sends into --out; then exit.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    receive_cmd.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="where files go (default: .)"
    )
    receive_cmd.add_argument("--force", action="store_true", help="overwrite files that exist")
    receive_cmd.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="offer no part of a file kept from a cut transfer, and keep none: each file starts over",
    )
    receive_cmd.add_argument("--wait", type=float, default=None, metavar="SECONDS", help="give up if no call comes within this (default: wait forever)")  # fmt: skip


def exit_code(verdict_codes: list[str]) -> int:
    """The exit status for the verdicts on a transfer's files: that of the first failure, OK when none."""
    failed = [code for code in verdict_codes if code not in SUCCESS]
    return CODE_EXITS.get(failed[0], INTERRUPTED) if failed else OK


def _fail(command: str, code: int, text: str) -> int:
    logger.error("nbcall %s: %s", command, text)
    return code


def _open_peer(command: str, args: argparse.Namespace, **options: Any) -> Any:
    """A registered Peer, or an exit status with its one-line reason."""
    from .peer import Peer

    try:
        url = config.server_url(args.server)
    except (TypeError, ValueError) as exc:
        return _fail(command, BAD_INPUT, str(exc))
    try:
        return Peer(args.user_id, server=url, timeout=min(args.timeout, 10), **options)
    except ImportError as exc:
        return _fail(command, BAD_INPUT, str(exc))
    except ValueError as exc:
        return _fail(command, BAD_INPUT, str(exc))
    except (NbcallError, TimeoutError) as exc:
        return _fail(command, NO_SERVER, str(exc))


def send(args: argparse.Namespace) -> int:
    """Run ``nbcall send``; returns the exit status."""
    from ..call import kernel

    try:
        files = transfer.list_files(args.paths)
    except OSError as exc:
        return _fail("send", BAD_INPUT, str(exc))
    if not files:
        return _fail("send", BAD_INPUT, f"nothing to send in {' '.join(map(str, args.paths))}: no files")
    peer = _open_peer("send", args)
    if isinstance(peer, int):
        return peer
    total = sum(f.size for f in files)
    before = {
        id(item): sum(f.size for f in files[:n]) for n, item in enumerate(files)
    }  # bytes of earlier files
    bars: list[
        Any
    ] = []  # the bar starts with the first file, where it starts: a resumed file is partly there
    future: concurrent.futures.Future[dict[str, Any]] | None = None
    try:
        try:
            peer.call(args.peer)
            peer.wait("connected", timeout=args.timeout)
        except CallError as exc:
            unknown = peer.state == "failed" and "not online" in peer.error
            return _fail("send", PEER_UNKNOWN if unknown else DECLINED, peer.error or str(exc))
        except TimeoutError:
            peer.hangup()
            return _fail("send", DECLINED, f"{args.peer} did not answer within {args.timeout:g} s")

        def started(item: Any, offset: int, note: str) -> None:
            if note:
                logger.info("%s: %s", item.name, note)
            elif offset and offset == item.size:
                logger.info("%s: %s has it already (same sha256)", item.name, args.peer)
            if not bars:
                bars.append(_bar(args, total, item.name, before[id(item)] + offset))
            advanced(item, offset)

        def advanced(item: Any, done: int) -> None:
            if bars and bars[0] is not None:
                bars[0].set_description(item.name, refresh=False)
                bars[0].update(before[id(item)] + done - bars[0].n)

        sending = transfer.send_files(peer, files, resume=args.resume, on_chunk=advanced, on_start=started)
        future = kernel.submit(sending)
        while not future.done():
            if peer.state != "connected":
                future.cancel()
                return _fail(
                    "send", INTERRUPTED, f"the call ended during the transfer: {peer.error or peer.state}"
                )
            time.sleep(0.05)
        try:
            result = future.result()
        except ConnectionError as exc:
            return _fail("send", INTERRUPTED, f"the call ended during the transfer: {peer.error or exc}")
        if not result["ok"]:
            return _fail("send", exit_code([result["code"]]), result["error"])
        for bar in bars:
            if bar is not None:
                bar.close()
        logger.info("sent %d file(s) to %s, sha256 checked", len(files), args.peer)
        return OK
    except KeyboardInterrupt:
        if future is not None:
            future.cancel()
        peer.close(wait=False)  # the user stops now: no waiting for the bytes under way to arrive
        return _fail("send", CTRL_C, "stopped")
    finally:
        _close(bars)
        peer.close()


def receive(args: argparse.Namespace) -> int:
    """Run ``nbcall receive``; returns the exit status."""
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail("receive", BAD_INPUT, f"cannot use --out {out}: {exc.strerror or exc}")
    peer = _open_peer("receive", args, auto_answer=True, receive_dir=out, overwrite=args.force)
    if isinstance(peer, int):
        return peer
    peer.file_receiver.resume = args.resume
    bars: dict[str, Any] = {}

    def progress(p: dict[str, Any]) -> None:
        if p.get("direction") != "in" or not p.get("name"):
            return
        if p["name"] not in bars:  # its first report (a bar, or None with --quiet)
            # A resumed file's first report says where its bytes start: the bar starts there too.
            if 0 < p["done"] < (p.get("total") or 0):
                logger.info(
                    "%s: resumed at %s of %s", p["name"], size_text(p["done"], 1), size_text(p["total"], 1)
                )
            bars[p["name"]] = _bar(args, p.get("total"), p["name"], p["done"])
        bar = bars[p["name"]]
        if bar is not None:
            bar.update(p["done"] - bar.n)

    peer.on_progress(progress)
    logger.info("%s is waiting for a call at %s", peer.user_id, args.server.split("?")[0])
    try:
        try:
            peer.wait("connected", timeout=args.wait if args.wait is not None else 10**9)
        except TimeoutError:
            return _fail("receive", INTERRUPTED, f"no call came within {args.wait:g} s")
        try:
            peer.wait("ended", "failed", timeout=10**9)
        except CallError:
            pass
        _close(bars.values())
        received = peer.file_receiver.received
        for file in received:
            if file.code == "same":
                logger.info("had %s already (same sha256)", file.path)
            elif file.ok:
                logger.info("received %s (sha256 checked)", file.path)
        if peer.interrupted_files:
            return _fail("receive", INTERRUPTED, f"the call ended during {', '.join(peer.interrupted_files)}")
        failed = [f for f in received if not f.ok]
        exists = [f.name for f in failed if f.code == "exists"]
        if exists:  # said first: the failure the user can undo (--force, another --out)
            return _fail("receive", REFUSED, f"kept the existing {', '.join(exists)} (use --force)")
        if failed:
            what = ", ".join(f"{f.name} ({f.code})" for f in failed)
            return _fail("receive", exit_code([f.code for f in failed]), f"not kept: {what}")
        if not received:
            return _fail("receive", INTERRUPTED, f"the call from {peer.peer} ended before any file came")
        return OK
    except KeyboardInterrupt:
        peer.close(wait=False)
        return _fail("receive", CTRL_C, "stopped")
    finally:
        _close(bars.values())
        peer.close()


def _close(bars: Any) -> None:
    """Close the progress bars (None where ``--quiet`` made none)."""
    for bar in bars:
        if bar is not None:
            bar.close()


def _bar(args: argparse.Namespace, total: int | None, description: str, initial: int = 0) -> Any:
    if args.quiet:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
    )
