"""The lessons' exercise check: a learner's prediction against what the phones actually did.

Every lesson imports this one helper (``from nbcall.teach.exercise import check``), so that an exercise compares
the learner's answer with an observed value (a state, a candidate type, a count read from the phones after the
experiment ran), never with a constant written in the notebook.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check"]


def check(question: str, prediction: Any, observed: Any, hint: str) -> bool:
    """Print whether ``prediction`` matches ``observed``, with ``hint`` when it does not; return whether it did.

    ``...`` (or ``None``) as the prediction means the learner has not answered yet.
    """
    if prediction is ... or prediction is None:
        print(f"{question}: write your prediction in place of ..., then run this cell again")
        return False
    if prediction == observed:
        print(f"{question}: right, the phones did {observed!r}")
        return True
    print(f"{question}: you predicted {prediction!r}, the phones did {observed!r}. Hint: {hint}")
    return False
