"""medattn.reader.simulate: a with-/without-AI study read by simulated readers goes through the
store's reading path and comes out of the real analysis (study_mrmc) with both arms, a finite
F and p, CIs and ROC curves; it says everywhere that its readers are simulated."""

from __future__ import annotations

import numpy as np
import pytest
from argon2 import PasswordHasher

from medattn.reader.__main__ import main
from medattn.reader.arms import WITH_AI, WITHOUT_AI
from medattn.reader.errors import AnalysisNotReadyError, StudyError
from medattn.reader.mrmc import roc_points
from medattn.reader.mrmc_study import study_mrmc
from medattn.reader.simulate import simulate_study
from medattn.store.annotations import AnnotationStore

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="module")
def simulated(tiny_demo, tmp_path_factory):
    store = AnnotationStore(tmp_path_factory.mktemp("sim") / "s.db", password_hasher=FAST)
    return store, simulate_study(store, tiny_demo, "checkpoints/any", readers=4, images=16, seed=0)


def test_the_simulated_study_is_analysed_with_both_arms_a_finite_test_cis_and_roc_curves(simulated):
    store, study_id = simulated
    result = study_mrmc(store, study_id)
    assert result["treatments"] == [WITH_AI, WITHOUT_AI] and result["n_readers"] == 4 and result["n_cases"] == 16
    assert result["n_positive"] == result["n_negative"] == 8
    assert np.isfinite([result["f"], result["df2"], result["p"], result["se"]]).all() and 0 < result["p"] < 1
    assert 0.6 < result["auc"][WITHOUT_AI] < result["auc"][WITH_AI] < 1.0  # AI helps, plausibly
    for row in result["per_treatment"].itertuples():
        assert row.low < row.estimate < row.high
    low, high = result["ci"]
    assert low < result["difference"] < high
    curves = roc_points(result["table"])
    assert curves.groupby(["reader", "treatment"]).ngroups == 8
    ends = curves.groupby(["reader", "treatment"]).agg(first=("fpr", "first"), last=("tpr", "last"))
    assert (ends["first"] == 0).all() and (ends["last"] == 1).all()
    binary = study_mrmc(store, study_id, "present")  # yes/no: sensitivity, specificity per arm
    assert {m: set(binary[m]["estimates"]) for m in ("sensitivity", "specificity")} == {
        "sensitivity": {WITH_AI, WITHOUT_AI}, "specificity": {WITH_AI, WITHOUT_AI}}


def test_the_study_and_its_readers_say_they_are_simulated(simulated):
    store, study_id = simulated
    spec = store.study(study_id)
    assert spec["name"].endswith("(simulated readers)") and spec["description"].startswith("SIMULATED readers")
    assert store.readers(study_id) == [f"sim-reader-{i}" for i in range(1, 5)]
    progress = store.progress(study_id)
    assert (progress["fraction"] == 1).all() and (progress["n_cases"] == 32).all()  # both arms, every case
    answers = store.answers(study_id)
    assert len(answers) == 4 * 32 * 3 and set(answers["question_id"]) == {"present", "confidence", "boxes"}


def test_the_same_seed_gives_the_same_answers_and_a_second_demo_takes_new_names(simulated, tiny_demo):
    store, study_id = simulated
    again = simulate_study(store, tiny_demo, "checkpoints/any", readers=4, images=16, seed=0)
    assert store.readers(again)[0] == "sim2-reader-1"  # accounts are per database
    values = []
    for study in (study_id, again):  # by reader number, image, arm: case ids and reading orders differ
        key = store.case_key(study).set_index("case_id")
        answers = store.answers(study)
        answers = answers.assign(reader=answers["reader"].str.split("-").str[-1],
                                 image=answers["case_id"].map(key["image_id"]),
                                 arm=answers["case_id"].map(key["meta"].str["arm"]))
        values.append(answers.sort_values(["reader", "image", "arm", "question_id"])["value"].map(str).tolist())
    assert values[0] == values[1]


def test_a_study_in_progress_says_what_its_analysis_waits_for(tiny_demo, tmp_path):
    store = AnnotationStore(tmp_path / "s.db", password_hasher=FAST)
    one = simulate_study(store, tiny_demo, "checkpoints/any", readers=1, images=8, done=0.5)
    with pytest.raises(AnalysisNotReadyError, match=r"^Only the without-AI arm has answers so far \(1 reader started\)"):
        study_mrmc(store, one)
    first_sessions = simulate_study(store, tiny_demo, "checkpoints/any", readers=2, images=8, done=0.5)
    with pytest.raises(AnalysisNotReadyError, match=r"^No reader has read in both arms yet \(2 readers started"):
        study_mrmc(store, first_sessions)
    perfect = simulate_study(store, tiny_demo, "checkpoints/any", readers=2, images=8,
                             separation={WITH_AI: 30.0, WITHOUT_AI: 30.0})  # every reading right: AUC 1 everywhere
    with pytest.raises(AnalysisNotReadyError, match=r"^Every reader's AUC is the same in both arms.*no variation"):
        study_mrmc(store, perfect)
    with pytest.raises(StudyError, match="at least 1 reader and 4 images"):
        simulate_study(store, tiny_demo, "checkpoints/any", readers=0)


def test_cli_makes_a_demo_study_and_prints_its_analysis(tiny_demo, tmp_path, capsys):
    db = tmp_path / "demo.sqlite"
    assert main(["demo-study", "--db", str(db), "--dataset", str(tiny_demo), "--checkpoint", "checkpoints/any",
                 "--readers", "2", "--images", "8", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 simulated readers" in out and "AUC without AI" in out and "p = " in out, out
    assert len(AnnotationStore(db).list_studies()) == 1
    assert main(["demo-study", "--db", str(db), "--dataset", str(tiny_demo), "--finding", "no-such-class"]) == 2
    assert "not a class" in capsys.readouterr().err
