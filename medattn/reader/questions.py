"""Question types of a study and the check of each submitted value.

A question is a dict with `id`, `type` and optional `label`, `required` (default True, False for
"text"), and per type:
- "yes_no": value `true`/`false`;
- "scale": an integer from `min` (1) to `max` (5); with `per_panel: true` the value is
  `{panel code: integer}` covering every panel shown;
- "choice": one of `options`; "tags": a list of distinct `options` (empty list allowed);
- "text": a string; "rank": the panel codes shown, best first, each once;
- "boxes": a list of `{"x", "y", "w", "h", "label"}` in pixels of the stored image (w, h > 0;
  `label` one of `labels` when given); the empty list is the explicit answer "no finding".
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from medattn.reader.errors import InvalidAnswerError, StudyError

TYPES = ("yes_no", "scale", "choice", "tags", "text", "rank", "boxes")
PANEL_TYPES = ("rank",)
# Bounds: every answer and question a client or a file can send is bounded.
MAX_TEXT = 10_000  # characters of a free-text answer (a page of text; a 20 MB answer was stored)
MAX_BOXES = 100  # boxes on one case
MAX_QUESTIONS = 50
MAX_OPTIONS = 100
MAX_LABEL = 500  # characters of an id, label, option or box label
MAX_SCALE = 100  # points on a scale


def check_questions(questions: Sequence[dict]) -> list[dict]:
    """The questions with defaults filled in; StudyError naming the first bad one."""
    if not isinstance(questions, (list, tuple)) or len(questions) > MAX_QUESTIONS:
        raise StudyError(f"questions: a list of at most {MAX_QUESTIONS} questions expected")
    out, seen = [], set()
    for i, question in enumerate(questions):
        where = f"questions[{i}]"
        if not isinstance(question, dict) or not isinstance(question.get("id"), str) or not question["id"]:
            raise StudyError(f"{where}: a question is a dict with a non-empty string 'id'")
        if question["id"] in seen:
            raise StudyError(f"{where}: duplicate question id {question['id']!r}")
        seen.add(question["id"])
        kind = question.get("type")
        if kind not in TYPES:
            raise StudyError(f"{where} ({question['id']}): type {kind!r} is not one of {', '.join(TYPES)}")
        filled = {"label": question["id"], "required": kind != "text", **question}
        where = f"{where} ({question['id'][:40]})"
        for field in ("id", "label"):
            if not isinstance(filled[field], str) or len(filled[field]) > MAX_LABEL:
                raise StudyError(f"{where}: {field!r} must be text of at most {MAX_LABEL} characters")
        for field in ("required", "per_panel"):
            if not isinstance(filled.get(field, False), bool):
                raise StudyError(f"{where}: {field!r} must be true or false")
        if kind == "scale":
            filled.setdefault("min", 1)
            filled.setdefault("max", 5)
            if not all(isinstance(filled[k], int) and not isinstance(filled[k], bool) for k in ("min", "max")):
                raise StudyError(f"{where}: min and max must be integers")
            if not filled["min"] < filled["max"] <= filled["min"] + MAX_SCALE:
                raise StudyError(f"{where}: min must be below max, at most {MAX_SCALE} points apart")
        if kind in ("choice", "tags") and not filled.get("options"):
            raise StudyError(f"{where}: a {kind} question needs 'options'")
        for field in ("options", "labels"):
            values = filled.get(field)
            if values is not None and (not isinstance(values, list) or len(values) > MAX_OPTIONS or not all(
                    isinstance(v, str) and 0 < len(v) <= MAX_LABEL for v in values) or len(set(values)) != len(values)):
                raise StudyError(f"{where}: {field!r} must be at most {MAX_OPTIONS} distinct texts")
        out.append(filled)
    return out


def uses_panels(question: dict) -> bool:
    return question["type"] in PANEL_TYPES or bool(question.get("per_panel"))


def _fail(question: dict, field: str, problem: str) -> InvalidAnswerError:
    return InvalidAnswerError(f"question {question['id']!r}, {field}: {problem}")


def _integer(question: dict, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise _fail(question, field, f"expected an integer, got {value!r:.80}")
    value = int(value)
    if not question["min"] <= value <= question["max"]:
        raise _fail(question, field, f"{value} is outside {question['min']}..{question['max']}")
    return value


def _number(question: dict, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(question, field, f"expected a finite number, got {value!r:.80}")
    return float(value)


def check_answer(question: dict, value: Any, panels: Sequence[str] = ()) -> Any:
    """`value` in its canonical JSON form, or InvalidAnswerError naming question and field.

    `panels` are the codes shown to this reader on this case (for per-panel questions)."""
    kind = question["type"]
    if kind == "yes_no":
        if not isinstance(value, bool):
            raise _fail(question, "value", f"expected true or false, got {value!r:.80}")
        return value
    if kind == "scale" and not question.get("per_panel"):
        return _integer(question, "value", value)
    if kind == "scale":
        if not isinstance(value, dict) or set(value) != set(panels):
            raise _fail(question, "value", f"expected one rating for each panel {sorted(panels)}, got {value!r:.80}")
        return {code: _integer(question, f"value[{code}]", value[code]) for code in sorted(value)}
    if kind == "choice":
        if value not in question["options"]:
            raise _fail(question, "value", f"{value!r:.80} is not one of {question['options']}")
        return value
    if kind == "tags":
        if not isinstance(value, list) or len(set(map(str, value))) != len(value):
            raise _fail(question, "value", f"expected a list of distinct tags, got {value!r:.80}")
        unknown = [tag for tag in value if tag not in question["options"]]
        if unknown:
            raise _fail(question, "value", f"unknown tag(s) {unknown}; options are {question['options']}")
        return list(value)
    if kind == "text":
        if not isinstance(value, str):
            raise _fail(question, "value", f"expected text, got {value!r:.60}")
        if len(value) > MAX_TEXT:
            raise _fail(question, "value", f"{len(value)} characters; at most {MAX_TEXT}")
        return value
    if kind == "rank":
        if not isinstance(value, list) or sorted(value) != sorted(panels) or len(set(value)) != len(value):
            raise _fail(question, "value", f"expected each panel code {sorted(panels)} once, got {value!r:.80}")
        return list(value)
    # boxes
    if not isinstance(value, list):
        raise _fail(question, "value", f"expected a list of boxes, got {value!r:.60}")
    if len(value) > MAX_BOXES:
        raise _fail(question, "value", f"{len(value)} boxes; at most {MAX_BOXES}")
    boxes = []
    for i, box in enumerate(value):
        if not isinstance(box, dict):
            raise _fail(question, f"value[{i}]", f"expected a dict with x, y, w, h, got {box!r:.80}")
        clean = {key: _number(question, f"value[{i}].{key}", box.get(key)) for key in ("x", "y", "w", "h")}
        if clean["w"] <= 0 or clean["h"] <= 0:
            raise _fail(question, f"value[{i}]", "w and h must be positive")
        label = box.get("label", question.get("labels", [""])[0] if question.get("labels") else "")
        if question.get("labels") and label not in question["labels"]:
            raise _fail(question, f"value[{i}].label", f"{label!r:.80} is not one of {question['labels']}")
        if not isinstance(label, str) or len(label) > MAX_LABEL:
            raise _fail(question, f"value[{i}].label", f"text of at most {MAX_LABEL} characters expected, got "
                                                       f"{label!r:.80}")
        boxes.append({**clean, "label": str(label)})
    return boxes
