"""Session descriptions explained: every line of an SDP offer or answer with what it means.

``explain_sdp(text)`` returns an :class:`SdpExplanation`, which displays as a table in a notebook and reads as
a list of :class:`SdpLine`. :func:`compare` says what an answer chose from its offer. The phone keeps the
descriptions of each call (:class:`Descriptions`) and sends their explanations to its widget's SDP panel.

The lines are parsed by sdp-transform (the Python port of the JavaScript parser most WebRTC projects use), one
line at a time, so that each line keeps its own parsed fields; nbcall adds only the meanings.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, overload

import sdp_transform

__all__ = [
    "Descriptions",
    "SdpExplanation",
    "SdpLine",
    "Section",
    "compare",
    "explain_candidate",
    "explain_sdp",
]


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


# ------------------------------------------------------------------------------------------- meanings

CANDIDATE_TYPES = {
    "host": "host: an address of this machine's own network interface",
    "srflx": "srflx (server reflexive): this machine's public address as a STUN server saw it, outside the NAT",
    "prflx": "prflx (peer reflexive): an address the peer's connectivity checks revealed",
    "relay": "relay: an address on a TURN server, which forwards the packets (works through any NAT or firewall)",
}

DIRECTIONS = {
    "sendrecv": "this side sends and receives this medium",
    "sendonly": "this side only sends this medium",
    "recvonly": "this side only receives this medium (it has no track to send)",
    "inactive": "neither side sends this medium",
}

SETUP_ROLES = {
    "actpass": "DTLS role: either (an offer says this: the answerer chooses)",
    "active": "DTLS role: client: this side starts the DTLS handshake",
    "passive": "DTLS role: server: this side waits for the peer's DTLS handshake",
    "holdconn": "DTLS role: hold the connection (not used by WebRTC)",
}

FEEDBACK = {
    "nack": "NACK: the receiver asks for lost packets again",
    "nack pli": "PLI: the receiver says it lost a picture and needs a keyframe",
    "ccm fir": "FIR: the receiver asks for a full keyframe",
    "goog-remb": "REMB: the receiver estimates the bitrate it can take (Google's older congestion control)",
    "transport-cc": "transport-wide congestion control: per-packet arrival times for the sender's bandwidth estimate",
}

CODECS = {
    "opus": "Opus, WebRTC's main audio codec",
    "red": "RED: redundant copies of earlier packets, to survive loss",
    "rtx": "RTX: retransmissions, on a payload type of their own",
    "ulpfec": "ULPFEC: forward error correction",
    "flexfec-03": "FlexFEC: forward error correction",
    "cn": "comfort noise, sent during silence",
    "telephone-event": "DTMF key presses",
    "g722": "G.722 wideband audio",
    "pcmu": "G.711 mu-law, classic telephony audio",
    "pcma": "G.711 A-law, classic telephony audio",
    "vp8": "VP8 video",
    "vp9": "VP9 video",
    "h264": "H.264 video",
    "av1": "AV1 video",
    "h265": "H.265 video",
}

EXTENSIONS = {
    "ssrc-audio-level": "the loudness of each audio packet",
    "abs-send-time": "when the packet was sent, for bandwidth estimation",
    "transport-wide-cc": "a transport-wide sequence number, for congestion control",
    "sdes:mid": "the section's mid, so that bundled packets find their section",
    "sdes:rtp-stream-id": "the simulcast stream's id (rid)",
    "sdes:repaired-rtp-stream-id": "the rid of the stream a retransmission repairs",
    "toffset": "a transmission time offset",
    "video-orientation": "the picture's rotation",
    "playout-delay": "how long the receiver may buffer before playing",
    "video-content-type": "screen share or camera",
    "video-timing": "timing of the frame through the sender's pipeline",
    "color-space": "the video's colour space",
    "abs-capture-time": "when the frame or sound was captured",
}

# Attributes sdp-transform leaves as "invalid" (it has no grammar for them): their names, explained.
OTHER_ATTRIBUTES = {
    "rtcp-xr": "extended RTCP reports (here: the receiver measures round-trip time too)",
}


def _extension(uri: str) -> str:
    for key, meaning in EXTENSIONS.items():
        if key in uri or key.replace("transport-wide-cc", "transport-wide-cc-extensions") in uri:
            return meaning
    return "an RTP header extension"


def _codec(name: str) -> str:
    return CODECS.get(name.lower(), name)


def _meaning(kind: str, f: Any, text: str) -> str:
    """What a line means, from the kind sdp-transform gives it and its parsed fields ``f``."""
    match kind:
        case "version":
            return "SDP version: always 0"
        case "origin":
            return (
                f"origin: session {f.get('sessionId')}, version {f.get('sessionVersion')} (goes up at each "
                f"renegotiation); the address {f.get('address')} is a placeholder nobody connects to"
            )
        case "name":
            return "session name: '-' means none; WebRTC does not use it"
        case "timing":
            return "timing: 0 0 means the session has no start or end time"
        case "groups":
            mids = str(f.get("mids", "")).split()
            if f.get("type") == "BUNDLE":
                return (
                    f"BUNDLE: the sections with mids {', '.join(mids)} share one transport: one ICE "
                    "connection, one DTLS handshake, one port"
                )
            return f"group {f.get('type')} of the sections {', '.join(mids)}"
        case "extmapAllowMixed":
            return "RTP header extensions of one and two bytes may be mixed"
        case "msidSemantic":
            return "tracks are grouped into media streams by a=msid lines (WebRTC's MediaStream semantics)"
        case "icelite":
            return (
                "this side runs ICE lite: it answers connectivity checks but sends none (typical of servers)"
            )
        case "media":
            return _media_meaning(f)
        case "connection":
            return f"connection address {f.get('ip')}: a placeholder, the ICE candidates carry the real addresses"
        case "rtcp":
            return "RTCP address: a placeholder as well (RTCP shares RTP's port, see rtcp-mux)"
        case "bandwidth":
            return f"bandwidth limit: {f.get('limit')} kbit/s ({f.get('type')})"
        case "iceUfrag":
            return (
                "ICE username fragment: names this side in connectivity checks (the STUN USERNAME is "
                "the peer's fragment, a colon, then this one)"
            )
        case "icePwd":
            return "ICE password: the key of the connectivity checks' MESSAGE-INTEGRITY, so strangers cannot fake them"
        case "iceOptions":
            if "trickle" in str(f):
                return "ICE options: trickle: candidates follow the description one by one, as they are found"
            return f"ICE options: {f}"
        case "fingerprint":
            return (
                f"DTLS certificate fingerprint ({f.get('type')}): the certificate in the DTLS handshake must hash "
                "to this, which ties the encryption to this signaling"
            )
        case "setup":
            return SETUP_ROLES.get(str(f), f"DTLS role {f}")
        case "mid":
            return f"media ID {f}: names this section, for BUNDLE and for the MID header extension"
        case "ext":
            return f"RTP header extension {f.get('value')}: {_extension(str(f.get('uri', '')))}"
        case "direction":
            return DIRECTIONS.get(str(f), str(f))
        case "msid":
            stream, _, track = str(f).partition(" ")
            where = "no stream" if stream == "-" else f"stream {stream}"
            return (
                f"the track sent here ({track}) belongs to {where}: the receiver groups one stream's tracks"
            )
        case "rtcpMux":
            return "RTP and RTCP share one port"
        case "rtcpRsize":
            return "reduced-size RTCP packets are allowed"
        case "rtp":
            channels = f" × {f['encoding']} channels" if f.get("encoding") else ""
            return f"payload type {f.get('payload')} = {f.get('codec')} at {f.get('rate')} Hz{channels}: {_codec(str(f.get('codec')))}"
        case "rtcpFb":
            name = " ".join(str(x) for x in (f.get("type"), f.get("subtype")) if x)
            return f"payload type {f.get('payload')} takes feedback {name}: {FEEDBACK.get(name, 'RTCP feedback')}"
        case "fmtp":
            config = str(f.get("config", ""))
            if config.startswith("apt="):
                return f"payload type {f.get('payload')} retransmits payload type {config[4:]}"
            return f"payload type {f.get('payload')} parameters: {config}"
        case "ssrcs":
            meaning = {
                "cname": "its canonical name: streams of one endpoint share it, to play in sync",
                "msid": "the stream and track it carries",
            }.get(str(f.get("attribute")), str(f.get("attribute")))
            return f"RTP stream SSRC {f.get('id')}: {meaning}"
        case "ssrcGroups":
            if f.get("semantics") == "FID":
                first, _, second = str(f.get("ssrcs", "")).partition(" ")
                return f"SSRC {second} carries the retransmissions (RTX) of SSRC {first}"
            return f"SSRC group {f.get('semantics')}: {f.get('ssrcs')}"
        case "sctpPort":
            return f"the data channel's SCTP port: {f} (inside the DTLS connection, not a UDP port)"
        case "maxMessageSize":
            return f"the largest data-channel message this side can receive: {f} bytes"
        case "sctpmap":
            return "the data channel's SCTP port, in the old syntax"
        case "candidates":
            return _candidate_meaning(f)
        case "endOfCandidates":
            return "no more candidates will come for this section"
        case "ptime" | "maxptime":
            return f"{'most' if kind == 'maxptime' else ''} milliseconds of sound per packet: {f}".strip()
        case "rids":
            return f"simulcast stream rid {f.get('id')} ({f.get('direction')})"
        case "simulcast":
            return "simulcast: the sender sends several versions of the video at once"
        case "invalid":
            name = text[2:].split(":", 1)[0] if text.startswith("a=") else ""
            return OTHER_ATTRIBUTES.get(
                name, "an attribute nbcall does not explain (browsers ignore what they don't know)"
            )
        case _:
            return kind


def _media_meaning(f: Mapping[str, Any]) -> str:
    kind, protocol, payloads = f.get("type"), f.get("protocol"), str(f.get("payloads", ""))
    if f.get("port") == 0:
        return f"a {kind} section rejected or stopped (port 0): nothing flows in it"
    if kind == "application":
        return (
            f"the data channel's section: SCTP over DTLS over UDP ({protocol}); port 9 is a placeholder, "
            "ICE finds the real addresses"
        )
    article = "an" if str(kind)[:1] in "aeiou" else "a"
    return (
        f"{article} {kind} section over {protocol} (RTP, encrypted with SRTP keyed by DTLS, with feedback); payload "
        f"types in order of preference: {payloads}; port 9 is a placeholder, ICE finds the real addresses"
    )


def _candidate_meaning(c: Mapping[str, Any]) -> str:
    kind = str(c.get("type"))
    text = CANDIDATE_TYPES.get(kind, kind)
    where = f"{c.get('protocol')} {c.get('ip')}:{c.get('port')}"
    extra = ""
    if c.get("raddr") is not None:
        extra = f"; related address {c.get('raddr')}:{c.get('rport')} (the local side it stands for)"
    if c.get("tcptype"):
        extra += f"; TCP {c.get('tcptype')}"
    component = "RTP" if c.get("component") == 1 else "RTCP"
    return f"ICE candidate {where}, {text}; priority {c.get('priority')}, component {c.get('component')} ({component}){extra}"


# ------------------------------------------------------------------------------------------ parsing


def _parse_line(line: str) -> tuple[str, Any]:
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
    as a JSON string (the ``sdp`` field of a ``call`` or ``answer`` message in ``phone.log``)."""
    kind_of_description, text = _description(description)
    lines: list[SdpLine] = []
    sections: list[Section] = []
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        kind, fields = _parse_line(line)
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
        meaning = _meaning(kind, fields, line) if kind != "unknown" else _unknown(line)
        section = "session" if current is None else f"m={current.kind} (#{current.index})"
        lines.append(
            SdpLine(
                number,
                line,
                section,
                kind,
                fields if isinstance(fields, dict) else {"value": fields},
                meaning,
            )
        )
    # The sections' titles use their mids, known only once their lines were read.
    titles = {f"m={s.kind} (#{s.index})": s.title for s in sections}
    lines = [
        SdpLine(x.number, x.text, titles.get(x.section, x.section), x.kind, x.fields, x.meaning)
        for x in lines
    ]
    return SdpExplanation(kind_of_description, lines, sections)


def _unknown(line: str) -> str:
    if len(line) < 2 or line[1] != "=":
        return "not an SDP line (an SDP line is a letter, '=', then a value)"
    return f"a line of type {line[0]!r} that nbcall does not explain"


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
    kind, fields = _parse_line(line)
    if kind != "candidates":
        return SdpLine(
            1, text, "candidate", "unknown", {}, "not an ICE candidate line" if text else "end of candidates"
        )
    return SdpLine(1, text, "candidate", kind, dict(fields), _candidate_meaning(fields))


# ------------------------------------------------------------------------------------- offer vs answer


def compare(offer: Any, answer: Any) -> list[dict[str, Any]]:
    """What the answer chose from the offer, section by section: one dict per m-section with ``mid``,
    ``kind``, ``offered`` and ``accepted`` codec names, ``direction`` (offer -> answer), ``dtls`` (who is the
    DTLS client) and ``note`` in words."""
    o = offer if isinstance(offer, SdpExplanation) else explain_sdp(offer)
    a = answer if isinstance(answer, SdpExplanation) else explain_sdp(answer)
    choices = []
    for index, offered in enumerate(o.sections):
        answered = a.sections[index] if index < len(a.sections) else None
        choice: dict[str, Any] = {"mid": offered.mid, "kind": offered.kind, "offered": _names(offered)}
        if answered is None:
            choice.update(
                accepted=[],
                direction=f"{offered.direction} -> (missing)",
                dtls="",
                note="the answer has no such section",
            )
            choices.append(choice)
            continue
        accepted = _names(answered)
        choice["accepted"] = accepted
        choice["direction"] = f"{offered.direction} -> {answered.direction}"
        choice["dtls"] = {
            "active": "the answerer is the DTLS client",
            "passive": "the offerer is the DTLS client",
        }.get(answered.setup, answered.setup)
        if answered.port == 0:
            note = "rejected: nothing flows in this section"
        elif offered.kind == "application":
            sizes = [s for s in (offered.max_message_size, answered.max_message_size) if s]
            note = "the data channel" + (f": messages up to {min(sizes)} bytes each way" if sizes else "")
        else:
            dropped = [c for c in choice["offered"] if c not in accepted]
            first = accepted[0] if accepted else "nothing"
            note = f"{first} first" + (f"; dropped {', '.join(dropped)}" if dropped else "; every codec kept")
            note += f"; {_flow(offered.direction, answered.direction)}"
        choice["note"] = note
        choices.append(choice)
    return choices


def _names(section: Section) -> list[str]:
    names: list[str] = []
    for codec in section.codecs:
        name = str(codec["codec"])
        if name not in names:
            names.append(name)
    return names


def _flow(offered: str, answered: str) -> str:
    offerer = offered in ("sendrecv", "sendonly") and answered in ("sendrecv", "recvonly")
    answerer = answered in ("sendrecv", "sendonly")
    return ", ".join(
        [
            "the offerer sends" if offerer else "the offerer sends nothing",
            "the answerer sends" if answerer else "the answerer sends nothing",
        ]
    )


# ----------------------------------------------------------------------------- a phone's descriptions


class Negotiation:
    """One peer connection's descriptions: the local and the remote, explained, and what the answer chose."""

    def __init__(self, peer: str, local: SdpExplanation | None, remote: SdpExplanation | None) -> None:
        self.peer = peer
        self.local = local
        self.remote = remote

    @property
    def offer(self) -> SdpExplanation | None:
        return next((d for d in (self.local, self.remote) if d is not None and d.type == "offer"), None)

    @property
    def answer(self) -> SdpExplanation | None:
        return next((d for d in (self.local, self.remote) if d is not None and d.type == "answer"), None)

    @property
    def choices(self) -> list[dict[str, Any]]:
        """What the answer chose from the offer (empty until both are known)."""
        offer, answer = self.offer, self.answer
        return compare(offer, answer) if offer is not None and answer is not None else []

    def dropped(self) -> set[int]:
        """The numbers of the offer's codec lines (``a=rtpmap``) whose payload type the answer left out."""
        offer, answer = self.offer, self.answer
        if offer is None or answer is None:
            return set()
        kept = {(s.index, c["payload"]) for s in answer.sections if s.port != 0 for c in s.codecs}
        index = {s.title: s.index for s in offer.sections}
        return {
            x.number
            for x in offer
            if x.kind == "rtp" and (index.get(x.section), x.fields.get("payload")) not in kept
        }

    def to_json(self) -> dict[str, Any]:
        """The widget's ``sdp`` message: both descriptions, the offer's codec lines the answer left out
        marked ``"dropped": true``, and what the answer chose."""
        dropped = self.dropped()
        sides: dict[str, Any] = {}
        for side, explained in (("local", self.local), ("remote", self.remote)):
            if explained is None:
                sides[side] = None
                continue
            shown = explained.to_json()
            if explained is self.offer:
                for line in shown["lines"]:
                    if line["n"] in dropped:
                        line["dropped"] = True
            sides[side] = shown
        return {"type": "sdp", "peer": self.peer, **sides, "choices": self.choices}

    def __repr__(self) -> str:
        return f"<Negotiation with {self.peer!r}: local {self.local!r}, remote {self.remote!r}>"

    def _repr_html_(self) -> str:
        choices = "".join(
            f"<li><b>{html.escape(c['kind'])} (mid {html.escape(str(c['mid']))})</b>: {html.escape(c['note'])}; "
            f"{html.escape(c['direction'])}; {html.escape(c['dtls'])}</li>"
            for c in self.choices
        )
        cells = "".join(
            f'<td style="vertical-align:top">{d._repr_html_() if d else "(none yet)"}</td>'
            for d in (self.local, self.remote)
        )
        return (
            f"<div><b>What the answer chose</b><ul>{choices or '<li>(no answer yet)</li>'}</ul>"
            f"<table><tr><th>local (this phone)</th><th>remote ({html.escape(self.peer)})</th></tr><tr>{cells}</tr></table></div>"
        )


class Descriptions:
    """The last offer/answer sent to and received from each peer, as raw text; explained on demand."""

    def __init__(self) -> None:
        self._raw: dict[str, dict[str, str]] = {}

    def record(self, direction: str, message: Mapping[str, Any]) -> str | None:
        """Keep the description of a ``call`` or ``answer`` message sent (``"out"``) or received (``"in"``);
        returns the peer it belongs to, or None when the message carries none."""
        peer = message.get("to") if direction == "out" else message.get("from")
        sdp = message.get("sdp")
        if not isinstance(peer, str) or not isinstance(sdp, str) or direction not in ("in", "out"):
            return None
        sides = self._raw.setdefault(peer, {})
        if message.get("type") == "call":
            sides.clear()  # a new offer starts a new negotiation
        sides["local" if direction == "out" else "remote"] = sdp
        return peer

    def peers(self) -> list[str]:
        return list(self._raw)

    def get(self, peer: str) -> Negotiation | None:
        sides = self._raw.get(peer)
        if sides is None:
            return None
        local, remote = sides.get("local"), sides.get("remote")
        return Negotiation(
            peer,
            explain_sdp(local) if local is not None else None,
            explain_sdp(remote) if remote is not None else None,
        )
