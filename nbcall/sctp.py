"""Tuning of aiortc's SCTP transport for bulk data (filled in from the profile in bench/throughput.py)."""

from __future__ import annotations

from typing import Any

__all__ = ["tune_sctp"]


def tune_sctp(sctp: Any) -> None:
    """Adjust one RTCSctpTransport for throughput; a no-op when aiortc's internals are not as expected."""
