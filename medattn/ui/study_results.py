"""The Study admin's view of one study: progress per reader, agreement, the kind's analysis with
charts, and every export as a download. Layout over medattn.reader.analysis / agreement /
export; each part fails on its own (`guard`), so a moved dataset costs only the parts that
need the images."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from medattn.reader import analysis
from medattn.reader.agreement import agreement, measures
from medattn.reader.errors import AnalysisNotReadyError
from medattn.reader.export import FORMATS, export_study
from medattn.reader.mrmc import COVARIANCES, average_roc, roc_points
from medattn.reader.mrmc_study import study_mrmc
from medattn.spreadsheet import neutral_csv
from medattn.store.annotations import AnnotationStore
from medattn.ui import loaders
from medattn.ui.errors import guard
from medattn.ui.plain import plain
from medattn.viz import as_labels, interval_bars, reader_change_figure, reader_roc_figure

EXPORTS = {  # format → (button label, file suffix, MIME type)
    "csv": ("Answers CSV (long)", "csv", "text/csv"),
    "json": ("Study backup JSON (with image ids)", "json", "application/json"),
    "key": ("Case → image key CSV", "key.csv", "text/csv"),
    "coco": ("Reader boxes COCO JSON", "coco.json", "application/json"),
    "boxes": ("Reader boxes CSV (reader, arm, finding)", "boxes.csv", "text/csv"),
    "mrmc": ("MRMC CSV (MRMCaov, RJafroc)", "mrmc.csv", "text/csv"),
    "imrmc": ("iMRMC input", "imrmc", "text/plain"),
}
WITH_KEY = ("json", "boxes")  # the admin's downloads carry image ids: a backup, a ground truth
AGREEMENT_TYPES = ("yes_no", "scale", "choice")
ARM_NAMES = {"with_ai": "with AI", "without_ai": "without AI"}
FACTOR_CHOICES = {  # label → (readers, cases, what the result generalises to)
    "random readers and cases": ("random", "random", "other readers and images like these"),
    "fixed readers (these readers), random cases": ("fixed", "random", "other images like these, for these readers"),
    "random readers, fixed cases (these cases)": ("random", "fixed", "other readers like these, for these images"),
}
COVARIANCE_NAMES = {"jackknife": "jackknife", "delong": "DeLong", "unbiased": "unbiased (Gallas)"}


def formats_for(spec: dict) -> list[str]:
    """The exports that make sense for a study: box exports with a boxes question, MRMC for
    detection and for a rating study with 2+ maps (maps as modalities)."""
    has_boxes = any(q["type"] == "boxes" for q in spec["questions"])
    mrmc = spec["kind"] == "detection" or (spec["kind"] == "heatmap_rating" and len(spec.get("panels") or []) >= 2)
    return [f for f in EXPORTS if f in FORMATS and (f not in ("coco", "boxes") or has_boxes)
            and (f not in ("mrmc", "imrmc") or mrmc)]


def export_bytes(store: AnnotationStore, study_id: str, fmt: str) -> bytes:
    """One export as bytes, through the library's atomic file writer."""
    with tempfile.TemporaryDirectory() as folder:
        return export_study(store, study_id, fmt, Path(folder) / f"export.{fmt}", with_key=fmt in WITH_KEY).read_bytes()


def unavailable_section(store: AnnotationStore, study_id: str) -> None:
    """The cases readers are shown as unavailable (their image cannot be read), counted and
    listed with the cause; a button decodes every image too (a corrupt file shows only so)."""
    decode = st.session_state.get(f"sa_decode_{study_id}", False)
    problems = store.case_problems(study_id, decode=decode)
    total = len(store.case_key(study_id))
    if problems.empty:
        st.caption(f"Every case's image is in the dataset{' and decodes' if decode else ''}.")
    elif len(problems) == total and not Path(store.study(study_id)["dataset"]).is_dir():
        return  # the page says the folder is gone, with the way to repoint it
    else:
        st.warning(f"{len(problems)} of {total} cases are unavailable: readers see them as unavailable and skip "
                   "them; their other answers are kept. Restore the images, or point the study at a dataset holding "
                   "them.")
        st.dataframe(problems, hide_index=True)
    if not decode and st.button("Check that every image decodes (reads each one)", key=f"sa_decode_button_{study_id}"):
        st.session_state[f"sa_decode_{study_id}"] = True
        st.rerun()


def progress_section(store: AnnotationStore, study_id: str) -> None:
    unavailable_section(store, study_id)
    table = store.progress(study_id)
    if table.empty:
        st.info("No readers yet: add them above.")
        return
    left, right = st.columns([1, 1])
    left.dataframe(table, hide_index=True, column_config={
        "fraction": st.column_config.ProgressColumn("done", min_value=0.0, max_value=1.0, format="percent")})
    # Readers on the y axis: their names read whole, however long, instead of slanting off the chart.
    figure = px.bar(table.assign(reader=as_labels(table["reader"])), y="reader", x="n_done", orientation="h",
                    range_x=[0, max(1, int(table["n_cases"].max()))], title="Cases done per reader",
                    labels={"n_done": "cases done", "reader": ""})
    figure.update_yaxes(automargin=True, autorange="reversed")
    figure.update_layout(height=120 + 28 * len(table), margin=dict(l=10, r=10, t=40, b=10))
    right.plotly_chart(figure, key=f"sa_progress_{study_id}")


def agreement_section(spec: dict, answers: pd.DataFrame) -> None:
    rows, pairs = [], []
    for question in spec["questions"]:
        if question["type"] not in AGREEMENT_TYPES:
            continue
        result = agreement(answers, question)
        rows.append(measures(question, result))
        weights = f"{result['weights']} weights" if result["weights"] else "unweighted"
        pairs.append(result["pairs"].assign(question=question["id"], weights=weights))
    if not rows:
        st.caption("No yes/no, scale or choice question to compare readers on.")
        return
    summary = pd.concat(rows, ignore_index=True)
    st.caption("Agreement per question; 'level' is each measure's level of measurement (a scale's weights count "
               "steps over its declared levels, used or not)")
    st.dataframe(summary.assign(value=_defined(summary["value"])), hide_index=True)
    table = pd.concat(pairs, ignore_index=True)
    st.caption("Cohen's kappa per reader pair")
    st.dataframe(table[["question", "reader_a", "reader_b", "n", "kappa", "weights"]].assign(kappa=_defined(table["kappa"])),
                 hide_index=True)
    if summary["value"].isna().any() or table["kappa"].isna().any():
        st.caption("—: not defined yet (fewer than two units answered by the readers compared, or every answer "
                   "the same).")


def _defined(values: pd.Series) -> list[str]:
    """Agreement values to three decimals, "—" where undefined (explained under the table)."""
    return ["—" if pd.isna(v) else f"{float(v):.3f}" for v in values]


def _named(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(checkpoint=frame["checkpoint"].map(analysis.checkpoint_name))


def rating_section(store: AnnotationStore, study_id: str, spec: dict) -> None:
    question = next((q["id"] for q in spec["questions"] if q["type"] == "scale" and q.get("per_panel")), None)
    if question is None:
        return
    ratings = analysis.panel_ratings(store, study_id, question)
    if ratings.empty:
        st.caption("No map ratings yet.")
        return
    means = _named(analysis.mean_ratings(ratings))
    st.dataframe(means, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.2f") for c in ("mean", "low", "high")})
    chart = means.rename(columns={"mean": "rating", "low": "rating_low", "high": "rating_high"})
    figure = interval_bars(chart, "rating", group="method", color="checkpoint")
    figure.update_layout(title="Mean map rating (1-5) with bootstrap 95% CI over cases", height=340)
    st.plotly_chart(figure, key=f"sa_ratings_{study_id}")
    with guard("Ratings vs the maps' scores"):
        scores = loaders.run_for(analysis.study_dataset(store, study_id)).scores.read()
        if not scores.empty:
            table = analysis.rating_score_correlation(ratings, scores, spec.get("target_class"))
            st.caption("Spearman correlation of ratings with the map's AUPRC and pointing-game hit (precompute scores)")
            st.dataframe(table, hide_index=True)


def tag_section(store: AnnotationStore, study_id: str) -> None:
    counts = analysis.tag_counts(store, study_id)
    if counts.empty:
        st.caption("No region tags yet.")
        return
    counts = _named(counts)
    chart = counts.assign(map=as_labels(counts["checkpoint"] + " · " + counts["method"]), tag=as_labels(counts["tag"]))
    figure = px.bar(chart.groupby(["tag", "map"], as_index=False)["count"].sum(), x="tag", y="count", color="map",
                    barmode="group", title="Where the maps' evidence lies: region tags per model × method")
    figure.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.35))
    st.plotly_chart(figure, key=f"sa_tags_{study_id}")
    st.dataframe(counts, hide_index=True)


def box_section(store: AnnotationStore, study_id: str) -> None:
    accuracy = analysis.box_accuracy(store, study_id)
    if accuracy.empty:
        st.caption("No boxes yet.")
        return
    summary = accuracy.groupby("reader").agg(cases=("case_id", "count"), boxes=("n_boxes", "sum"),
                                             mean_iou=("iou", "mean"), hit_rate=("hit", lambda h: h.dropna().mean()))
    st.caption("Reader boxes vs the dataset's boxes (IoU of the unions; hit: a box centre inside a truth box)")
    st.dataframe(summary, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("mean_iou", "hit_rate")})
    truth = analysis.reader_ground_truth(store, study_id)
    arm = " from the without-AI reading" if store.study(study_id).get("arms") else ""
    st.download_button(f"Reader boxes as boxes.csv{arm} (ground truth for the Leaderboard)", neutral_csv(truth),
                       f"{study_id}_reader_boxes.csv", "text/csv", key=f"sa_truth_{study_id}")


def _arm(name) -> str:
    return ARM_NAMES.get(name, str(name))


def mrmc_questions(spec: dict) -> list[dict]:
    """The questions an MRMC analysis can rate by: a detection study's scale and yes/no questions
    (not per panel) when it has arms; a rating study's per-panel scales when it has 2+ maps."""
    if spec["kind"] == "detection" and spec.get("arms"):  # scales (AUC, the headline) first
        return sorted((q for q in spec["questions"] if q["type"] in ("scale", "yes_no") and not q.get("per_panel")),
                      key=lambda q: q["type"] != "scale")
    if spec["kind"] == "heatmap_rating" and len(spec.get("panels") or []) >= 2:
        return [q for q in spec["questions"] if q["type"] == "scale" and q.get("per_panel")]
    return []


def mrmc_section(store: AnnotationStore, study_id: str, spec: dict) -> None:
    """Obuchowski–Rockette MRMC analysis of the arms (or maps) with ROC curves per reader × arm."""
    questions = mrmc_questions(spec)
    if not questions:
        return
    st.markdown("**Reader performance: MRMC analysis** (Obuchowski–Rockette, Hillis degrees of freedom)")
    a, b, c = st.columns(3)
    labels = {q["id"]: f"{q['id']} ({'scale → AUC' if q['type'] == 'scale' else 'yes/no → sensitivity, specificity'})"
              for q in questions}
    question = a.selectbox("Rating", list(labels), format_func=labels.get, key=f"sa_mrmc_q_{study_id}")
    chosen = next(q for q in questions if q["id"] == question)
    cov = b.selectbox("Covariance", COVARIANCES, format_func=COVARIANCE_NAMES.get, key=f"sa_mrmc_cov_{study_id}",
                      disabled=chosen["type"] == "yes_no", help="Of the AUCs over cases; binary answers use the jackknife")
    factors = c.selectbox("Generalise to", list(FACTOR_CHOICES), key=f"sa_mrmc_factors_{study_id}",
                          help="Random readers and cases: to other readers and cases like these (the standard).")
    readers, cases, generalise = FACTOR_CHOICES[factors]
    try:
        result = study_mrmc(store, study_id, question, cov=cov, readers=readers, cases=cases)
    except AnalysisNotReadyError as error:  # what is missing and what to do, in the coordinator's words
        st.info(plain(error))
        return
    used = result["table"]
    images = used.groupby("case")["truth"].first()
    where = "in both arms" if set(used["treatment"]) <= set(ARM_NAMES) else "under every map"
    note = (f"{used['reader'].nunique()} readers × {len(images)} images ({int(images.sum())} with the finding, "
            f"{int((images == 0).sum())} without), every image read {where} by every reader")
    if result["readers_dropped"] or result["cases_dropped"]:
        note += (f"; left out until complete: {result['cases_dropped']} image(s)"
                 + (f", reader(s) {', '.join(map(str, result['readers_dropped']))}" if result["readers_dropped"] else ""))
    st.caption(plain(note))
    results = {m: result[m] for m in ("sensitivity", "specificity")} if chosen["type"] == "yes_no" else {"AUC": result}
    for metric, one in results.items():
        mrmc_figures(one, metric, generalise)
    if chosen["type"] == "scale":
        left, right = st.columns([3, 2])
        points = roc_points(used).assign(treatment=lambda f: f["treatment"].map(_arm))
        aucs = {(r.reader, _arm(r.treatment)): r.estimate for r in result["per_reader"].itertuples()}
        per_treatment = result["per_treatment"].assign(treatment=lambda f: f["treatment"].map(_arm))
        figure = reader_roc_figure(points, average_roc(points), per_treatment, aucs)
        figure.update_layout(height=640)
        left.plotly_chart(figure, key=f"sa_roc_{study_id}")
        change = reader_change_figure(result["per_reader"].assign(treatment=lambda f: f["treatment"].map(_arm)),
                                      per_treatment.iloc[::-1], title="AUC per reader, and the readers' mean (95% CI)")
        change.update_layout(height=640, xaxis_title="arm")
        right.plotly_chart(change, key=f"sa_reader_auc_{study_id}")


def verdict(one: dict, metric: str, generalise: str) -> str:
    """The comparison in one sentence: the first two treatments' difference with its CI, the
    test and what a p below 0.05 means here (`one`: an `obuchowski_rockette` result)."""
    diff = one["differences"].iloc[0]
    a, b = _arm(diff["treatment_a"]), _arm(diff["treatment_b"])
    arms = {diff["treatment_a"], diff["treatment_b"]} <= set(ARM_NAMES)
    change = "higher" if diff["estimate"] >= 0 else "lower"
    subject = (f"With AI, the readers' mean {metric} was {abs(diff['estimate']):.3f} {change}" if arms
               else f"The readers' mean {metric} was {abs(diff['estimate']):.3f} {change} with {a} than with {b}")
    test = (f"F = {one['f']:.2f} on {one['df1']} and {one['df2']:.1f} df" if np.isfinite(one["df2"])
            else f"χ² = {one['f'] * one['df1']:.2f} on {one['df1']} df")
    significant = "a significant difference" if one["p"] < 0.05 else "not significant"
    return (f"{subject} (95% CI {diff['low']:+.3f} to {diff['high']:+.3f}; {test}, p = {one['p']:.3g}): "
            f"{significant} at the 5% level, generalising to {generalise}.")


def mrmc_figures(one: dict, metric: str, generalise: str) -> None:
    """One figure of merit's comparison: headline numbers with their CIs, the sentence, the
    table of estimates and the test with its variance components."""
    treatments = one["per_treatment"].assign(treatment=lambda f: f["treatment"].map(_arm))
    differences = one["differences"]
    diff = differences.iloc[0]
    arms = {diff["treatment_a"], diff["treatment_b"]} <= set(ARM_NAMES)
    columns = st.columns(len(treatments) + 2)
    quiet = dict(delta_color="off", delta_arrow="off")
    for column, row in zip(columns, treatments.itertuples()):
        column.metric(f"{metric} {row.treatment}", f"{row.estimate:.3f}", f"95% CI {row.low:.3f} to {row.high:.3f}",
                      **quiet)
    columns[-2].metric(f"{metric} change with AI" if arms else f"{metric} difference",
                       f"{diff['estimate']:+.3f}", f"95% CI {diff['low']:+.3f} to {diff['high']:+.3f}", **quiet,
                       help=f"{_arm(diff['treatment_a'])} − {_arm(diff['treatment_b'])}")
    columns[-1].metric(f"p ({metric})", f"{one['p']:.4f}", "F test, Hillis df" if np.isfinite(one["df2"]) else "χ² test",
                       **quiet)
    st.markdown(plain(verdict(one, metric, generalise)))
    table = pd.DataFrame({
        "": [f"{metric} {t}" for t in treatments["treatment"]]
            + [f"difference: {_arm(d.treatment_a)} − {_arm(d.treatment_b)}" for d in differences.itertuples()],
        "estimate": [f"{e:.3f}" for e in treatments["estimate"]] + [f"{e:+.3f}" for e in differences["estimate"]],
        "95% CI": [f"{r.low:.3f} to {r.high:.3f}" for r in treatments.itertuples()]
                  + [f"{d.low:+.3f} to {d.high:+.3f}" for d in differences.itertuples()],
        "SE": list(treatments["se"]) + list(differences["se"]),
        "df": list(treatments["df"]) + list(differences["df"]),
        "p": [""] * len(treatments) + [f"{p:.4f}" for p in differences["p"]]})  # a p belongs to a comparison
    st.dataframe(table, hide_index=True, column_config={
        "SE": st.column_config.NumberColumn(format="%.4f"),
        "df": st.column_config.NumberColumn(format="%.1f", help="degrees of freedom (Hillis)")})
    with st.expander(f"{metric}: test and variance components (Obuchowski–Rockette)"):
        st.dataframe(pd.DataFrame([{
            "F" if np.isfinite(one["df2"]) else "χ²/df": one["f"], "df1": one["df1"], "df2": one["df2"], "p": one["p"],
            "MS(T)": one["ms_t"], "MS(T:R)": one["ms_tr"], "Var(error)": one["var_error"], "Cov1": one["cov1"],
            "Cov2": one["cov2"], "Cov3": one["cov3"], "σ²(R)": one["var_reader"], "σ²(T:R)": one["var_treatment_reader"],
            "covariance": one["cov_method"], "readers": one["readers"], "cases": one["cases"]}]), hide_index=True)


def analysis_section(store: AnnotationStore, study_id: str, spec: dict) -> None:
    answers = store.answers(study_id)
    if answers.empty:
        st.info("No answers yet.")
        return
    with guard("Agreement"):
        agreement_section(spec, answers)
    with guard("MRMC analysis"):
        mrmc_section(store, study_id, spec)
    if spec["kind"] == "heatmap_rating":
        with guard("Map ratings"):
            rating_section(store, study_id, spec)
    if spec["kind"] == "failure_review":
        with guard("Region tags"):
            tag_section(store, study_id)
    if any(q["type"] == "boxes" for q in spec["questions"]):
        with guard("Reader boxes"):
            box_section(store, study_id)


def export_section(store: AnnotationStore, study_id: str, spec: dict) -> None:
    # One wrapping row: each button as wide as its whole label, the next one on a new line when
    # the page is narrow (fixed columns cut long labels: "Study backup JSON (with im…").
    row = st.container(horizontal=True, wrap=True)
    for fmt in formats_for(spec):
        label, suffix, mime = EXPORTS[fmt]
        with row, guard(f"{label} export"):
            row.download_button(label, export_bytes(store, study_id, fmt), f"{study_id}.{suffix}", mime,
                                key=f"sa_export_{fmt}_{study_id}", width="content")
