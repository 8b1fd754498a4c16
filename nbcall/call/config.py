"""Checks of what a user hands a phone: the signaling server's URL and the STUN/TURN servers.

Each check returns the normalized value or raises ``ValueError``/``TypeError`` saying what was wrong and what
to pass instead, before anything connects.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any

import traitlets

from ..wire.payload import MAX_RECEIVE_SIZE

__all__ = ["ReceiveSize", "ice_servers", "ice_transport_policy", "max_receive_size", "server_url"]

_ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
# http(s) is what people copy from a browser's address bar: the same host and port, as a websocket.
_WS_FOR_HTTP = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def server_url(url: object) -> str:
    """A signaling server URL as ``ws://`` or ``wss://``; ``http(s)://`` is taken as ``ws(s)://``."""
    if not isinstance(url, str):
        raise TypeError(
            f"server must be a URL string such as 'ws://127.0.0.1:8765/ws?token=...', not {url!r}"
        )
    parts = urllib.parse.urlsplit(url.strip())
    scheme = _WS_FOR_HTTP.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        shown = url.split("?", 1)[0]  # the query may hold a token
        raise ValueError(
            f"server {shown!r} is not a websocket URL: pass ws://HOST:PORT/ws or wss://HOST:PORT/ws "
            "(with ?token=... if the server wants one), such as nbcall.serve().url"
        )
    return urllib.parse.urlunsplit(parts._replace(scheme=scheme))


def ice_servers(servers: Iterable[Any]) -> list[dict[str, Any]]:
    """STUN/TURN servers as RTCIceServer dicts; an entry is a URL string or a dict with ``urls``."""
    if isinstance(servers, (str, dict)):
        raise TypeError(f"ice_servers is a list of servers; wrap the one you passed in a list: [{servers!r}]")
    return [_ice_server(entry, n) for n, entry in enumerate(servers)]


def _ice_server(entry: Any, n: int) -> dict[str, Any]:
    where = f"ice_servers[{n}]"
    if isinstance(entry, str):
        entry = {"urls": entry}
    if not isinstance(entry, dict):
        raise TypeError(
            f"{where} is {entry!r}: pass a URL such as 'stun:stun.example.org:3478', or a dict "
            "{'urls': 'turn:host:3478', 'username': ..., 'credential': ...}"
        )
    if "urls" not in entry:
        raise ValueError(f"{where} has no 'urls': {sorted(entry)}; add 'urls': 'stun:...' or 'turn:...'")
    unknown = set(entry) - {"urls", "username", "credential"}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}; use 'urls', 'username', 'credential'")
    urls = [entry["urls"]] if isinstance(entry["urls"], str) else entry["urls"]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise TypeError(f"{where}['urls'] must be a URL string or a list of them, not {entry['urls']!r}")
    for url in urls:
        if not url.lower().startswith(_ICE_SCHEMES):
            raise ValueError(
                f"{where} has the URL {url!r}: STUN/TURN URLs start with stun:, stuns:, turn: or turns: "
                "(for example 'turn:127.0.0.1:3478')"
            )
        if url.lower().startswith(("turn:", "turns:")) and not (
            entry.get("username") and entry.get("credential")
        ):
            raise ValueError(
                f"{where} is a TURN server ({url}) without 'username' and 'credential': "
                "the browser refuses TURN without them"
            )
    for key in ("username", "credential"):
        if key in entry and not isinstance(entry[key], str):
            raise TypeError(f"{where}[{key!r}] must be a str, not {type(entry[key]).__name__}")
    return dict(entry)


def ice_transport_policy(policy: object) -> str:
    """``"all"`` (any candidate) or ``"relay"`` (only through a TURN server), as RTCConfiguration names them."""
    if policy not in ("all", "relay"):
        raise ValueError(
            f"ice_transport_policy must be 'all' (direct or relayed) or 'relay' (only through TURN), not {policy!r}"
        )
    return str(policy)


def max_receive_size(size: object) -> int:
    """The largest message (in bytes) a phone keeps in memory: a whole number > 0."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(
            f"max_receive_size must be a number of bytes > 0, such as {MAX_RECEIVE_SIZE} (512 MiB), not {size!r}"
        )
    return size


class ReceiveSize(traitlets.Int):  # type: ignore[type-arg]
    """The ``max_receive_size`` trait of a phone: checked by :func:`max_receive_size` when set."""

    default_value = MAX_RECEIVE_SIZE

    def validate(self, obj: Any, value: Any) -> int:
        try:
            return max_receive_size(value)
        except ValueError as exc:
            raise traitlets.TraitError(str(exc)) from None
