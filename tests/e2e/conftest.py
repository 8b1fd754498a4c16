"""Real JupyterLab (and Notebook 7, marimo) + Debian's Chromium (Playwright), for tests of the phone widget
doing real WebRTC.

Run inside a loopback-only network namespace (scripts/test.sh does): Chromium gathers ICE candidates on every
interface, and the tests must send traffic to loopback only. No STUN/TURN server is configured.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Lab, start_lab, start_notebook7


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the browser tests, and run them last: Playwright's sync API keeps an event loop running on the
    main thread from its first test on, and the asyncio tests cannot start one after that."""
    browser_tests = [item for item in items if "tests/e2e/" in item.nodeid]
    for item in browser_tests:
        item.add_marker(pytest.mark.e2e)
    items[:] = [item for item in items if item not in browser_tests] + browser_tests


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 1000}}


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_notebook7(tmp_path_factory.mktemp("notebook7")) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_kernels(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used a Jupyter server, shut its kernels down: otherwise every notebook of the session
    keeps its kernel, phones and signaling server, and the later tests share the two cores with them."""
    yield
    for name in ("lab", "notebook7"):
        if name in request.fixturenames:
            server: Lab = request.getfixturevalue(name)
            server.shut_down_kernels()


@pytest.fixture(autouse=True)
def browser_console(request: pytest.FixtureRequest, page) -> Iterator[list[str]]:
    """Collect the page's console; on failure print it and save a screenshot, to see what the user saw."""
    lines: list[str] = []
    page.on("console", lambda m: lines.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: lines.append(f"pageerror: {e}"))
    yield lines
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"), full_page=True)
        print("\n".join(lines[-60:]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
