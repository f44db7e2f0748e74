"""Data: the current dataset's classes, splits and boxes, a browsable image grid, and loading or
building a dataset folder (with every validation problem listed)."""

import json
from pathlib import Path

import streamlit as st

from medattn.data.build import BUILDERS, HELP
from medattn.data.skips import recorded
from medattn.data.dataset import load_dataset
from medattn import pipeline
from medattn.ui import auth
from medattn.ui.compare_request import open_in_compare
from medattn.ui.errors import guard, show_error
from medattn.ui.plain import plain
from medattn.ui.sidebar import current, use_dataset
from medattn.ui.summary import split_counts
from medattn.ui.thumbnails import image_thumbnail
from medattn.viz import box_size_histogram, count_bars

PER_PAGE = 12
CARDS_PER_ROW = 4
auth.require_admin()  # first: nothing of this page before an admin is known
selection = current()
st.title("Data")
browse, prepare = st.tabs(["Current dataset", "Load or build"])

with browse:
    data = selection.dataset
    if data is None:
        st.warning(f"No dataset loaded: {plain(selection.dataset_problem or 'choose one in the sidebar')}. "
                   "Load or build one in the next tab.")
    else:
        st.subheader(plain(data.name))
        st.caption(plain(f"{data.root} · task {data.task} · classes {', '.join(data.classes)} · source: {data.source or '—'}"))
        if data.meta.get("description"):
            st.text(data.meta["description"])
        images = data.images
        with guard("Counting"):
            counts = split_counts(data)
            left, right = st.columns([1, 1])
            left.dataframe(counts, width="stretch")
            right.plotly_chart(count_bars(counts.loc[["train", "val", "test"], data.classes].T,
                                          "Positives per class and split"), key="data_counts")
            if len(data.boxes):
                st.plotly_chart(box_size_histogram(data.boxes), key="data_boxes")
                st.caption(f"{len(data.boxes)} boxes on {data.boxes['image_id'].nunique()} images.")
            else:
                st.info("This dataset has no boxes: maps can be shown but not scored.")

        st.subheader("Images")
        a, b, c = st.columns(3)
        split = a.selectbox("Split", ["all", "train", "val", "test"], key="data_split")
        label = b.selectbox("Label", ["any", *data.classes, "no finding"], key="data_label")
        boxed = c.toggle("Only images with boxes", key="data_boxed")
        shown = images if split == "all" else images[images["split"] == split]
        if label == "no finding":
            shown = shown[~shown[data.classes].astype(bool).any(axis=1)]
        elif label != "any":
            shown = shown[shown[label] == 1]
        if boxed:
            shown = shown[shown.index.isin(set(data.boxes["image_id"]))]
        pages = max(1, (len(shown) - 1) // PER_PAGE + 1)
        page = st.number_input(f"Page (of {pages}; {len(shown)} images)", 1, pages, 1, key="data_page")
        on_page = list(shown.index[(page - 1) * PER_PAGE : page * PER_PAGE])
        for start in range(0, len(on_page), CARDS_PER_ROW):  # one row of columns per row of cards: they line up
            for column, image_id in zip(st.columns(CARDS_PER_ROW), on_page[start : start + CARDS_PER_ROW]):
                with column.container(border=True, height="stretch"):
                    with guard(f"Image {image_id}"):
                        st.image(image_thumbnail(data, image_id), width="stretch")
                    found = [c for c in data.classes if shown.at[image_id, c]] or ["no finding"]
                    st.caption(f"**{plain(image_id)}** · " + plain(f"{shown.at[image_id, 'split']} · {', '.join(found)}"))
                    if st.button("Open in Compare", key=f"data_open_{image_id}"):
                        open_in_compare(image_id, found[0] if found[0] in data.classes else data.classes[0])

with prepare:
    st.subheader("Load a dataset folder")
    folder = st.text_input("Folder with dataset.json, images.csv and boxes.csv", key="data_folder")
    if st.button("Check folder", key="data_check") and folder.strip():
        try:
            checked = load_dataset(Path(folder.strip()).expanduser())
            st.session_state["data_candidate"] = str(checked.root)
            st.success(plain(f"{checked.name}: {len(checked.images)} images, {len(checked.boxes)} boxes, "
                             f"classes {', '.join(checked.classes)}") + " — no problems found.")
        except Exception as exc:  # noqa: BLE001 - every problem is listed for the user to fix
            show_error(exc, "Not a valid dataset")

    st.subheader("Build from official files")
    kind = st.selectbox("Dataset", list(BUILDERS), format_func=lambda k: f"{k}: {HELP[k]}", key="data_kind")
    source = st.text_input("Source folder (the official download)", key="data_source")
    out = st.text_input("Output folder", str(pipeline.CACHE_DIR / "datasets" / kind), key=f"data_out_{kind}")
    whole = st.toggle("Every image in test", key="data_all_test",
                      help="Evaluate a model trained elsewhere on the whole folder (--split test); otherwise "
                           "patients are split train/val/test, by the official lists when present.")
    options = st.text_input("Builder options (JSON)", "{}", key="data_options",
                            help='e.g. {"seed": 1, "test_frac": 0.3}; see python -m medattn.data.build KIND --help')
    if st.button("Build", key="data_build", type="primary") and source.strip():
        with guard(f"Building {kind}"), st.spinner(f"Building {kind} from {plain(source)}…"):
            chosen = {**({"split": "test"} if whole else {}), **json.loads(options or "{}")}
            built = BUILDERS[kind](source.strip(), out.strip(), **chosen)
            st.session_state["data_candidate"] = str(built)
            st.success(f"Built {plain(built)}.")
            skipped = recorded(built)
            if len(skipped):
                st.warning(f"{plain(skipped.summary())} (listed in dataset.json under 'skipped')")

    candidate = st.session_state.get("data_candidate")
    if candidate:
        if st.button(f"Use {plain(candidate)} in the sidebar", key="data_use"):
            use_dataset(candidate)
            st.rerun()
