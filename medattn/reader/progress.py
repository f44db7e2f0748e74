"""Which answers a case still needs, and where a reader resumes."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from medattn.reader.questions import uses_panels


def required_questions(questions: Sequence[dict], panels: Sequence[str]) -> list[str]:
    """Ids of the required questions of a case; panel questions only when panels are shown."""
    return [q["id"] for q in questions if q["required"] and (panels or not uses_panels(q))]


def missing_answers(questions: Sequence[dict], panels: Sequence[str], answered: Iterable[str]) -> list[str]:
    """Required question ids without a current answer, in question order."""
    done = set(answered)
    return [qid for qid in required_questions(questions, panels) if qid not in done]


def first_unanswered(order: Sequence[str], complete: Mapping[str, bool]) -> str | None:
    """The first case in the reader's order that is not complete; None when all are."""
    return next((case for case in order if not complete.get(case, False)), None)
