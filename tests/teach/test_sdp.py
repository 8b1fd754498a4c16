"""nbcall.explain_sdp: every line of an offer and an answer explained, and what the answer chose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nbcall
from nbcall.teach.sdp import Descriptions, compare, explain_candidate, explain_sdp

# Chromium's offer for audio, video and a data channel (codec lists trimmed), with candidates of every type.
OFFER = """\
v=0
o=- 4484697653273861397 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1 2
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 0
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host generation 0
a=candidate:2 1 udp 1686052607 203.0.113.5 61000 typ srflx raddr 192.168.1.2 rport 54321 generation 0
a=candidate:3 1 udp 41885439 198.51.100.7 50000 typ relay raddr 203.0.113.5 rport 61000 generation 0
a=end-of-candidates
a=ice-ufrag:DFU7
a=ice-pwd:o03brSCXvEJrSHiHOePBj+ye
a=ice-options:trickle
a=fingerprint:sha-256 79:BB:89:E9:5B:9B:61:29:E6:6A:BA:D6:7B:A4:EE:A1:A6:7E:C6:DF:C5:1A:3C:41:DF:E8:32:DB:9D:67:3B:F0
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:- ff80ce2d-5284-446e-9761-21d89ef4dc4a
a=rtcp-mux
a=rtcp-rsize
a=rtcp-xr:rcvr-rtt=all
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:0 PCMU/8000
a=ssrc:1153947982 cname:NNXmMOGd3eiwa+3j
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102
c=IN IP4 0.0.0.0
a=ice-ufrag:DFU7
a=ice-pwd:o03brSCXvEJrSHiHOePBj+ye
a=fingerprint:sha-256 79:BB:89:E9:5B:9B:61:29:E6:6A:BA:D6:7B:A4:EE:A1:A6:7E:C6:DF:C5:1A:3C:41:DF:E8:32:DB:9D:67:3B:F0
a=setup:actpass
a=mid:1
a=sendrecv
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 goog-remb
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=ssrc-group:FID 1269000003 155703286
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=ice-ufrag:DFU7
a=ice-pwd:o03brSCXvEJrSHiHOePBj+ye
a=fingerprint:sha-256 79:BB:89:E9:5B:9B:61:29:E6:6A:BA:D6:7B:A4:EE:A1:A6:7E:C6:DF:C5:1A:3C:41:DF:E8:32:DB:9D:67:3B:F0
a=setup:actpass
a=mid:2
a=sctp-port:5000
a=max-message-size:262144
"""

# An answer from a side with a microphone but no camera, and no H.264.
ANSWER = (
    OFFER.replace("a=setup:actpass", "a=setup:active")
    .replace("m=video 9 UDP/TLS/RTP/SAVPF 96 97 102", "m=video 9 UDP/TLS/RTP/SAVPF 96 97")
    .replace("a=rtpmap:102 H264/90000\n", "")
    .replace("a=mid:1\na=sendrecv", "a=mid:1\na=recvonly")
    .replace("a=max-message-size:262144", "a=max-message-size:65536")
)


def meaning(explained, prefix: str) -> str:
    (line,) = explained.find(prefix)
    return line.meaning


def test_every_line_is_explained_in_order_with_its_section() -> None:
    explained = explain_sdp({"type": "offer", "sdp": OFFER})
    assert explained.type == "offer"
    assert [line.text for line in explained] == OFFER.splitlines()
    assert [line.number for line in explained] == list(range(1, len(OFFER.splitlines()) + 1))
    assert all(line.meaning for line in explained)
    assert explained[0].section == "session"
    assert explained.find("a=sctp-port")[0].section == "m=application (mid 2)"
    assert [s.title for s in explained.sections] == [
        "m=audio (mid 0)",
        "m=video (mid 1)",
        "m=application (mid 2)",
    ]


def test_session_lines_bundle_and_mids() -> None:
    explained = explain_sdp(OFFER)
    assert "version" in meaning(explained, "v=")
    assert "placeholder" in meaning(explained, "o=")
    bundle = meaning(explained, "a=group:BUNDLE")
    assert "0, 1, 2" in bundle and "one transport" in bundle
    assert "media ID 1" in meaning(explained, "a=mid:1")


def test_m_lines_codecs_payload_types_and_feedback() -> None:
    explained = explain_sdp(OFFER)
    audio = meaning(explained, "m=audio")
    assert "an audio section" in audio and "111 0" in audio and "order of preference" in audio
    assert "data channel" in meaning(explained, "m=application")
    assert meaning(explained, "a=rtpmap:111").startswith("payload type 111 = opus at 48000 Hz: Opus")
    assert "retransmits payload type 96" in meaning(explained, "a=fmtp:97")
    assert "keyframe" in meaning(explained, "a=rtcp-fb:96 nack pli")
    nack = [line for line in explained.find("a=rtcp-fb:96 nack") if line.text == "a=rtcp-fb:96 nack"]
    assert "lost packets" in nack[0].meaning
    assert "congestion control" in meaning(explained, "a=rtcp-fb:111 transport-cc")
    video = explained.sections[1]
    assert [c["codec"] for c in video.codecs] == ["VP8", "rtx", "H264"]
    assert video.codecs[0]["feedback"] == ["nack", "nack pli", "ccm fir", "goog-remb"]
    assert "retransmissions (RTX) of SSRC 1269000003" in meaning(explained, "a=ssrc-group:FID")
    assert "round-trip" in meaning(explained, "a=rtcp-xr")  # no grammar in the parser: named by nbcall


def test_ice_credentials_dtls_fingerprint_and_setup_role() -> None:
    explained = explain_sdp(OFFER)
    assert "username fragment" in explained.find("a=ice-ufrag")[0].meaning
    assert "password" in explained.find("a=ice-pwd")[0].meaning
    assert "fingerprint (sha-256)" in explained.find("a=fingerprint")[0].meaning
    assert "answerer chooses" in explained.find("a=setup")[0].meaning
    assert explained.sections[0].ice_ufrag == "DFU7"
    assert explained.sections[0].fingerprint.startswith("sha-256 79:BB")
    assert "client" in explain_sdp(ANSWER).find("a=setup:active")[0].meaning


def test_data_channel_sctp_port_and_max_message_size() -> None:
    explained = explain_sdp(OFFER)
    assert "SCTP port: 5000" in meaning(explained, "a=sctp-port")
    assert "262144 bytes" in meaning(explained, "a=max-message-size")
    assert explained.sections[2].sctp_port == 5000 and explained.sections[2].max_message_size == 262144


@pytest.mark.parametrize(
    ("number", "kind", "words"),
    [(1, "host", "network interfaces"), (2, "srflx", "STUN server saw"), (3, "relay", "TURN server")],
)
def test_every_candidate_type_and_its_fields(number: int, kind: str, words: str) -> None:
    explained = explain_sdp(OFFER)
    line = explained.find(f"a=candidate:{number} ")[0]
    assert line.kind == "candidates" and line.fields["type"] == kind
    assert (
        words in line.meaning and "priority" in line.meaning and "component 1 (the only one" in line.meaning
    )
    if kind != "host":
        assert "related address" in line.meaning
    assert [c["type"] for c in explained.candidates] == ["host", "srflx", "relay"]
    assert "no more candidates" in meaning(explained, "a=end-of-candidates")


def test_a_trickled_candidate_is_explained_as_it_travels() -> None:
    candidate = {
        "candidate": "candidate:3 1 udp 41885439 127.0.0.1 50000 typ relay raddr 127.0.0.1 rport 60000",
        "sdpMid": "0",
    }
    for form in (candidate, json.dumps(candidate), candidate["candidate"]):
        line = explain_candidate(form)
        assert line.fields["type"] == "relay" and line.fields["port"] == 50000 and "TURN" in line.meaning
    assert explain_candidate("").meaning == "end of candidates"


def test_descriptions_as_they_travel_in_the_log_are_accepted() -> None:
    as_sent = json.dumps({"type": "answer", "sdp": ANSWER})  # the `sdp` field of an `answer` message
    explained = nbcall.explain_sdp(as_sent)
    assert explained.type == "answer" and len(explained) == len(ANSWER.splitlines())
    with pytest.raises(TypeError, match="SDP string"):
        explain_sdp(42)


def test_lines_that_are_not_sdp_say_so() -> None:
    explained = explain_sdp("v=0\nhello\na=x-custom:1\n")
    assert "not an SDP line" in explained[1].meaning
    assert "does not explain" in explained[2].meaning


def test_what_the_answer_chose_from_the_offer() -> None:
    audio, video, data = compare({"type": "offer", "sdp": OFFER}, {"type": "answer", "sdp": ANSWER})
    assert audio["kind"] == "audio" and audio["offered"] == audio["accepted"] == ["opus", "PCMU"]
    assert "opus first; every codec kept" in audio["note"] and "the answerer sends" in audio["note"]
    assert audio["dtls"] == "the answerer is the DTLS client"
    assert video["offered"] == ["VP8", "rtx", "H264"] and video["accepted"] == ["VP8", "rtx"]
    assert "dropped H264" in video["note"] and "the answerer sends nothing" in video["note"]
    assert video["direction"] == "sendrecv -> recvonly"
    # Each direction is limited by its receiver's max-message-size: the answer's 65536, the offer's 262144.
    assert data["max_message_size"] == {"offerer_sends": 65536, "answerer_sends": 262144}
    assert data["note"].startswith("the data channel: the offerer sends messages up to 65536 bytes")


def test_a_rejected_section_is_named() -> None:
    answer = ANSWER.replace("m=video 9 UDP/TLS/RTP/SAVPF 96 97", "m=video 0 UDP/TLS/RTP/SAVPF 96 97")
    _, video, _ = compare(OFFER, answer)
    assert video["note"].startswith("rejected")
    assert "port 0" in meaning(explain_sdp(answer), "m=video")


def test_a_phone_keeps_each_peers_descriptions_and_explains_them_for_the_widget() -> None:
    descriptions = Descriptions()
    offer = {"type": "call", "to": "B", "sdp": json.dumps({"type": "offer", "sdp": OFFER})}
    answer = {"type": "answer", "from": "B", "sdp": json.dumps({"type": "answer", "sdp": ANSWER})}
    assert descriptions.record("out", offer) == "B"
    negotiation = descriptions.get("B")
    assert negotiation is not None and negotiation.remote is None and negotiation.choices == []
    assert descriptions.record("in", answer) == "B"
    assert descriptions.record("in", {"type": "ice", "from": "B"}) is None
    negotiation = descriptions.get("B")
    assert negotiation is not None and negotiation.local is not None and negotiation.remote is not None
    assert negotiation.offer is negotiation.local and negotiation.answer is negotiation.remote
    message = negotiation.to_json()
    assert message["type"] == "sdp" and message["peer"] == "B" and len(message["choices"]) == 3
    assert message["local"]["lines"][4] == {
        "n": 5,
        "text": "a=group:BUNDLE 0 1 2",
        "section": "session",
        "meaning": negotiation.local[4].meaning,
    }
    json.dumps(message)  # it travels as JSON
    # The offer's H.264 line is marked as left out by the answer; nothing else is.
    dropped = [line["text"] for line in message["local"]["lines"] if line.get("dropped")]
    assert dropped == ["a=rtpmap:102 H264/90000"]
    assert not any(line.get("dropped") for line in message["remote"]["lines"])
    # A new offer (B calls back) starts a new negotiation.
    descriptions.record(
        "in", {"type": "call", "from": "B", "sdp": json.dumps({"type": "offer", "sdp": OFFER})}
    )
    again = descriptions.get("B")
    assert again is not None and again.local is None and again.remote is not None


def test_it_shows_as_a_table_in_a_notebook_and_as_text() -> None:
    explained = explain_sdp({"type": "offer", "sdp": OFFER + "a=x:<script>\n"})
    page = explained._repr_html_()
    assert page.count("<tr>") == len(explained) + len(explained.sections) + 1
    assert "&lt;script&gt;" in page and "<script>" not in page
    text = str(explained)
    assert "-- m=video (mid 1)" in text and "opus at 48000 Hz" in text
    assert repr(explained).startswith("<SdpExplanation offer: ")
    negotiation = Descriptions()
    negotiation.record("out", {"type": "call", "to": "B", "sdp": OFFER})
    negotiation.record("in", {"type": "answer", "from": "B", "sdp": ANSWER})
    shown = negotiation.get("B")
    assert shown is not None and "What the answer chose" in shown._repr_html_()


# ----------------------------------------------------------------- real descriptions (tests/teach/data/README.md)

DATA = Path(__file__).parent / "data"


def real(name: str) -> str:
    return (DATA / name).read_text("utf-8")


def test_m_and_c_lines_before_gathering_say_there_is_no_candidate_yet() -> None:
    # Chromium writes its offer before it gathers (trickle ICE): port 9 and 0.0.0.0 stand for "none yet".
    offer = explain_sdp(real("chromium-data-offer.sdp"))
    assert "no candidate was gathered" in meaning(offer, "m=application 9 ")
    assert "no default address yet" in meaning(offer, "c=IN IP4 0.0.0.0")
    assert "RFC 8829 §5.2.1" in meaning(offer, "m=application 9 ")
    media = explain_sdp(real("chromium-media-offer.sdp"))
    assert "none yet" in media.find("a=rtcp:9 IN IP4 0.0.0.0")[0].meaning


@pytest.mark.parametrize(
    ("name", "prefix", "address"),
    [
        ("aiortc-data-offer.sdp", "m=application ", "192.0.2.2"),
        ("aiortc-audio-offer.sdp", "m=audio ", "192.0.2.2"),
        ("aiortc-answer-to-chromium.sdp", "m=application ", "192.0.2.2"),
        ("chromium-relay-gathered.sdp", "m=application ", "127.0.0.1"),
    ],
)
def test_m_and_c_lines_carry_the_default_candidate_once_gathered(
    name: str, prefix: str, address: str
) -> None:
    # aiortc gathers before it describes; Chromium's localDescription after gathering has a candidate too.
    explained = explain_sdp(real(name))
    (m_line,) = explained.find(prefix)
    port = m_line.text.split()[1]
    assert port != "9" and f"port {port} is the default candidate's" in m_line.meaning
    assert "placeholder" not in m_line.meaning
    c_line = explained.find(f"c=IN IP4 {address}")[0]
    assert "the default candidate's address" in c_line.meaning
    assert any(c["port"] == int(port) and c["ip"] == address for c in explained.candidates)


def test_a_relay_candidates_related_address_is_where_the_turn_server_saw_the_client() -> None:
    explained = explain_sdp(real("chromium-relay-gathered.sdp"))
    (line,) = explained.find("a=candidate:")
    assert line.fields["type"] == "relay" and line.fields["raddr"] == "0.0.0.0"
    assert "related address 0.0.0.0:0 (the address the TURN server saw this client at" in line.meaning
    assert "local side" not in line.meaning
    assert "reach the TURN server at all" in line.meaning and "RFC 8656 §3.1" in line.meaning


def test_component_1_is_not_called_rtp_in_a_data_only_call() -> None:
    for name in ("aiortc-data-offer.sdp", "chromium-relay-gathered.sdp"):
        for line in explain_sdp(real(name)).find("a=candidate:"):
            assert "(RTP)" not in line.meaning and "component 1 (the only one with rtcp-mux)" in line.meaning


def test_host_candidates_hidden_behind_mdns_names_are_explained() -> None:
    # What an ordinary Chrome sends from a page without camera permission (the tests' browser turns it off).
    line = explain_candidate(
        "candidate:1630172877 1 udp 2122260223 3f1c9c4e-1d2a-4c7b-9a51-6e0d7f1b2a3c.local 40562 typ host "
        "generation 0 ufrag WZcQ network-id 1"
    )
    assert "mDNS name" in line.meaning and "camera or microphone permission" in line.meaning
    # The tests' browser: a plain address.
    plain = explain_candidate(
        "candidate:1630172877 1 udp 2122260223 127.0.0.1 40562 typ host generation 0 ufrag WZcQ network-id 1"
    )
    assert "network interfaces" in plain.meaning and "mDNS" not in plain.meaning


def test_opus_always_says_2_channels_and_stereo_is_in_fmtp() -> None:
    for name in ("chromium-media-offer.sdp", "aiortc-audio-offer.sdp"):
        explained = explain_sdp(real(name))
        (line,) = [x for x in explained.find("a=rtpmap:") if "opus/48000/2" in x.text]
        assert "× 2 channels" not in line.meaning
        assert "every Opus rtpmap says /2 (RFC 7587 §7)" in line.meaning and "stereo=1" in line.meaning


def test_tias_is_in_bits_and_as_in_kilobits_per_second() -> None:
    offer = real("chromium-media-offer.sdp")
    limited = offer.replace("a=mid:1\n", "a=mid:1\nb=TIAS:500000\nb=AS:500\n", 1)
    explained = explain_sdp(limited)
    assert meaning(explained, "b=TIAS").startswith("bandwidth limit: 500000 bit/s (TIAS")
    assert meaning(explained, "b=AS").startswith("bandwidth limit: 500 kbit/s (AS")


def test_ice_options_trickle_means_support_not_that_candidates_follow() -> None:
    explained = explain_sdp(real("chromium-data-offer.sdp"))
    text = meaning(explained, "a=ice-options:trickle")
    assert "supports trickle ICE" in text and "RFC 8840" in text and "will follow" not in text.split(";")[0]


def test_each_direction_of_the_data_channel_is_limited_by_its_receiver() -> None:
    offer = real("chromium-data-offer.sdp")
    answer = real("aiortc-answer-to-chromium.sdp")
    ((data,),) = [compare(offer, answer)]
    assert data["max_message_size"] == {"offerer_sends": 262144, "answerer_sends": 262144}
    # A receiver that says less limits only what is sent to it.
    small = answer.replace("a=max-message-size:262144", "a=max-message-size:65536")
    (data,) = compare(offer, small)
    assert data["max_message_size"] == {"offerer_sends": 65536, "answerer_sends": 262144}
    # No attribute means 64 KiB (RFC 8841 §6); 0 means no limit.
    (data,) = compare(offer, answer.replace("a=max-message-size:262144\n", ""))
    assert data["max_message_size"]["offerer_sends"] == 65536
    (data,) = compare(offer.replace("a=max-message-size:262144", "a=max-message-size:0"), answer)
    assert data["max_message_size"]["answerer_sends"] is None and "any size" in data["note"]
