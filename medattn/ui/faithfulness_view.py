"""The Leaderboard's faithfulness section: the metrics precompute stored (`--metrics`) per model ×
method with bootstrap CIs, reference maps as their own rows, and whether localization and
faithfulness rank the methods alike (Kendall's τ per model, and a scatter of the two)."""

from __future__ import annotations

from typing import Mapping

import pandas as pd
import streamlit as st

from medattn import leaderboard as lb
from medattn.metrics.faithfulness import HIGHER, METRICS
from medattn.spreadsheet import neutral_csv
from medattn.viz import agreement_scatter, interval_bars

SESSION = dict(persist_state="session")


def heading(metric: str) -> str:
    """'Deletion AUC ↓' style column title: the metric's name and its better direction."""
    info = METRICS[metric]
    return f"{info.title} {'↑' if info.better == HIGHER else '↓'}"


def axis_title(metric: str) -> str:
    """'Deletion AUC ↓ (lower is better)': a chart axis says which way is better in words."""
    return f"{heading(metric)} ({METRICS[metric].better} is better)"


def faithfulness_section(scores: pd.DataFrame, localization: pd.DataFrame, target_class: str | None,
                         resamples: int, colors: Mapping[str, str], dataset_name: str) -> None:
    """The section (header, table, chart, rank agreement, CSV) for a score table and its
    localization table (`lb.localization_table`)."""
    st.header("Faithfulness")
    metrics = lb.faithfulness_metrics(scores)
    if not metrics:
        st.info("No faithfulness metrics in these rows yet: tick 'Faithfulness metrics and reference maps' in the "
                "precompute panel above (or run `python -m medattn.jobs.precompute … --metrics`).")
        return
    table = lb.faithfulness_table(scores, metrics, target_class=target_class, n_resamples=resamples)
    if table.empty:
        st.info("No scored pair of this class has faithfulness values.")
        return
    shown = table[["checkpoint", "method", "n"]].copy()
    shown["method"] = [m.replace("reference:", "reference · ") for m in table["method"]]
    for metric in metrics:
        shown[heading(metric)] = [f"{e:.3f} [{lo:.3f}, {hi:.3f}]" for e, lo, hi in
                                  zip(table[metric], table[f"{metric}_low"], table[f"{metric}_high"])]
    st.dataframe(shown, hide_index=True)
    st.caption("Mean over every scored (image, class) pair, with or without boxes; [95% bootstrap CI]; ↑/↓: higher "
               "or lower is better. Reference maps (blank, seeded random, centre Gaussian, the training split's "
               "average box per class: Arun et al. 2021) use no model knowledge: a method is informative where it "
               "beats them. Deletion/insertion: area under the class score as the map's pixels are removed "
               "(replaced by the image's black) or inserted into the blurred image, most relevant first (Petsiuk et "
               "al. 2018); ROAD: mean score after removing 10–90% by noisy linear imputation (Rong et al. 2022).")
    chart_metric = st.radio("Chart", metrics, format_func=heading, horizontal=True, key="lb_faith_metric", **SESSION)
    st.plotly_chart(interval_bars(table, chart_metric, group="method", color="checkpoint", colors=colors,
                                  label=heading(chart_metric),
                                  title=f"{axis_title(chart_metric)}: mean with 95% bootstrap CI"), key="lb_faith_bars")
    st.download_button("Download faithfulness CSV", neutral_csv(table), f"{dataset_name}_faithfulness.csv",
                       "text/csv", key="lb_faith_csv")

    st.subheader("Do localization and faithfulness rank methods alike?")
    if localization.empty:
        st.info("No localization scores (no boxes of this class) to compare with.")
        return
    left, middle, right = st.columns([1, 1, 1])
    loc_metric = left.selectbox("Localization", lb.METRICS, format_func=lb.METRIC_TITLES.get, key="lb_agree_loc",
                                **SESSION)
    faith_metric = middle.selectbox("Faithfulness", metrics, format_func=heading, key="lb_agree_faith", **SESSION)
    references = right.checkbox("Include reference maps", value=False, key="lb_agree_refs", **SESSION)
    agreement = lb.rank_agreement(localization, table, loc_metric, faith_metric, references=references)
    st.dataframe(agreement, hide_index=True,
                 column_config={"tau": st.column_config.NumberColumn("Kendall τ", format="%.2f"),
                                "p_value": st.column_config.NumberColumn("p", format="%.3f"),
                                "best_localization": st.column_config.TextColumn(f"best by {lb.METRIC_TITLES[loc_metric]}"),
                                "best_faithfulness": st.column_config.TextColumn(f"best by {heading(faith_metric)}")})
    st.caption("Kendall's τ-b between the methods' order by the localization mean and by the faithfulness mean (each "
               "in its better direction): 1 the same order, 0 unrelated, −1 reversed; NaN with fewer than 3 methods. "
               "'all' pools every model × method.")
    scatter_loc = localization if references else localization[~localization["method"].str.startswith("reference:")]
    st.plotly_chart(agreement_scatter(scatter_loc, table, loc_metric, faith_metric,
                                      f"{lb.METRIC_TITLES[loc_metric]} against {heading(faith_metric)}", colors,
                                      labels=(f"{lb.METRIC_TITLES[loc_metric]} (higher is better)", axis_title(faith_metric))),
                    key="lb_agree_scatter")
