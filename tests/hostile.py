"""What a hostile peer sends, as hypothesis strategies: garbage spoken in nbcall's framing (tests/peer and
tests/e2e share it). Each burst is a list of data-channel messages, sent as they are."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbcall.wire.framing import LENGTH, MORE, encode_frames

#: Names that try to leave the receive directory, or trip over what is in it (tests make ``link`` a symlink
#: out of it and ``file`` a regular file).
NAMES = [
    "../escaped", "../../escaped", "/tmp/escaped", "a/../../escaped", "link/escaped", "link/../escaped",
    "file/child", "C:\\escaped", "..", ".", "", "./", "x/" * 60 + "deep", "é" * 200, "nul\x00byte",
    "link", "file", "dir/", "  spaced  ", "\\\\server\\share\\escaped",
]  # fmt: skip


def json_frames(value: Any, frame: int = 64) -> list[bytes]:
    """A JSON message as nbcall frames."""
    return list(encode_frames("json", json.dumps(value).encode(), frame))


def _whole_file(name: Any, content: bytes) -> list[bytes]:
    """A well-formed transfer of a file under a tricky ``name``: it is kept, if at all, inside the directory."""
    digest = hashlib.sha256(content).hexdigest()
    return [
        *json_frames({"nbcall_file": "start", "id": "w1", "name": name, "size": len(content)}),
        b"\x02" + content,
        *json_frames({"nbcall_file": "end", "id": "w1", "sha256": digest}),
    ]


def _file_control() -> st.SearchStrategy[Any]:
    odd = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20),
        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )  # fmt: skip
    return st.fixed_dictionaries(
        {"nbcall_file": st.sampled_from(["start", "end", "verdict", "resume", "", None, 7])},
        optional={
            "id": st.one_of(st.sampled_from(["f1", "f2"]), odd),
            "name": st.one_of(st.sampled_from(NAMES), st.text(max_size=40), odd),
            "size": st.one_of(st.integers(-5, 2**64), odd),
            "sha256": st.one_of(st.text(alphabet="0123456789abcdef", max_size=64), odd),
            "ok": odd,
            "error": odd,
            "code": odd,
        },
    )


def _frame() -> st.SearchStrategy[list[bytes | str]]:
    """One piece of garbage: one frame or a few."""
    one = st.one_of(
        st.binary(max_size=40),  # anything, truncated frames included
        st.builds(lambda k, p: bytes([k]) + p, st.integers(0, 255), st.binary(max_size=24)),  # wrong kinds
        st.builds(
            lambda n: bytes([LENGTH]) + n.to_bytes(8, "big"), st.integers(0, 2**64 - 1)
        ),  # huge lengths
        st.builds(
            lambda n: bytes([LENGTH]) + bytes(n), st.integers(0, 12)
        ),  # length frames of the wrong size
        st.builds(
            lambda k, p: bytes([k | MORE]) + p, st.integers(1, 3), st.binary(max_size=24)
        ),  # unfinished
        st.text(max_size=30),  # text frames
    )
    return st.one_of(
        one.map(lambda f: [f]),
        _file_control().map(json_frames),  # bad control JSON that parses
        st.builds(
            _whole_file, st.one_of(st.sampled_from(NAMES), st.text(max_size=40)), st.binary(max_size=50)
        ),
        st.binary(max_size=30).map(lambda b: [b"\x03{" + b]),  # control JSON that does not parse
        st.binary(min_size=1, max_size=200).map(lambda b: [b"\x02" + b]),  # file bytes
        st.integers(2, 40).map(lambda n: [bytes([2 | MORE]) + bytes(1023)] * n + [b"\x02"]),  # over the bound
    )


#: A burst: a few pieces of garbage, flattened into the messages to send.
BURSTS = st.lists(_frame(), min_size=1, max_size=8).map(lambda pieces: [f for p in pieces for f in p])

#: What ends whatever message a burst left unfinished (a str frame completes a str message under way, and
#: breaks any other), so that the probe after it decodes on its own.
TERMINATOR = b"\x01"


def probe(n: int) -> dict[str, int]:
    """The well-formed message sent after burst ``n``: the other end must still receive it."""
    return {"probe": n}


def run_bursts(send_and_check: Callable[[list[bytes | str], int], None], examples: int) -> None:
    """Have hypothesis make ``examples`` bursts (``NBCALL_FUZZ_EXAMPLES`` overrides it), and call
    ``send_and_check(messages, n)`` with each: the burst, the terminator and probe ``n``, as frames."""
    count = iter(range(10**9))

    @settings(
        max_examples=int(os.environ.get("NBCALL_FUZZ_EXAMPLES", str(examples))),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),  # one connection serves every example, on purpose
    )
    @given(burst=BURSTS)
    def burst_then_probe(burst: list[bytes | str]) -> None:
        n = next(count)
        send_and_check([*burst, TERMINATOR, *json_frames(probe(n))], n)

    burst_then_probe()
