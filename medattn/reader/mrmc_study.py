"""A reader study as an MRMC table (reader, modality, case, truth, rating), and its
Obuchowski–Rockette analysis (`medattn.reader.mrmc`): the one path from stored answers to the
"mrmc"/"imrmc" exports and to the analysis Study admin shows.

- Detection study: modality = the arm (with_ai / without_ai; without_ai when the study has no
  arms); rating = a scale answer (AUC) or a yes/no answer as 1/0 (sensitivity, specificity).
- Heatmap-rating study: modality = the panel's model · method (saliency methods as
  modalities); rating = the reader's rating of that map; truth = the case's finding.
`case` numbers images, so the two cases of one image in a crossed design share a number.
`analysis_gap` says, in the coordinator's words, what a study's answers still lack for the
analysis (one arm read, one reader, too few images of a kind) and what to do.
Admin only: reads the case and panel keys.
"""

from __future__ import annotations

import json

import pandas as pd

from medattn.reader.analysis import case_truth, checkpoint_name
from medattn.reader.arms import WITH_AI, WITHOUT_AI
from medattn.reader.errors import AnalysisNotReadyError, StudyError
from medattn.reader.mrmc import NoVarianceError, fully_crossed, obuchowski_rockette
from medattn.store.annotations import AnnotationStore

COLUMNS = ["reader", "modality", "case", "truth", "rating"]
ARM_NAMES = {WITH_AI: "with-AI", WITHOUT_AI: "without-AI"}


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


def _design(store: AnnotationStore, study_id: str) -> pd.DataFrame:
    """case_id → MRMC case number (`case`) and `truth` (0/1), for every case of the study whose
    image is in its dataset (one that left it is counted in the exports' warnings)."""
    truth = case_truth(store, study_id)
    return pd.DataFrame({"case": mrmc_cases(store, study_id).loc[truth.index], "truth": truth})


def _table(store: AnnotationStore, spec: dict, question: dict, design: pd.DataFrame) -> pd.DataFrame:
    study_id = spec["id"]
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
    frame = frame[frame["case_id"].isin(design.index)].copy()  # a case whose image left the dataset has no truth
    frame["case"] = design.loc[frame["case_id"], "case"].to_numpy()
    frame["truth"] = design.loc[frame["case_id"], "truth"].to_numpy()
    return frame[COLUMNS].sort_values(["reader", "modality", "case"]).reset_index(drop=True)


def _check_kind(spec: dict) -> None:
    if spec["kind"] not in ("detection", "heatmap_rating"):
        raise StudyError(f"study {spec['id']} is a {spec['kind']} study; MRMC needs a detection or heatmap-rating study")


def mrmc_table(store: AnnotationStore, study_id: str, question_id: str | None = None) -> pd.DataFrame:
    """reader, modality, case, truth, rating: one row per reader × case (× map in a rating study)
    with an answer to the rating question (`rating_question`); sorted by reader, modality, case."""
    spec = store.study(study_id)
    _check_kind(spec)
    return _table(store, spec, rating_question(spec, question_id), _design(store, study_id))


def treatment_order(modalities) -> list:
    """With AI before without AI (differences are with − without); other modalities sorted."""
    present = sorted(set(modalities), key=str)
    return sorted(present, key=lambda m: (m != WITH_AI, m != WITHOUT_AI, str(m)))


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _arm_name(modality) -> str:
    return ARM_NAMES.get(modality, str(modality))


def analysis_gap(table: pd.DataFrame, design: pd.Series, *, maps: bool = False, crossed: bool = True,
                 readers: str = "random", binary: bool = False) -> str | None:
    """What an MRMC comparison of `table` (reader, modality, case, truth, rating: the answers so
    far) lacks, as a sentence for the study's coordinator saying what to do; None when it can run.

    `design`: truth (0/1) of every MRMC case of the study, answered or not (a study whose images
    are all of one kind can never be analysed; one in progress can); `maps`: the modalities are
    the maps of a rating study (else the with-/without-AI arms); `crossed`: every reader reads
    every image in every modality (False: the split design, each image once per reader);
    `readers`: "random" needs 2 readers, "fixed" 1; `binary`: a yes/no rating (sensitivity,
    specificity) rather than a scale (AUC). The needs are those of `obuchowski_rockette`: 2
    modalities, a fully crossed part, 2 readers (random), 2 images with and 2 without the finding."""
    unit, pair = ("map", "every map") if maps else ("arm", "both arms")
    figure = "sensitivity and specificity need" if binary else "the AUC needs"
    needed = 2 if readers == "random" else 1
    by = f"by at least {_count(needed, 'reader')}"
    n1, n0 = int((design == 1).sum()), int((design == 0).sum())
    if n1 < 2 or n0 < 2:
        return (f"This study cannot give an AUC, sensitivity or specificity: its {_count(n1 + n0, 'image')} include "
                f"{n1} with the finding and {n0} without, and each of these figures needs at least 2 of each. "
                "Create a new study whose cases include images with and without the finding.")
    if table.empty:
        return (f"No answers to this question yet: the comparison needs {pair} read {by}. "
                "Add readers under Readers and ask them to sign in; the analysis appears as they save.")
    started = table["reader"].nunique()
    modalities = list(dict.fromkeys(table["modality"]))
    if len(modalities) < 2:
        if not maps:
            more = (f" and add {_count(needed - started, 'more reader')} under Readers" if started < needed else "")
            return (f"Only the {_arm_name(modalities[0])} arm has answers so far ({_count(started, 'reader')} "
                    f"started): the comparison needs {pair} read {by}. Each reader reads one arm's "
                    f"session, then the other (after the washout, if the study has one): wait for second sessions{more}.")
        return (f"Only one map ({modalities[0]}) has ratings so far: the comparison needs at least 2 maps rated {by}.")
    if not crossed:
        return ("This study splits its images between the arms (each reader reads each image once, with or without "
                "AI): the Obuchowski–Rockette analysis shown here needs every reader to read every image in both "
                "arms (the crossed design). Download the iMRMC input below: iMRMC analyses split designs.")
    complete, _ = fully_crossed(table.rename(columns={"modality": "treatment"}))
    both = complete["reader"].nunique()
    if both < needed:
        if both == 0:
            return (f"No reader has read in {pair} yet ({_count(started, 'reader')} started, each in one {unit}): "
                    f"the comparison needs at least {_count(needed, 'reader')} who have read the same images in {pair}. It "
                    "appears as readers finish their second session.")
        return (f"Only 1 reader ({complete['reader'].iloc[0]}) has read in {pair} so far: generalising to other "
                "readers needs at least 2. Wait for another reader to finish, or choose 'fixed readers' under "
                "'Generalise to' to describe these readers only.")
    per_case = complete.groupby("case")["truth"].first()
    k1, k0 = int(per_case.sum()), int((per_case == 0).sum())
    if k1 < 2 or k0 < 2:
        waiting = int(table["case"].nunique()) - len(per_case)
        return (f"So far {_count(len(per_case), 'image has', 'images have')} been read in {pair} by all "
                f"{_count(both, 'reader')} who have read in {pair}: {k1} with the finding and {k0} without; {figure} at "
                "least 2 of each. " + (f"{_count(waiting, 'more image')} will count once each of these readers has "
                                       f"read {'it' if waiting == 1 else 'them'} in {pair}." if waiting
                                       else "Wait for more readings."))
    return None


def study_mrmc(store: AnnotationStore, study_id: str, question_id: str | None = None, *, cov: str = "jackknife",
               readers: str = "random", cases: str = "random") -> dict:
    """The Obuchowski–Rockette analysis of a study's rating question over its fully crossed part
    (the readers who read under every modality, the cases all of them read under every one):
    the `obuchowski_rockette` result plus `table` (the MRMC table used), `readers_dropped`,
    `cases_dropped`, `question`. A scale question gives AUCs; a yes/no question gives
    `sensitivity` and `specificity` results (each an `obuchowski_rockette` result).
    AnalysisNotReadyError saying what is missing and what to do (`analysis_gap`) while the
    answers cannot support it (one arm, one reader, too few images of a kind); StudyError for a
    study of another kind or question."""
    spec = store.study(study_id)
    _check_kind(spec)
    question = rating_question(spec, question_id)
    design = _design(store, study_id)
    table = _table(store, spec, question, design)
    gap = analysis_gap(table, design.groupby("case")["truth"].first(), maps=bool(question.get("per_panel")),
                       crossed=spec.get("arms") != "split",
                       readers=readers, binary=question["type"] == "yes_no")
    if gap:
        raise AnalysisNotReadyError(gap)
    complete, dropped = fully_crossed(table.rename(columns={"modality": "treatment"}))
    order = treatment_order(complete["treatment"])
    try:
        if question["type"] == "yes_no":
            result = {metric: obuchowski_rockette(complete, cov="jackknife", readers=readers, cases=cases,
                                                  metric=metric, treatments=order)
                      for metric in ("sensitivity", "specificity")}
        else:
            result = obuchowski_rockette(complete, cov=cov, readers=readers, cases=cases, treatments=order)
    except NoVarianceError as error:
        metric = "sensitivity and specificity" if question["type"] == "yes_no" else "AUC"
        raise AnalysisNotReadyError(
            f"Every reader's {metric} is the same in both arms and over these images (for example every reading "
            "separates the images perfectly), so the difference cannot be tested: there is no variation to test it "
            "against. More readers or more (harder) images give the test its variance.") from error
    except ValueError as error:
        raise StudyError(f"study {study_id}: the MRMC analysis failed: {error}") from error
    return {**result, "table": complete, "question": question["id"], **dropped}
