"""Inter-reader agreement on one question, from a units × readers table of answers.

- Cohen's kappa per reader pair (Cohen 1960; weighted, Cohen 1968, for ordinal answers):
  `sklearn.metrics.cohen_kappa_score` over the units both readers answered. The categories are
  the question's declared ones (a scale's every level min..max, a choice's options), not the
  answers that happen to occur: weights (i − j)² count scale steps, so levels nobody used still
  set the distances (checked against `statsmodels.stats.inter_rater.cohens_kappa`).
- Fleiss' kappa (Fleiss 1971) over the units every reader answered:
  `statsmodels.stats.inter_rater.fleiss_kappa` on `aggregate_raters` counts.
- Krippendorff's alpha (Krippendorff 2011) with missing answers allowed: `krippendorff.alpha`.
A unit is a case, or a case × panel for per-panel ratings (ratings of the same blinded panel).
Tag questions (failure regions) are compared one tag at a time, as chosen / not chosen.
"""

from __future__ import annotations

from itertools import combinations

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

WEIGHTS = (None, "linear", "quadratic")


def rating_table(answers: pd.DataFrame, question: dict) -> pd.DataFrame:
    """Units (rows: case_id, or (case_id, code) for per-panel questions) × readers (columns).

    `answers` has the `AnnotationStore.answers` columns. yes_no → 0/1, scale → integer,
    choice → the option; other types (tags, boxes, text, rank) have no agreement table here.
    NaN where a reader did not answer the unit."""
    kind = question["type"]
    if kind not in ("yes_no", "scale", "choice"):
        raise ValueError(f"question {question['id']!r} of type {kind!r} has no categorical answers to compare")
    chosen = answers[answers["question_id"] == question["id"]]
    rows = []
    for r in chosen.itertuples():
        if question.get("per_panel"):
            rows.extend({"unit": (r.case_id, code), "reader": r.reader, "value": v} for code, v in r.value.items())
        else:
            rows.append({"unit": r.case_id, "reader": r.reader, "value": int(r.value) if kind == "yes_no" else r.value})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot(index="unit", columns="reader", values="value").sort_index()


def categories(question: dict) -> list:
    """The answers a question allows, in order: a scale's levels min..max, yes_no 0/1, a choice's options."""
    kind = question["type"]
    if kind == "scale":
        return list(range(int(question.get("min", 1)), int(question.get("max", 5)) + 1))
    if kind == "yes_no":
        return [0, 1]
    if kind == "choice":
        return list(question["options"])
    raise ValueError(f"question {question['id']!r} of type {kind!r} has no categories")


def cohen_pairs(table: pd.DataFrame, weights: str | None = None, labels: list | None = None) -> pd.DataFrame:
    """Per reader pair: reader_a, reader_b, n (units both answered), kappa (NaN if n < 2 or
    both readers gave one and the same answer throughout: kappa is undefined there).

    `labels`: the categories in order (`categories(question)`); weights are computed on their
    positions, so a scale must list every level. Default: the answers present (only right when
    every category occurs, or for unweighted kappa)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    rows = []
    for a, b in combinations(table.columns, 2):
        both = table[[a, b]].dropna()
        kappa = float("nan")
        present = sorted(set(both[a]) | set(both[b]))
        unknown = set(present) - set(labels) if labels is not None else set()
        if unknown:
            raise ValueError(f"answers {sorted(unknown, key=str)} are not among the categories {labels}")
        if len(both) >= 2 and len(present) >= 2:
            kappa = float(cohen_kappa_score(both[a].tolist(), both[b].tolist(), labels=labels or present,
                                            weights=weights))
        rows.append({"reader_a": a, "reader_b": b, "n": len(both), "kappa": kappa})
    return pd.DataFrame(rows, columns=["reader_a", "reader_b", "n", "kappa"])


def fleiss(table: pd.DataFrame) -> tuple[float, int]:
    """(Fleiss' kappa, number of units) over the units every reader answered; NaN with fewer
    than 2 units or readers, or when one value occurs throughout."""
    complete = table.dropna()
    values = set(complete.to_numpy().ravel().tolist())
    if len(complete) < 2 or table.shape[1] < 2 or len(values) < 2:  # one value throughout: undefined
        return float("nan"), len(complete)
    codes = {v: i for i, v in enumerate(sorted(values))}
    counts, _ = aggregate_raters(complete.map(codes.get).to_numpy(dtype=int))
    return float(fleiss_kappa(counts, method="fleiss")), len(complete)


def alpha(table: pd.DataFrame, level: str = "ordinal") -> float:
    """Krippendorff's alpha at `level` ("nominal": answers as categories; "ordinal",
    "interval", "ratio": answers as numbers); NaN when no unit has two answers or only one
    value occurs."""
    values = table.to_numpy(dtype=object)
    present = [v for v in values.ravel() if not pd.isna(v)]
    if len(set(present)) < 2:
        return float("nan")
    codes = {v: i for i, v in enumerate(sorted(set(present), key=str))}
    convert = codes.get if level == "nominal" else float
    data = np.array([[np.nan if pd.isna(v) else convert(v) for v in row] for row in values], dtype=float)
    if not (np.isfinite(data).sum(axis=1) >= 2).any():
        return float("nan")
    return float(krippendorff.alpha(reliability_data=data.T, level_of_measurement=level))


def agreement(answers: pd.DataFrame, question: dict) -> dict:
    """{"pairs": cohen_pairs DataFrame, "fleiss_kappa", "fleiss_n", "alpha", "alpha_n" (units
    with two answers or more), "weights", "level", "categories"} for one question: scales use Cohen's kappa with quadratic weights over the
    declared levels and ordinal alpha; yes_no and choice unweighted kappa and nominal alpha.
    Fleiss' kappa treats answers as categories (nominal) for every type."""
    table = rating_table(answers, question)
    ordinal = question["type"] == "scale"
    weights, level = ("quadratic", "ordinal") if ordinal else (None, "nominal")
    labels = categories(question)
    kappa, n = fleiss(table)
    paired = int((table.notna().sum(axis=1) >= 2).sum()) if not table.empty else 0
    return {"pairs": cohen_pairs(table, weights, labels), "fleiss_kappa": kappa, "fleiss_n": n,
            "alpha": alpha(table, level), "alpha_n": paired, "weights": weights, "level": level,
            "categories": labels}


def measures(question: dict, result: dict) -> pd.DataFrame:
    """The agreement of one question as rows naming each measure's level of measurement:
    question, measure, level, value, units (mean Cohen's kappa over reader pairs, Fleiss' kappa,
    Krippendorff's alpha)."""
    labels = result["categories"]
    scale = f"{labels[0]}–{labels[-1]}" if question["type"] == "scale" else ", ".join(map(str, labels))
    weights = f"{result['weights']} weights over {scale}" if result["weights"] else f"unweighted ({scale})"
    pairs = result["pairs"]
    return pd.DataFrame([
        {"question": question["id"], "measure": "Cohen's kappa (mean over reader pairs)",
         "level": f"{'ordinal' if result['weights'] else 'nominal'}: {weights}",
         "value": float(pairs["kappa"].mean()) if pairs["kappa"].notna().any() else float("nan"),
         "units": int(pairs["n"].min()) if len(pairs) else 0},
        {"question": question["id"], "measure": "Fleiss' kappa", "level": f"nominal: {scale} as categories",
         "value": result["fleiss_kappa"], "units": result["fleiss_n"]},
        {"question": question["id"], "measure": "Krippendorff's alpha", "level": result["level"],
         "value": result["alpha"], "units": result["alpha_n"]},
    ])


def tag_agreement(answers: pd.DataFrame, question: dict) -> pd.DataFrame:
    """Per tag of a "tags" question: n_chosen, Fleiss' kappa (with fleiss_n units), Krippendorff's
    alpha (nominal), each tag read as chosen (1) or not (0) on every case a reader answered."""
    if question["type"] != "tags":
        raise ValueError(f"question {question['id']!r} is not a tags question")
    chosen = answers[answers["question_id"] == question["id"]]
    rows = []
    for tag in question["options"]:
        picks = pd.DataFrame({"unit": chosen["case_id"], "reader": chosen["reader"],
                              "value": [int(tag in value) for value in chosen["value"]]})
        table = picks.pivot(index="unit", columns="reader", values="value")
        kappa, n = fleiss(table)
        rows.append({"tag": tag, "n_chosen": int(picks["value"].sum()), "fleiss_kappa": kappa, "fleiss_n": n,
                     "alpha": alpha(table, "nominal")})
    return pd.DataFrame(rows, columns=["tag", "n_chosen", "fleiss_kappa", "fleiss_n", "alpha"])
