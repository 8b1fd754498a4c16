"""Drive a real JupyterLab (or Notebook 7, or marimo) in Debian's Chromium: open notebooks, run cells, read values
back, take screenshots."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from playwright.sync_api import Locator, Page
from support import free_port

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # Host candidates as plain addresses (no mDNS names), and 127.0.0.1 allowed: the namespace has only loopback.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TOKEN = "nbcall-e2e"

# Runs a new cell at the end of the current notebook and returns its output text once it finished.
RUN_CELL_JS = """async (code) => {
  const app = window.jupyterapp, nb = app.shell.currentWidget.content;
  nb.activeCellIndex = nb.widgets.length - 1;
  await app.commands.execute('notebook:insert-cell-below');
  const cell = nb.activeCell;
  cell.model.sharedModel.setSource(code);
  // A cell that never ends must fail the test, not hang it: Playwright's evaluate has no deadline of its own.
  const late = new Promise((_, reject) => setTimeout(() => reject(new Error('the cell still runs after 180 s')), 180000));
  await Promise.race([app.commands.execute('notebook:run-cell'), late]);
  const out = cell.node.querySelector('.jp-OutputArea');
  return out ? out.innerText : '';
}"""


class Lab:
    """A running JupyterLab (or Jupyter Notebook 7) server with a folder of notebooks."""

    def __init__(self, url: str, root: Path, notebook_path: str = "lab/tree") -> None:
        self.url = url
        self.root = root
        self.notebook_path = notebook_path

    def write_notebook(self, name: str, cells: list[str]) -> str:
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [new_code_cell(c) for c in cells]
        nbformat.write(nb, self.root / name)
        return name

    def run_notebook(self, page: Page, name: str, cells: list[str], phones: tuple[str, ...] = ()) -> Notebook:
        """Write a notebook, open it, run all its cells, and wait until ``phones`` are shown and the kernel idles."""
        notebook = self.open(page, self.write_notebook(name, cells))
        notebook.run_all()
        for user in phones:
            page.locator(f".nbcall-phone[data-user='{user}']").wait_for(timeout=30_000)
        notebook.wait_idle()
        return notebook

    def shut_down_kernels(self) -> int:
        """Shut down every kernel the server runs (a test's notebooks, with their phones and signaling
        servers), so that the next test does not share the machine with them; returns how many there were."""
        api = f"{self.url}/api/kernels"
        with urllib.request.urlopen(f"{api}?token={TOKEN}", timeout=10) as reply:
            kernels = json.load(reply)
        for kernel in kernels:
            request = urllib.request.Request(f"{api}/{kernel['id']}?token={TOKEN}", method="DELETE")
            with contextlib.suppress(OSError):  # gone meanwhile: nothing to shut down
                urllib.request.urlopen(request, timeout=30).close()
        return len(kernels)

    def open(self, page: Page, name: str) -> Notebook:
        page.goto(f"{self.url}/{self.notebook_path}/{name}?token={TOKEN}&reset")
        notebook = Notebook(page, name)
        notebook.wait_idle()
        return notebook


class Notebook:
    """One notebook open in a page, driven through the front end's own commands (``window.jupyterapp``:
    JupyterLab and Notebook 7 alike)."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name

    def wait_idle(self, timeout_ms: int = 60_000) -> None:
        self.page.wait_for_function(
            "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
            timeout=timeout_ms,
        )

    def run(self, code: str) -> str:
        """Run ``code`` in a new cell; returns what the cell printed. A traceback fails the test."""
        self.page.bring_to_front()
        out = self.page.evaluate(RUN_CELL_JS, code)
        assert "Traceback" not in out, f"cell failed:\n{code}\n---\n{out}"
        return out

    def start(self, code: str) -> None:
        """Start running ``code`` in a new cell and return at once, while it runs."""
        self.page.bring_to_front()
        self.page.evaluate(f"code => {{ ({RUN_CELL_JS})(code); }}", code)

    def run_expecting_error(self, code: str) -> str:
        self.page.bring_to_front()
        return self.page.evaluate(RUN_CELL_JS, code)

    def value(self, expr: str) -> object:
        """Evaluate ``expr`` in the kernel and return it, through JSON."""
        out = self.run(f"import json as _json; print('@@' + _json.dumps({expr}, default=repr))")
        match = re.search(r"@@(.*)", out)
        assert match, f"no value printed for {expr!r}: {out!r}"
        return json.loads(match.group(1))

    def wait_until(self, condition: str, timeout: float = 10) -> None:
        """Await in a cell until ``condition`` holds in the kernel; browser messages reach it meanwhile."""
        steps = int(timeout / 0.05)
        self.run(
            f"import asyncio as _asyncio\nfor _ in range({steps}):\n    if {condition}: break\n"
            f"    await _asyncio.sleep(0.05)\nelse:\n    raise TimeoutError({condition!r})"
        )

    def run_all(self) -> None:
        # Started, not awaited: the caller waits for what it needs, with a deadline.
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def phone(self, user: str, state: str | None = None):
        selector = f".nbcall-phone[data-user='{user}']"
        if state:
            selector += f"[data-state='{state}']"
        return self.page.locator(selector)

    def screenshot(self, name: str, locator_user: str | None = None) -> Path:
        return screenshot(self.phone(locator_user) if locator_user else self.page, name)


def screenshot(target: Page | Locator, name: str) -> Path:
    """Save what ``target`` (a page, or one element) shows as test-artifacts/NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    target.screenshot(path=str(path))
    return path


@contextlib.contextmanager
def start_lab(home: Path, python: str | Path | None = None) -> Iterator[Lab]:
    """Start JupyterLab on a free 127.0.0.1 port with its own config, settings and notebook folder.

    ``python`` is the interpreter whose environment serves JupyterLab and runs its kernels (default: this one's).
    """
    with _start_jupyter(home, "lab", python) as lab:
        yield lab


@contextlib.contextmanager
def start_notebook7(home: Path) -> Iterator[Lab]:
    """Start Jupyter Notebook 7 like :func:`start_lab`; its notebooks open at /notebooks/NAME."""
    with _start_jupyter(home, "notebook") as notebook7:
        yield notebook7


# What differs between the front ends: the app's configurable class, where it opens a notebook, and options
# of its own. Everything else is the same Jupyter server.
_FRONT_ENDS = {
    "lab": (
        "LabApp",
        "lab/tree",
        [
            "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
    ),
    "notebook": ("JupyterNotebookApp", "notebooks", []),
}


@contextlib.contextmanager
def _start_jupyter(home: Path, front_end: str, python: str | Path | None = None) -> Iterator[Lab]:
    app, notebook_path, options = _FRONT_ENDS[front_end]
    root = home / "notebooks"
    root.mkdir()
    settings = home / "lab-settings"
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    # Without this, a news toast covers the cells.
    notification.write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    log_path = home / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                str(python or sys.executable),
                "-m",
                "jupyter",
                front_end,
                "--no-browser",
                "--allow-root",
                f"--port={port}",
                "--ServerApp.port_retries=0",
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={TOKEN}",
                f"--ServerApp.root_dir={root}",
                f"--{app}.expose_app_in_browser=True",
                f"--{app}.user_settings_dir={settings}",
                f"--{app}.workspaces_dir={home / 'workspaces'}",
                *options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/api/status?token={TOKEN}", proc, log_path)
        yield Lab(url, root, notebook_path)
    finally:
        stop(proc)


def wait_for_http(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    """Wait until ``url`` answers; fail early if the server process ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {log_path}") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def start_marimo(app_file: Path) -> Iterator[str]:
    """Serve the marimo app ``app_file`` (``marimo run``) on a free 127.0.0.1 port; yields its URL."""
    port = free_port()
    log_path = app_file.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marimo",
                "run",
                str(app_file),
                "--headless",
                "--host=127.0.0.1",
                f"--port={port}",
                "--no-token",
                "--no-sandbox",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=app_file.parent,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url, proc, log_path)
        yield url
    finally:
        stop(proc)
