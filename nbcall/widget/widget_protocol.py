"""The messages between a phone's Python half and its browser half (docs/widget-protocol.md).

The names and fields are read from ``widget_protocol.json``, the file the browser code imports too, so the two
sides cannot disagree about the message set.
"""

from __future__ import annotations

import json
import pathlib
import reprlib
from typing import Any

__all__ = ["FINGERPRINT", "SETTINGS", "TO_BROWSER", "TO_PYTHON", "fingerprint", "problem"]

_SPEC = json.loads((pathlib.Path(__file__).parent / "widget_protocol.json").read_text("utf-8"))


def _fields(table: dict[str, list[str]]) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """type -> (required fields, optional fields); ``name?`` marks an optional one."""
    return {
        kind: (
            frozenset(f for f in names if not f.endswith("?")),
            frozenset(f[:-1] for f in names if f.endswith("?")),
        )
        for kind, names in table.items()
    }


def fingerprint(spec: Any) -> str:
    """FNV-1a (32 bits, hex) of ``spec`` as compact JSON in UTF-8: js/protocol.js computes the same of the copy
    bundled into the page, and says it in its ``hello``."""
    value = 0x811C9DC5
    for byte in json.dumps(spec, separators=(",", ":"), ensure_ascii=False).encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{value:08x}"


#: This protocol's fingerprint. A page whose bundle was built from another ``widget_protocol.json`` (an old build
#: of ``static/phone.js`` left in a source tree, a page of another nbcall) says another one.
FINGERPRINT = fingerprint(_SPEC)
TO_BROWSER = _fields(_SPEC["to_browser"])
TO_PYTHON = _fields(_SPEC["to_python"])
#: The settings Python gives the browser in the ``_settings`` trait.
SETTINGS: tuple[str, ...] = tuple(_SPEC["settings"])


def problem(message: Any, table: dict[str, tuple[frozenset[str], frozenset[str]]]) -> str | None:
    """What is wrong with ``message`` for ``table`` (unknown type, missing fields), or None when it is fine."""
    if not isinstance(message, dict):
        return f"a message must be an object, not {type(message).__name__}"
    kind = message.get("type")
    if kind not in table:
        return f"unknown message type {reprlib.repr(kind)}"  # it may be long
    missing = table[kind][0] - message.keys()
    if missing:
        return f"{kind!r} message without {', '.join(sorted(missing))}"
    return None
