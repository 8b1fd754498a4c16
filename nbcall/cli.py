"""Command line: ``nbcall serve`` runs a signaling server until Ctrl-C or SIGTERM; ``nbcall send`` and
``nbcall receive`` move files over a call (:mod:`nbcall.peer.transfer_cli`).

Every limit of :func:`nbcall.server.serve` has a flag; 0 disables a limit. Without
``--token`` (or ``NBCALL_TOKEN``) the server warns that anyone who can reach it may register.
The server runs on uvloop when it is installed (the ``server`` extra), which spends less CPU per
relayed message than asyncio's own loop (figures in bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import signal
import ssl
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from .peer import transfer_cli
from .server.server import serve
from .wire.faults import Faults

__all__ = ["main"]

# The limits' defaults are serve()'s own, so the two can never disagree.
_DEFAULTS = {name: p.default for name, p in inspect.signature(serve).parameters.items()}

logger = logging.getLogger("nbcall.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nbcall`` command; return its exit status."""
    args = _parser().parse_args(argv)
    if args.command in ("send", "receive"):
        # One line per event, for people: no timestamps, and nbcall's own warnings only.
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
        for noisy in ("websockets", "aioice", "aiortc", "nbcall.peer.peer", "nbcall.call.client"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        run = transfer_cli.send if args.command == "send" else transfer_cli.receive
        return run(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs one line per connection opened or closed (and every frame at DEBUG), which
    # would drown who registered and who called whom; its warnings and errors still show.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        return _run(_serve_until_stopped(args))
    except KeyboardInterrupt:  # where signal handlers are unavailable (Windows)
        logger.info("nbcall signaling server stopped")
        return 0


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when installed (``pip install nbcall[server]``), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        logger.debug("uvloop is not installed: running on asyncio's default event loop")
        return asyncio.run(main)
    return uvloop.run(main)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbcall", description="nbcall: a WebRTC phone for Jupyter.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd = commands.add_parser(
        "serve",
        help="run a signaling server",
        description="Run a signaling server that relays call/answer/ice messages between phones. "
        "For a server others can reach, give it a --token and, off localhost, --certfile/--keyfile.",
        epilog="Limits set to 0 are disabled.",
    )
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve_cmd.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 for any free one (default: %(default)s)"
    )
    serve_cmd.add_argument("--path", default="/ws", help="WebSocket path (default: %(default)s)")
    access = serve_cmd.add_argument_group("who may connect")
    access.add_argument(
        "--token",
        default=os.environ.get("NBCALL_TOKEN") or None,
        help="clients must connect to URL?token=TOKEN (default: $NBCALL_TOKEN; without either, "
        "anyone who can reach the server may register)",
    )
    access.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser origin allowed to connect, e.g. https://hub.example.org; '*' in it matches "
        "anything, '*' alone any origin; repeatable (default: localhost, 127.0.0.1 and [::1], any port; "
        "clients sending no Origin, such as Python ones, are always allowed)",
    )
    access.add_argument("--certfile", help="serve TLS (wss://) with this PEM certificate chain")
    access.add_argument("--keyfile", help="the certificate's private key (default: in --certfile)")
    access.add_argument(
        "--max-connections",
        type=int,
        default=_DEFAULTS["max_connections"],
        metavar="N",
        help="further connections get HTTP 503 (default: %(default)s)",
    )
    access.add_argument(
        "--open-timeout",
        type=float,
        default=_DEFAULTS["open_timeout"],
        metavar="SECONDS",
        help="time allowed for the TLS and WebSocket handshakes (default: %(default)s)",
    )
    sending = serve_cmd.add_argument_group("what each connection may send")
    sending.add_argument(
        "--max-message-size",
        type=int,
        default=_DEFAULTS["max_message_size"],
        metavar="BYTES",
        help="larger messages get a too-big error (default: %(default)s)",
    )
    sending.add_argument(
        "--max-rate",
        type=float,
        default=_DEFAULTS["max_rate"],
        metavar="PER_SECOND",
        help="messages per second per connection; more get a rate-limited error (default: %(default)s)",
    )
    sending.add_argument(
        "--max-burst",
        type=int,
        default=_DEFAULTS["max_burst"],
        metavar="N",
        help="bursts allowed above the rate (default: %(default)s)",
    )
    sending.add_argument(
        "--max-refused",
        type=int,
        default=_DEFAULTS["max_refused"],
        metavar="N",
        help="rate-limited messages within 10 s that close the connection (default: %(default)s)",
    )
    keeping_up = serve_cmd.add_argument_group("what each connection must keep up with")
    keeping_up.add_argument(
        "--max-pending-bytes",
        type=int,
        default=_DEFAULTS["max_pending_bytes"],
        metavar="BYTES",
        help="unread data after which a slow reader is disconnected (default: %(default)s)",
    )
    keeping_up.add_argument(
        "--ping-interval",
        type=float,
        default=_DEFAULTS["ping_interval"],
        metavar="SECONDS",
        help="keepalive (default: %(default)s)",
    )
    keeping_up.add_argument(
        "--ping-timeout",
        type=float,
        default=_DEFAULTS["ping_timeout"],
        metavar="SECONDS",
        help="a client not answering a ping within this is dropped (default: %(default)s)",
    )
    rooms = serve_cmd.add_argument_group("rooms")
    rooms.add_argument(
        "--max-room-size",
        type=int,
        default=_DEFAULTS["max_room_size"],
        metavar="N",
        help="members of one room; more get a room-full error (default: %(default)s)",
    )
    rooms.add_argument(
        "--invitation-ttl",
        type=float,
        default=_DEFAULTS["invitation_ttl"],
        metavar="SECONDS",
        help="an invitation into a room unanswered this long is withdrawn (default: %(default)s)",
    )
    rooms.add_argument(
        "--room-grace",
        type=float,
        default=_DEFAULTS["room_grace"],
        metavar="SECONDS",
        help="a member whose connection is gone stays a member this long, to reconnect "
        "(default: %(default)s)",
    )
    cluster = serve_cmd.add_argument_group(
        "several nodes as one deployment (README: Deployment)",
        "Servers given the same Redis share one registry: IDs are unique across them, presence lists "
        "merge and phones on different nodes call each other. Needs pip install 'nbcall[redis]'.",
    )
    cluster.add_argument(
        "--redis",
        default=os.environ.get("NBCALL_REDIS") or None,
        metavar="URL",
        help="the shared registry: redis://[:PASSWORD@]HOST:PORT/DB, or rediss://... for TLS (add "
        "?ssl_ca_certs=FILE for a private CA) (default: $NBCALL_REDIS; without either, a standalone server)",
    )
    cluster.add_argument(
        "--node-id",
        default=None,
        metavar="NAME",
        help="this node's name in the registry and in logs, unique per process (default: random)",
    )
    cluster.add_argument(
        "--heartbeat",
        type=float,
        default=_DEFAULTS["heartbeat"],
        metavar="SECONDS",
        help="how often this node renews its claim in the registry (default: %(default)s)",
    )
    cluster.add_argument(
        "--registry-ttl",
        type=float,
        default=_DEFAULTS["registry_ttl"],
        metavar="SECONDS",
        help="a node silent this long (killed, cut off) is taken for gone and its IDs are freed "
        "(default: %(default)s)",
    )
    serve_cmd.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="none",
        help="accept permessage-deflate when browsers offer it; off by default, since signaling "
        "messages gain little from it and each compressed connection costs memory (default: %(default)s)",
    )
    teaching = serve_cmd.add_argument_group(
        "faults on purpose",
        "for teaching: what the server relays is broken on purpose, to see what each fault does",
    )
    teaching.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="TYPE",
        help="never relay messages of this type (ice, answer, ...)",
    )
    teaching.add_argument(
        "--delay", type=float, default=0.0, metavar="SECONDS", help="relay each message this late"
    )
    teaching.add_argument(
        "--reorder", action="append", default=[], metavar="TYPE", help="relay bursts of this type last first"
    )
    teaching.add_argument(
        "--candidate-types",
        metavar="TYPES",
        help="relay only ICE candidates of these types, comma-separated (host, srflx, prflx, relay)",
    )
    serve_cmd.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log nbcall's DEBUG lines (each refused message); never tokens, secrets or SDP",
    )
    transfer_cli.add_commands(commands)
    return parser


async def _serve_until_stopped(args: argparse.Namespace) -> int:
    ssl_context = None
    try:
        if args.certfile:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(args.certfile, args.keyfile)
        elif args.keyfile:
            raise ValueError("--keyfile needs --certfile")
        options: dict[str, Any] = (
            {"origins": args.allow_origin} if args.allow_origin else {}
        )  # else localhost
        if args.drop or args.delay or args.reorder or args.candidate_types:
            kinds = args.candidate_types.split(",") if args.candidate_types else None
            options["faults"] = Faults.of(
                {"drop": args.drop, "delay": args.delay, "reorder": args.reorder, "candidate_types": kinds}
            )
        server = await serve(
            args.host,
            args.port,
            path=args.path,
            token=args.token,
            ssl_context=ssl_context,
            max_connections=args.max_connections or None,
            open_timeout=args.open_timeout or None,
            max_message_size=args.max_message_size or None,
            max_frame_size=max(2**20, 2 * args.max_message_size) if args.max_message_size else None,
            max_rate=args.max_rate or None,
            max_burst=args.max_burst,
            max_refused=args.max_refused or None,
            max_pending_bytes=args.max_pending_bytes or None,
            ping_interval=args.ping_interval or None,
            ping_timeout=args.ping_timeout or None,
            max_room_size=args.max_room_size or None,
            invitation_ttl=args.invitation_ttl or None,
            room_grace=args.room_grace or None,
            redis=args.redis,
            node_id=args.node_id,
            heartbeat=args.heartbeat,
            registry_ttl=args.registry_ttl,
            compression=None if args.compression == "none" else "deflate",
            **options,
        )
    except (OSError, ValueError, ImportError, ssl.SSLError) as exc:
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
    logger.info("nbcall signaling server listening on %s", server.url_without_token)
    if server.registry is not None:
        logger.info("node %s of the deployment sharing %r", server.registry.node, server.registry)
    if server.requires_token:
        logger.info("clients must add ?token=... (the token given with --token or NBCALL_TOKEN) to that URL")
    else:
        logger.warning(
            "no --token and no NBCALL_TOKEN: ANYONE WHO CAN REACH %s MAY REGISTER and take any free ID; "
            "start it with --token SECRET (or NBCALL_TOKEN=SECRET) and give phones %s?token=SECRET",
            server.url_without_token,
            server.url_without_token,
        )
    try:
        await server.wait_closed()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    logger.info("nbcall signaling server stopped")
    return 0
