"""Who may open a signaling connection: the handshake's rules as one pure function.

:func:`check_handshake` takes the request target, its headers, the number of connections
already admitted and the server's :class:`AdmissionRules`, and returns ``None`` (admit) or a
:class:`Refusal`: the HTTP status and a plain-text body saying what was wrong and what to do.
No sockets: the server turns a refusal into its HTTP response and log line.

Rules, in order: the path (404), the token (401), the browser origin (403; 400 for several
``Origin`` headers), the number of connections (503). The token comes before the connection
limit so that a full server tells strangers nothing more than a wrong token would.

A client presents the token in an ``Authorization: Bearer TOKEN`` header (Python clients do: a header
stays out of proxies' and servers' request logs) or as ``?token=TOKEN`` in the URL (browsers cannot set
headers on a WebSocket), exactly once.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qs, quote, urlsplit

__all__ = [
    "DEFAULT_ORIGINS",
    "AdmissionRules",
    "OriginPattern",
    "Refusal",
    "check_handshake",
    "origin_patterns",
    "presented_tokens",
]

#: Browser origins allowed by default: pages served from this machine, any port, http or https.
#: Requests without an ``Origin`` header (non-browser clients) are always allowed.
DEFAULT_ORIGINS: tuple[re.Pattern[str], ...] = (
    re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?", re.IGNORECASE),
)

OriginPattern = str | re.Pattern[str]

_PREFIX = "nbcall signaling server: "


class _Headers(Protocol):
    def get_all(self, key: str) -> list[str]: ...


@dataclass(frozen=True)
class AdmissionRules:
    """A server's handshake rules: its path, token, allowed origins and connection limit."""

    path: str = "/ws"
    #: Clients must present this (``Authorization: Bearer`` header or ``?token=``); ``None``: anyone may connect.
    token: str | None = None
    #: Browser origins allowed; ``None``: any. Clients sending no ``Origin`` are always allowed.
    origins: tuple[re.Pattern[str], ...] | None = DEFAULT_ORIGINS
    max_connections: int | None = None
    #: Where clients should connect, named in refusals: ``ws://127.0.0.1:8765/ws``.
    url_without_token: str = ""

    @property
    def token_query(self) -> str:
        """What ``.url`` adds to the address: ``?token=...`` (quoted), or nothing."""
        return "" if self.token is None else "?token=" + quote(self.token, safe="")


@dataclass(frozen=True)
class Refusal:
    """A handshake refused: ``status`` and ``body`` for the client, ``log`` for the server's log.

    ``log`` never holds the token, right or wrong.
    """

    status: HTTPStatus
    body: str
    log: str
    log_level: int = logging.INFO


def check_handshake(
    rules: AdmissionRules, target: str, headers: _Headers, connections: int
) -> Refusal | None:
    """Return why the handshake for ``target`` (path and query) must be refused, or ``None`` to admit it.

    ``connections`` is how many connections the server holds already.
    """
    url = urlsplit(target)
    where = rules.url_without_token or rules.path
    if url.path != rules.path:
        return Refusal(
            HTTPStatus.NOT_FOUND,
            f"{_PREFIX}nothing at {url.path!r}; open a WebSocket to {rules.path!r} instead, e.g. {where}\n",
            f"wrong path {url.path!r}",
        )
    if rules.token is not None:
        given, malformed = presented_tokens(url.query, headers)
        # Compare even when absent, so that timing tells nothing about the token.
        presented = given[0].encode("utf-8", "surrogatepass") if len(given) == 1 else b""
        if not hmac.compare_digest(presented, rules.token.encode("utf-8")) or len(given) != 1:
            what = _token_problem(given, malformed)
            return Refusal(
                HTTPStatus.UNAUTHORIZED,
                f"{_PREFIX}this server requires a token and the request had {what}; "
                f"send the header 'Authorization: Bearer TOKEN' or connect to {where}?token=TOKEN, with "
                "the token the server was started with (the URL its owner shares, or the server's .url in "
                "Python)\n",
                what,
            )
    if rules.origins is not None:
        origins = headers.get_all("Origin")
        if len(origins) > 1:
            return Refusal(
                HTTPStatus.BAD_REQUEST, f"{_PREFIX}more than one Origin header\n", "several Origin headers"
            )
        if origins and not any(pattern.fullmatch(origins[0]) for pattern in rules.origins):
            return Refusal(
                HTTPStatus.FORBIDDEN,
                f"{_PREFIX}pages from origin {origins[0]!r} may not connect; "
                f"start the server with --allow-origin {origins[0]} (origins=[...] in Python) to allow them\n",
                f"origin {origins[0]!r}",
            )
    if rules.max_connections is not None and connections >= rules.max_connections:
        return Refusal(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"{_PREFIX}full ({rules.max_connections} connections, the limit); "
            "try again later, or ask its owner to raise --max-connections\n",
            f"{connections} connections open, the limit is max_connections={rules.max_connections}",
            logging.WARNING,
        )
    return None


def presented_tokens(query: str, headers: _Headers) -> tuple[list[str], bool]:
    """The tokens a request presents (each ``?token=`` and each ``Authorization: Bearer`` header), and whether
    an ``Authorization`` header was something else (which counts as no token)."""
    given = parse_qs(query).get("token", [])
    malformed = False
    for value in headers.get_all("Authorization"):
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            given.append(token.strip())
        else:
            malformed = True
    return given, malformed and not given


def _token_problem(given: list[str], malformed: bool) -> str:
    if malformed:
        return "an Authorization header that is not 'Bearer TOKEN'"
    if not given:
        return "no token"
    return "a wrong token" if len(given) == 1 else "several tokens"


def origin_patterns(origins: Sequence[OriginPattern]) -> tuple[re.Pattern[str], ...] | None:
    """Compile origin globs (``*`` matches anything) and regexes; ``None`` when ``*`` allows all."""
    patterns: list[re.Pattern[str]] = []
    for origin in origins:
        if isinstance(origin, re.Pattern):
            patterns.append(origin)
        elif not isinstance(origin, str) or not origin:
            raise ValueError(
                f"origins must hold strings such as 'https://hub.example.org' or 'http://localhost:*', "
                f"or compiled regexes; got {origin!r}"
            )
        elif origin == "*":
            return None
        else:
            glob = re.escape(origin.rstrip("/")).replace(r"\*", ".*")
            patterns.append(re.compile(glob, re.IGNORECASE))
    return tuple(patterns)
