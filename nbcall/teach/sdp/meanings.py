"""What each kind of SDP line means, in words: the tables and the functions that fill them in.

The kinds and their parsed fields are sdp-transform's (see :func:`nbcall.teach.sdp.explain.parse_line`);
:func:`meaning` explains one line, :func:`candidate_meaning` one ICE candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CANDIDATE_TYPES",
    "CODECS",
    "DIRECTIONS",
    "EXTENSIONS",
    "FEEDBACK",
    "OTHER_ATTRIBUTES",
    "SETUP_ROLES",
    "candidate_meaning",
    "meaning",
]

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


def meaning(kind: str, f: Any, text: str) -> str:
    """What a line means, from the kind sdp-transform gives it and its parsed fields ``f``."""
    if kind == "unknown":
        return _unknown(text)
    return _meaning(kind, f, text)


def _meaning(kind: str, f: Any, text: str) -> str:
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
            return candidate_meaning(f)
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


def candidate_meaning(c: Mapping[str, Any]) -> str:
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


def _unknown(line: str) -> str:
    if len(line) < 2 or line[1] != "=":
        return "not an SDP line (an SDP line is a letter, '=', then a value)"
    return f"a line of type {line[0]!r} that nbcall does not explain"
