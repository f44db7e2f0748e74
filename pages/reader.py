"""Reader: a study participant signs in, picks a study and reads its cases one by one.

Everything shown comes from the store through the signed-in reader's name; maps appear under
their blinded codes only. Layout only: the rules live in medattn.reader and medattn.ui.reader_*.
"""

import streamlit as st

from medattn.errors import ImageReadError
from medattn.reader.errors import AccessDeniedError, DatasetMovedError, InvalidAnswerError, StorageError, StudyError
from medattn.ui import auth
from medattn.ui import reader_flow as flow
from medattn.ui.box_canvas import draw_boxes
from medattn.ui.plain import plain
from medattn.ui.reader_maps import PanelUnavailable, case_finding, panel_map
from medattn.ui.reader_questions import missing_labels, name_finding, panel_rating, question_widget
from medattn.ui.sidebar import _ensure_entrypoint
from medattn.ui.study_picker import study_picker
from medattn.viz import COLORMAPS, Panel, grid_figure, window_level

_ensure_entrypoint()
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
# Progress stays out of the labels (study_picker says why): the caption carries it.
study_id = study_picker({row.study_id: row.name for row in studies.itertuples()}, key="rd_study")
if len(studies) > 1:
    st.caption("Your studies: " + " · ".join(f"{plain(row.name)} {row.n_done}/{row.n_cases}" for row in studies.itertuples()))
kind = studies.set_index("study_id").at[study_id, "kind"]
spec = db.study_for_reader(study_id, user.name)  # the questions and the finding's name; no cases or panels
questions = spec["questions"]
cases = db.cases_for(study_id, user.name)
case_id = flow.current_case(db, study_id, user.name, cases)
position = cases.index(case_id)
progress = db.progress_of(study_id, user.name)
st.progress(progress["n_done"] / progress["n_cases"], text=f"{progress['n_done']} of {progress['n_cases']} cases done")
message = flow.notice()
if message:
    st.success(message)
if progress["next_case"] is None:
    st.success("Every case of this study is saved. Thank you! You can still look back and change an answer.")

previous_col, case_col, next_col = st.columns([1, 3, 1], vertical_alignment="bottom")
previous_col.button("◀ Previous", key="rd_previous", on_click=flow.step, args=(study_id, cases, case_id, -1),
                    shortcut="alt+left", help="Previous case (Alt+←); nothing is saved")
st.session_state["rd_case_select"] = case_id
case_col.selectbox("Case", cases, key="rd_case_select", format_func=lambda c: f"Case {cases.index(c) + 1} of {len(cases)}",
                   on_change=lambda: flow.go_to(study_id, st.session_state["rd_case_select"]))
next_col.button("Next ▶", key="rd_next", on_click=flow.step, args=(study_id, cases, case_id, 1),
                shortcut="alt+right", help="Next case (Alt+→); nothing is saved")

lock = db.session_lock(study_id, user.name, case_id)
if lock is not None and "opens once" in lock:
    st.info(f"Case {position + 1} is not open yet: {lock}.")
    st.stop()
if lock is not None:
    st.info(f"Case {position + 1}: {lock}. You can look at it; changes are not saved.")
try:
    image = db.case_image(study_id, user.name, case_id)
except DatasetMovedError:
    st.error("The images of this study are not where they were. Your saved answers are safe; the study coordinator "
             "has to point the study at the images' new place. Please try again later.")
    st.stop()
except (ImageReadError, StudyError, OSError):
    st.warning(f"Case {position + 1} is unavailable: its image cannot be read. Your answers are safe; please go on "
               "with the other cases (◀ ▶ above).")
    st.stop()
flow.mark_shown_once(db, study_id, user.name, case_id)

with st.expander("Display: window and map opacity"):
    a, b, c, d = st.columns(4)
    center = a.slider("Window level", 0.0, 1.0, 0.5, 0.01, key="rd_center")
    width = b.slider("Window width", 0.05, 1.0, 1.0, 0.01, key="rd_width")
    opacity = c.slider("Map opacity", 0.0, 1.0, 0.45, 0.05, key="rd_opacity")
    colormap = d.selectbox("Colormap", list(COLORMAPS), key="rd_cmap")
shown = window_level(image, center, width)
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
case_label = f"case {position + 1}"
values: dict = {}

if kind == "detection":
    boxes_question = next((q for q in questions if q["type"] == "boxes"), None)
    left, right = st.columns([3, 2])
    with left:
        if boxes_question is not None:
            st.markdown(f"**{plain(boxes_question.get('label', 'Boxes'))}**")
            values[boxes_question["id"]] = draw_boxes(shown, prior.get(boxes_question["id"]), f"{key}_boxes",
                                                      label=(boxes_question.get("labels") or [spec.get("target_class") or "finding"])[0])
        else:
            st.plotly_chart(grid_figure([[Panel(case_label, "Image", shown)]], width=600), key=f"{key}_image")
    form_place = right
    if codes:
        right.caption("With AI: the model's map of this case" if len(codes) == 1 else "With AI: the models' maps of this case")
        # one map per row (two per row from three maps on): three in one row of this column were 90 px each
        per_row = 1 if len(codes) <= 2 else 2
        map_panels = [Panel(case_label, f"Map {c}", shown, heatmap=maps.get(c), note=notes.get(c, "")) for c in codes]
        right.plotly_chart(grid_figure([map_panels[i:i + per_row] for i in range(0, len(map_panels), per_row)],
                                       colormap, opacity, width=420),
                           key=f"{key}_maps", config={"scrollZoom": True})
    elif db.arm_for(study_id, user.name, case_id) is not None:
        right.caption("Without AI: read this case on the image alone.")
else:
    row = [Panel(case_label, "Image", shown)]
    row += [Panel(case_label, f"Map {c}", shown, heatmap=maps.get(c), note=notes.get(c, "")) for c in codes]
    st.plotly_chart(grid_figure([row], colormap, opacity, width=1000 if len(row) > 2 else 760), key=f"{key}_maps",
                    config={"scrollZoom": True})
    st.caption("The wheel zooms every panel together; drag to pan; double-click resets.")
    form_place = st.container()

with form_place, st.form(f"{key}_form"):
    for question in questions:
        qid = question["id"]
        if question["type"] == "boxes":
            continue
        if question["type"] == "scale" and question.get("per_panel"):
            if codes:
                st.markdown(f"**{plain(question.get('label', qid))}**")
                columns = st.columns(len(codes) + (0 if kind == "detection" else 1))[-len(codes):]
                ratings = {}
                for column, code in zip(columns, codes):
                    with column:
                        ratings[code] = panel_rating(question, f"{key}_{qid}", code, prior.get(qid))
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
        st.error("Please answer before saving: " + "; ".join(missing))
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
