"""Plotly charts for the Leaderboard, Compare and Data pages: metric bars with confidence
intervals, PR and ROC curves, localization against faithfulness per method, deletion and
insertion curves, box size histograms and count bars."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from medattn.viz.labels import as_label, as_labels
from medattn.viz.palette import PALETTE, model_colors

LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))


def interval_bars(table: pd.DataFrame, metric: str, group: str = "method", color: str = "model",
                  colors: Mapping[str, str] | None = None, label: str | None = None,
                  title: str | None = None) -> go.Figure:
    """Grouped bars of `metric` with asymmetric error bars from `{metric}_low`/`{metric}_high`
    (e.g. the leaderboard's bootstrap 95% intervals); one colour per `color` value, from
    `colors` (default `model_colors` of the values). `label` titles the axis (default `metric`),
    e.g. "Deletion AUC ↓"; `title` the chart (default "`label` with 95% bootstrap CI")."""
    figure = go.Figure()
    colors = colors or model_colors(table[color].astype(str))
    for name, rows in table.groupby(color, sort=False):
        estimate = rows[metric].to_numpy(dtype=float)
        figure.add_trace(
            go.Bar(
                name=as_label(name), x=as_labels(rows[group]), y=estimate, marker_color=colors.get(str(name)),
                error_y=dict(type="data", symmetric=False,
                             array=rows[f"{metric}_high"].to_numpy(dtype=float) - estimate,
                             arrayminus=estimate - rows[f"{metric}_low"].to_numpy(dtype=float)),
                hovertemplate=f"{as_label(name)}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    label = label or metric
    figure.update_layout(barmode="group", yaxis_title=label, title=title or f"{label} with 95% bootstrap CI", **LAYOUT)
    return figure


def pr_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = "Precision-recall",
              colors: Mapping[str, str] | None = None) -> go.Figure:
    """One line per model: name → (recall, precision, average precision); colours from
    `colors` (default `model_colors` of the names)."""
    figure = go.Figure()
    colors = colors or model_colors(curves)
    for name, (recall, precision, ap) in curves.items():
        figure.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name=f"{as_label(name)} (AP {ap:.3f})", line_shape="hv",
                                    line_color=colors.get(name)))
    figure.update_layout(title=as_label(title), xaxis_title="recall", yaxis_title="precision",
                         xaxis_range=[0, 1], yaxis_range=[0, 1.02], **LAYOUT)
    return figure


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC",
               colors: Mapping[str, str] | None = None) -> go.Figure:
    """One line per model: name → (false positive rate, true positive rate, AUC), and the chance
    line; colours as in `pr_figure`."""
    figure = go.Figure()
    colors = colors or model_colors(curves)
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="grey")))
    for name, (fpr, tpr, auc) in curves.items():
        figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{as_label(name)} (AUC {auc:.3f})",
                                    line_color=colors.get(name)))
    figure.update_layout(title=as_label(title), xaxis_title="false positive rate", yaxis_title="true positive rate",
                         xaxis_range=[0, 1], yaxis_range=[0, 1.02], **LAYOUT)
    return figure


def reader_roc_figure(points: pd.DataFrame, average: pd.DataFrame, per_treatment: pd.DataFrame | None = None,
                      aucs: Mapping[tuple, float] | None = None, title: str = "ROC curves per arm") -> go.Figure:
    """Empirical ROC curves of a reader study, one colour per treatment (arm): each reader's
    curve thin (`medattn.reader.mrmc.roc_points`: reader, treatment, fpr, tpr; hover names the
    reader and `aucs` {(reader, treatment): AUC}), the readers' average curve thick
    (`average_roc`), labelled with the treatment's AUC and 95% CI from `per_treatment`
    (treatment, estimate, low, high), and the chance line."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line=dict(dash="dot", color="grey"),
                                hoverinfo="skip"))
    treatments = list(pd.unique(average["treatment"]))
    colors = dict(zip(treatments, ("#d62728", "#1f77b4", *PALETTE[2:])))  # with AI red, without AI blue
    stats = per_treatment.set_index("treatment") if per_treatment is not None else None
    for treatment in treatments:
        color = colors[treatment]
        for i, (reader, curve) in enumerate(points[points["treatment"] == treatment].groupby("reader", sort=True)):
            auc = (aucs or {}).get((reader, treatment))
            label = f"{reader} · {treatment}" + (f" (AUC {auc:.3f})" if auc is not None else "")
            figure.add_trace(go.Scatter(
                x=curve["fpr"], y=curve["tpr"], mode="lines", name=f"{treatment}: each reader", legendgroup=treatment,
                showlegend=i == 0, opacity=0.45, line=dict(color=color, width=1),
                hovertemplate=f"{as_label(label)}<br>FPR %{{x:.2f}}, TPR %{{y:.2f}}<extra></extra>"))
        mean = average[average["treatment"] == treatment]
        name = f"{treatment}: average of {int(mean['n_readers'].iloc[0])} readers"
        if stats is not None and treatment in stats.index:
            row = stats.loc[treatment]
            name += f", AUC {row['estimate']:.3f} (95% CI {row['low']:.3f}–{row['high']:.3f})"
        figure.add_trace(go.Scatter(x=mean["fpr"], y=mean["tpr"], mode="lines", name=name, legendgroup=treatment,
                                    line=dict(color=color, width=3.5),
                                    hovertemplate=f"{treatment}, average<br>FPR %{{x:.2f}}, TPR %{{y:.2f}}<extra></extra>"))
    figure.update_layout(title=as_label(title), xaxis_title="false positive rate (1 − specificity)",
                         yaxis_title="true positive rate (sensitivity)", xaxis_range=[0, 1], yaxis_range=[0, 1.02],
                         **{**LAYOUT, "legend": dict(orientation="v", x=0, y=-0.18, yanchor="top")})
    figure.update_xaxes(constrain="domain", dtick=0.2)
    figure.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain", dtick=0.2)
    return figure


def reader_change_figure(per_reader: pd.DataFrame, per_treatment: pd.DataFrame, metric: str = "AUC",
                         title: str | None = None) -> go.Figure:
    """Each reader's figure of merit per treatment joined by a line (one colour per reader), and
    the readers' mean with its 95% CI per treatment (black). `per_reader`: reader, treatment,
    estimate; `per_treatment`: treatment, estimate, low, high (`obuchowski_rockette` tables)."""
    figure = go.Figure()
    colors = model_colors(per_reader["reader"].astype(str).unique())
    order = list(per_treatment["treatment"])
    for reader, rows in per_reader.groupby("reader", sort=False):
        rows = rows.set_index("treatment").loc[order].reset_index()
        figure.add_trace(go.Scatter(x=rows["treatment"], y=rows["estimate"], mode="lines+markers", name=as_label(reader),
                                    line=dict(color=colors[str(reader)], width=1.5), marker=dict(size=7)))
    estimate = per_treatment["estimate"].to_numpy(dtype=float)
    figure.add_trace(go.Scatter(
        x=per_treatment["treatment"], y=estimate, mode="markers", name="mean (95% CI)",
        marker=dict(color="black", size=12, symbol="diamond"),
        error_y=dict(type="data", symmetric=False, array=per_treatment["high"].to_numpy(dtype=float) - estimate,
                     arrayminus=estimate - per_treatment["low"].to_numpy(dtype=float), color="black", width=8)))
    figure.update_layout(title=title or f"{metric} per reader", yaxis_title=metric, **LAYOUT)
    return figure


def box_size_histogram(boxes: pd.DataFrame, bins: int = 30) -> go.Figure:
    """Distribution of box sizes (side of the equal-area square, √(w·h), in pixels) per label."""
    figure = go.Figure()
    sides = np.sqrt(boxes["w"].to_numpy(dtype=float) * boxes["h"].to_numpy(dtype=float))
    shared = dict(start=0.0, end=float(sides.max(initial=1.0)) * 1.001, size=max(float(sides.max(initial=1.0)) / bins, 1e-9))
    for label in sorted(boxes["label"].unique()):
        figure.add_trace(go.Histogram(x=sides[(boxes["label"] == label).to_numpy()], name=as_label(label), xbins=shared,
                                      opacity=0.7))
    figure.update_layout(barmode="overlay", title="Box size", xaxis_title="√(w·h) in pixels of the stored image",
                         yaxis_title="boxes", **LAYOUT)
    return figure


def count_bars(counts: pd.DataFrame, title: str) -> go.Figure:
    """Grouped bars of a count table: index on the x axis, one bar per column."""
    figure = go.Figure()
    for column in counts.columns:
        figure.add_trace(go.Bar(name=as_label(column), x=as_labels(counts.index), y=counts[column]))
    figure.update_layout(barmode="group", title=as_label(title), yaxis_title="images", **LAYOUT)
    return figure


def cascading_figure(table: pd.DataFrame, metric: str = "ssim", colors: Mapping[str, str] | None = None) -> go.Figure:
    """Cascading randomisation (Adebayo et al. 2018): mean similarity to the trained model's map
    against the number of blocks re-initialised, one line per checkpoint · explainer (colour:
    the checkpoint, as in the other charts), from the rows of `medattn.leaderboard.sanity_table`
    whose check is "cascading"."""
    figure = go.Figure()
    rows = table[table["check"] == "cascading"] if "check" in table else table.iloc[0:0]
    colors = (colors or model_colors(rows["checkpoint"].astype(str))) if len(rows) else {}
    for (checkpoint, explainer), group in rows.groupby(["checkpoint", "explainer"], sort=True):
        group = group.sort_values("step")
        figure.add_trace(go.Scatter(x=group["step"], y=group[metric], mode="lines+markers", name=as_label(f"{checkpoint} · {explainer}"),
                                    line_color=colors.get(str(checkpoint)),
                                    text=group.get("layer"), hovertemplate="step %{x} (%{text}): %{y:.3f}<extra></extra>"))
    figure.update_layout(title=f"Cascading randomisation: {metric} to the trained model's map",
                         xaxis_title="blocks re-initialised (top down)", yaxis_title=metric, **LAYOUT)
    return figure


def agreement_scatter(localization: pd.DataFrame, faithfulness: pd.DataFrame, localization_metric: str,
                      faithfulness_metric: str, title: str, colors: Mapping[str, str] | None = None,
                      labels: tuple[str, str] | None = None) -> go.Figure:
    """One point per checkpoint × method at (localization mean, faithfulness mean) with both
    95% intervals as error bars; one colour per checkpoint; reference maps as open diamonds.
    `labels` title the x and y axes (default the metrics' column names)."""
    keys = ["checkpoint", "method"]
    joined = localization.merge(faithfulness, on=keys, suffixes=("", "_f"))
    colors = colors or model_colors(joined["checkpoint"].astype(str))
    figure = go.Figure()
    for (checkpoint, reference), rows in joined.groupby(["checkpoint", joined["method"].str.startswith("reference:")],
                                                        sort=True):
        x, y = rows[localization_metric].to_numpy(float), rows[faithfulness_metric].to_numpy(float)
        figure.add_trace(go.Scatter(
            x=x, y=y, mode="markers+text", text=rows["method"].str.replace("reference:", "ref: ", regex=False),
            textposition="top center", name=as_label(checkpoint) + (" · reference maps" if reference else ""),
            marker=dict(color=colors.get(str(checkpoint)), size=10, symbol="diamond-open" if reference else "circle"),
            error_x=dict(type="data", symmetric=False, array=rows[f"{localization_metric}_high"].to_numpy(float) - x,
                         arrayminus=x - rows[f"{localization_metric}_low"].to_numpy(float), thickness=1),
            error_y=dict(type="data", symmetric=False, array=rows[f"{faithfulness_metric}_high"].to_numpy(float) - y,
                         arrayminus=y - rows[f"{faithfulness_metric}_low"].to_numpy(float), thickness=1),
            hovertemplate=f"{as_label(checkpoint)} · %{{text}}<br>{localization_metric} %{{x:.3f}}<br>"
                          f"{faithfulness_metric} %{{y:.3f}}<extra></extra>"))
    x_title, y_title = labels or (localization_metric, faithfulness_metric)
    figure.update_layout(title=as_label(title), xaxis_title=x_title, yaxis_title=y_title, **LAYOUT)
    return figure


def perturbation_curves_figure(curves: Mapping[str, Mapping[str, np.ndarray]], title: str,
                               colors: Mapping[str, str] | None = None) -> go.Figure:
    """Deletion (solid) and insertion (dashed) curves, one colour per panel: panel name →
    {"fraction", "deletion", "insertion"} (`pipeline.faithfulness_curves`), the areas in the legend
    with their better direction (deletion ↓, insertion ↑)."""
    figure = go.Figure()
    colors = colors or model_colors(curves)
    for name, curve in curves.items():
        x = np.asarray(curve["fraction"], dtype=float)
        for kind, dash, better in (("deletion", "solid", "↓"), ("insertion", "dash", "↑")):
            y = np.asarray(curve[kind], dtype=float)
            area = float(np.trapezoid(y, x))
            figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{as_label(name)} · {kind} (AUC {area:.3f} {better})",
                                        line=dict(color=colors.get(name), dash=dash), legendgroup=name))
    figure.update_layout(title=f"{as_label(title)} · deletion AUC ↓ lower is better, insertion AUC ↑ higher is better",
                         xaxis_title="fraction of pixels removed (deletion) or inserted (insertion)",
                         yaxis_title="class score", xaxis_range=[0, 1], **LAYOUT)
    return figure
