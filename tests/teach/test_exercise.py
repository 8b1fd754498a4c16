"""The lessons' exercise check compares a prediction with what was observed."""

from __future__ import annotations

import pytest

from nbcall.teach.exercise import check


@pytest.mark.parametrize("unanswered", [..., None])
def test_an_unanswered_exercise_asks_for_a_prediction(
    unanswered: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check("Q1", unanswered, "connected", "think about ICE") is False
    assert "write your prediction" in capsys.readouterr().out


def test_a_right_prediction_says_what_the_phones_did(capsys: pytest.CaptureFixture[str]) -> None:
    assert check("Q1", "connected", "connected", "think about ICE") is True
    assert capsys.readouterr().out == "Q1: right, the phones did 'connected'\n"


def test_a_wrong_prediction_shows_both_and_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert check("Q1", "failed", "connected", "one side's candidates are enough") is False
    out = capsys.readouterr().out
    assert "you predicted 'failed', the phones did 'connected'" in out
    assert "Hint: one side's candidates are enough" in out
