"""Command line: ``nbcall serve`` runs a signaling server (:mod:`nbcall.server.cli`); ``nbcall send`` and
``nbcall receive`` move files over a call (:mod:`nbcall.peer.transfer_cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .peer import transfer_cli
from .server import cli as server_cli

__all__ = ["main", "parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nbcall`` command; return its exit status."""
    args = parser().parse_args(argv)
    if args.command == "serve":
        return server_cli.run(args)
    # One line per event, for people: no timestamps, and nbcall's own warnings only.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for noisy in ("websockets", "aioice", "aiortc", "nbcall.peer.peer", "nbcall.call.client"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    run = transfer_cli.send if args.command == "send" else transfer_cli.receive
    return run(args)


def parser() -> argparse.ArgumentParser:
    """The ``nbcall`` command's parser: ``serve``, ``send`` and ``receive``."""
    nbcall = argparse.ArgumentParser(prog="nbcall", description="nbcall: a WebRTC phone for Jupyter.")
    commands = nbcall.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server_cli.add_command(commands)
    transfer_cli.add_commands(commands)
    return nbcall
