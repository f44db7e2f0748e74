"""Compare: one image, every selected model × method side by side, scored against its boxes."""

import streamlit as st

from medattn.data.skips import Skips
from medattn.metrics.protocols import PROTOCOLS
from medattn.spreadsheet import neutral_csv
from medattn.ui import auth, compare_request, quick_view, url_state
from medattn.ui.chooser import LABELS, OUTCOMES, SPLITS, filtered_ids
from medattn.ui.compare_grid import Display, compute_grid, layout, panel_curves, prefetch
from medattn.ui.errors import guard
from medattn.ui.plain import plain
from medattn.ui.sidebar import current
from medattn.viz import COLORMAPS, Panel, grid_figure, grid_png, perturbation_curves_figure, window_level

SESSION = dict(persist_state="session")
auth.require_admin()  # first: nothing of this page before an admin is known
selection = current()
st.title("Compare")
if selection.dataset is None:
    st.info("Choose a valid dataset folder in the sidebar to compare maps.")
    st.stop()
data = selection.dataset
unknown_link = compare_request.apply(data)
if unknown_link is not None:
    st.warning(f"The link asks for image {plain(repr(unknown_link))}, which {plain(data.name)} does not have; showing the first "
               "image of the filters below instead.")

split_col, class_col, label_col, outcome_col, boxed_col, fair_col = st.columns([1, 1, 1, 1.25, 1.25, 1.1],
                                                                              vertical_alignment="bottom")
split = split_col.selectbox("Split", SPLITS, key="cmp_split", **SESSION)
class_name = class_col.selectbox("Class", ["any", *data.classes], key="cmp_class", **SESSION)
st.session_state.setdefault("cmp_label", "positive")  # open on images that have something to point at
label = label_col.selectbox("Label", LABELS, key="cmp_label", **SESSION,
                            help="positive: labelled with the class (any class: some finding); negative: not.")
outcome = outcome_col.selectbox("Prediction", OUTCOMES, key="cmp_outcome", disabled=not selection.models, **SESSION)
boxed = boxed_col.toggle("With boxes", key="cmp_boxed", disabled=data.boxes.empty, **SESSION,
                         help="Only images with a box (of the class, when one is chosen): the ones maps can be scored on.")
fair = fair_col.toggle("Fair set", key="cmp_fair", disabled=not selection.models, **SESSION,
                       help="The fair comparison set: only images every selected model classifies correctly "
                            "(Gonçalves et al. 2021).")
ids: list[str] = []
unreadable = Skips("images")
with guard("Filtering images"), st.spinner("Predicting the split for the filters…"):
    ids = filtered_ids(selection, split, None if class_name == "any" else class_name, label, outcome, fair, boxed,
                       unreadable)
if len(unreadable):
    st.warning(f"{plain(unreadable.summary())}. Left out of the prediction filters and the fair set.")
if not ids:
    st.warning("No image matches these filters.")
    st.stop()

if st.session_state.get("image") not in ids:
    st.session_state["image"] = ids[0]


def step(delta: int) -> None:
    position = ids.index(st.session_state["image"])
    st.session_state["image"] = ids[(position + delta) % len(ids)]


previous_col, image_col, next_col, target_col = st.columns([0.5, 3, 0.5, 2], vertical_alignment="bottom")
previous_col.button("◀", on_click=step, args=(-1,), help="Previous image", key="cmp_previous")
image_id = image_col.selectbox(f"Image ({len(ids)} match)", ids, key="image")
url_state.record_image(image_id)  # a reload, a bookmark or a new tab opens this image
next_col.button("▶", on_click=step, args=(1,), help="Next image", key="cmp_next")
compare_request.default_target(data, image_id)
target_name = target_col.selectbox("Target class", data.classes, key="cmp_target", **SESSION)
target = data.classes.index(target_name)

with st.expander("Display", expanded=False):
    a, b, c, d = st.columns(4)
    display = Display(
        colormap=a.selectbox("Colormap", list(COLORMAPS), key="cmp_cmap", **SESSION),
        opacity=b.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="cmp_opacity", **SESSION),
        shared=c.radio("Normalisation", ["per panel", "shared per method"], key="cmp_norm", horizontal=True,
                       help="Scores always use the per-map policy; this changes the display only.",
                       **SESSION) == "shared per method",
        side_by_side=d.radio("View", ["overlay", "side by side"], key="cmp_view", horizontal=True,
                             **SESSION) == "side by side",
    )
    level, width, scoring = st.columns(3)
    protocol = scoring.selectbox("Scoring protocol", list(PROTOCOLS), key="cmp_protocol",
                                 format_func=lambda name: f"{name}: {PROTOCOLS[name].source}",
                                 help="How maps are scored (medattn/metrics/protocols.py); arun2021 also "
                                      "changes the gradient maps' parameters.", **SESSION)
    display.center = level.slider("Window level (display)", 0.0, 1.0, 0.5, 0.01, key="cmp_center", **SESSION)
    display.width = width.slider("Window width (display)", 0.05, 1.0, 1.0, 0.01, key="cmp_width", **SESSION)

row = data.images.loc[image_id]
labels = [c for c in data.classes if row[c]] or ["none"]
details = [f"split {row['split']}", f"labels: {', '.join(labels)}", f"patient {row['patient_id']}"]
details += [f"{k} {row[k]}" for k in ("view", "sex", "age", "marker") if k in row.index]
st.caption(f"**{plain(image_id)}** · " + plain(" · ".join(details)) + " · green: boxes of the target class · ✕: the map's maximum (none on a flat map)")

if not selection.models:
    st.warning("No selected checkpoint predicts this dataset's classes (the sidebar says why), so there are no "
               "maps to show.")
    with guard("Showing the image"):
        boxes = data.boxes_for(image_id, target_name)
        shown = window_level(data.read_image(image_id), display.center, display.width)
        image = Panel(image_id, "image", shown, boxes=boxes, note=f"boxes of {target_name}")
        st.plotly_chart(grid_figure([[image]], width=500), key="cmp_image_only")
    st.stop()
if not selection.methods:
    st.info("Choose at least one method in the sidebar.")
    st.stop()

# Fixed slots, each written at once on a new image or class: nothing of the previous one stays
# on screen under the new caption while the maps compute.
status, grid_view, notes, table, downloads = st.empty(), quick_view.GridView(), st.empty(), st.empty(), st.empty()
partial = [0]
view = (image_id, target, tuple(m.name for m in selection.models), tuple(selection.methods), protocol)
fresh_view = st.session_state.get("cmp_view_shown") != view
if fresh_view:
    table.caption("Numbers appear when every map is ready.")


def show(panels: list[list[Panel]]) -> None:
    """The grid so far, while slower panels compute."""
    partial[0] += 1
    grid_view.show(panels, display.colormap, display.opacity, display.side_by_side, key=f"cmp_grid_partial_{partial[0]}")


with guard("Computing the grid"):
    try:
        panels, numbers = compute_grid(selection, image_id, target, display, show, protocol=protocol, status=status,
                                       show_first=fresh_view)
    except Exception:
        grid_view.clear()  # no frame of a grid that will not finish stays, 'computing…', under the error
        raise
    st.session_state["cmp_view_shown"] = view
    grid_view.show(panels, display.colormap, display.opacity, display.side_by_side, key="cmp_grid", final=True,
                   config={"scrollZoom": True})
    # Says when this image's grid is complete (sent after the grid itself): the reader knows
    # nothing is still computing, and the browser benchmark (medattn.bench.compare) stops its clock.
    ready, total = sum(p.heatmap is not None for r in panels for p in r), sum(len(r) for r in panels)
    status.caption(f"{ready} of {total} maps ready ({int(numbers['cached'].sum())} from the cache) for "
                   f"{plain(image_id)}, target {plain(target_name)}" + (f" · {total - ready} failed: see the panels" if ready < total else ""))
    said_once = layout(selection)[1]
    if said_once:
        notes.caption(plain(" ".join(said_once)))
    shown_numbers = numbers.drop(columns=["image_id", "target_class", "cached", "precision"])  # precision: in the CSV
    shown_numbers["seconds"] = [("cached" if cached else f"{seconds:.2f}")
                                for seconds, cached in zip(numbers["seconds"], numbers["cached"])]
    table.dataframe(shown_numbers, hide_index=True, column_config={
        **{c: st.column_config.NumberColumn(format="%.3f") for c in ("probability", "auprc", "miou")},
        "seconds": st.column_config.TextColumn("seconds", help="Compute time of the map; cached: read from the cache."),
    })
    png = grid_png(panels, display.colormap, display.opacity, display.side_by_side,
                   header=[f"{data.name} / {image_id} / target {target_name}"])
    with downloads.container():
        left, right = st.columns(2)
        left.download_button("Download grid PNG", png, f"{image_id}_{target_name}_grid.png", "image/png", key="cmp_png")
        right.download_button("Download numbers CSV", neutral_csv(numbers),
                              f"{image_id}_{target_name}_scores.csv", "text/csv", key="cmp_csv")

with st.expander("Deletion and insertion curves", expanded=False):
    grid_panels = [panel for row_ in layout(selection)[0] for panel in row_]
    labels_ = {f"{m.name} · {method}": (m, method) for m, method in grid_panels}
    chosen = st.multiselect("Panels", list(labels_), default=list(labels_)[:2], key="cmp_curve_panels")
    steps_col, button_col = st.columns([1, 1], vertical_alignment="bottom")
    steps = steps_col.select_slider("Steps", [10, 20, 50, 100], 50, key="cmp_curve_steps")
    curve_key = (view, tuple(chosen), steps)
    if button_col.button("Compute curves", key="cmp_curves_go", disabled=not chosen):
        with guard("Deletion and insertion curves"), st.spinner(f"{2 * (steps + 1)} forward passes per panel…"):
            st.session_state["cmp_curves"] = (curve_key, panel_curves(selection, image_id, target,
                                                                      [labels_[c] for c in chosen], protocol, steps))
    stored = st.session_state.get("cmp_curves")
    if stored is not None and stored[0] == curve_key:
        st.plotly_chart(perturbation_curves_figure(stored[1], f"{image_id} · target {target_name}"), key="cmp_curves")
        st.caption("The class score as each map's pixels are removed, most relevant first (deletion: replaced by the "
                   "image's black through the model's preprocessing; a faithful map drops fast, low area) or inserted "
                   "into the blurred image (insertion: rises fast, high area); Petsiuk et al. 2018.")

# While the reader looks, the neighbours' maps compute on the background worker (behind any map
# a reader waits for), so ▶ and ◀ open from the cache.
position = ids.index(image_id)
neighbours = [ids[(position + delta) % len(ids)] for delta in (1, -1) if len(ids) > 1]
prefetch(selection, [(i, data.classes.index(compare_request.first_target(data, i))) for i in dict.fromkeys(neighbours)],
         protocol)
