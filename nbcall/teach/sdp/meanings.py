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
    "MDNS_HOST",
    "OTHER_ATTRIBUTES",
    "RELATED",
    "SETUP_ROLES",
    "candidate_meaning",
    "meaning",
]

CANDIDATE_TYPES = {
    "host": "host: an address of one of this machine's network interfaces",
    "srflx": (
        "srflx (server reflexive): the address a STUN server saw this machine's packets come from, "
        "that is the mapping its NAT made"
    ),
    "prflx": "prflx (peer reflexive): an address learned from a connectivity check that came from it (RFC 8445 §7.3.1.3)",
    "relay": (
        "relay: an address on a TURN server, which forwards every packet; it works when this machine can reach "
        "the TURN server at all (which is why TURN over TCP and TLS on port 443 exists, RFC 8656 §3.1)"
    ),
}

#: A host candidate whose address is a name ending in .local: the browser hid the address.
MDNS_HOST = (
    "host: a made-up mDNS name (<uuid>.local) standing for a private address of this machine; browsers hide "
    "their addresses this way from pages that were not given camera or microphone permission, and the peer "
    "resolves the name by multicast DNS, so it works only on the same local network"
)

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
            if f.get("ip") in ("0.0.0.0", "::"):
                return (
                    f"connection address {f.get('ip')}: no candidate was gathered when this description was written, "
                    "so there is no default address yet (RFC 8829 §5.2.1); the ICE candidates carry the addresses"
                )
            return (
                f"connection address {f.get('ip')}: the default candidate's address (RFC 8829 §5.2.1); ICE still "
                "tries every candidate"
            )
        case "rtcp":
            if f.get("address") in ("0.0.0.0", "::") or f.get("port") == 9:
                return "RTCP address: none yet (port 9, 0.0.0.0), and RTCP shares RTP's port anyway (see rtcp-mux)"
            return "RTCP address: the default candidate's, which RTP shares (see rtcp-mux)"
        case "bandwidth":
            return _bandwidth(f)
        case "iceUfrag":
            return (
                "ICE username fragment: names this side in connectivity checks (the STUN USERNAME is "
                "the peer's fragment, a colon, then this one)"
            )
        case "icePwd":
            return "ICE password: the key of the connectivity checks' MESSAGE-INTEGRITY, so strangers cannot fake them"
        case "iceOptions":
            if "trickle" in str(f):
                return (
                    "ICE options: trickle: this side supports trickle ICE, so the peer may send its candidates "
                    "after its description, one by one (RFC 8840); it does not say that candidates will follow"
                )
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
            return _rtp(f)
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


def _rtp(f: Mapping[str, Any]) -> str:
    codec = str(f.get("codec"))
    text = f"payload type {f.get('payload')} = {codec} at {f.get('rate')} Hz"
    if codec.lower() == "opus":
        # RFC 7587 §7: the rtpmap of Opus always says 48000/2; stereo=1 in a=fmtp says whether stereo is wanted.
        return (
            f"{text}: {_codec(codec)}; every Opus rtpmap says /2 (RFC 7587 §7): whether stereo is wanted is in "
            "a=fmtp (stereo=1), not here"
        )
    channels = f" × {f['encoding']} channels" if f.get("encoding") else ""
    return f"{text}{channels}: {_codec(codec)}"


def _bandwidth(f: Mapping[str, Any]) -> str:
    kind, limit = str(f.get("type")), f.get("limit")
    if kind == "TIAS":
        return f"bandwidth limit: {limit} bit/s (TIAS: transport independent, without IP and UDP headers, RFC 3890)"
    if kind == "AS":
        return f"bandwidth limit: {limit} kbit/s (AS: application specific, RFC 4566 §5.8)"
    return f"bandwidth limit: {limit} ({kind})"


def _port(f: Mapping[str, Any]) -> str:
    if f.get("port") == 9:
        return (
            "port 9 because no candidate was gathered when this description was written (RFC 8829 §5.2.1); "
            "the ICE candidates carry the addresses"
        )
    return (
        f"port {f.get('port')} is the default candidate's (RFC 8829 §5.2.1); ICE still tries every candidate"
    )


def _media_meaning(f: Mapping[str, Any]) -> str:
    kind, protocol, payloads = f.get("type"), f.get("protocol"), str(f.get("payloads", ""))
    if f.get("port") == 0:
        return f"a {kind} section rejected or stopped (port 0): nothing flows in it"
    if kind == "application":
        return f"the data channel's section: SCTP over DTLS over UDP ({protocol}); {_port(f)}"
    article = "an" if str(kind)[:1] in "aeiou" else "a"
    return (
        f"{article} {kind} section over {protocol} (RTP, encrypted with SRTP keyed by DTLS, with feedback); payload "
        f"types in order of preference: {payloads}; {_port(f)}"
    )


#: What a candidate's related address (raddr, rport) is, by candidate type (RFC 8839 §5.1).
RELATED = {
    "srflx": "the host address whose packets the NAT mapped to this one",
    "prflx": "the host address the check was sent from",
    "relay": "the address the TURN server saw this client at; browsers often write 0.0.0.0 to hide it",
}


def candidate_meaning(c: Mapping[str, Any]) -> str:
    kind = str(c.get("type"))
    text = CANDIDATE_TYPES.get(kind, kind)
    if kind == "host" and str(c.get("ip", "")).endswith(".local"):
        text = MDNS_HOST
    where = f"{c.get('protocol')} {c.get('ip')}:{c.get('port')}"
    extra = ""
    if c.get("raddr") is not None:
        related = RELATED.get(kind, "related address")
        extra = f"; related address {c.get('raddr')}:{c.get('rport')} ({related})"
    if c.get("tcptype"):
        extra += f"; TCP {c.get('tcptype')}"
    # With rtcp-mux (always, in WebRTC) component 1 is the only one, and carries everything the section's
    # transport carries: RTP and RTCP, or the data channel.
    component = "RTCP, without rtcp-mux" if c.get("component") == 2 else "the only one with rtcp-mux"
    return f"ICE candidate {where}, {text}; priority {c.get('priority')}, component {c.get('component')} ({component}){extra}"


def _unknown(line: str) -> str:
    if len(line) < 2 or line[1] != "=":
        return "not an SDP line (an SDP line is a letter, '=', then a value)"
    return f"a line of type {line[0]!r} that nbcall does not explain"
