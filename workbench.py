"""medattn workbench, the script each browser session runs (app.py serves it: `streamlit run
app.py`). The shared sidebar, then the chosen page.

Environment: MEDATTN_DATASET (folder opened first; default the embedded demo, built on first
start), MEDATTN_MODELS (your models, where imports and trainings go; default
~/.local/share/medattn/models), MEDATTN_CHECKPOINTS (the repository's checkpoint folder; default
checkpoints/), MEDATTN_CACHE (heatmap cache and score tables; default .cache/), MEDATTN_PREFETCH
(0: Compare does not compute the neighbouring images' maps ahead; default 1), MEDATTN_WARMUP (0: the
server, app.py, does not load the opening dataset and checkpoints at its start; default 1), MEDATTN_STUDY_DB
(reader-study database, a path or a PostgreSQL URL: everyone signs in, see medattn.ui.auth;
without it, in the single-user loopback mode, studies live in the cache folder and no one signs in
but readers), MEDATTN_BEHIND_PROXY (1: a local reverse proxy relays clients,
deploy/nginx-medattn.conf).
"""

# First: medattn sets the thread policy (medattn.threads: idle OpenMP threads sleep, thread
# counts fit the CPUs) before anything imports torch, which reads it once.
import medattn  # noqa: F401

import streamlit as st  # noqa: E402

from medattn.ui import auth  # noqa: E402
from medattn.reader.errors import StudyError  # noqa: E402
from medattn.ui.icon import page_icon  # noqa: E402
from medattn.ui.plain import plain  # noqa: E402

# 360 px: the sidebar's checkpoint choice shows every demo name whole (demo_densenet121_channel_attention).
st.set_page_config(page_title="medattn", page_icon=page_icon(), layout="wide", initial_sidebar_state=360)
st.set_option("client.showErrorDetails", "none")


def sign_in_page() -> None:
    st.title("medattn reader studies")
    auth.login_form()
    st.caption("A reload or a new tab asks you to sign in again; every answer you saved is kept.")


if auth.study_mode():  # a damaged or unreachable study database says so before anyone signs in
    try:
        auth.store()
    except StudyError as error:
        st.error(f"The reader-study server cannot start: {plain(error)}")
        st.stop()
user = auth.current_user()
if user is None:  # study mode, nobody signed in on this tab: nothing but the sign-in
    st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:", url_path="signin")],
                  position="hidden").run()
    st.stop()

# Pages are offered by role on the server: a page not in the list cannot be opened by its URL.
reader_page = st.Page("pages/reader.py", title="Reader", icon=":material/visibility:", default=not user.is_admin)
if user.is_admin:
    PAGES = [
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:", default=True),
        st.Page("pages/failures.py", title="Failure cases", icon=":material/report:"),
        st.Page("pages/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:"),
        st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
        reader_page,
        st.Page("pages/study_admin.py", title="Study admin", icon=":material/assignment:"),
    ]
else:
    PAGES = [reader_page]
# The menu goes out before the sidebar's slow first work (importing torch, building the demo,
# loading checkpoints), so a first load shows the app's pages at once, never a blank page.
page = st.navigation(PAGES, position="top" if user.is_admin else "hidden")
if user.is_admin:
    with st.spinner("Loading the dataset and checkpoints…"):
        from medattn.ui.sidebar import sidebar  # noqa: E402 - imports torch: seconds on a busy CPU

        sidebar()
auth.logout_button()
st.sidebar.caption("For research and software testing only, never for clinical use.")
page.run()
