"""Reader: a study participant signs in, picks a study and reads its cases one by one.

Everything shown comes from the store through the signed-in reader's name; maps appear under
their blinded codes only. Layout only: the rules live in medattn.reader and medattn.ui.reader_*.
"""

import logging

import streamlit as st

from medattn.reader.errors import (AccessDeniedError, CaseUnavailableError, DatasetMovedError, InvalidAnswerError,
                                   StorageError)
from medattn.ui import auth
from medattn.ui import reader_flow as flow
from medattn.ui.box_canvas import draw_boxes
from medattn.ui.entrypoint import ensure_entrypoint
from medattn.ui.reader_maps import PanelUnavailable, case_finding, panel_map
from medattn.ui.plain import plain
from medattn.ui.reader_questions import missing_labels, name_finding, panel_rating, question_widget
from medattn.ui.study_picker import study_picker
from medattn.ui.viewer import ViewerPanel, case_viewer

ensure_entrypoint()
log = logging.getLogger("medattn.ui.reader")
db = auth.store()
st.title("Reader")
user = auth.signed_in_reader()
if user is None:
    st.caption("Sign in with the name and password your study coordinator gave you.")
    auth.login_form("reader_login")
    st.stop()
if not auth.holds_tab(user):
    st.warning("You are signed in on another tab or window, which now holds your study. Every case saved before "
               "it took over is kept; a save pressed in this tab since then was NOT stored, so enter that case "
               "again. Close this tab, or continue here (the other tab then pauses).")
    if st.button("Continue in this tab", key="rd_take_over", type="primary"):
        auth.take_over_tab(user)
        st.rerun()
    st.stop()

studies = db.studies_for(user.name)
if studies.empty:
    st.info("No study is assigned to you yet. Your study coordinator adds you to a study.")
    st.stop()
# One row: the study, the case and the steps between cases; the viewer starts high on the screen.
study_col, previous_col, case_col, next_col = st.columns([2.2, 1.1, 1.5, 1.1], vertical_alignment="bottom")
st.session_state.setdefault("rd_study", flow.resume_study(studies))  # where this reader left off
with study_col:  # progress stays out of the labels (study_picker says why): the caption carries it
    study_id = study_picker({row.study_id: row.name for row in studies.itertuples()}, key="rd_study")
kind = studies.set_index("study_id").at[study_id, "kind"]
spec = db.study_for_reader(study_id, user.name)  # the questions and the finding's name; no cases or panels
questions = spec["questions"]
cases = db.cases_for(study_id, user.name)
case_id = flow.current_case(db, study_id, user.name, cases)
position = cases.index(case_id)
previous_col.button("◀ Previous", key="rd_previous", on_click=flow.step, args=(study_id, cases, case_id, -1),
                    shortcut="alt+left", help="Previous case (Alt+←); nothing is saved", width="stretch")
st.session_state["rd_case_select"] = case_id
case_col.selectbox("Case", cases, key="rd_case_select", format_func=lambda c: f"Case {cases.index(c) + 1} of {len(cases)}",
                   on_change=lambda: flow.go_to(study_id, st.session_state["rd_case_select"]))
next_col.button("Next ▶", key="rd_next", on_click=flow.step, args=(study_id, cases, case_id, 1),
                shortcut="alt+right", help="Next case (Alt+→); nothing is saved", width="stretch")
progress = db.progress_of(study_id, user.name)
others = (" · your studies: " + " · ".join(f"{plain(row.name)} {row.n_done}/{row.n_cases}" for row in studies.itertuples())
          if len(studies) > 1 else "")
st.progress(progress["n_done"] / progress["n_cases"],
            text=f"{progress['n_done']} of {progress['n_cases']} cases done{others}")
message = flow.notice()
if message:
    st.success(plain(message))
if progress["next_case"] is None:
    st.success("Every case of this study is saved. Thank you! You can still look back and change an answer.")

lock = db.session_lock(study_id, user.name, case_id)
if lock is not None and "opens once" in lock:
    st.info(f"Case {position + 1} is not open yet: {plain(lock)}.")
    st.stop()
if lock is not None:
    st.info(f"Case {position + 1}: {plain(lock)}. You can look at it; changes are not saved.")
try:
    image = db.case_image(study_id, user.name, case_id)
except DatasetMovedError:
    log.warning("reader %s, study %s: dataset unavailable", user.name, study_id, exc_info=True)
    st.error("The images of this study are not where they were. Your saved answers are safe; the study coordinator "
             "has to point the study at the images' new place. Please try again later.")
    st.stop()
except CaseUnavailableError:  # this case only: the reader goes on, Study admin counts it
    log.warning("reader %s, study %s: case %s unavailable", user.name, study_id, case_id, exc_info=True)
    st.warning(f"Case {position + 1} is unavailable: its image cannot be shown. Your answers are safe, and the study "
               "coordinator sees this case listed as unavailable. Please go on with the next case.")
    st.button("Skip to the next case ▶", key="rd_skip", type="primary", on_click=flow.skip,
              args=(db, study_id, user.name, cases, case_id))
    st.stop()
flow.mark_shown_once(db, study_id, user.name, case_id)

codes = db.panels_for(study_id, user.name, case_id)
maps, notes = {}, {}
for code in codes:
    try:
        maps[code] = panel_map(db, study_id, user.name, case_id, code)
    except PanelUnavailable as error:
        notes[code] = str(error)
if kind != "detection":  # detection names its class (or the list) already; the others name the case's
    finding = case_finding(db, study_id, user.name, case_id, codes)
    questions = [name_finding(q, finding) for q in questions]
prior = db.case_answers(study_id, user.name, case_id)
key = f"rd_{study_id}_{case_id}"
values: dict = {}

viewer_place, form_place = st.columns([2.4, 1])
with viewer_place:
    for code, note in notes.items():
        st.warning(f"{plain(note[0].upper() + note[1:])}: its viewport shows the image alone.")
    case_title = f"Case {position + 1}"
    if kind == "detection":
        arm = db.arm_for(study_id, user.name, case_id)
        if codes:  # with AI: one map over the image; several maps each in a viewport of their own
            arm_note = ("With AI: the model's map over the image (m hides it; the slider sets its opacity)."
                        if len(codes) == 1 else "With AI: each model's map in its own viewport, beside the image.")
            panels = ([ViewerPanel(f"{case_title} · Map {codes[0]}", maps.get(codes[0]), boxes=True)] if len(codes) == 1
                      else [ViewerPanel(case_title, boxes=True)]
                      + [ViewerPanel(f"Map {c}", maps.get(c), boxes=True) for c in codes])
        else:
            arm_note = "Without AI: read this case on the image alone." if arm is not None else ""
            panels = [ViewerPanel(case_title, boxes=True)]
        boxes_question = next((q for q in questions if q["type"] == "boxes"), None)
        if boxes_question is not None:
            labels = boxes_question.get("labels") or [spec.get("target_class") or "finding"]
            st.markdown(f"**{plain(boxes_question.get('label', 'Boxes'))}**" + (f" · :gray[{arm_note}]" if arm_note else ""))
            values[boxes_question["id"]] = draw_boxes(image, prior.get(boxes_question["id"]), f"{key}_boxes",
                                                      labels=labels, panels=panels)
        else:
            if arm_note:
                st.caption(arm_note)
            case_viewer(image, [ViewerPanel(p.title, p.heatmap) for p in panels], key=f"{key}_viewer", case=key)
    else:
        panels = [ViewerPanel(case_title)] + [ViewerPanel(f"Map {c}", maps.get(c)) for c in codes]
        case_viewer(image, panels, key=f"{key}_viewer", case=key)

with form_place, st.form(f"{key}_form"):
    for question in questions:
        qid = question["id"]
        if question["type"] == "boxes":
            continue
        if question["type"] == "scale" and question.get("per_panel"):
            if codes:  # one rating per map, in the viewports' order
                st.markdown(f"**{plain(question.get('label', qid))}**")
                ratings = {code: panel_rating(question, f"{key}_{qid}", code, prior.get(qid)) for code in codes}
                values[qid] = ratings if all(v is not None for v in ratings.values()) else None
            continue
        if question["type"] == "rank" and not codes:
            continue
        values[qid] = question_widget(question, f"{key}_{qid}", prior.get(qid), codes)
    submitted = st.form_submit_button("Save and next", type="primary", shortcut="ctrl+enter",
                                      help="Save this case and show the next one (Ctrl+Enter)")

if submitted:
    missing = missing_labels(questions, values, codes)
    if missing:
        st.error("Please answer before saving: " + plain("; ".join(missing)))
    else:
        try:
            db.submit_case(study_id, user.name, case_id, {q: v for q, v in values.items() if v is not None})
        except (InvalidAnswerError, AccessDeniedError) as error:
            st.error(f"Not saved: {plain(error)}")
        except StorageError:  # the form keeps every answer: nothing to type again
            st.error("Not saved: the study database could not store this case just now. Your answers are still "
                     "here: press Save and next again in a moment. If it keeps failing, tell the study coordinator.")
        else:
            following = flow.after_submit(db, study_id, user.name, cases, case_id)
            if following is None:
                flow.say(f"Case {position + 1} saved. That was the last one.")
            else:
                flow.say(f"Case {position + 1} saved.")
                flow.go_to(study_id, following)
            st.rerun()
