"""The Study admin's "New study" form: a study spec from a split, a failure-case selection or an
image list of the sidebar's dataset, with the kind's preset questions and the panels (model ×
method) whose maps readers see. `create_study` in the store checks the spec."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import streamlit as st

from medattn.failures import CATEGORIES, failure_cases, sort_failures
from medattn.reader.presets import FAILURE_REGIONS, default_questions, failure_review_cases
from medattn.reader.validity import MEASURED_KINDS, balance_problem, image_truth
from medattn.store.annotations import KINDS
from medattn.ui import loaders
from medattn.ui.methods import unavailable
from medattn.ui.plain import plain
from medattn.ui.sidebar import Selection

KIND_NAMES = {"failure_review": "Failure review", "heatmap_rating": "Heatmap rating", "detection": "Detection reading"}
SOURCES = ("split", "failure cases", "image list")
SPLITS = ("test", "val", "train")


def split_cases(selection: Selection, split: str, class_name: str | None, positives: bool, count: int,
                seed: int) -> list[str]:
    """Up to `count` image ids of `split` (only images labelled with `class_name`, or with any
    finding, when `positives`), drawn with a seeded generator."""
    data = selection.dataset
    frame = data.split(split)
    if positives:
        columns = [class_name] if class_name else list(data.classes)
        frame = frame[frame[columns].to_numpy().astype(bool).any(axis=1)]
    ids = list(frame.index)
    if len(ids) > count:
        rng = np.random.default_rng(seed)
        ids = [ids[i] for i in sorted(rng.choice(len(ids), count, replace=False))]
    return ids


def listed_cases(selection: Selection, text: str) -> list[str]:
    """Image ids typed or pasted (commas, spaces or new lines); ValueError naming unknown ids."""
    ids = list(dict.fromkeys(t for t in re.split(r"[\s,;]+", text) if t))
    unknown = [i for i in ids if i not in selection.dataset.images.index]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise ValueError(f"not in dataset {selection.dataset.name}: {shown}")
    return ids


def _panel_label(name: str, method: str) -> str:
    return f"{name} · {method}"


def new_study_form(selection: Selection, create) -> None:
    """Draw the form; on "Create study", build the spec and pass it to `create(spec)`."""
    data = selection.dataset
    if data is None:
        st.info("Choose a dataset in the sidebar: studies are made from its images.")
        return
    a, b = st.columns(2)
    name = a.text_input("Study name", key="sa_new_name", placeholder="e.g. Nodule maps, round 1")
    kind = b.selectbox("Kind", KINDS, format_func=KIND_NAMES.get, key="sa_new_kind")
    c, d, e = st.columns(3)
    source = c.radio("Cases from", SOURCES, key="sa_new_source", horizontal=True)
    target = d.selectbox("Finding (target class)", ["any finding", *data.classes], key="sa_new_target",
                         help="The class maps explain and readers look for; 'any finding': the image's first labelled class.")
    seed = int(e.number_input("Seed", 0, 2**31 - 1, 0, key="sa_new_seed", help="Case order, blinding order, arms"))
    target_class = None if target == "any finding" else target

    pairs = {_panel_label(m.name, method): (m, method) for m in selection.models for method in selection.methods
             if unavailable(m, method) is None}
    spec_extra: dict = {}
    if source == "split":
        f, g, h = st.columns(3)
        split = f.selectbox("Split", SPLITS, key="sa_new_split")
        # keyed by kind: switching Kind to detection must not carry a rating study's "positives only" over
        positives = g.toggle("Only images with the finding", value=kind != "detection", key=f"sa_new_positives_{kind}",
                             help="A detection study needs images without the finding too (specificity, AUC, MRMC).")
        count = int(h.number_input("Cases", 1, 10_000, 20, key="sa_new_count"))
        cases = split_cases(selection, split, target_class, positives, count, seed)
    elif source == "failure cases":
        scores = loaders.scores(data, selection.models)
        if scores.empty:
            st.info("No scores for the sidebar's checkpoints on this dataset yet: run precompute on the Leaderboard "
                    "or Failure cases page first.")
            return
        f, g, h = st.columns(3)
        checkpoint = f.selectbox("Model", sorted(scores["checkpoint"].unique()), key="sa_new_fail_model")
        scored = sorted(m for m in scores["method"].unique() if not str(m).startswith("sanity:"))
        method = g.selectbox("Method", scored, key="sa_new_fail_method")
        categories = h.multiselect("Categories", list(CATEGORIES), default=list(CATEGORIES), format_func=CATEGORIES.get,
                                   key="sa_new_fail_categories")
        count = int(st.number_input("At most this many cases (most confident first)", 1, 10_000, 20,
                                    key="sa_new_fail_count"))
        failures = failure_cases(scores, method, checkpoint=checkpoint, target_class=target_class)
        failures = sort_failures(failures, "confidence").head(count)  # the Failure cases page's order
        loaded = selection.model(checkpoint)
        failures = failures.assign(checkpoint=str(loaded.path) if loaded else checkpoint)
        chosen = failure_review_cases(failures, tuple(categories))
        cases = chosen["cases"]
        if kind == "failure_review":
            spec_extra["case_meta"] = chosen["case_meta"]
        else:
            cases = list(dict.fromkeys(cases))
    else:
        text = st.text_area("Image ids", key="sa_new_ids", placeholder="one per line, or separated by commas")
        try:
            cases = listed_cases(selection, text)
        except ValueError as error:
            st.error(plain(error))
            return

    panels: list[tuple] = []
    if not (kind == "failure_review" and source == "failure cases"):
        help_text = {"heatmap_rating": "Readers rate each map under a random code.",
                     "detection": "Maps shown in the with-AI arm (half the cases per reader, counterbalanced). "
                                  "None: no AI arm.",
                     "failure_review": "The map whose evidence readers locate; one case per image × map."}[kind]
        chosen_panels = st.multiselect("Maps (model · method from the sidebar)", list(pairs), key="sa_new_panels",
                                       help=help_text)
        panels = [pairs[p] for p in chosen_panels]
    regions = FAILURE_REGIONS
    if kind == "failure_review":
        typed = st.text_area("Anatomical regions readers tag (one per line)", "\n".join(FAILURE_REGIONS),
                             key="sa_new_regions", height=150)
        regions = [r.strip() for r in typed.splitlines() if r.strip()]
    balance = ""
    if cases and kind in MEASURED_KINDS:
        truth = image_truth(data, list(dict.fromkeys(cases)), target_class)
        balance = f": {int(truth.sum())} with {plain(target_class or 'a finding')}, {int((truth == 0).sum())} without"
        problem = balance_problem(int(truth.sum()), int((truth == 0).sum()), target_class)
        if problem and kind == "detection":
            st.error(f"A detection study needs images with and without the finding: {plain(problem)}.")
        elif problem:
            st.warning(f"No AUC or MRMC analysis for these cases: {plain(problem)}. The ratings still stand.")
    st.caption(f"{len(cases)} image(s) selected{balance}.")
    washout = 0.0
    if kind == "detection" and panels:
        washout = float(st.number_input(
            "Washout between the without-AI and with-AI sessions (days)", 0, 365, 28, key="sa_new_washout",
            help="A reader's second session (the same images in the other arm) opens this many days after their "
                 "first ends, so that the earlier reading is forgotten; 4 weeks is common. 0: no wait."))
    if not st.button("Create study", type="primary", key="sa_new_create"):
        return
    problems = []
    if not name.strip():
        problems.append("give the study a name")
    if not cases:
        problems.append("no cases: change the selection")
    if kind == "heatmap_rating" and not panels:
        problems.append("choose at least one map to rate")
    if kind == "failure_review" and source != "failure cases" and not panels:
        problems.append("choose the map(s) readers review")
    if problems:
        st.error("Cannot create the study: " + "; ".join(problems) + ".")
        return
    spec = {"name": name.strip(), "kind": kind, "dataset": str(data.root), "cases": cases, "seed": seed,
            "questions": default_questions(kind, regions if kind == "failure_review" else None, target_class,
                                           list(data.classes)), **spec_extra}
    if target_class:
        spec["target_class"] = target_class
    if kind == "failure_review" and source != "failure cases":
        spec["cases"] = [c for c in cases for _ in panels]
        spec["case_meta"] = [{"checkpoint": str(m.path), "method": method,
                              **({"target_class": target_class} if target_class else {})}
                             for _ in cases for m, method in panels]
    elif panels:
        spec["panels"] = [{"checkpoint": str(m.path), "method": method} for m, method in panels]
    if washout:
        spec["washout_days"] = washout
    create(spec)


def study_table(studies: pd.DataFrame) -> pd.DataFrame:
    """The study list as shown: kind names instead of keys."""
    return studies.assign(kind=studies["kind"].map(KIND_NAMES).fillna(studies["kind"]))
