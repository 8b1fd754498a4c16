"""The documentation site and the README say what the code does: their Python examples run, and its lists of names, error codes and
exit statuses match the code's.

Every ```python block of a page in docs/ (and of README.md) runs, in page order, in one namespace per page (a page tells one story:
a later block uses what an earlier one made), against a real signaling server and real WebRTC. The line before a
block may say how it is tested, as a MyST comment (not shown on the site; in the README an HTML comment,
``<!-- test: browser (...) -->``):

- ``% test: runs`` (the default): runs here;
- ``% test: webrtc``: runs here too, with aiortc, so in the loopback-only namespace with the other webrtc tests;
- ``% test: browser (where it is tested)``: needs a phone's browser half; skipped, the reason naming the browser
  test that does the same in JupyterLab;
- ``% test: skip (why)``: not Python to run here (a configuration file, a feature not merged yet).
"""

from __future__ import annotations

import ast
import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import nbcall
from nbcall import exceptions
from nbcall.call.kernel import ServerHandle
from nbcall.peer.transfer_cli import EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md"] + sorted(
    p for p in DOCS.rglob("*.md") if "_build" not in p.parts and "lessons" not in p.parts
)
# A MyST comment in docs/; an HTML comment in the README, which GitHub shows as Markdown.
MARK = re.compile(r"^(?:%|<!--) test: (runs|webrtc|browser|skip)\b\s*(.*?)\s*(?:-->)?$")
FENCE = re.compile(r"^```python\s*$")


@dataclass
class Block:
    page: Path
    line: int
    how: str
    why: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The page's ```python blocks with how each is tested."""
    lines = page.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            mark = MARK.match(lines[i - 1]) if i else None
            end = lines.index("```", i + 1)
            how, why = (mark.group(1), mark.group(2).strip(" ()")) if mark else ("runs", "")
            found.append(Block(page, i + 1, how, why, "\n".join(lines[i + 1 : end])))
            i = end
        i += 1
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]


def run_blocks(blocks: list[Block]) -> dict[str, Any]:
    """Run ``blocks`` one after the other in one namespace, top-level ``await`` allowed as in a notebook."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in blocks:
        code = compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        try:
            result = eval(code, namespace)  # the site's own examples; with top-level await, a coroutine
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except Exception as exc:
            raise AssertionError(f"the example at {block.where} raised {exc!r}:\n{block.code}") from exc
    return namespace


def close_everything(namespace: dict[str, Any]) -> None:
    """Close what the examples left open: their phones, peers and servers."""
    for value in namespace.values():
        if isinstance(value, (nbcall.Phone, nbcall.Peer, ServerHandle)):
            value.close()


def pages_with(how: str) -> list[Any]:
    pages = sorted({b.page for b in BLOCKS if b.how == how})
    return [pytest.param(page, id=str(page.relative_to(ROOT))) for page in pages]


@pytest.mark.parametrize("page", pages_with("runs"))
def test_the_examples_of_a_page_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples write files (send_file's results.csv)
    namespace = run_blocks([b for b in BLOCKS if b.page == page and b.how == "runs"])
    close_everything(namespace)


@pytest.mark.webrtc
@pytest.mark.parametrize("page", pages_with("webrtc"))
def test_the_python_peer_examples_of_a_page_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aiortc")
    monkeypatch.chdir(tmp_path)
    namespace = run_blocks([b for b in BLOCKS if b.page == page and b.how == "webrtc"])
    close_everything(namespace)


@pytest.mark.parametrize(
    "block", [pytest.param(b, id=b.where) for b in BLOCKS if b.how in ("browser", "skip")]
)
def test_an_example_not_run_here_says_why(block: Block) -> None:
    assert block.why, f"{block.where}: say why it is not run here, e.g. `% test: browser (tests/e2e/...)`"
    compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # it is Python, at least
    pytest.skip(f"{block.how}: {block.why}")


# ----------------------------------------------------------------------------- lists the pages keep in step


def test_the_api_reference_documents_every_public_name() -> None:
    page = (DOCS / "reference" / "api.md").read_text()
    documented = set(re.findall(r"\.\. auto\w+:: nbcall\.(\w+)", page))
    assert set(nbcall.__all__) <= documented, (
        f"add to docs/reference/api.md: {set(nbcall.__all__) - documented}"
    )


def test_the_api_reference_documents_every_exception() -> None:
    page = (DOCS / "reference" / "api.md").read_text()
    documented = set(re.findall(r"\.\. autoexception:: nbcall\.(?:exceptions\.)?(\w+)", page))
    assert set(exceptions.__all__) <= documented, set(exceptions.__all__) - documented


def test_troubleshooting_explains_every_error_code() -> None:
    page = (DOCS / "guides" / "troubleshooting.md").read_text()
    classes = [getattr(exceptions, name) for name in exceptions.__all__]
    # Each subclass of SignalingError that owns a code (the base's is a placeholder for codes from newer servers).
    codes = {c.code for c in classes if c is not exceptions.SignalingError and "code" in vars(c)}
    missing = {code for code in codes if f"| `{code}` |" not in page and f"(`{code}`)" not in page}
    assert not missing, f"docs/guides/troubleshooting.md should say what these mean: {missing}"


def test_troubleshooting_and_the_python_peer_explain_every_verdict_code_of_a_file() -> None:
    from nbcall.call.files import CODES

    for page in (DOCS / "guides" / "troubleshooting.md", DOCS / "guides" / "python-peer.md"):
        text = page.read_text()
        missing = {code for code in CODES if f"| `{code}` |" not in text}
        assert not missing, f"{page.relative_to(ROOT)} should say what these verdict codes mean: {missing}"


def test_the_python_peer_gives_each_verdict_code_its_exit_status() -> None:
    from nbcall.call.files import CODES
    from nbcall.peer.transfer_cli import CODE_EXITS, INTERRUPTED

    page = (DOCS / "guides" / "python-peer.md").read_text()
    for code in CODES:
        status = CODE_EXITS.get(code, INTERRUPTED)
        assert re.search(rf"^\| `{re.escape(code)}` \| .* \| {status} \|$", page, re.MULTILINE), (
            f"docs/guides/python-peer.md: the row of verdict code {code!r} should end with exit status {status}"
        )


def test_troubleshooting_explains_every_camera_and_microphone_failure() -> None:
    from nbcall.widget import media

    page = (DOCS / "guides" / "troubleshooting.md").read_text()
    names = set(media._ADVICE)
    assert {name for name in names if f"| `{name}` |" not in page} == set()


def test_the_exit_statuses_of_send_and_receive_are_listed() -> None:
    page = (DOCS / "guides" / "python-peer.md").read_text()
    missing = [code for code in EXIT_CODES if not re.search(rf"^\| {code} \| ", page, re.MULTILINE)]
    assert not missing, f"docs/guides/python-peer.md's exit statuses lack {missing}"


def test_the_guides_have_examples_of_each_kind() -> None:
    """The collector found the blocks (a changed fence or mark would silently test nothing)."""
    assert {b.how for b in BLOCKS} == {"runs", "webrtc", "browser", "skip"}
