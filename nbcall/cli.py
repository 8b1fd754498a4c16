"""Command line: ``nbcall serve`` runs a signaling server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from .server import serve

__all__ = ["main"]

logger = logging.getLogger("nbcall.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nbcall`` command; return its exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # One line per connection opened or closed would drown who registered and who called whom.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        return asyncio.run(_serve_until_stopped(args))
    except KeyboardInterrupt:  # where signal handlers are unavailable (Windows)
        logger.info("nbcall signaling server stopped")
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbcall", description="nbcall: a WebRTC phone for Jupyter.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd = commands.add_parser(
        "serve",
        help="run a signaling server",
        description="Run a signaling server that relays call/answer/ice messages between phones.",
    )
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve_cmd.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 for any free one (default: %(default)s)"
    )
    serve_cmd.add_argument("--path", default="/ws", help="WebSocket path (default: %(default)s)")
    serve_cmd.add_argument(
        "--max-message-size",
        type=int,
        default=64 * 1024,
        metavar="BYTES",
        help="larger messages get a too-big error; 0 disables the limit (default: %(default)s)",
    )
    serve_cmd.add_argument("-v", "--verbose", action="store_true", help="log every frame (DEBUG)")
    return parser


async def _serve_until_stopped(args: argparse.Namespace) -> int:
    try:
        server = await serve(
            args.host,
            args.port,
            path=args.path,
            max_message_size=args.max_message_size or None,
            max_frame_size=max(2**20, 2 * args.max_message_size) if args.max_message_size else None,
        )
    except (OSError, ValueError) as exc:
        logger.error("cannot start the signaling server on %s:%s: %s", args.host, args.port, exc)
        return 1
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, server.close)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C arrives as KeyboardInterrupt
            pass
    logger.info("nbcall signaling server listening on %s", server.url)
    try:
        await server.wait_closed()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    logger.info("nbcall signaling server stopped")
    return 0
