"""Leaderboard: localization per model × method with bootstrap 95% CIs, faithfulness beside it with
reference maps and rank agreement, classification per model, paired differences, PR and ROC
curves, and sanity checks when present."""

import pandas as pd
import streamlit as st

from medattn import leaderboard as lb
from medattn.spreadsheet import neutral_csv
from medattn.ui import auth, loaders
from medattn.ui.errors import guard
from medattn.ui.faithfulness_view import faithfulness_section
from medattn.ui.plain import plain
from medattn.ui.precompute_panel import jobs_list, precompute_panel
from medattn.ui.sidebar import current
from medattn.ui.split_scope import coverage_label, scoped_scores
from medattn.viz import cascading_figure, interval_bars, model_colors, pr_figure, roc_figure

SESSION = dict(persist_state="session")
auth.require_admin()  # first: nothing of this page before an admin is known
selection = current()
st.title("Leaderboard")
if selection.dataset is None or not selection.models:
    st.info("Choose a dataset and at least one checkpoint trained on its classes in the sidebar.")
    st.stop()
data = selection.dataset
scores = loaders.scores(data, selection.models)
precompute_panel(selection, "lb_pre", expanded=scores.empty)
jobs_list()
if scores.empty:
    st.info("No scores yet for these checkpoints on this dataset: run precompute above.")
    st.stop()

split_col, left, right = st.columns(3)
scores, split, coverage = scoped_scores(data, scores, "lb", split_col)
class_name = left.selectbox("Class", ["all", *data.classes], key="lb_class", **SESSION)
resamples = right.select_slider("Bootstrap resamples", [200, 500, 1000, 2000], 1000, key="lb_resamples", **SESSION)
target_class = None if class_name == "all" else class_name
colors = model_colors(m.name for m in selection.models)  # one colour per model in every chart

st.header("Localization")
with guard("Localization table"):
    table = lb.localization_table(scores, target_class=target_class, n_resamples=resamples)
    if table.empty:
        st.info("No scored image has boxes of this class.")
    else:
        shown = table.copy()
        for metric in lb.METRICS:
            shown[metric] = [f"{e:.3f} [{lo:.3f}, {hi:.3f}]" for e, lo, hi in
                             zip(table[metric], table[f"{metric}_low"], table[f"{metric}_high"])]
        shown["images"] = coverage_label(coverage).reindex(pd.MultiIndex.from_frame(table[["checkpoint", "method"]])).values
        st.dataframe(shown[["checkpoint", "model", "method", "images", "n", "flat", *lb.METRICS]], hide_index=True)
        st.caption(f"images: of the {split} split's, those with scores. "
                   "Mean over scored (image, class) pairs with boxes (or masks) of that class; [95% bootstrap CI]. "
                   "flat: maps with no evidence (constant), scored at chance: AUPRC = the box's share of the image, "
                   "no hit, IoU 0.")
        metric = st.radio("Chart", lb.METRICS, format_func=lb.METRIC_TITLES.get, horizontal=True, key="lb_metric",
                          **SESSION)
        st.plotly_chart(interval_bars(table, metric, group="method", color="checkpoint", colors=colors,
                                      label=lb.METRIC_TITLES[metric],
                                      title=f"{lb.METRIC_TITLES[metric]} (higher is better): mean with 95% bootstrap CI"),
                        key="lb_bars")
        st.download_button("Download localization CSV", neutral_csv(table), f"{data.name}_localization.csv",
                           "text/csv", key="lb_csv")

with guard("Faithfulness"):
    faithfulness_section(scores, lb.localization_table(scores, target_class=target_class, n_resamples=resamples),
                         target_class, resamples, colors, data.name)

st.header("Paired difference")
with guard("Paired difference"):
    pairs = sorted({(c, m) for c, m in zip(scores["checkpoint"], scores["method"]) if not str(m).startswith("sanity:")})
    if len(pairs) < 2:
        st.info("Score at least two model/method pairs to compare them.")
    else:
        a_col, b_col, m_col = st.columns([2, 2, 1])
        label = " · ".join
        first = a_col.selectbox("A", pairs, format_func=label, key="lb_a")
        second = b_col.selectbox("B", pairs, index=1, format_func=label, key="lb_b")
        paired_metric = m_col.selectbox("Metric", lb.METRICS, key="lb_paired_metric")
        result = lb.paired_comparison(scores, first, second, paired_metric, target_class, n_resamples=resamples)
        if result["n"] == 0:
            st.info("A and B share no scored (image, class) pair with boxes.")
        else:
            st.metric(f"{paired_metric}: A − B over {result['n']} shared pairs", f"{result['difference']:+.3f}",
                      help="Bootstrap over the shared pairs; p is two-sided, (count + 1) / (resamples + 1).")
            if result["n"] < 2:
                st.caption("One shared pair: no interval or p-value (there is nothing to resample).")
            else:
                st.caption(f"95% CI [{result['low']:+.3f}, {result['high']:+.3f}] · p = {result['p_value']:.3f}")

st.header("Classification")
with guard("Classification metrics"):
    predictions = loaders.stored_predictions(data, selection.models)
    scored_ids = set(scores["image_id"])
    predictions = {name: frame[frame.index.isin(scored_ids)] for name, frame in predictions.items()}
    rules = {m.name: m.decision(data.task) for m in selection.models}
    classification = lb.classification_table(predictions, data.images, data.classes, data.task, rules)
    if classification.empty:
        st.info("No stored predictions yet: precompute stores them.")
    else:
        st.dataframe(classification, hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in classification.columns if c not in ("checkpoint", "n")})
        st.caption(f"The scored images of the {split} split. Decisions: "
                   + plain("; ".join(f"{name}: {rule.describe()}" for name, rule in rules.items())) + ".")
        curve_class = st.selectbox("Curves for class", data.classes, key="lb_curve_class", **SESSION)
        pr, roc = lb.curves(predictions, data.images, curve_class)
        if not pr:
            st.info(f"The scored images hold only one label value for {plain(curve_class)}: no curve.")
        else:
            pr_col, roc_col = st.columns(2)
            pr_col.plotly_chart(pr_figure(pr, f"Precision-recall · {curve_class}", colors), key="lb_pr")
            roc_col.plotly_chart(roc_figure(roc, f"ROC · {curve_class}", colors), key="lb_roc")

sanity = lb.sanity_table(scores)
if not sanity.empty:
    st.header("Sanity checks")
    with guard("Sanity checks"):
        st.dataframe(sanity, hide_index=True)
        st.caption("Similarity of each map to the trained model's map as blocks are re-initialised (cascading "
                   "randomisation), or between checkpoints trained with other seeds (repeatability), averaged "
                   "over images. A map that stays similar after randomisation does not explain the model.")
        if "check" in sanity and (sanity["check"] == "cascading").any():
            st.plotly_chart(cascading_figure(sanity, colors=colors), key="lb_cascading")
