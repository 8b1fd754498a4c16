"""A server process a lesson or a test starts and owns: coturn (:mod:`~nbcall.teach.coturn`), Janus
(:mod:`~nbcall.teach.janus`).

:class:`LocalServer` holds the process and the temporary folder it runs from (its configuration and log), and
stops the one and removes the other on :meth:`~LocalServer.close` or at the end of a ``with`` block;
:func:`spawn` starts the process and :meth:`~LocalServer.wait_ready` waits until it serves.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["OUTPUT", "LocalServer", "spawn"]

#: The file in a server's folder that takes its own output (stdout and stderr).
OUTPUT = "output.log"


def spawn(command: list[str], work: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output in ``work`` / :data:`OUTPUT`: a pipe nobody reads could fill up and
    stall it."""
    with open(work / OUTPUT, "wb") as output:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)


class LocalServer:
    """A running server ``process`` whose folder is ``directory``; its log is ``log_path``."""

    def __init__(
        self, process: subprocess.Popen[bytes], directory: tempfile.TemporaryDirectory[str], log_name: str
    ) -> None:
        self._process = process
        self._directory = directory
        #: The server's log.
        self.log_path = Path(directory.name) / log_name

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def log(self) -> str:
        """What the server logged so far."""
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, ready: Callable[[], None], error: type[Exception], failed: str) -> None:
        """Return once ``ready()`` does. When it raises ``error`` or :class:`TimeoutError`, raise ``error`` saying
        ``failed``, with the end of the server's log (or of its output); whatever ends the wait early (an interrupt
        too) stops the server, so that none is left behind."""
        answered = False
        try:
            ready()
            answered = True
        except (error, TimeoutError):
            said = (
                self.log()[-2000:]
                or (Path(self._directory.name) / OUTPUT).read_text("utf-8", "replace")[-2000:]
            )
            raise error(f"{failed}; its log:\n{said or '(empty)'}") from None
        finally:
            if not answered:
                self.close()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would; its folder stays until :meth:`close`."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def close(self) -> None:
        """Stop the server and remove its folder. Idempotent."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._directory.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
