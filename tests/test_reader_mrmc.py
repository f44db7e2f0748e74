"""medattn.reader.mrmc against MRMCaov's published VanDyke analysis (../shared/data/mrmc/README.md):
every printed figure, for the jackknife, DeLong and unbiased covariances, fixed readers and
fixed cases, to the printed digits (and within 1e-6)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medattn.reader.mrmc import average_roc, empirical_auc, fully_crossed, obuchowski_rockette, roc_points


@pytest.fixture(scope="module")
def vandyke(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "mrmc" / "vandyke.csv")


def printed(value: float, figure: str) -> None:
    """`value` equals the published `figure` to the digits printed, and within 1e-6 of it
    (relative: a df of 15.2596746 prints as 15.25967)."""
    digits = len(figure.lstrip("-0.").replace(".", ""))
    assert f"{value:.{digits}g}" == f"{float(figure):.{digits}g}", (value, figure)
    assert abs(value - float(figure)) <= 1e-6 * abs(float(figure)), (value, figure)


# figure → (jackknife, DeLong, unbiased), random readers and random cases
RRRC = {
    "se": ("0.02074862", "0.0206825", "0.02067154"),
    "ci_low": ("-0.0879594986", "-0.0878671960", "-0.0878519409"),
    "ci_high": ("0.0003588544", "0.0002665519", "0.0002512968"),
    "t": ("-2.110999", "-2.117747", "-2.118871"),
    "f": ("4.456319", "4.484854", "4.489614"),
    "df2": ("15.25967", "15.06611", "15.03418"),
    "p": ("0.05166569", "0.05123303", "0.0511618"),
    "denominator": ("0.001076263", "0.001069415", "0.001068281"),
    "var_reader": ("0.0015349993", "0.0015364254", "0.0015365290"),
    "var_treatment_reader": ("0.0002004025", "0.0002045840", "0.0002077588"),
    "var_error": ("0.0008022883", "0.0007921325", "0.0007883925"),
    "cov1": ("0.0003466137", "0.0003420090", "0.0003416706"),
    "cov2": ("0.0003440748", "0.0003395265", "0.0003390650"),
    "cov3": ("0.0002390284", "0.0002358497", "0.0002356148"),
    "corr1": ("0.4320314", "0.4317573", "0.4333762"),
    "corr2": ("0.4288668", "0.4286234", "0.4300713"),
    "corr3": ("0.2979333", "0.2977402", "0.2988547"),
}
# per treatment: (cov2, se, df, low, high) for jackknife, DeLong, unbiased
SINGLE = {
    "jackknife": [("0.0004839618", "0.03317360", "12.74465", "0.8252236", "0.9688505"),
                  ("0.0002041879", "0.02156637", "12.71019", "0.8941378", "0.9875369")],
    "delong": [("0.0004775239", "0.03307642", "12.59597", "0.8253461", "0.9687280"),
               ("0.0002015292", "0.02150464", "12.56530", "0.8942155", "0.9874592")],
    "unbiased": [("0.0004771788", "0.0330712", "12.58802", "0.8253526", "0.9687214"),
                 ("0.0002009512", "0.0214912", "12.53391", "0.8942323", "0.9874424")],
}


@pytest.mark.parametrize("column, cov", list(enumerate(("jackknife", "delong", "unbiased"))))
def test_random_readers_random_cases_reproduce_mrmcaov(vandyke, column, cov):
    result = obuchowski_rockette(vandyke, cov=cov)
    printed(result["auc"][1], "0.8970370")
    printed(result["auc"][2], "0.9408374")
    printed(result["difference"], "-0.04380032")
    printed(result["ms_t"], "0.004796171")
    printed(result["ms_tr"], "0.0005510306")
    assert (result["df1"], result["n_readers"], result["n_cases"]) == (1, 5, 114)
    if cov == "jackknife":  # RJafroc book, ORH chapter, by hand: ddf = 15.2596746
        assert result["df2"] == pytest.approx(15.2596746, abs=1e-6)
    values = {**result, "ci_low": result["ci"][0], "ci_high": result["ci"][1]}
    for figure, published in RRRC.items():
        printed(values[figure], published[column])
    single = result["per_treatment"].set_index("treatment")
    for treatment, (cov2, se, df, low, high), ms_r in zip((1, 2), SINGLE[cov], ("0.003082629", "0.001304602")):
        row = single.loc[treatment]
        for value, figure in zip(row[["ms_r", "cov2", "se", "df", "low", "high"]], (ms_r, cov2, se, df, low, high)):
            printed(value, figure)


def test_fixed_readers_reproduce_mrmcaov(vandyke):
    result = obuchowski_rockette(vandyke, readers="fixed")
    printed(result["denominator"], "0.0008758604")
    printed(result["f"], "5.475953")  # X² on 1 df
    printed(result["p"], "0.01927984")
    printed(result["se"], "0.01871748")
    printed(result["ci"][0], "-0.08048591")
    printed(result["ci"][1], "-0.00711473")
    printed(result["t"], "-2.340075")
    assert math.isinf(result["df2"])
    single = result["per_treatment"].set_index("treatment")
    for treatment, figures in ((1, ("0.0010141028", "0.0004839618", "0.02428971", "0.8494301", "0.9446440")),
                               (2, ("0.0005904738", "0.0002041879", "0.01677632", "0.9079564", "0.9737183"))):
        for value, figure in zip(single.loc[treatment, ["var_error", "cov2", "se", "low", "high"]], figures):
            printed(value, figure)
    readers = result["reader_differences"].set_index("reader")
    table = {1: ("0.9196457", "0.9478261", "-0.02818035", "0.02551213", "-0.078183215", "0.021822507", "-1.1045864",
                 "0.26933885"),
             2: ("0.8587762", "0.9053140", "-0.04653784", "0.02630183", "-0.098088476", "0.005012792", "-1.7693768",
                 "0.07683102"),
             3: ("0.9038647", "0.9217391", "-0.01787440", "0.03120965", "-0.079044180", "0.043295388", "-0.5727202",
                 "0.56683414"),
             4: ("0.9731079", "0.9993559", "-0.02624799", "0.01729129", "-0.060138290", "0.007642316", "-1.5179891",
                 "0.12901715"),
             5: ("0.8297907", "0.9299517", "-0.10016103", "0.04405746", "-0.186512066", "-0.013809995", "-2.2734182",
                 "0.02300099")}
    aucs = result["per_reader"].set_index(["reader", "treatment"])["estimate"]
    for reader, (auc1, auc2, *figures) in table.items():
        printed(aucs[(reader, 1)], auc1)
        printed(aucs[(reader, 2)], auc2)
        for value, figure in zip(readers.loc[reader, ["estimate", "se", "low", "high", "z", "p"]], figures):
            printed(value, figure)
    # reader 4's single-reader intervals end at 1 (clipped, as MRMCaov prints them)
    assert (result["per_reader"].query("reader == 4")["high"] == 1.0).all()


def test_fixed_cases_reproduce_mrmcaov(vandyke):
    result = obuchowski_rockette(vandyke, cases="fixed")
    printed(result["f"], "8.704")
    assert (result["df1"], result["df2"]) == (1, 4.0)
    printed(result["p"], "0.04195875")
    printed(result["se"], "0.01484629")
    printed(result["ci"][0], "-0.08502022")
    printed(result["ci"][1], "-0.00258042")
    printed(result["t"], "-2.950254")
    single = result["per_treatment"].set_index("treatment")
    for treatment, figures in ((1, ("0.02482994", "0.8280981", "0.9659760")), (2, ("0.01615303", "0.8959894", "0.9856854"))):
        assert single.loc[treatment, "df"] == 4
        for value, figure in zip(single.loc[treatment, ["se", "low", "high"]], figures):
            printed(value, figure)


def test_treatment_order_sets_the_sign_and_rows_may_come_in_any_order(vandyke):
    shuffled = vandyke.sample(frac=1.0, random_state=0)
    swapped = obuchowski_rockette(shuffled, treatments=[2, 1])
    base = obuchowski_rockette(vandyke)
    assert swapped["difference"] == pytest.approx(-base["difference"], abs=1e-15)
    assert swapped["p"] == pytest.approx(base["p"], abs=1e-15)
    assert swapped["treatments"] == [2, 1]


def test_mann_whitney_auc_counts_ties_half():
    assert empirical_auc([1, 1, 0, 0], [3, 2, 2, 1]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert math.isnan(empirical_auc([1, 1], [1, 2]))


def test_sensitivity_jackknife_is_the_variance_of_a_mean(vandyke):
    binary = vandyke.assign(rating=(vandyke["rating"] >= 4).astype(int))
    result = obuchowski_rockette(binary, metric="sensitivity")
    positives = binary[binary["truth"] == 1]
    sens = positives.groupby(["treatment", "reader"])["rating"].mean()
    assert result["estimates"][1] == pytest.approx(sens[1].mean())
    # the jackknife variance of a mean of n values is s² / n (s² with n − 1)
    one = positives.query("treatment == 1 and reader == 1")["rating"]
    assert result["covariance"].loc["1:1", "1:1"] == pytest.approx(one.var(ddof=1) / len(one))
    spec = obuchowski_rockette(binary, metric="specificity")["estimates"][2]
    assert spec == pytest.approx(1 - binary.query("truth == 0 and treatment == 2")["rating"].mean())
    with pytest.raises(ValueError, match="AUC only"):
        obuchowski_rockette(binary, cov="delong", metric="sensitivity")


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="truth"), "lacks column"),
    (lambda f: f.iloc[1:], "fully crossed"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "twice"),
    (lambda f: f.assign(truth=f["truth"].where(f.index != 0, 2)), "row 0: truth 2"),
    (lambda f: f.assign(rating=f["rating"].astype(float).where(f.index != 3, np.nan)), "row 3: rating"),
    (lambda f: f.assign(truth=1), "2 positive and 2 negative"),
    (lambda f: f[f["treatment"] == 1], "only"),
    (lambda f: f[f["reader"] == 1], "at least 2 readers"),
])
def test_bad_tables_are_refused_with_the_reason(vandyke, change, message):
    with pytest.raises(ValueError, match=message):
        obuchowski_rockette(change(vandyke.copy()))


def test_fully_crossed_keeps_complete_readers_and_cases(vandyke):
    partial = vandyke[~((vandyke["reader"] == 2) & (vandyke["case"] <= 3) & (vandyke["treatment"] == 2))]
    partial = partial[~((partial["reader"] == 5) & (partial["treatment"] == 1))]
    table, dropped = fully_crossed(partial)
    assert dropped == {"readers_dropped": [5], "cases_dropped": 3}
    assert len(table) == 4 * 2 * 111
    obuchowski_rockette(table)


def test_roc_points_per_reader_and_treatment(vandyke):
    points = roc_points(vandyke)
    assert set(map(tuple, points[["reader", "treatment"]].drop_duplicates().to_numpy())) == {
        (r, t) for r in range(1, 6) for t in (1, 2)}
    curve = points.query("reader == 1 and treatment == 1")
    assert curve["fpr"].is_monotonic_increasing and curve["tpr"].is_monotonic_increasing
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(0.9196457, abs=1e-7)


def test_average_roc_has_the_readers_mean_auc_as_its_area(vandyke):
    """Vertical averaging (Fawcett 2006): the average curve's area is the mean of the readers'
    trapezoidal AUCs, which are the published per-treatment AUCs."""
    average = average_roc(roc_points(vandyke))
    for treatment, published in ((1, 0.8970370), (2, 0.9408374)):
        curve = average[average["treatment"] == treatment]
        assert (curve["n_readers"] == 5).all() and curve["tpr"].is_monotonic_increasing
        assert (curve["fpr"].iloc[0], curve["fpr"].iloc[-1], curve["tpr"].iloc[-1]) == (0, 1, 1)
        assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(published, abs=2e-3)
