"""The words of nbcall's file protocol (:mod:`nbcall.call.transfer` describes it): its messages, the codes of
its verdicts, received names made safe and the name of a partial file."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from ..wire.payload import Message

__all__ = [
    "CHUNK",
    "CODES",
    "KEY",
    "MAX_IN_MEMORY",
    "PARTIAL",
    "RESUME",
    "SUCCESS",
    "FileMessage",
    "Received",
    "clean_name",
    "end_message",
    "hash_prefix",
    "partial_path",
    "start_message",
    "verdict_code",
]

#: Bytes per data message of a file: large enough to keep aiortc's SCTP busy, small enough to bound memory.
CHUNK = 1024 * 1024
#: The key that marks a JSON message as a step of a file's transfer; its value names the step.
KEY = "nbcall_file"
#: What an end lists in its signal's ``framing_ext`` when it answers a file's ``start`` with an ``offset``.
RESUME = "resume"
#: The suffix of a partial file, beside the name it is received under (``.NAME`` + this): hidden, and never
#: taken for the whole file.
PARTIAL = ".nbcall-partial"
#: The largest file kept in memory by a receiver without a directory (the phones' ``max_receive_size``).
MAX_IN_MEMORY = 512 * 2**20

#: What a verdict's ``code`` says: the receiver's, and the sender's own when no verdict came.
CODES = {
    "ok": "the file arrived whole and its sha256 matched",
    "same": "the receiver has this file already (same name, same sha256): nothing was sent",
    "exists": "refused: a file of that name exists at the receiver, which may not overwrite it",
    "busy": "refused for now: another sender is sending a file of that name to the receiver",
    "unwritable": "refused: the receiver cannot write a file of that name where it keeps files",
    "too-large": "refused: the file is larger than the receiver keeps in memory (its max_receive_size)",
    "checksum": "the file arrived with another sha256 than was sent (it was not kept)",
    "incomplete": "fewer or more bytes arrived than the file's size (it was not kept)",
    "malformed": "refused: the file's control messages were malformed (a size that is no count of bytes, say)",
    "refused": "the receiver refused the file for a reason this version does not know",
    "no-verdict": "the receiver sent no verdict in time",
}
#: The codes of a file that is at the receiver, whole and checked.
SUCCESS = ("ok", "same")


@dataclass(frozen=True)
class FileMessage(Message):
    """A file received in a call: ``name`` is its cleaned relative name, ``path`` where it was written (None
    when kept in memory, then ``data`` holds its bytes), ``sha256`` its checked digest."""

    name: str = ""
    path: Path | None = None
    sha256: str = ""


class Received(NamedTuple):
    """A file this phone received: its cleaned name, where it was written (None: not kept, or in memory),
    whether it was kept (or was there already), and its verdict's code."""

    name: str
    path: Path | None
    ok: bool
    code: str


def clean_name(name: object) -> str:
    """A received file name made safe: relative, with no ``..``, no empty or hidden-drive parts, and no control
    characters (a NUL would make every file-system call raise; a newline would forge log lines)."""
    text = "" if name is None else "".join(c for c in str(name) if c.isprintable()).replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".", "..", "/") and ":" not in p]
    cleaned = "/".join(p.strip() for p in parts if p.strip())
    return cleaned or "unnamed"


def partial_path(path: Path) -> Path:
    """Where the file to be kept at ``path`` is written until it is whole."""
    return path.with_name(f".{path.name}{PARTIAL}")


def hash_prefix(path: Path, size: int) -> Any:
    """The sha256 state after the first ``size`` bytes of ``path`` (OSError if it has fewer)."""
    digest = hashlib.sha256()
    left = size
    with open(path, "rb") as file:
        while left > 0 and (chunk := file.read(min(left, CHUNK))):
            digest.update(chunk)
            left -= len(chunk)
    if left:
        raise OSError(f"{path.name} has fewer than {size} bytes now")
    return digest


def start_message(name: str, size: int, ident: str, resume: bool | None = None) -> dict[str, Any]:
    """The message that opens a file's transfer; ``resume`` (True or False) only to a receiver that answers."""
    message: dict[str, Any] = {KEY: "start", "id": ident, "name": name, "size": size}
    if resume is not None:
        message["resume"] = resume
    return message


def end_message(ident: str, sha256: str) -> dict[str, Any]:
    """The message that closes a transfer, with the digest the receiver checks."""
    return {KEY: "end", "id": ident, "sha256": sha256}


def verdict_code(verdict: dict[str, Any]) -> str:
    """The ``code`` of a verdict (one of :data:`CODES`); for a receiver older than codes, told from its text."""
    code = verdict.get("code")
    if isinstance(code, str) and code in CODES:
        return code
    if verdict.get("ok") is True:
        return "ok"
    # The only place that reads a verdict's words: older receivers wrote exactly these three.
    error = str(verdict.get("error") or "")
    if error.endswith("(receive with --force to overwrite)"):
        return "exists"
    if error.startswith("checksum mismatch for "):
        return "checksum"
    if re.search(r": \d+ bytes received of \d+$", error):
        return "incomplete"
    return "refused"
