"""The handshake's rules, without sockets: request target, headers and connection count in, a decision out."""

from __future__ import annotations

import re
from http import HTTPStatus

import pytest
from websockets.datastructures import Headers

from nbcall.server.admission import AdmissionRules, Refusal, check_handshake, origin_patterns

URL = "ws://127.0.0.1:8765/ws"
RULES = AdmissionRules(path="/ws", token="s3cret/+&=", max_connections=2, url_without_token=URL)


def check(
    target: str, *, origin: str | None = None, connections: int = 0, rules: AdmissionRules = RULES
) -> Refusal | None:
    headers = Headers() if origin is None else Headers(Origin=origin)
    return check_handshake(rules, target, headers, connections)


def refused(target: str, status: HTTPStatus, **options: object) -> Refusal:
    refusal = check(target, **options)  # type: ignore[arg-type]
    assert refusal is not None, f"{target!r} was admitted"
    assert refusal.status == status, refusal
    assert refusal.body.startswith("nbcall signaling server: ") and refusal.body.endswith("\n")
    return refusal


def test_the_right_token_in_the_query_is_admitted() -> None:
    assert check("/ws?token=s3cret%2F%2B%26%3D") is None
    assert RULES.token_query == "?token=s3cret%2F%2B%26%3D"


@pytest.mark.parametrize(
    ("target", "what"),
    [
        ("/ws", "no token"),
        ("/ws?other=1", "no token"),
        ("/ws?token=", "no token"),
        ("/ws?token=s3cret", "a wrong token"),
        ("/ws?token=S3CRET%2F%2B%26%3D", "a wrong token"),
        ("/ws?token=s3cret%2F%2B%26%3D&token=s3cret%2F%2B%26%3D", "several tokens"),
    ],
)
def test_a_missing_or_wrong_token_gets_401_saying_how_to_connect(target: str, what: str) -> None:
    refusal = refused(target, HTTPStatus.UNAUTHORIZED)
    assert f"requires a token and the request had {what}" in refusal.body
    assert f"{URL}?token=TOKEN" in refusal.body
    assert refusal.log == what and "s3cret" not in refusal.log + refusal.body


def test_without_a_token_rule_any_query_is_admitted() -> None:
    assert check("/ws?token=whatever", rules=AdmissionRules(url_without_token=URL)) is None


def test_a_wrong_path_gets_404_naming_the_right_one() -> None:
    refusal = refused("/signal?token=s3cret%2F%2B%26%3D", HTTPStatus.NOT_FOUND)
    assert "nothing at '/signal'" in refusal.body and "'/ws'" in refusal.body and URL in refusal.body


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        ("default", None, True),  # Python clients send no Origin
        ("default", "http://localhost:8888", True),
        ("default", "https://127.0.0.1:9999", True),
        ("default", "http://[::1]:8888", True),
        ("default", "http://localhost", True),
        ("default", "https://evil.example", False),
        ("default", "http://localhost.evil.example:8888", False),
        ("default", "null", False),
        (["https://hub.example.org"], "https://hub.example.org", True),
        (["https://hub.example.org/"], "https://hub.example.org", True),
        (["https://hub.example.org"], "http://localhost:8888", False),
        (["https://*.example.org"], "https://lab.example.org", True),
        (["https://*.example.org"], "https://example.org.evil", False),
        ([re.compile(r"https://[a-z]+\.example\.org")], "https://lab.example.org", True),
        (["*"], "https://anywhere.example", True),
        (None, "https://anywhere.example", True),
    ],
)
def test_browser_origins_are_allowed_or_refused_with_403_naming_the_flag(
    origins: object, origin: str | None, allowed: bool
) -> None:
    if origins == "default":
        rules = AdmissionRules(url_without_token=URL)
    else:
        patterns = None if origins is None else origin_patterns(origins)  # type: ignore[arg-type]
        rules = AdmissionRules(origins=patterns, url_without_token=URL)
    if allowed:
        assert check("/ws", origin=origin, rules=rules) is None
    else:
        refusal = refused("/ws", HTTPStatus.FORBIDDEN, origin=origin, rules=rules)
        assert f"origin {origin!r} may not connect" in refusal.body
        assert f"--allow-origin {origin}" in refusal.body and "origins=[...]" in refusal.body


def test_several_origin_headers_are_a_bad_request() -> None:
    headers = Headers([("Origin", "http://localhost"), ("Origin", "https://evil.example")])
    refusal = check_handshake(AdmissionRules(url_without_token=URL), "/ws", headers, 0)
    assert refusal is not None and refusal.status == HTTPStatus.BAD_REQUEST


@pytest.mark.parametrize("origins", [[""], [42]])
def test_malformed_origin_rules_are_refused_up_front(origins: list[object]) -> None:
    with pytest.raises(ValueError, match="origins must hold strings"):
        origin_patterns(origins)  # type: ignore[arg-type]


def test_the_connection_limit_gets_503_once_reached() -> None:
    assert check("/ws?token=s3cret%2F%2B%26%3D", connections=1) is None
    refusal = refused("/ws?token=s3cret%2F%2B%26%3D", HTTPStatus.SERVICE_UNAVAILABLE, connections=2)
    assert "full (2 connections, the limit)" in refusal.body and "--max-connections" in refusal.body
    assert "max_connections=2" in refusal.log


def test_the_token_is_checked_before_the_connection_limit_and_the_path_before_both() -> None:
    # A full server tells a stranger no more than a wrong token would.
    assert refused("/ws?token=guess", HTTPStatus.UNAUTHORIZED, connections=2)
    assert refused("/nope?token=guess", HTTPStatus.NOT_FOUND, connections=2)


def bearer(*values: str, origin: str | None = None) -> Headers:
    headers = Headers([("Authorization", value) for value in values])
    if origin is not None:
        headers["Origin"] = origin
    return headers


def test_the_right_token_in_an_authorization_header_is_admitted() -> None:
    assert check_handshake(RULES, "/ws", bearer("Bearer s3cret/+&="), 0) is None
    assert check_handshake(RULES, "/ws", bearer("bearer   s3cret/+&="), 0) is None  # the scheme is caseless


@pytest.mark.parametrize(
    ("target", "values", "what"),
    [
        ("/ws", ["Bearer s3cret"], "a wrong token"),
        ("/ws", ["Basic czNjcmV0"], "an Authorization header that is not 'Bearer TOKEN'"),
        ("/ws", ["Bearer "], "an Authorization header that is not 'Bearer TOKEN'"),
        ("/ws", ["Bearer s3cret/+&=", "Bearer s3cret/+&="], "several tokens"),
        ("/ws?token=s3cret%2F%2B%26%3D", ["Bearer s3cret/+&="], "several tokens"),
    ],
)
def test_a_wrong_malformed_or_repeated_header_token_gets_401_naming_both_ways(
    target: str, values: list[str], what: str
) -> None:
    refusal = check_handshake(RULES, target, bearer(*values), 0)
    assert refusal is not None and refusal.status == HTTPStatus.UNAUTHORIZED
    assert f"requires a token and the request had {what}" in refusal.body
    assert "'Authorization: Bearer TOKEN'" in refusal.body and f"{URL}?token=TOKEN" in refusal.body
    assert refusal.log == what and "s3cret" not in refusal.log + refusal.body
