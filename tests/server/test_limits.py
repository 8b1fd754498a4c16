"""One set of limit defaults: serve(), SignalingProtocol, the CLI and Limits agree."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from nbcall.cli import _parser
from nbcall.server.limits import DEFAULT_LIMITS, Limits
from nbcall.server.protocol import SignalingProtocol
from nbcall.server.server import serve


def test_serve_and_the_protocol_take_their_defaults_from_limits() -> None:
    serve_defaults = {name: p.default for name, p in inspect.signature(serve).parameters.items()}
    for field in dataclasses.fields(Limits):
        assert serve_defaults[field.name] == getattr(DEFAULT_LIMITS, field.name), field.name
    protocol = SignalingProtocol()  # type: ignore[var-annotated]
    for name in ("max_message_size", "max_rate", "max_burst", "max_refused"):
        assert getattr(protocol, name) == getattr(DEFAULT_LIMITS, name), name
    for name in ("max_room_size", "invitation_ttl", "room_grace"):
        assert getattr(protocol.rooms, name) == getattr(DEFAULT_LIMITS, name), name


def test_the_cli_defaults_are_the_limits() -> None:
    args = _parser().parse_args(["serve"])
    for name in ("max_connections", "open_timeout", "max_message_size", "max_rate", "max_burst", "max_refused",
                 "max_pending_bytes", "ping_interval", "ping_timeout", "max_room_size", "invitation_ttl",
                 "room_grace"):  # fmt: skip
        assert getattr(args, name) == getattr(DEFAULT_LIMITS, name), name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_rate": 0}, "max_rate must be positive or None"),
        ({"max_connections": -1}, "max_connections must be positive or None"),
        ({"max_burst": 0}, "max_burst must be at least 1"),
        ({"max_room_size": 1}, "max_room_size must be at least 2"),
        ({"invitation_ttl": 0}, "invitation_ttl must be positive or None"),
        ({"room_grace": -1}, "room_grace must be positive or None"),
        ({"max_message_size": 4096, "max_frame_size": 1024}, r"max_frame_size \(1024\) must be at least"),
    ],
)
def test_bad_limits_are_refused_with_the_value(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**options)  # type: ignore[arg-type]


def test_none_disables_a_limit() -> None:
    assert Limits(max_rate=None, max_connections=None, max_frame_size=None).max_rate is None
