"""One widget per study question (medattn.reader.questions types), prefilled with the reader's
stored answer; each returns the value in the store's form, or None while unanswered.

Choices are segmented buttons (one click or Tab + Space each) that start empty, no default, so a required answer is always one the reader gave.
Boxes are drawn outside the form (`medattn.ui.box_canvas`); per-panel ratings sit under their
panels (`panel_rating`).
"""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

YES_NO = ("yes", "no")


def _index(options: Sequence, prior: Any) -> int | None:
    return list(options).index(prior) if prior in options else None


def _label(question: dict) -> str:
    return question.get("label") or question["id"]


GENERIC_FINDINGS = {  # the words default_questions uses when a study names no class → with the case's class
    "the image's labelled finding": "{finding}",
    "the model's finding": "the model's finding ({finding})",
}


def name_finding(question: dict, finding: str | None) -> dict:
    """`question` with its generic finding words replaced by the class the case's maps explain:
    a rating study for 'any finding' asked about "the image's labelled finding" on images with
    two or three labels without saying which one the maps explain; a failure review asked "Is
    the model's finding real?" without naming it."""
    label = question.get("label")
    if not finding or not label:
        return question
    for generic, named in GENERIC_FINDINGS.items():
        label = label.replace(generic, named.format(finding=finding))
    return {**question, "label": label}


def scale_options(question: dict) -> list[int]:
    return list(range(int(question.get("min", 1)), int(question.get("max", 5)) + 1))


def question_widget(question: dict, key: str, prior: Any = None, panels: Sequence[str] = ()) -> Any:
    """The widget of one question (not boxes, not per-panel scales); its value or None."""
    kind, label = question["type"], _label(question)
    if kind == "yes_no":
        prior_text = None if prior is None else YES_NO[0 if prior else 1]
        chosen = st.segmented_control(label, YES_NO, default=prior_text, key=key)
        return None if chosen is None else chosen == "yes"
    if kind == "scale":
        options = scale_options(question)
        return st.segmented_control(label, options, default=prior if prior in options else None, key=key)
    if kind == "choice":
        return st.radio(label, question["options"], index=_index(question["options"], prior), key=key)
    if kind == "tags":
        chosen = st.multiselect(label, question["options"], default=[t for t in prior or [] if t in question["options"]],
                                key=key, placeholder="Choose every region that applies")
        return chosen or None
    if kind == "text":
        text = st.text_area(label, value=prior or "", key=key, height=80)
        return text.strip() or None
    if kind == "rank":
        chosen = st.multiselect(label if "best first" in label else f"{label} (best first)", list(panels),
                                default=[c for c in prior or [] if c in panels], key=key,
                                format_func=lambda code: f"Map {code}")
        return chosen if len(chosen) == len(panels) and chosen else None
    raise ValueError(f"question {question['id']!r}: type {kind!r} has no form widget")


def panel_rating(question: dict, key: str, code: str, prior: dict | None) -> int | None:
    """The rating of one blinded panel for a per-panel scale question."""
    options = scale_options(question)
    value = (prior or {}).get(code)
    return st.segmented_control(f"Map {code}", options, default=value if value in options else None,
                                key=f"{key}_{code}")


def missing_labels(questions: Sequence[dict], values: dict, panels: Sequence[str]) -> list[str]:
    """Labels of required questions still without an answer (panel questions only with panels)."""
    from medattn.reader.progress import required_questions

    required = set(required_questions(questions, panels))
    return [_label(q) for q in questions if q["id"] in required and values.get(q["id"]) is None]
