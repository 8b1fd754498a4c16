"""One session description explained: each line parsed by sdp-transform, its meaning, and its m-sections."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, overload

import sdp_transform

from .meanings import candidate_meaning, meaning

__all__ = ["SdpExplanation", "SdpLine", "Section", "explain_candidate", "explain_sdp", "parse_line"]


@dataclass(frozen=True)
class SdpLine:
    """One line of a description: its ``number`` (from 1), ``text``, the ``section`` it belongs to ("session"
    or "m=video (mid 1)"), what the parser calls it (``kind``, e.g. ``rtp`` or ``candidates``), its parsed
    ``fields``, and its ``meaning`` in words."""

    number: int
    text: str
    section: str
    kind: str
    fields: dict[str, Any]
    meaning: str


@dataclass
class Section:
    """One m-section: its kind (audio, video, application), mid, direction and the facts ICE/DTLS use."""

    index: int
    kind: str
    mid: str = ""
    port: int = 0
    protocol: str = ""
    direction: str = "sendrecv"
    codecs: list[dict[str, Any]] = field(default_factory=list)
    setup: str = ""
    fingerprint: str = ""
    ice_ufrag: str = ""
    sctp_port: int | None = None
    max_message_size: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"m={self.kind} (mid {self.mid})" if self.mid else f"m={self.kind} (#{self.index})"


def parse_line(line: str) -> tuple[str, Any]:
    """The kind sdp-transform gives one line, and its parsed fields (``("unknown", {})`` if none)."""
    parsed = sdp_transform.parse(line)
    media = parsed.pop("media", [])
    if media:
        return "media", media[0]
    if not parsed:
        return "unknown", {}
    kind, fields = next(iter(parsed.items()))
    # Repeatable attributes come back as one-item lists.
    if isinstance(fields, list) and len(fields) == 1:
        fields = fields[0]
    return kind, fields


def _description(source: Any) -> tuple[str | None, str]:
    """(type, SDP text) from an SDP string, ``{"type", "sdp"}``, or that as a JSON string (as in a log)."""
    if isinstance(source, Mapping):
        return source.get("type"), str(source.get("sdp", ""))
    if hasattr(source, "sdp") and hasattr(source, "type"):  # aiortc's RTCSessionDescription
        return source.type, source.sdp
    if not isinstance(source, str):
        raise TypeError(f"explain_sdp takes an SDP string or {{'type', 'sdp'}}, not {type(source).__name__}")
    stripped = source.strip()
    if stripped.startswith("{"):
        try:
            return _description(json.loads(stripped))
        except json.JSONDecodeError:
            pass
    return None, source


class SdpExplanation(Sequence[SdpLine]):
    """A session description, line by line, with its sections; shows as a table in a notebook."""

    def __init__(self, type: str | None, lines: list[SdpLine], sections: list[Section]) -> None:
        self.type = type
        self.lines = lines
        self.sections = sections

    @overload
    def __getitem__(self, index: int) -> SdpLine: ...
    @overload
    def __getitem__(self, index: slice) -> list[SdpLine]: ...
    def __getitem__(self, index: int | slice) -> SdpLine | list[SdpLine]:
        return self.lines[index]

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[SdpLine]:
        return iter(self.lines)

    @property
    def candidates(self) -> list[dict[str, Any]]:
        """Every candidate in the description (trickled ones are in the log's ``ice`` messages)."""
        return [c for s in self.sections for c in s.candidates]

    def find(self, prefix: str) -> list[SdpLine]:
        """The lines that start with ``prefix`` (``"a=setup"``, ``"m="``)."""
        return [line for line in self.lines if line.text.startswith(prefix)]

    def to_json(self) -> dict[str, Any]:
        """What the widget's SDP panel shows."""
        return {
            "type": self.type,
            "lines": [
                {"n": x.number, "text": x.text, "section": x.section, "meaning": x.meaning} for x in self
            ],
            "sections": [{**asdict(s), "title": s.title} for s in self.sections],
        }

    def __str__(self) -> str:
        width = min(60, max((len(x.text) for x in self.lines), default=0))
        rows, section = [], None
        for x in self.lines:
            if x.section != section:
                section = x.section
                rows.append(f"-- {section}")
            text = x.text if len(x.text) <= width else x.text[: width - 1] + "…"
            rows.append(f"{x.number:>4}  {text:<{width}}  {x.meaning}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        kinds = ", ".join(s.title for s in self.sections) or "no media sections"
        return f"<SdpExplanation {self.type or 'description'}: {len(self)} lines; {kinds}>"

    def _repr_html_(self) -> str:
        title = f"<caption>{html.escape(self.type or 'session description')}: {len(self)} lines</caption>"
        return f'<table class="nbcall-sdp-table">{title}{self._html_rows()}</table>'

    def _html_rows(self) -> str:
        rows, section = [], None
        for x in self.lines:
            if x.section != section:
                section = x.section
                rows.append(f'<tr><th colspan="3" style="text-align:left">{html.escape(section)}</th></tr>')
            rows.append(
                f'<tr><td style="text-align:right">{x.number}</td>'
                f'<td style="text-align:left;font-family:monospace;word-break:break-all">{html.escape(x.text)}</td>'
                f'<td style="text-align:left">{html.escape(x.meaning)}</td></tr>'
            )
        return "".join(rows)


def explain_sdp(description: Any) -> SdpExplanation:
    """Explain every line of a session description: an SDP string, ``{"type": ..., "sdp": ...}``, or that
    as a JSON string (the ``sdp`` field of a ``call`` or ``answer`` message in ``phone.log``).

    Parameters
    ----------
    description
        The SDP text, a ``{"type", "sdp"}`` dict, or the JSON string of one.

    Returns
    -------
    SdpExplanation
        Each line with its meaning, by session and media section; a table in a notebook, text when printed.

    Raises
    ------
    TypeError
        ``description`` is neither a string nor a dict with an ``sdp``.
    """
    kind_of_description, text = _description(description)
    lines: list[SdpLine] = []
    sections: list[Section] = []
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        kind, fields = parse_line(line)
        if kind == "media":
            current = Section(
                index=len(sections),
                kind=str(fields.get("type")),
                port=int(fields.get("port") or 0),
                protocol=str(fields.get("protocol", "")),
            )
            sections.append(current)
        elif current is not None:
            _note(current, kind, fields, line)
        explained = meaning(kind, fields, line)
        section = "session" if current is None else f"m={current.kind} (#{current.index})"
        lines.append(
            SdpLine(
                number,
                line,
                section,
                kind,
                fields if isinstance(fields, dict) else {"value": fields},
                explained,
            )
        )
    # The sections' titles use their mids, known only once their lines were read.
    titles = {f"m={s.kind} (#{s.index})": s.title for s in sections}
    lines = [
        SdpLine(x.number, x.text, titles.get(x.section, x.section), x.kind, x.fields, x.meaning)
        for x in lines
    ]
    return SdpExplanation(kind_of_description, lines, sections)


def _note(section: Section, kind: str, fields: Any, line: str) -> None:
    """Keep what the section summary shows (codecs, direction, ICE and DTLS facts)."""
    if kind == "mid":
        section.mid = str(fields)
    elif kind == "direction":
        section.direction = str(fields)
    elif kind == "rtp":
        section.codecs.append(
            {
                "payload": fields.get("payload"),
                "codec": fields.get("codec"),
                "rate": fields.get("rate"),
                "feedback": [],
            }
        )
    elif kind == "rtcpFb":
        for codec in section.codecs:
            if codec["payload"] == fields.get("payload"):
                codec["feedback"].append(
                    " ".join(str(x) for x in (fields.get("type"), fields.get("subtype")) if x)
                )
    elif kind == "setup":
        section.setup = str(fields)
    elif kind == "fingerprint":
        section.fingerprint = f"{fields.get('type')} {fields.get('hash')}"
    elif kind == "iceUfrag":
        section.ice_ufrag = line.split(":", 1)[1]  # the text itself: the parser turns "1234" into a number
    elif kind == "sctpPort":
        section.sctp_port = int(fields)
    elif kind == "maxMessageSize":
        section.max_message_size = int(fields)
    elif kind == "candidates":
        section.candidates.append(dict(fields))


def explain_candidate(candidate: Any) -> SdpLine:
    """Explain one trickled candidate: ``"candidate:..."``, ``RTCIceCandidate.toJSON()`` or that as JSON."""
    if isinstance(candidate, str) and candidate.strip().startswith("{"):
        candidate = json.loads(candidate)
    if isinstance(candidate, Mapping):
        candidate = candidate.get("candidate", "")
    text = str(candidate).strip()
    line = text if text.startswith("a=") else f"a={text}"
    kind, fields = parse_line(line)
    if kind != "candidates":
        return SdpLine(
            1, text, "candidate", "unknown", {}, "not an ICE candidate line" if text else "end of candidates"
        )
    return SdpLine(1, text, "candidate", kind, dict(fields), candidate_meaning(fields))
