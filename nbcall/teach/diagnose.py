"""What the browser found when it checked its WebRTC set-up, in words, with advice for each failure.

The checks run in the browser (js/diagnose.js): whether the page is a secure context, which cameras and
microphones it can use, and, for each configured STUN/TURN server, which candidate types a throwaway peer
connection gathers through it and whether a TURN server accepted the credentials. ``Phone.diagnose()`` returns
the browser's report as a :class:`Diagnosis`. :func:`candidate_error` turns a failed STUN/TURN request during a
call (``icecandidateerror``) into the phone's ``error``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["Diagnosis", "candidate_error"]

#: STUN/TURN error codes (RFC 8489, RFC 8656) that stop a server from helping, with what to do.
_FATAL = {
    401: "refused the username and credential: check the ice_servers entry's username and credential",
    403: "refused to relay to the peer's address (coturn refuses loopback and private addresses unless started "
    "with --allow-loopback-peers)",
    441: "says the credentials do not belong to this allocation: check the username and credential",
    486: "has no allocation left for this user (allocation quota reached): wait, or raise its quota",
    508: "has no capacity left (insufficient capacity): try another TURN server",
}


def candidate_error(event: Any) -> str | None:
    """The phone's ``error`` for an ``icecandidateerror`` report, or None when it needs none.

    Transient errors (a stale nonce, which the browser retries) and unreachable servers on one of several
    interfaces (701, common and often harmless) are only logged.
    """
    if not isinstance(event, Mapping):
        return None
    code = event.get("errorCode")
    advice = _FATAL.get(code) if isinstance(code, int) else None
    if advice is None:
        return None
    text = f" {event.get('errorText')}" if event.get("errorText") else ""
    return f"the STUN/TURN server {event.get('url') or '(unknown URL)'} {advice} (error {code}{text})"


class Diagnosis(dict[str, Any]):
    """The browser's report (a dict, as js/diagnose.js made it), readable as text and as an HTML table.

    Keys: ``secure_context`` (bool), ``media`` (``{"audio": {...}, "video": {...}}`` with ``available`` and
    ``devices``), ``servers`` (one dict per STUN/TURN URL: ``url``, ``candidate_types``, ``errors``, ``ok``,
    ``advice``), ``problems`` (advice for each failure, in words) and ``ok`` (no problem found).
    """

    @property
    def ok(self) -> bool:
        return bool(self.get("ok"))

    @property
    def problems(self) -> list[str]:
        return list(self.get("problems", []))

    def rows(self) -> list[tuple[str, str, str]]:
        """(check, result, advice) for each check made."""
        rows = [
            (
                "secure context",
                "yes" if self.get("secure_context") else "no",
                "" if self.get("secure_context") else self.get("secure_context_advice", ""),
            )
        ]
        for kind, found in (self.get("media") or {}).items():
            result = f"{found.get('devices', 0)} device(s)" if found.get("available") else "none"
            rows.append((kind, result, found.get("advice", "")))
        for server in self.get("servers", []):
            types = ", ".join(server.get("candidate_types", [])) or "no candidates"
            errors = "; ".join(
                f"{e.get('errorCode')} {e.get('errorText', '')}".strip() for e in server.get("errors", [])
            )
            rows.append(
                (
                    str(server.get("url")),
                    types + (f" (errors: {errors})" if errors else ""),
                    server.get("advice", ""),
                )
            )
        if not self.get("servers"):
            rows.append(
                (
                    "STUN/TURN servers",
                    "none configured",
                    "host candidates only: peers must reach each other directly",
                )
            )
        return rows

    def __str__(self) -> str:
        lines = [f"{'OK' if self.ok else 'PROBLEMS FOUND'}: WebRTC set-up of this browser"]
        for check, result, advice in self.rows():
            lines.append(f"  {check:<28} {result}" + (f"\n  {'':<28} -> {advice}" if advice else ""))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(c)}</td><td style='text-align:left'>{html.escape(r)}</td>"
            f"<td style='text-align:left'>{html.escape(a)}</td></tr>"
            for c, r, a in self.rows()
        )
        verdict = "OK" if self.ok else "problems found"
        return f"<table><caption>WebRTC set-up: {verdict}</caption><tr><th>check</th><th>result</th><th>advice</th></tr>{rows}</table>"
