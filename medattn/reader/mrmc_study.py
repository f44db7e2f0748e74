"""A reader study as an MRMC table (reader, modality, case, truth, rating), and its
Obuchowski–Rockette analysis (`medattn.reader.mrmc`): the one path from stored answers to the
"mrmc"/"imrmc" exports and to the analysis Study admin shows.

- Detection study: modality = the arm (with_ai / without_ai; without_ai when the study has no
  arms); rating = a scale answer (AUC) or a yes/no answer as 1/0 (sensitivity, specificity).
- Heatmap-rating study: modality = the panel's model · method (saliency methods as
  modalities); rating = the reader's rating of that map; truth = the case's finding.
`case` numbers images, so the two cases of one image in a crossed design share a number.
Admin only: reads the case and panel keys.
"""

from __future__ import annotations

import json

import pandas as pd

from medattn.reader.analysis import case_truth, checkpoint_name
from medattn.reader.arms import WITH_AI, WITHOUT_AI
from medattn.reader.errors import StudyError
from medattn.reader.mrmc import fully_crossed, obuchowski_rockette
from medattn.store.annotations import AnnotationStore

COLUMNS = ["reader", "modality", "case", "truth", "rating"]


def mrmc_cases(store: AnnotationStore, study_id: str) -> pd.Series:
    """case_id → MRMC case number (1, 2, …): the cases of one image in the two arms of a crossed
    design share a number; numbers follow the study-local case order, not the image ids."""
    key = store.case_key(study_id)
    image = [json.dumps([r.image_id, {k: v for k, v in r.meta.items() if k != "arm"}], sort_keys=True)
             for r in key.itertuples()]
    number = {value: i + 1 for i, value in enumerate(dict.fromkeys(image))}
    return pd.Series([number[value] for value in image], index=key["case_id"].to_numpy(), name="case")


def rating_question(spec: dict, question_id: str | None = None) -> dict:
    """The question an MRMC table rates by: `question_id`, else the spec's `rating_question`, else
    the first scale question (per panel in a rating study, not per panel in a detection study).
    StudyError when the study has none, or the question is not a scale or yes/no."""
    questions = {q["id"]: q for q in spec["questions"]}
    per_panel = spec["kind"] == "heatmap_rating"
    chosen = question_id or spec.get("rating_question") or next(
        (q["id"] for q in spec["questions"] if q["type"] == "scale" and bool(q.get("per_panel")) == per_panel), None)
    if chosen is None:
        raise StudyError(f"study {spec['id']} has no scale question to use as the MRMC rating")
    if chosen not in questions or questions[chosen]["type"] not in ("scale", "yes_no"):
        raise StudyError(f"study {spec['id']}: {chosen!r} is not a scale or yes/no question of the study")
    return questions[chosen]


def mrmc_table(store: AnnotationStore, study_id: str, question_id: str | None = None) -> pd.DataFrame:
    """reader, modality, case, truth, rating: one row per reader × case (× map in a rating study)
    with an answer to the rating question (`rating_question`); sorted by reader, modality, case."""
    spec = store.study(study_id)
    if spec["kind"] not in ("detection", "heatmap_rating"):
        raise StudyError(f"study {study_id} is a {spec['kind']} study; MRMC needs a detection or heatmap-rating study")
    question = rating_question(spec, question_id)
    truth = case_truth(store, study_id)
    numbers = mrmc_cases(store, study_id)
    answers = store.answers(study_id)
    answers = answers[answers["question_id"] == question["id"]]
    if question.get("per_panel"):
        names = {r.code: f"{checkpoint_name(r.checkpoint)} · {r.method}" for r in store.panel_key(study_id).itertuples()}
        rows = [{"reader": r.reader, "modality": names[code], "case_id": r.case_id, "rating": float(v)}
                for r in answers.itertuples() if isinstance(r.value, dict) for code, v in r.value.items()]
    else:
        arms = {(r.reader, case): arm for r in store.reader_assignments(study_id).itertuples() if r.arms
                for case, arm in r.arms.items()}
        rows = [{"reader": r.reader, "modality": arms.get((r.reader, r.case_id), WITHOUT_AI), "case_id": r.case_id,
                 "rating": float(r.value)} for r in answers.itertuples()]
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    frame["case"] = numbers.loc[frame["case_id"]].to_numpy()
    frame["truth"] = truth.loc[frame["case_id"]].to_numpy()
    return frame[COLUMNS].sort_values(["reader", "modality", "case"]).reset_index(drop=True)


def treatment_order(modalities) -> list:
    """With AI before without AI (differences are with − without); other modalities sorted."""
    present = sorted(set(modalities), key=str)
    return sorted(present, key=lambda m: (m != WITH_AI, m != WITHOUT_AI, str(m)))


def study_mrmc(store: AnnotationStore, study_id: str, question_id: str | None = None, *, cov: str = "jackknife",
               readers: str = "random", cases: str = "random") -> dict:
    """The Obuchowski–Rockette analysis of a study's rating question over its fully crossed part
    (the readers who read under every modality, the cases all of them read under every one):
    the `obuchowski_rockette` result plus `table` (the MRMC table used), `readers_dropped`,
    `cases_dropped`, `question`. A scale question gives AUCs; a yes/no question gives
    `sensitivity` and `specificity` results (each an `obuchowski_rockette` result).
    StudyError with the reason when the answers cannot support it yet (one arm, one reader, a
    single truth class)."""
    spec = store.study(study_id)
    question = rating_question(spec, question_id)
    table = mrmc_table(store, study_id, question["id"])
    if table.empty:
        raise StudyError(f"study {study_id}: no answers to {question['id']!r} yet")
    complete, dropped = fully_crossed(table.rename(columns={"modality": "treatment"}))
    if complete.empty:
        raise StudyError(f"study {study_id}: no case has been read by the same readers under every modality yet")
    order = treatment_order(complete["treatment"])
    try:
        if question["type"] == "yes_no":
            result = {metric: obuchowski_rockette(complete, cov="jackknife", readers=readers, cases=cases,
                                                  metric=metric, treatments=order)
                      for metric in ("sensitivity", "specificity")}
        else:
            result = obuchowski_rockette(complete, cov=cov, readers=readers, cases=cases, treatments=order)
    except ValueError as error:
        raise StudyError(f"study {study_id}: MRMC analysis not possible yet: {error}") from error
    return {**result, "table": complete, "question": question["id"], **dropped}
