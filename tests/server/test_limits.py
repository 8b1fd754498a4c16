"""One definition of the limits: Limits; serve()'s keywords, the CLI's flags and docs/limits.md are made from it."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

import nbcall.server
from nbcall.cli import parser
from nbcall.server.cli import limit_options, start
from nbcall.server.limits import DEFAULT_LIMITS, GROUPS, Limits, shown_default
from nbcall.server.protocol import SignalingProtocol
from nbcall.server.server import serve

FIELDS = dataclasses.fields(Limits)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "limits.md"


def test_serve_and_the_protocol_take_their_defaults_from_limits() -> None:
    serve_defaults = {name: p.default for name, p in inspect.signature(serve).parameters.items()}
    for field in FIELDS:
        assert serve_defaults[field.name] == getattr(DEFAULT_LIMITS, field.name), field.name
    protocol = SignalingProtocol()  # type: ignore[var-annotated]
    for name in ("max_message_size", "max_rate", "max_burst", "max_refused"):
        assert getattr(protocol, name) == getattr(DEFAULT_LIMITS, name), name
    for name in ("max_room_size", "invitation_ttl", "room_grace"):
        assert getattr(protocol.rooms, name) == getattr(DEFAULT_LIMITS, name), name


def test_serve_s_signature_and_docstring_show_every_limit_as_a_keyword() -> None:
    params = inspect.signature(nbcall.server.serve).parameters
    doc = inspect.getdoc(nbcall.server.serve) or ""
    for field in FIELDS:
        param = params[field.name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, field.name
        assert (param.default, param.annotation) == (field.default, field.type), field.name
        assert f"``{field.name}`` ({shown_default(field)}): " in doc, field.name
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


async def test_serve_refuses_a_keyword_that_is_no_limit() -> None:
    with pytest.raises(
        TypeError, match="unexpected keyword argument 'max_size'.*fields of nbcall.server.limits"
    ):
        await serve(max_size=10)


def test_every_limit_has_a_flag_whose_default_is_the_limit_s() -> None:
    args = parser().parse_args(["serve"])
    assert limit_options(args) == dataclasses.asdict(DEFAULT_LIMITS)


def test_zero_disables_every_limit_but_max_burst_and_room_grace_where_it_means_no_grace() -> None:
    flags = [f"--{field.name.replace('_', '-')}=0" for field in FIELDS]
    options = limit_options(parser().parse_args(["serve", *flags]))
    kept = ("max_burst", "room_grace")
    assert options == {field.name: 0 if field.name in kept else None for field in FIELDS}


async def test_each_flag_reaches_the_server_s_limits() -> None:
    # A value for each limit unlike its default (and valid with the others).
    wanted = {
        field.name: (field.default or 1) * 3 if field.type.startswith("int") else (field.default or 1) * 1.5
        for field in FIELDS
    }
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in wanted.items()]
    server = await start(parser().parse_args(["serve", "--port", "0", *flags]))
    try:
        assert server.limits == Limits(**wanted)  # type: ignore[arg-type]
        protocol = server.protocol
        for name in ("max_message_size", "max_rate", "max_burst", "max_refused"):
            assert getattr(protocol, name) == wanted[name], name
        for name in ("max_room_size", "invitation_ttl", "room_grace"):
            assert getattr(protocol.rooms, name) == wanted[name], name
        assert server.server.connections == set()  # listening, with these limits
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("flags", "frame_size"),
    [
        ([], DEFAULT_LIMITS.max_frame_size),
        (["--max-message-size", str(2**20)], 2**21),
        (["--max-message-size", "0"], None),
        (["--max-message-size", "0", "--max-frame-size", "4096"], 4096),
    ],
)
def test_max_frame_size_follows_max_message_size_unless_given(
    flags: list[str], frame_size: int | None
) -> None:
    assert limit_options(parser().parse_args(["serve", *flags]))["max_frame_size"] == frame_size


def limits_table() -> str:
    """docs/limits.md's table, made from Limits."""
    rows = ["| limit | `nbcall serve` flag | default | what it does |", "|---|---|---|---|"]
    for group in GROUPS:
        rows.append(f"| **{group}** | | | |")
        rows += [
            f"| `{f.name}` | `--{f.name.replace('_', '-')} {f.metadata['unit']}` | {shown_default(f)} | "
            f"{f.metadata['help']} |"
            for f in FIELDS
            if f.metadata["group"] == group
        ]
    return "\n".join(rows) + "\n"


def test_docs_list_every_limit_as_limits_defines_it() -> None:
    table = limits_table()
    assert table in DOCS.read_text(), f"docs/limits.md's table should read:\n\n{table}"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_rate": 0}, "max_rate must be positive or None"),
        ({"max_connections": -1}, "max_connections must be positive or None"),
        ({"max_burst": 0}, "max_burst must be at least 1"),
        ({"max_room_size": 1}, "max_room_size must be at least 2"),
        ({"invitation_ttl": 0}, "invitation_ttl must be positive or None"),
        ({"room_grace": -1}, r"room_grace must be at least 0 \(no grace\) or None"),
        ({"id_grace": -1}, r"id_grace must be at least 0 \(no grace\) or None"),
        ({"max_room_claims": 0}, "max_room_claims must be positive or None"),
        ({"max_message_size": 4096, "max_frame_size": 1024}, r"max_frame_size \(1024\) must be at least"),
    ],
)
def test_bad_limits_are_refused_with_the_value(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**options)  # type: ignore[arg-type]


def test_none_disables_a_limit() -> None:
    assert Limits(max_rate=None, max_connections=None, max_frame_size=None).max_rate is None
