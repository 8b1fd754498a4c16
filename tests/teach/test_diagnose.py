"""nbcall.teach.diagnose: failed STUN/TURN requests and the browser's connectivity report, in words."""

from __future__ import annotations

from nbcall.teach.diagnose import Diagnosis, candidate_error


def test_refused_turn_credentials_become_an_error_naming_the_server_and_the_remedy() -> None:
    text = candidate_error(
        {"errorCode": 401, "errorText": "Unauthorized", "url": "turn:127.0.0.1:3478?transport=udp"}
    )
    assert text == (
        "the STUN/TURN server turn:127.0.0.1:3478?transport=udp refused the username and credential: check the "
        "ice_servers entry's username and credential (error 401 Unauthorized)"
    )
    assert "--allow-loopback-peers" in (candidate_error({"errorCode": 403, "url": "turn:x"}) or "")


def test_transient_and_unreachable_errors_are_only_logged() -> None:
    for code in (438, 701, 600, None):
        assert candidate_error({"errorCode": code, "url": "stun:x"}) is None
    assert candidate_error("garbage") is None


def test_a_report_reads_as_text_and_html_with_advice_for_each_failure() -> None:
    report = Diagnosis(
        ok=False,
        secure_context=True,
        media={
            "audio": {"available": True, "devices": 1},
            "video": {"available": False, "advice": "plug one in"},
        },
        servers=[
            {
                "url": "turn:127.0.0.1:1",
                "candidate_types": [],
                "errors": [{"errorCode": 401, "errorText": "Unauthorized"}],
                "advice": "check the credential",
            },
        ],
        problems=["video: plug one in", "turn:127.0.0.1:1: check the credential"],
    )
    assert not report.ok and len(report.problems) == 2
    text = str(report)
    assert text.startswith("PROBLEMS FOUND") and "-> plug one in" in text and "401 Unauthorized" in text
    assert "<caption>WebRTC set-up: problems found</caption>" in report._repr_html_()
    assert ("STUN/TURN servers", "none configured") == Diagnosis(ok=True, servers=[]).rows()[-1][:2]
