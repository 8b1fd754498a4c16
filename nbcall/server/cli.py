"""``nbcall serve``: run a signaling server until Ctrl-C or SIGTERM.

Every field of :class:`~nbcall.server.limits.Limits` has a flag, made from the field (its
name, unit, group, default and help), so a new limit gets its flag by being defined; 0 disables a
limit. Without ``--token`` (or ``NBCALL_TOKEN``) the server warns that anyone who can reach it
may register. The server runs on uvloop when it is installed (the ``server`` extra), which spends
less CPU per relayed message than asyncio's own loop (figures in bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import logging
import os
import signal
import ssl
import sys
from collections.abc import Coroutine
from typing import Any

from ..wire.faults import Faults
from .limits import DEFAULT_LIMITS, GROUPS, Limits, shown_default
from .server import SignalingServer, serve

__all__ = ["add_command", "limit_options", "run", "serve_until_stopped", "start"]

logger = logging.getLogger("nbcall.cli")

# The cluster's defaults are serve()'s own, so the two can never disagree.
_DEFAULTS = {name: p.default for name, p in inspect.signature(serve).parameters.items()}


def _add_from_env(
    group: argparse._ArgumentGroup, flag: str, env: str, text: str, otherwise: str, **options: Any
) -> None:
    """Add ``flag`` to ``group``, its default the environment variable ``env`` (unset or empty: none); its help is
    ``text``, then where the default comes from and what ``otherwise`` happens."""
    default = os.environ.get(env) or None
    group.add_argument(flag, default=default, help=f"{text} (default: ${env}; {otherwise})", **options)


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``serve`` and its flags to ``commands`` (``nbcall``'s subcommands)."""
    serve_cmd = commands.add_parser(
        "serve",
        help="run a signaling server",
        description="Run a signaling server that relays call/answer/ice messages between phones. "
        "For a server others can reach, give it a --token and, off localhost, --certfile/--keyfile.",
        epilog="Limits set to 0 are disabled (--room-grace 0: no grace).",
    )
    serve_cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve_cmd.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 for any free one (default: %(default)s)"
    )
    serve_cmd.add_argument("--path", default="/ws", help="WebSocket path (default: %(default)s)")
    groups = {group: serve_cmd.add_argument_group(group) for group in GROUPS}
    access = groups[GROUPS[0]]
    _add_from_env(
        access,
        "--token",
        "NBCALL_TOKEN",
        "clients must present TOKEN, in an 'Authorization: Bearer TOKEN' header or as URL?token=TOKEN",
        "without either, anyone who can reach the server may register",
    )
    access.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser origin allowed to connect, e.g. https://hub.example.org; '*' in it matches "
        "anything, '*' alone any origin; repeatable (default: localhost, 127.0.0.1 and [::1], any port; "
        "clients sending no Origin, such as Python ones, are always allowed)",
    )
    _add_from_env(
        access,
        "--room-key",
        "NBCALL_ROOM_KEY",
        "sign room members' credentials with this key (16 characters or more), so that members re-create "
        "their room after a restart",
        "with --redis, a key kept in Redis; without either, rooms end with a restart",
        metavar="KEY",
    )
    access.add_argument("--certfile", help="serve TLS (wss://) with this PEM certificate chain")
    access.add_argument("--keyfile", help="the certificate's private key (default: in --certfile)")
    for field in dataclasses.fields(Limits):
        default: object = field.default
        shown = shown_default(field)
        if field.name == "max_frame_size":
            # Unless given, it follows --max-message-size as it always did: see limit_options.
            default = None
            shown += ", or twice --max-message-size when larger; none when --max-message-size is 0"
        groups[field.metadata["group"]].add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if str(field.type).startswith("int") else float,
            default=default,
            metavar=field.metadata["unit"],
            help=f"{field.metadata['help']} (default: {shown})".replace("%", "%%"),
        )
    sfu = serve_cmd.add_argument_group(
        "rooms on an SFU (docs/rooms.md: Rooms on an SFU)",
        "Rooms made with sfu: true run on a Janus VideoRoom; members send one stream to it and receive the "
        "others' from it. The server drives Janus's API; phones never see it.",
    )
    sfu.add_argument(
        "--sfu",
        default=None,
        metavar="URL",
        help="Janus's API: ws://HOST:PORT (its WebSocket transport) or http://HOST:PORT/janus (default: none, "
        "no SFU rooms)",
    )
    _add_from_env(
        sfu, "--sfu-secret", "NBCALL_SFU_SECRET", "Janus's api_secret", "prefer it to the flag, which ps shows",
        metavar="SECRET",
    )  # fmt: skip
    cluster = serve_cmd.add_argument_group(
        "several nodes as one deployment (docs/guides/deployment.md)",
        "Servers given the same Redis share one registry: IDs are unique across them, presence lists "
        "merge and phones on different nodes call each other. Needs pip install 'nbcall[redis]'.",
    )
    _add_from_env(
        cluster,
        "--redis",
        "NBCALL_REDIS",
        "the shared registry: redis://[:PASSWORD@]HOST:PORT/DB, or rediss://... for TLS (add "
        "?ssl_ca_certs=FILE for a private CA)",
        "without either, a standalone server",
        metavar="URL",
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


#: Limits for which 0 is a value, not "disabled".
_ZERO_IS_A_VALUE = ("max_burst", "room_grace")


def limit_options(args: argparse.Namespace) -> dict[str, Any]:
    """``serve()``'s limit keywords from the parsed flags: one per field of :class:`Limits`, 0 disabling it."""
    options: dict[str, Any] = {}
    for field in dataclasses.fields(Limits):
        value = getattr(args, field.name)
        # max_burst cannot be off; room_grace 0 is no grace (members gone are removed at once), not forever.
        options[field.name] = value if field.name in _ZERO_IS_A_VALUE else value or None
    if args.max_frame_size is None:
        # Not given: room for twice the largest message, at least the default; no message limit, no frame
        # limit (as before the flag existed).
        message = options["max_message_size"]
        default = DEFAULT_LIMITS.max_frame_size or 0
        options["max_frame_size"] = None if message is None else max(default, 2 * message)
    return options


def run(args: argparse.Namespace) -> int:
    """Run ``nbcall serve`` with the parsed ``args``: log to stderr, serve until stopped; return the exit status."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs one line per connection opened or closed (and every frame at DEBUG), which
    # would drown who registered and who called whom; its warnings and errors still show.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        return _run(serve_until_stopped(args))
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


async def start(args: argparse.Namespace) -> SignalingServer:
    """Start the server the parsed ``args`` describe; raise what :func:`serve` raises."""
    ssl_context = None
    if args.certfile:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(args.certfile, args.keyfile)
    elif args.keyfile:
        raise ValueError("--keyfile needs --certfile")
    options: dict[str, Any] = {"origins": args.allow_origin} if args.allow_origin else {}  # else localhost
    if args.drop or args.delay or args.reorder or args.candidate_types:
        kinds = args.candidate_types.split(",") if args.candidate_types else None
        options["faults"] = Faults.of(
            {"drop": args.drop, "delay": args.delay, "reorder": args.reorder, "candidate_types": kinds}
        )
    return await serve(
        args.host,
        args.port,
        path=args.path,
        token=args.token,
        room_key=args.room_key,
        sfu=args.sfu,
        sfu_secret=args.sfu_secret,
        ssl_context=ssl_context,
        redis=args.redis,
        node_id=args.node_id,
        heartbeat=args.heartbeat,
        registry_ttl=args.registry_ttl,
        compression=None if args.compression == "none" else "deflate",
        **options,
        **limit_options(args),
    )


async def serve_until_stopped(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; return the exit status (1: the server could not start)."""
    try:
        server = await start(args)
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
        logger.info(
            "clients must present the token given with --token or NBCALL_TOKEN: phones take it as ?token=... "
            "added to that URL (Python clients send it in an Authorization header)"
        )
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
