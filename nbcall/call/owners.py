"""Which phones and Peers of this process hold which IDs: a new one takes over a live one's ID, and each one
still open is closed at exit.

A notebook user re-runs ``a = Phone("A")``: the old ``A`` is still registered, and the server would refuse the
new one (:class:`~nbcall.exceptions.DuplicateID`). Within one process that is never what the user wants, so the
new phone closes the old one first (its call or room ends saying so) and registers with the old one's secret,
which the server hands the ID over for even if it has not yet seen the old connection close. Phones of other
processes are not in this registry: they still get DuplicateID.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import kernel  # noqa: F401 (its atexit hook first, so that close_all runs before it)

__all__ = ["REPLACED", "Owner", "close_all", "held", "released", "take_over", "urls_key", "weak_method"]

logger = logging.getLogger("nbcall.call.owners")

#: Why a phone's call or room ends when a new phone of this process takes its ID.
REPLACED = "replaced by a new phone"


class Owner(Protocol):
    """What the registry needs of a phone or Peer."""

    user_id: str

    def close_replaced(self, reason: str) -> str | None:
        """Close, ending a call or room with ``reason``; returns the secret it registered with (or None)."""
        ...

    def close(self) -> None: ...


_lock = threading.Lock()
#: (ID, server URL without query) -> the phone or Peer holding that ID there.
_holders: weakref.WeakValueDictionary[tuple[str, str], Any] = weakref.WeakValueDictionary()


def urls_key(urls: Iterable[str]) -> list[str]:
    """The servers' addresses without their query (which may hold a token)."""
    return [url.split("?", 1)[0] for url in urls]


def take_over(user_id: str, urls: Iterable[str]) -> str | None:
    """Close every live phone or Peer of this process holding ``user_id`` at one of ``urls``; returns the secret
    the (last) one closed registered with, for the new one to register with."""
    with _lock:
        keys = [(user_id, url) for url in urls_key(urls)]
        old = {id(owner): owner for key in keys if (owner := _holders.get(key)) is not None}
    secret = None
    for owner in old.values():
        logger.info("%s: a new phone takes over its ID; closing the old one", user_id)
        secret = owner.close_replaced(REPLACED) or secret
    return secret


def held(owner: Owner, urls: Iterable[str]) -> None:
    """Record that ``owner`` holds its ID at ``urls`` (until :func:`released`, or it is garbage-collected)."""
    with _lock:
        for url in urls_key(urls):
            _holders[(owner.user_id, url)] = owner


def released(owner: Owner) -> None:
    """``owner`` closed: its ID is free in this process."""
    with _lock:
        for key in [key for key, holder in _holders.items() if holder is owner]:
            del _holders[key]


def close_all() -> None:
    """Close every phone and Peer still open (at exit), so that the server sees clean closes."""
    with _lock:
        owners = {id(owner): owner for owner in _holders.values()}
    for owner in owners.values():
        try:
            owner.close()
        except Exception:  # the interpreter is exiting: close the others all the same
            logger.exception("%s: could not close at exit", owner.user_id)


def weak_method(method: Callable[..., Any]) -> Callable[..., None]:
    """``method`` (bound), called only while its object lives: what a background task keeps of a Peer, so that
    a Peer nobody holds can be garbage-collected."""
    ref = weakref.WeakMethod(method)  # type: ignore[arg-type]

    def call(*args: Any) -> None:
        target = ref()
        if target is not None:
            target(*args)

    return call


# Registered after nbcall.call.kernel's shutdown (imported above), so it runs before it: atexit runs last first.
atexit.register(close_all)
