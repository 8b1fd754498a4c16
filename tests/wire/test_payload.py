"""What Phone.send accepts and how it travels: encode/decode keep the sender's type."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbcall.wire.payload import decode, encode

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=25,
)
#: Text that survives UTF-8: no lone surrogates (a Python str can hold them, the wire cannot).
wire_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


def roundtrip(data: Any) -> tuple[str, bytes, Any]:
    kind, payload = encode(data)
    assert isinstance(payload, bytes)
    return kind, payload, decode(kind, payload)


@given(wire_text)
def test_text_arrives_as_the_same_str(text: str) -> None:
    kind, payload, back = roundtrip(text)
    assert kind == "str"
    assert payload == text.encode("utf-8")
    assert type(back) is str and back == text


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\xff binary\n", bytearray(b"\x01\x02\x03"), memoryview(b"view of bytes")],
    ids=["empty", "bytes", "bytearray", "memoryview"],
)
def test_bytes_like_values_arrive_as_bytes_with_the_same_content(
    data: bytes | bytearray | memoryview,
) -> None:
    kind, payload, back = roundtrip(data)
    assert kind == "bytes"
    assert payload == bytes(data)
    assert type(back) is bytes
    assert back == bytes(data)


def test_a_memoryview_slice_sends_only_the_viewed_bytes() -> None:
    kind, _, back = roundtrip(memoryview(b"0123456789")[2:5])
    assert (kind, back) == ("bytes", b"234")


@given(st.binary())
def test_any_bytes_round_trip_unchanged(data: bytes) -> None:
    assert roundtrip(data)[1:] == (data, data)


@given(json_values.filter(lambda v: not isinstance(v, str)))
def test_json_values_arrive_equal_with_their_types(value: Any) -> None:
    kind, _, back = roundtrip(value)
    assert kind == "json"
    assert back == value
    # Equality would let 1 == 1.0 == True pass; the exact JSON text must survive too.
    assert json.dumps(back, sort_keys=True) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"x": [1, 2, 3]}, {"x": [1, 2, 3]}),
        ([1, 2.5, True, None, "é✓"], [1, 2.5, True, None, "é✓"]),
        (0, 0),
        (None, None),
        ((1, 2), [1, 2]),  # JSON has arrays, not tuples
    ],
)
def test_json_values_keep_their_json_types(value: Any, expected: Any) -> None:
    kind, _, back = roundtrip(value)
    assert kind == "json"
    assert back == expected
    assert type(back) is type(expected)


def test_json_travels_as_compact_utf8_text() -> None:
    kind, payload = encode({"name": "Zoë", "n": [1, 2]})
    assert kind == "json"
    assert payload == '{"name":"Zoë","n":[1,2]}'.encode()


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({1, 2}, "set"), (math.nan, "float"), (math.inf, "float"), (Opaque(), "Opaque"), ({"k": {3}}, "dict")],
    ids=["set", "nan", "infinity", "object", "nested-set"],
)
def test_values_that_are_not_json_raise_type_error_naming_type_and_alternatives(
    value: Any, type_name: str
) -> None:
    with pytest.raises(TypeError) as info:
        encode(value)
    message = str(info.value)
    assert f"cannot send {type_name}" in message
    assert "send str, bytes, or a JSON-serializable value" in message


def test_payloads_that_do_not_decode_raise() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode("str", b"\xff\xfe")
    with pytest.raises(ValueError):
        decode("json", b"{not json")
