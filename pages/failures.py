"""Failure cases: false positives, false negatives and mislocalized true positives per model and
class, sortable, with thumbnails; one click opens a case in Compare."""

import streamlit as st

from medattn.failures import CATEGORIES, SORTS, failure_cases, failure_counts, sort_failures
from medattn.ui import auth, loaders
from medattn.ui.compare_request import open_in_compare
from medattn.ui.errors import guard
from medattn.ui.plain import plain
from medattn.ui.precompute_panel import jobs_list, precompute_panel
from medattn.ui.sidebar import current
from medattn.ui.split_scope import scoped_scores
from medattn.ui.thumbnails import thumbnail

PER_PAGE = 12
CARDS_PER_ROW = 4
SESSION = dict(persist_state="session")
auth.require_admin()  # first: nothing of this page before an admin is known
selection = current()
st.title("Failure cases")
if selection.dataset is None or not selection.models:
    st.info("Choose a dataset and at least one checkpoint trained on its classes in the sidebar.")
    st.stop()
data = selection.dataset
scores = loaders.scores(data, selection.models)
precompute_panel(selection, "fail_pre", expanded=scores.empty)
jobs_list()
if scores.empty:
    st.info("No scores yet for these checkpoints on this dataset: run precompute above.")
    st.stop()

scored = {m for m in scores["method"].unique() if not str(m).startswith("sanity:")}
methods = [m for m in selection.methods if m in scored] + sorted(scored - set(selection.methods))
models = sorted(scores["checkpoint"].unique())
split_col, a, b, c = st.columns(4)
scores, split, _ = scoped_scores(data, scores, "fail", split_col)
checkpoint = a.selectbox("Model", models, key="fail_model", **SESSION)
class_name = b.selectbox("Class", ["all", *data.classes], key="fail_class", **SESSION)
method = c.selectbox("Method (for localization)", methods, key="fail_method", **SESSION)
chosen = st.pills("Categories", list(CATEGORIES), selection_mode="multi", default=list(CATEGORIES),
                  format_func=CATEGORIES.get, key="fail_categories", **SESSION)  # full names, never cut
e, f = st.columns(2)
threshold = e.slider("Mislocalized when AUPRC is under", 0.0, 1.0, 0.3, 0.05, key="fail_threshold", **SESSION,
                     help="…or when the map's maximum lies outside every box of the class.")
order = f.radio("Sort by", SORTS, key="fail_sort", horizontal=True, **SESSION,
                format_func={"confidence": "confidence (most confident first)", "score": "AUPRC (worst first)"}.get)

with guard("Finding failure cases"):
    cases = failure_cases(scores, method, threshold, checkpoint, None if class_name == "all" else class_name)
    st.dataframe(failure_counts(failure_cases(scores, method, threshold)).rename(columns=CATEGORIES), width="content")
    cases = sort_failures(cases[cases["category"].isin(chosen)], order)
    st.subheader(f"{len(cases)} case(s) for {plain(checkpoint)} on the {split} split")
    rule = selection.model(checkpoint).decision(data.task) if selection.model(checkpoint) else None
    if rule is not None:
        st.caption(f"Predicted means {plain(rule.describe())}, the rule the Leaderboard's metrics use.")
    if cases.empty:
        st.stop()
    pages = (len(cases) - 1) // PER_PAGE + 1
    page = st.number_input("Page", 1, pages, 1, key="fail_page") if pages > 1 else 1
    loaded = selection.model(checkpoint)
    shown = list(cases.iloc[(page - 1) * PER_PAGE : page * PER_PAGE].itertuples())
    for start in range(0, len(shown), CARDS_PER_ROW):  # one row of columns per row of cards: they line up
        for column, case in zip(st.columns(CARDS_PER_ROW), shown[start : start + CARDS_PER_ROW]):
            with column.container(border=True, height="stretch"):
                with guard(f"Thumbnail of {case.image_id}"):
                    st.image(thumbnail(loaded, data, case.image_id, method, int(case.target)), width="stretch")
                st.caption(f"**{plain(case.image_id)}** · {CATEGORIES[case.category]} · {plain(case.target_class)}  \n"
                           f"{plain(case.reason)}")
                if st.button("Open in Compare", key=f"fail_open_{case.image_id}_{case.target}"):
                    open_in_compare(case.image_id, case.target_class)
