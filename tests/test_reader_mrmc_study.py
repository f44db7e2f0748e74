"""medattn.reader.mrmc_study.analysis_gap: every way the answers so far cannot support the MRMC
comparison gets a sentence a study coordinator can act on (what is missing, what to do), never
a Python repr; a table that can be analysed gets None."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medattn.reader.arms import WITH_AI, WITHOUT_AI
from medattn.reader.mrmc import obuchowski_rockette
from medattn.reader.mrmc_study import analysis_gap

TRUTH = {1: 1, 2: 1, 3: 1, 4: 0, 5: 0, 6: 0}  # MRMC case → truth: 3 images with the finding, 3 without
BAD_TEXT = ("[", "]", "{", "_ai", "'with", "'without", "nan", "None", "MRMC table", "treatment")


def readings(plan: dict[str, dict[str, tuple]]) -> pd.DataFrame:
    """{reader: {modality: cases}} → an MRMC table (ratings follow the truth, with overlap)."""
    rows = [{"reader": reader, "modality": modality, "case": case, "truth": TRUTH[case],
             "rating": 2 + TRUTH[case] + int(np.random.default_rng([ord(reader[0]), len(modality), case]).integers(3))}
            for reader, arms in plan.items() for modality, cases in arms.items() for case in cases]
    return pd.DataFrame(rows, columns=["reader", "modality", "case", "truth", "rating"])


ALL = tuple(TRUTH)
BOTH = {WITHOUT_AI: ALL, WITH_AI: ALL}
# name → (plan, design truth, options, phrases the sentence must hold; None: the analysis runs)
CASES = {
    "all images with the finding": ({"ana": BOTH}, {1: 1, 2: 1, 3: 1}, {},
                                    ["cannot give an AUC", "3 with the finding and 0 without", "Create a new study"]),
    "one image without it": ({"ana": BOTH}, {1: 1, 2: 1, 3: 0}, {}, ["2 with the finding and 1 without"]),
    "no answers": ({}, TRUTH, {}, ["No answers to this question yet", "both arms read by at least 2 readers",
                                   "Add readers"]),
    "only the without-AI arm": ({"ana": {WITHOUT_AI: ALL}, "ben": {WITHOUT_AI: (1, 4)}}, TRUTH, {},
                                ["Only the without-AI arm has answers so far (2 readers started)",
                                 "both arms read by at least 2 readers", "wait for second sessions."]),
    "only the with-AI arm, fixed readers": ({"ana": {WITH_AI: ALL}}, TRUTH, {"readers": "fixed"},
                                            ["Only the with-AI arm", "(1 reader started)", "by at least 1 reader.",
                                             "wait for second sessions."]),
    "one reader of two in one arm": ({"ana": {WITHOUT_AI: ALL}}, TRUTH, {},
                                     ["Only the without-AI arm", ("wait for second sessions and add 1 more reader under "
                                                                  "Readers.")]),
    "one map of a rating study": ({"ana": {"model · gradcam": ALL}}, TRUTH, {"maps": True},
                                  ["Only one map (model · gradcam) has ratings", "at least 2 maps"]),
    "split design": ({"ana": {WITH_AI: (1, 4), WITHOUT_AI: (2, 5)}, "ben": {WITH_AI: (2, 5), WITHOUT_AI: (1, 4)}},
                     TRUTH, {"crossed": False}, ["splits its images", "iMRMC"]),
    "each reader in one arm": ({"ana": {WITHOUT_AI: ALL}, "ben": {WITH_AI: ALL}}, TRUTH, {},
                               ["No reader has read in both arms yet (2 readers started, each in one arm)",
                                "at least 2 readers who have read the same images in both arms",
                                "second session"]),
    "one reader in both arms": ({"ana": BOTH, "ben": {WITHOUT_AI: ALL}}, TRUTH, {},
                                ["Only 1 reader (ana) has read in both arms", "at least 2",
                                 "choose 'fixed readers' under 'Generalise to'"]),
    "too few images read in both arms": (
        {"ana": BOTH, "ben": {WITHOUT_AI: ALL, WITH_AI: (1, 4, 5)}}, TRUTH, {},
        ["So far 3 images have been read in both arms by all 2 readers", "1 with the finding and 2 without",
         "the AUC needs at least 2 of each", "3 more images will count once each of these readers has read them"]),
    "too few images, yes/no": (
        {"ana": {WITHOUT_AI: (1, 2, 3, 4), WITH_AI: (1, 2, 3, 4)}, "ben": {WITHOUT_AI: (1, 2, 3, 4), WITH_AI: (1, 2, 3)}},
        TRUTH, {"binary": True},
        ["So far 3 images have", "3 with the finding and 0 without", "sensitivity and specificity need at least 2",
         "1 more image will count once each of these readers has read it in both arms"]),
    "one reader, fixed readers": ({"ana": BOTH}, TRUTH, {"readers": "fixed"}, None),
    "complete": ({"ana": BOTH, "ben": BOTH}, TRUTH, {}, None),
    "complete part of a study in progress": ({"ana": BOTH, "ben": {WITHOUT_AI: ALL, WITH_AI: (1, 2, 4, 5)},
                                              "cy": {WITHOUT_AI: (1,)}}, TRUTH, {}, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_gap_is_said_in_the_coordinators_words(name):
    plan, design, options, phrases = CASES[name]
    gap = analysis_gap(readings(plan), pd.Series(design), **options)
    if phrases is None:
        assert gap is None, gap
        return
    assert gap is not None
    for phrase in phrases:
        assert phrase in gap, (phrase, gap)
    for bad in BAD_TEXT:
        assert bad not in gap, (bad, gap)


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[3] is None])
def test_a_table_without_a_gap_is_one_the_analysis_takes(name):
    from medattn.reader.mrmc import fully_crossed

    plan, _, options, _ = CASES[name]
    complete, _ = fully_crossed(readings(plan).rename(columns={"modality": "treatment"}))
    result = obuchowski_rockette(complete, readers=options.get("readers", "random"))
    assert set(result["auc"]) == {WITH_AI, WITHOUT_AI}
