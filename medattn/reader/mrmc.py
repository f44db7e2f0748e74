"""Multi-reader multi-case (MRMC) analysis: the Obuchowski–Rockette model with Hillis degrees of
freedom, the standard analysis of a reader study (with-AI vs without-AI, or maps as modalities).

Definitions (checked against MRMCaov 0.3.0, Smith & Hillis, whose published VanDyke results the
tests reproduce; ../shared/data/mrmc/README.md):

- Figure of merit per reader × treatment: the empirical (Mann–Whitney / trapezoidal) AUC, ties
  count 1/2; or sensitivity (mean rating on positive cases) / specificity (1 − mean rating on
  negative cases) of a binary (0/1) rating.
- Covariance of the AUCs over cases (a matrix over the reader × treatment AUCs):
  "jackknife" (Efron 1982; case-deletion pseudo-values, (n − 1)/n Σ products),
  "delong" (DeLong, DeLong & Clarke-Pearson 1988, structural components),
  "unbiased" (Gallas, Pennello & Meyers 2007, the U-statistic estimator). Var(error) is the
  mean of the diagonal; Cov1 the mean covariance of the same reader across treatments, Cov2 of
  different readers in the same treatment, Cov3 of different readers and treatments.
- Mean squares of the AUC table: MS(T) = r/(t−1) Σ_i (θ_i· − θ··)², MS(R) = t/(r−1) Σ_j (θ_·j −
  θ··)², MS(T:R) = Σ_ij (θ_ij − θ_i· − θ_·j + θ··)² / ((t−1)(r−1)).
- Random readers and cases (Obuchowski & Rockette 1995; Hillis 2007, Stat Med 26:596–619):
  F = MS(T) / (MS(T:R) + r·max(Cov2 − Cov3, 0)) on (t − 1, df2) with Hillis
  df2 = (MS(T:R) + r·max(Cov2 − Cov3, 0))² / (MS(T:R)² / ((t−1)(r−1))); a difference of two
  treatments has SE √(2/r · denominator) and a t interval on df2. One treatment's AUC has
  SE √(MS(R)_i / r + max(Cov2_i, 0)) on df (MS(R)_i + r·max(Cov2_i, 0))² / (MS(R)_i² / (r−1)).
- Fixed readers, random cases: χ² = (t−1) MS(T) / (Var − Cov1 + (r−1)(Cov2 − Cov3)) on t − 1
  df (reported as f = χ²/(t−1) with df2 = ∞), normal intervals; per reader, the difference has
  SE √(2 (Var_j − Cov1_j)).
- Random readers, fixed cases: F = MS(T) / MS(T:R) on (t−1, (t−1)(r−1)) (a two-way ANOVA of
  the AUCs); one treatment's SE √(MS(R)_i / r) on r − 1 df.
Intervals of single AUCs (not of differences) are clipped to [0, 1], as MRMCaov does.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_curve

COVARIANCES = ("jackknife", "delong", "unbiased")
FACTORS = ("random", "fixed")
METRICS = ("auc", "sensitivity", "specificity")
COLUMNS = ("reader", "treatment", "case", "truth", "rating")


class NoVarianceError(ValueError):
    """The test has no variance to compare the treatments' difference with (its denominator is 0)."""


def empirical_auc(truth: Sequence[int], rating: Sequence[float]) -> float:
    """Mann–Whitney AUC of `rating` for `truth` (0/1), ties counting 1/2; NaN without both classes."""
    truth, rating = np.asarray(truth).astype(bool), np.asarray(rating, dtype=float)
    if truth.all() or not truth.any():
        return float("nan")
    return float(_psi(rating[truth], rating[~truth]).mean())


def _psi(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Kernel ψ(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise, as a (positives, negatives) matrix."""
    return (np.sign(positive[:, None] - negative[None, :]) + 1) / 2


def _sorted(values: list) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types: by their text
        return sorted(values, key=str)


def _table(frame: pd.DataFrame, treatments: Sequence | None) -> tuple[np.ndarray, np.ndarray, list, list, list]:
    """(ratings (t, r, n), truth (n,), treatments, readers, cases) of a fully crossed design."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"MRMC table lacks column(s) {missing}; it needs {list(COLUMNS)}")
    if frame.empty:
        raise ValueError("MRMC table is empty")
    rating = pd.to_numeric(frame["rating"], errors="coerce")
    if rating.isna().any() or not np.isfinite(rating.to_numpy(dtype=float)).all():
        row = frame.index[rating.isna() | ~np.isfinite(rating.fillna(0).to_numpy(dtype=float))][0]
        raise ValueError(f"MRMC table row {row}: rating {frame.at[row, 'rating']!r} is not a finite number")
    truth = frame["truth"]
    if not truth.isin([0, 1]).all():
        row = frame.index[~truth.isin([0, 1])][0]
        raise ValueError(f"MRMC table row {row}: truth {truth[row]} is not 0 or 1")
    per_case = frame.groupby("case")["truth"].nunique()
    if (per_case > 1).any():
        raise ValueError(f"MRMC table: case {per_case.index[per_case > 1][0]!r} has truth 0 in some rows and 1 in others")
    duplicated = frame.duplicated(["reader", "treatment", "case"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(f"MRMC table: reader {row['reader']!r} rated case {row['case']!r} twice under treatment "
                         f"{row['treatment']!r}")
    present = pd.unique(frame["treatment"]).tolist()
    order = list(treatments) if treatments is not None else _sorted(present)
    if set(order) != set(present) or len(order) != len(present):
        raise ValueError(f"treatments {order} do not match those in the table {sorted(present, key=str)}")
    readers, cases = _sorted(pd.unique(frame["reader"]).tolist()), _sorted(pd.unique(frame["case"]).tolist())
    index = pd.MultiIndex.from_product([order, readers, cases], names=["treatment", "reader", "case"])
    cube = frame.assign(rating=rating.astype(float)).set_index(["treatment", "reader", "case"])["rating"].reindex(index)
    if cube.isna().any():
        gap = cube.index[cube.isna()][0]
        raise ValueError(f"MRMC needs a fully crossed design: {int(cube.isna().sum())} reader × treatment × case "
                         f"rating(s) are missing, e.g. reader {gap[1]!r}, treatment {gap[0]!r}, case {gap[2]!r} "
                         "(restrict the table with fully_crossed())")
    truth = frame.groupby("case")["truth"].first().reindex(cases).to_numpy(dtype=int)
    return cube.to_numpy().reshape(len(order), len(readers), len(cases)), truth, order, readers, cases


def fully_crossed(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The largest simple fully crossed part of an MRMC table, for a study still in progress:
    the readers who rated under every treatment, and the cases every one of them rated under
    every treatment. Returns (table, {"readers_dropped", "cases_dropped"})."""
    treatments = frame["treatment"].nunique()
    counts = frame.groupby("reader")["treatment"].nunique()
    readers = counts.index[counts == treatments]
    kept = frame[frame["reader"].isin(readers)]
    per_case = kept[["case", "reader", "treatment"]].drop_duplicates().groupby("case").size()  # (empty: no reader)
    cases = per_case.index[per_case == len(readers) * treatments]
    out = kept[kept["case"].isin(cases)].reset_index(drop=True)
    return out, {"readers_dropped": sorted(set(frame["reader"]) - set(readers), key=str),
                 "cases_dropped": int(frame["case"].nunique() - len(cases))}


def _estimates(ratings: np.ndarray, truth: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(figure of merit per group (G,), jackknife values (n_used, G)) for ratings (G, n)."""
    positive = truth.astype(bool)
    if metric == "auc":
        sums = np.stack([_psi(g[positive], g[~positive]) for g in ratings])  # (G, n1, n0)
        n1, n0 = sums.shape[1:]
        total = sums.sum(axis=(1, 2))
        theta = total / (n1 * n0)
        jack = np.empty((len(truth), len(ratings)))
        jack[positive] = ((total[:, None] - sums.sum(axis=2)) / ((n1 - 1) * n0)).T
        jack[~positive] = ((total[:, None] - sums.sum(axis=1)) / (n1 * (n0 - 1))).T
        return theta, jack
    used = ratings[:, positive] if metric == "sensitivity" else 1.0 - ratings[:, ~positive]
    n = used.shape[1]
    theta = used.mean(axis=1)
    jack = ((used.sum(axis=1)[:, None] - used) / (n - 1)).T
    return theta, jack


def _covariance(ratings: np.ndarray, truth: np.ndarray, method: str, jack: np.ndarray) -> np.ndarray:
    """Covariance matrix (G, G) of the groups' AUCs over cases, by `method`."""
    if method == "jackknife":
        n = len(jack)
        centred = jack - jack.mean(axis=0)
        return (n - 1) / n * centred.T @ centred
    positive = truth.astype(bool)
    kernels = np.stack([_psi(g[positive], g[~positive]) for g in ratings])  # (G, n1, n0)
    groups, n1, n0 = kernels.shape
    if method == "delong":
        theta = kernels.mean(axis=(1, 2))
        v10 = kernels.mean(axis=2).T - theta  # (n1, G) structural components of positives
        v01 = kernels.mean(axis=1).T - theta  # (n0, G) of negatives
        return v10.T @ v10 / (n1 - 1) / n1 + v01.T @ v01 / (n0 - 1) / n0
    # unbiased, balanced design (Gallas et al. 2007; MRMCaov's unbiased_balanced)
    scores = kernels.reshape(groups, -1).T  # (n1 n0, G)
    rows, cols = kernels.sum(axis=2).T, kernels.sum(axis=1).T  # (n1, G), (n0, G)
    totals = scores.sum(axis=0)[None, :]
    delta = (n0 * n1) ** 2 / (n0 * (n0 - 1) * n1 * (n1 - 1))
    return ((1 - delta) * totals.T @ totals + delta * (rows.T @ rows + cols.T @ cols - scores.T @ scores)) / (n0 * n1) ** 2


def _mean_where(matrix: np.ndarray, mask: np.ndarray) -> float:
    return float(matrix[mask].mean()) if mask.any() else 0.0


def _clip(low: float, high: float) -> tuple[float, float]:
    return max(0.0, low), min(1.0, high)


def obuchowski_rockette(frame: pd.DataFrame, cov: str = "jackknife", readers: str = "random", cases: str = "random",
                        *, metric: str = "auc", treatments: Sequence | None = None, conf_level: float = 0.95) -> dict:
    """Obuchowski–Rockette MRMC analysis of a fully crossed reader study (module docstring).

    `frame`: one row per reader × treatment × case with columns reader, treatment, case, truth
    (0/1, constant per case), rating (numbers; 0/1 for sensitivity/specificity). `treatments`
    orders the treatments (default: sorted); differences are earlier − later. `cov` is one of
    COVARIANCES (DeLong and unbiased need metric "auc"); `readers`, `cases`: "random" | "fixed".

    Returns a dict: metric, treatments, n_readers, n_cases, n_positive, n_negative,
    `estimates` {treatment: figure of merit} (also as `auc` when metric is "auc"), for the
    first two treatments `difference`, `se`, `ci` (low, high), `t` (the statistic), and the
    global test `f`, `df1`, `df2` (inf for fixed readers), `p`; mean squares `ms_t`, `ms_r`,
    `ms_tr`, `denominator`; `var_error`, `cov1`, `cov2`, `cov3`, their correlations `corr1..3`,
    `var_reader`, `var_treatment_reader`; tables `per_treatment` (treatment, estimate, se, df,
    low, high), `differences` (treatment_a, treatment_b, estimate, se, df, low, high, statistic,
    p), `per_reader` (reader, treatment, estimate, se, low, high) and, for fixed readers,
    `reader_differences` (reader, treatment_a, treatment_b, estimate, se, low, high, z, p);
    `covariance` (G × G DataFrame over treatment × reader).

    ValueError: a missing column, a bad value (naming the row), a design that is not fully
    crossed, fewer than 2 treatments, 2 readers (random readers), or 2 cases of each truth;
    NoVarianceError (a ValueError) when the figures of merit do not vary (denominator 0)."""
    if cov not in COVARIANCES:
        raise ValueError(f"cov must be one of {COVARIANCES}, got {cov!r}")
    if readers not in FACTORS or cases not in FACTORS:
        raise ValueError(f"readers and cases must be 'random' or 'fixed', got {readers!r}, {cases!r}")
    if readers == "fixed" and cases == "fixed":
        raise ValueError("fixed readers and fixed cases leave nothing random to generalise to")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric != "auc" and cov != "jackknife":
        raise ValueError(f"the {cov} covariance is defined for the AUC only; use cov='jackknife' for {metric}")
    cube, truth, order, reader_ids, case_ids = _table(frame, treatments)
    t, r, _ = cube.shape
    n1, n0 = int(truth.sum()), int((truth == 0).sum())
    if t < 2:
        raise ValueError(f"MRMC compares treatments: the table has only {order}")
    if r < 2 and readers == "random":
        raise ValueError("random readers need at least 2 readers (use readers='fixed' for one)")
    needed = {"auc": min(n1, n0), "sensitivity": n1, "specificity": n0}[metric]
    if needed < 2:
        raise ValueError(f"the {metric} needs at least 2 positive and 2 negative cases"
                         f" (the table has {n1} positive, {n0} negative)")
    if metric != "auc" and not np.isin(cube, (0.0, 1.0)).all():
        raise ValueError(f"{metric} needs binary ratings (0/1)")

    groups = cube.reshape(t * r, -1)  # group g = treatment g // r, reader g % r
    theta_flat, jack = _estimates(groups, truth, metric)
    covariance = _covariance(groups, truth, cov, jack)
    theta = theta_flat.reshape(t, r)
    treatment_of, reader_of = np.repeat(np.arange(t), r), np.tile(np.arange(r), t)
    same_t, same_r = np.equal.outer(treatment_of, treatment_of), np.equal.outer(reader_of, reader_of)
    var_error = float(np.diag(covariance).mean())
    cov1 = _mean_where(covariance, ~same_t & same_r)
    cov2 = _mean_where(covariance, same_t & ~same_r)
    cov3 = _mean_where(covariance, ~same_t & ~same_r)

    grand, by_t, by_r = theta.mean(), theta.mean(axis=1), theta.mean(axis=0)
    ms_t = r / (t - 1) * ((by_t - grand) ** 2).sum()
    ms_r = t / (r - 1) * ((by_r - grand) ** 2).sum() if r > 1 else 0.0
    interaction = theta - by_t[:, None] - by_r[None, :] + grand
    ms_tr = (interaction ** 2).sum() / ((t - 1) * (r - 1)) if r > 1 else 0.0
    alpha = 1 - conf_level

    per_treatment, per_reader, reader_differences = [], [], []
    for i, name in enumerate(order):
        block = covariance[np.ix_(treatment_of == i, treatment_of == i)]
        var_i = float(np.diag(block).mean())
        cov2_i = _mean_where(block, ~np.eye(r, dtype=bool))
        ms_r_i = float(((theta[i] - by_t[i]) ** 2).sum() / (r - 1)) if r > 1 else 0.0
        if readers == "random" and cases == "random":
            se = np.sqrt(ms_r_i / r + max(cov2_i, 0.0))
            df = (ms_r_i + r * max(cov2_i, 0.0)) ** 2 / (ms_r_i ** 2 / (r - 1)) if ms_r_i > 0 else np.inf
        elif readers == "fixed":
            se, df = np.sqrt((var_i + (r - 1) * max(cov2_i, 0.0)) / r), np.inf
        else:
            se, df = np.sqrt(ms_r_i / r), float(r - 1)
        half = stats.t.ppf(1 - alpha / 2, df) * se
        per_treatment.append({"treatment": name, "estimate": float(by_t[i]), "se": float(se), "df": float(df),
                              **dict(zip(("low", "high"), _clip(by_t[i] - half, by_t[i] + half))),
                              "ms_r": ms_r_i, "var_error": var_i, "cov2": cov2_i})
        for j, reader in enumerate(reader_ids):
            g = i * r + j
            row = {"reader": reader, "treatment": name, "estimate": float(theta[i, j]), "se": float("nan"),
                   "low": float("nan"), "high": float("nan")}
            if readers == "fixed":
                se_g = np.sqrt(covariance[g, g])
                z = stats.norm.ppf(1 - alpha / 2) * se_g
                row.update(se=float(se_g), **dict(zip(("low", "high"), _clip(theta[i, j] - z, theta[i, j] + z))))
            per_reader.append(row)

    if readers == "random" and cases == "random":
        denominator = _varies(ms_tr + r * max(cov2 - cov3, 0.0))
        f, df1 = ms_t / denominator, t - 1
        df2 = denominator ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1))) if ms_tr > 0 else np.inf
        p = float(stats.f.sf(f, df1, df2))
    elif readers == "fixed":
        denominator = _varies(var_error - cov1 + (r - 1) * (cov2 - cov3))
        chi2 = (t - 1) * ms_t / denominator
        f, df1, df2, p = chi2 / (t - 1), t - 1, np.inf, float(stats.chi2.sf(chi2, t - 1))
    else:
        denominator = _varies(ms_tr)
        f, df1, df2 = ms_t / ms_tr, t - 1, float((t - 1) * (r - 1))
        p = float(stats.f.sf(f, df1, df2))

    differences = []
    quantile = stats.t.ppf(1 - alpha / 2, df2)
    for a, b in combinations(range(t), 2):
        estimate = float(by_t[a] - by_t[b])
        se = float(np.sqrt(2 / r * denominator))
        statistic = estimate / se
        p_pair = float(2 * stats.t.sf(abs(statistic), df2))
        differences.append({"treatment_a": order[a], "treatment_b": order[b], "estimate": estimate, "se": se,
                            "df": float(df2), "low": estimate - quantile * se, "high": estimate + quantile * se,
                            "statistic": statistic, "p": p_pair})
        if readers == "fixed":
            z = stats.norm.ppf(1 - alpha / 2)
            for j, reader in enumerate(reader_ids):
                ga, gb = a * r + j, b * r + j
                mine = covariance[np.ix_(reader_of == j, reader_of == j)]
                var_j = float(np.diag(mine).mean())
                cov1_j = _mean_where(mine, ~np.eye(t, dtype=bool))
                se_j = float(np.sqrt(2 * (var_j - cov1_j)))
                d = float(theta_flat[ga] - theta_flat[gb])
                reader_differences.append({"reader": reader, "treatment_a": order[a], "treatment_b": order[b],
                                           "estimate": d, "se": se_j, "low": d - z * se_j, "high": d + z * se_j,
                                           "z": d / se_j, "p": float(2 * stats.norm.sf(abs(d / se_j)))})
    first = differences[0]
    labels = [f"{order[i]}:{reader_ids[j]}" for i, j in zip(treatment_of, reader_of)]
    estimates = {name: float(value) for name, value in zip(order, by_t)}
    result = {
        "metric": metric, "cov_method": cov, "readers": readers, "cases": cases, "conf_level": conf_level,
        "treatments": order, "n_readers": r, "n_cases": len(case_ids), "n_positive": n1, "n_negative": n0,
        "estimates": estimates,
        "difference": first["estimate"], "se": first["se"], "ci": (float(first["low"]), float(first["high"])),
        "t": first["statistic"],
        "f": float(f), "df1": int(df1), "df2": float(df2), "p": p,
        "ms_t": float(ms_t), "ms_r": float(ms_r), "ms_tr": float(ms_tr), "denominator": float(denominator),
        "var_error": var_error, "cov1": cov1, "cov2": cov2, "cov3": cov3,
        "corr1": cov1 / var_error, "corr2": cov2 / var_error, "corr3": cov3 / var_error,
        "var_reader": (ms_r - ms_tr) / t - cov1 + cov3, "var_treatment_reader": ms_tr - var_error + cov1 + (cov2 - cov3),
        "per_treatment": pd.DataFrame(per_treatment), "differences": pd.DataFrame(differences),
        "per_reader": pd.DataFrame(per_reader),
        "reader_differences": pd.DataFrame(reader_differences, columns=["reader", "treatment_a", "treatment_b",
                                                                        "estimate", "se", "low", "high", "z", "p"]),
        "covariance": pd.DataFrame(covariance, index=labels, columns=labels),
    }
    if metric == "auc":
        result["auc"] = estimates
    return result


def _varies(denominator: float) -> float:
    if not denominator > 1e-15:  # rounding: identical tables give ~1e-19, not 0
        raise NoVarianceError("the figures of merit do not vary over readers and cases (every reader scored alike in "
                              "every treatment, e.g. each separated the cases perfectly): the test's denominator is 0")
    return denominator


def roc_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Empirical ROC curve of each reader × treatment: reader, treatment, fpr, tpr, threshold
    (scikit-learn's `roc_curve` with every threshold kept); groups with one truth class are skipped."""
    parts = []
    for (reader, treatment), group in frame.groupby(["reader", "treatment"], sort=True):
        if group["truth"].nunique() < 2:
            continue
        fpr, tpr, thresholds = roc_curve(group["truth"].astype(int), group["rating"].astype(float),
                                         drop_intermediate=False)
        parts.append(pd.DataFrame({"reader": reader, "treatment": treatment, "fpr": fpr, "tpr": tpr,
                                   "threshold": thresholds}))
    if not parts:
        return pd.DataFrame(columns=["reader", "treatment", "fpr", "tpr", "threshold"])
    return pd.concat(parts, ignore_index=True)


def average_roc(points: pd.DataFrame, n_grid: int = 201) -> pd.DataFrame:
    """The readers' average ROC curve per treatment by vertical averaging (Fawcett 2006, Pattern
    Recognit Lett 27:861, "vertical averaging"): each reader's empirical curve (`roc_points`,
    straight segments, a vertical step taken at its top) read at `n_grid` false positive rates
    from 0 to 1, and the true positive rates averaged. Its area is the mean of the readers'
    trapezoidal AUCs (up to the grid's resolution). Returns treatment, fpr, tpr, n_readers."""
    grid = np.linspace(0.0, 1.0, n_grid)
    parts = []
    for treatment, group in points.groupby("treatment", sort=False):
        curves = [np.interp(grid, curve["fpr"].to_numpy(float), curve["tpr"].to_numpy(float))  # fpr non-decreasing:
                  for _, curve in group.groupby("reader", sort=False)]  # interp takes a step's last point
        parts.append(pd.DataFrame({"treatment": treatment, "fpr": grid, "tpr": np.mean(curves, axis=0),
                                   "n_readers": len(curves)}))
    if not parts:
        return pd.DataFrame(columns=["treatment", "fpr", "tpr", "n_readers"])
    return pd.concat(parts, ignore_index=True)
