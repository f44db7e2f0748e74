"""Where a reader is in a study: which case is on screen, resuming, moving on after a submit,
and the time-on-case mark. Every call passes the signed-in reader's name to the store, which
filters by it in SQL.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medattn.store.annotations import AnnotationStore

CASE_KEY = "rd_case"      # study id → case on screen in this session
SHOWN_KEY = "rd_shown"    # (study, case) last marked as shown in this session
NOTICE_KEY = "rd_notice"  # one message for the next run (saved, resumed)


def current_case(store: AnnotationStore, study_id: str, reader: str, cases: list[str]) -> str:
    """The case on screen: the one chosen in this session, else where the reader resumes (the
    first case in their order not yet complete; the first case when all are)."""
    chosen = st.session_state.setdefault(CASE_KEY, {})
    if chosen.get(study_id) in cases:
        return chosen[study_id]
    progress = store.progress_of(study_id, reader)
    resume = progress["next_case"]
    if resume is None:
        chosen[study_id] = cases[0]
    else:
        chosen[study_id] = resume
        if progress["n_done"]:
            st.session_state[NOTICE_KEY] = (
                f"Welcome back: {progress['n_done']} of {progress['n_cases']} cases are saved. You resume at case "
                f"{progress['position'] + 1}, the first you have not finished.")
    return chosen[study_id]


def resume_study(studies: pd.DataFrame) -> str:
    """The study a reader opens on: the unfinished one they were last active in, else the first
    unfinished one, else the first (`AnnotationStore.studies_for` rows). A reload used to land
    on the first study of the list, not the one in progress."""
    unfinished = studies[studies["n_done"] < studies["n_cases"]]
    if unfinished["last_active"].notna().any():
        return str(unfinished.loc[unfinished["last_active"].idxmax(), "study_id"])
    return str((unfinished if len(unfinished) else studies)["study_id"].iloc[0])


def go_to(study_id: str, case_id: str) -> None:
    st.session_state.setdefault(CASE_KEY, {})[study_id] = case_id


def step(study_id: str, cases: list[str], case_id: str, delta: int) -> None:
    """Move to the neighbouring case (button callback; nothing is saved)."""
    go_to(study_id, cases[(cases.index(case_id) + delta) % len(cases)])


def after_submit(store: AnnotationStore, study_id: str, reader: str, cases: list[str], case_id: str) -> str | None:
    """Where to go once a case is saved: the next unfinished case after it in the reader's
    order, else the first unfinished one, else None (all done)."""
    progress = store.progress_of(study_id, reader)
    if progress["next_case"] is None:
        return None
    answered = set(store.my_answers(study_id, reader)["case_id"])
    later = [c for c in cases[cases.index(case_id) + 1:] if c not in answered]
    return later[0] if later else progress["next_case"]


def skip(store: AnnotationStore, study_id: str, reader: str, cases: list[str], case_id: str) -> None:
    """Leave a case that cannot be shown (button callback; nothing is saved): to the next case
    after it the reader has not answered, else the first such before it, else the next case."""
    answered = set(store.my_answers(study_id, reader)["case_id"]) | {case_id}
    at = cases.index(case_id)
    ahead = [c for c in cases[at + 1:] + cases[:at] if c not in answered]
    go_to(study_id, ahead[0] if ahead else cases[(at + 1) % len(cases)])


def mark_shown_once(store: AnnotationStore, study_id: str, reader: str, case_id: str) -> None:
    """Record the time the case appeared, once per arrival on it (not on every rerun)."""
    if st.session_state.get(SHOWN_KEY) != (study_id, case_id):
        store.mark_shown(study_id, reader, case_id)
        st.session_state[SHOWN_KEY] = (study_id, case_id)


def notice() -> str | None:
    return st.session_state.pop(NOTICE_KEY, None)


def say(message: str) -> None:
    st.session_state[NOTICE_KEY] = message
