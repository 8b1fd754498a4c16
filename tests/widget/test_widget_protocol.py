"""The widget protocol is written down once: the doc, the shared JSON and the Python half agree.

(The browser half's agreement is checked by js/protocol.test.js, against the same JSON.)
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

from nbcall.widget import widget_protocol
from nbcall.widget.phone import Phone

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "widget-protocol.md"


def documented(section: str) -> dict[str, set[str]]:
    """The message table under ``## section`` in the doc: type -> its fields (``?`` kept)."""
    text = DOC.read_text("utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|([^|]*)\|", text, flags=re.MULTILINE)
    return {kind: set(re.findall(r"`([a-z_]+\??)`", fields)) for kind, fields in rows}


def from_json(table: dict[str, tuple[frozenset[str], frozenset[str]]]) -> dict[str, set[str]]:
    return {kind: set(required) | {f"{f}?" for f in optional} for kind, (required, optional) in table.items()}


def test_the_doc_lists_exactly_the_messages_and_fields_of_the_shared_json() -> None:
    assert documented("Python to browser") == from_json(widget_protocol.TO_BROWSER)
    assert documented("Browser to Python") == from_json(widget_protocol.TO_PYTHON)


def test_the_doc_lists_exactly_the_settings() -> None:
    text = DOC.read_text("utf-8").split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE) == list(widget_protocol.SETTINGS)


def test_python_handles_every_browser_message_and_no_other() -> None:
    handled = {name.removeprefix("_on_browser_") for name in dir(Phone) if name.startswith("_on_browser_")}
    assert handled == set(widget_protocol.TO_PYTHON)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run js/protocol.js")
def test_the_page_computes_the_same_protocol_fingerprint_as_python() -> None:
    script = "import('./js/protocol.js').then(({FINGERPRINT}) => console.log(FINGERPRINT))"
    root = pathlib.Path(__file__).resolve().parents[2]
    run = subprocess.run(
        ["node", "-e", script], check=False, cwd=root, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == widget_protocol.FINGERPRINT
    # It follows the protocol's content: one more field anywhere is another fingerprint.
    changed = {
        **widget_protocol._SPEC,
        "to_python": {**widget_protocol._SPEC["to_python"], "hello": ["page?"]},
    }
    assert widget_protocol.fingerprint(changed) != widget_protocol.FINGERPRINT
