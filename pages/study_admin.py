"""Study admin: create reader studies, add readers, follow progress, read the analysis and
download every export. Admins only (in study mode workbench.py offers it to admins alone, and the
page checks again)."""

from pathlib import Path

import streamlit as st

from medattn.reader.errors import StudyConflictError, StudyError
from medattn.reader.export import import_study
from medattn.reader.validity import study_warnings
from medattn.ui import auth, uploads
from medattn.ui.errors import guard, show_error
from medattn.ui.plain import plain
from medattn.ui.sidebar import current
from medattn.ui.study_create import KIND_NAMES, new_study_form, study_table
from medattn.ui.study_picker import study_picker
from medattn.ui.study_results import analysis_section, export_section, progress_section

admin = auth.require_admin()  # first: nothing of this page before an admin is known
selection = current()
db = auth.store()
st.title("Study admin")
st.caption(f"Study database: {plain(db.where)}" + ("" if auth.study_mode() else
           " (set MEDATTN_STUDY_DB to run studies on a shared server with sign-in)"))
notice = st.session_state.pop("sa_notice", None)
if notice:
    st.success(plain(notice))


def create(spec: dict) -> None:
    try:
        study_id = db.create_study(spec, author=admin.name)
    except StudyError as error:
        show_error(error, "Study not created")
        return
    images = len(spec["cases"])
    crossed = db.study(study_id).get("arms") == "crossed"
    cases = f"{2 * images} cases ({images} images, each read without and with AI)" if crossed else f"{images} cases"
    st.session_state["sa_notice"] = f"Created study {spec['name']!r} ({study_id}) with {cases}."
    st.session_state["sa_study"] = study_id
    st.rerun()


with st.expander("New study", expanded=db.list_studies().empty):
    with guard("New study"):
        new_study_form(selection, create)

with st.expander("Import a study (JSON backup)"):
    left, right = st.columns(2)
    with left:
        uploaded = uploads.uploader(uploads.STUDY_JSON, key="sa_import_file")
    with right:
        key_file = uploads.uploader(uploads.CASE_KEY, key="sa_import_key")
    if uploaded is not None and st.button("Import", key="sa_import"):
        with guard("Import"):
            study_id = import_study(db, uploaded.path, name=uploaded.name,  # errors name the uploads, not a
                                    key=key_file.path if key_file else None,  # server folder
                                    key_name=key_file.name if key_file else None)
            st.session_state["sa_notice"] = f"Imported {uploaded.name} as study {study_id}."
            st.session_state["sa_study"] = study_id
            st.rerun()

studies = db.list_studies()
if studies.empty:
    st.info("No study yet: create one above.")
    st.stop()
st.dataframe(study_table(studies), hide_index=True)
names = {row.id: f"{row.name} · {KIND_NAMES.get(row.kind, row.kind)} · {row.id}" for row in studies.itertuples()}
if st.session_state.get("sa_study") not in names:
    st.session_state["sa_study"] = list(names)[-1]
study_id = study_picker(names, key="sa_study")
spec = db.study(study_id)
if spec.get("description"):
    st.caption(plain(spec["description"]))
for warning in study_warnings(spec, list(db.case_key(study_id)["image_id"])):
    st.warning(f"This study's cases: {plain(warning)}. Every export says so in its provenance.")

# Two admins: an edit is saved on top of the revision this admin was SHOWN (kept in the session),
# not the one read when the button is pressed, so another admin's save in between is a conflict
# with a message instead of being overwritten, or the edit vanishing without a word.
seen_key = f"sa_seen_revision_{study_id}"
if not Path(spec["dataset"]).is_dir():
    seen = st.session_state.setdefault(seen_key, spec["revision"])
    st.warning(f"The study's dataset folder {plain(spec['dataset'])} is gone: readers see a message and nothing is lost. "
               "Point the study at the folder's new place:")
    moved = st.text_input("New dataset folder", key="sa_moved")
    if st.button("Save the new folder", key="sa_moved_save") and moved.strip():
        try:
            db.update_study(study_id, {"dataset": moved.strip()}, seen, author=admin.name)
            st.session_state.pop(seen_key, None)
            st.session_state["sa_notice"] = f"Study {study_id} now reads {moved.strip()}."
            st.rerun()
        except StudyConflictError as error:
            st.session_state[seen_key] = spec["revision"]  # now shown: saving again is a deliberate overwrite
            st.error(f"Not saved: {plain(error)}. The page now shows the study as saved; save again to replace it.")
        except StudyError as error:
            show_error(error, "Not saved")
elif st.session_state.pop(seen_key, spec["revision"]) != spec["revision"]:
    st.info(f"Another admin pointed this study at {plain(spec['dataset'])} meanwhile; the folder you were entering was "
            "not saved.")

st.subheader("Readers")
with st.form(f"sa_reader_form_{study_id}", clear_on_submit=True):
    a, b, c = st.columns([2, 2, 1], vertical_alignment="bottom")
    reader_name = a.text_input("Reader name", key="sa_reader_name")
    password = b.text_input("Password (8+ characters)", type="password", key="sa_reader_password")
    added = c.form_submit_button("Add reader")
if added:
    try:
        db.add_reader(study_id, reader_name, password)
        st.success(f"Added {plain(reader_name.strip())} to the study.")
    except StudyError as error:  # a taken name (DuplicateReaderError), a short password
        st.error(f"Reader not added: {plain(error)}")
with guard("Progress"):
    progress_section(db, study_id)

st.subheader("Analysis")
with guard("Analysis"):
    analysis_section(db, study_id, spec)

st.subheader("Exports")
st.caption("Cases appear under study-local ids only, except in the admin's files that hold image ids: the backup "
           "JSON (it re-imports with its images), the case → image key and the boxes CSV. Each file starts with its "
           "provenance (study, app version, checkpoint hashes, time, and any warning about the cases).")
export_section(db, study_id, spec)
