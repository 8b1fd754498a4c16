"""Short-lived TURN credentials: the shared-secret scheme coturn checks with ``use-auth-secret``.

A deployment gives its TURN server (coturn: ``use-auth-secret`` and ``static-auth-secret=SECRET``) and
whatever hands out phones' settings the same secret. Credentials are then made on demand, one per
phone, and expire by themselves; the secret itself never reaches a browser. The scheme (the "TURN REST
API" draft, draft-uberti-behave-turn-rest): the username is ``EXPIRY:USER`` (``EXPIRY`` in Unix
seconds) and the password is ``base64(HMAC-SHA1(secret, username))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["turn_credentials"]


def turn_credentials(
    secret: str | bytes,
    user: str,
    ttl: float = 3600,
    *,
    urls: str | Sequence[str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Credentials for ``user`` valid ``ttl`` seconds (default one hour), for a TURN server sharing ``secret``.

    Returns ``{"username": ..., "credential": ...}``, plus ``"urls"`` when given, so that the result is an
    RTCIceServer for ``Phone(ice_servers=[...])``::

        nbcall.turn_credentials(SECRET, "alice", urls="turn:turn.example.org:3478")

    ``now`` (Unix seconds, default the clock) is for tests. A ``user`` with ``:`` would confuse the
    server's parsing of the expiry and is refused.

    Parameters
    ----------
    secret
        The TURN server's ``static-auth-secret``.
    user
        Who the credentials are for (no ``:``); it shows in the TURN server's logs.
    ttl
        Seconds the credentials stay valid.
    urls
        The TURN server's URL or URLs, copied into the result.
    now
        The time to count ``ttl`` from, in Unix seconds; the clock by default.

    Returns
    -------
    dict
        ``{"urls"?, "username", "credential"}``, an RTCIceServer.

    Raises
    ------
    ValueError
        ``secret`` is empty, ``user`` is empty or holds ``:``, or ``ttl`` is not positive.
    """
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ValueError("secret is empty: pass the TURN server's static-auth-secret")
    if not isinstance(user, str) or not user or ":" in user:
        raise ValueError(f"user must be a non-empty string without ':', got {user!r}")
    if not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{user}"
    credential = base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()
    server: dict[str, Any] = {"username": username, "credential": credential}
    if urls is not None:
        server = {"urls": urls if isinstance(urls, str) else list(urls), **server}
    return server
