"""The faithfulness and robustness metrics as data: what each measures, its direction, its
source and the reference implementation it is checked against (tests/test_faithfulness_parity.py).
Pages and tables read names, directions and help text from here."""

from __future__ import annotations

from dataclasses import dataclass

HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True)
class MetricInfo:
    """One metric: `column` in score tables, `category`, which direction is better, the paper,
    the code it is checked against, and what it needs beyond the map ("model": forward passes,
    "explain": recomputed maps)."""

    column: str
    title: str
    category: str  # faithfulness | robustness | complexity | randomisation
    better: str  # HIGHER | LOWER
    source: str
    reference: str
    needs: str  # "map" | "model" | "explain"


METRICS: dict[str, MetricInfo] = {m.column: m for m in (
    MetricInfo("deletion", "Deletion AUC", "faithfulness", LOWER, "Petsiuk et al. 2018 (RISE), §4.1",
               "Quantus 0.6 PixelFlipping curve", "model"),
    MetricInfo("insertion", "Insertion AUC", "faithfulness", HIGHER, "Petsiuk et al. 2018 (RISE), §4.1",
               "Quantus 0.6 PixelFlipping curve (baseline and image swapped)", "model"),
    MetricInfo("road_morf", "ROAD MoRF", "faithfulness", LOWER, "Rong et al. 2022, noisy linear imputation",
               "Quantus 0.6 noisy_linear_imputation; Quantus#333", "model"),
    MetricInfo("road_lerf", "ROAD LeRF", "faithfulness", HIGHER, "Rong et al. 2022, noisy linear imputation",
               "Quantus 0.6 noisy_linear_imputation; Quantus#333", "model"),
    MetricInfo("pixel_flipping", "Pixel flipping AOPC", "faithfulness", HIGHER, "Bach et al. 2015; Samek et al. 2017",
               "Quantus 0.6 PixelFlipping", "model"),
    MetricInfo("region_perturbation", "Region perturbation AOPC", "faithfulness", HIGHER, "Samek et al. 2017",
               "Quantus 0.6 RegionPerturbation", "model"),
    MetricInfo("faithfulness_correlation", "Faithfulness correlation", "faithfulness", HIGHER, "Bhatt et al. 2020",
               "Quantus 0.6 FaithfulnessCorrelation", "model"),
    MetricInfo("infidelity", "Infidelity", "faithfulness", LOWER, "Yeh et al. 2019, eq. 1",
               "Captum 0.9 infidelity (normalize=True; captum#613)", "model"),
    MetricInfo("max_sensitivity", "Max-sensitivity", "robustness", LOWER, "Yeh et al. 2019, §4",
               "Captum 0.9 sensitivity_max", "explain"),
    MetricInfo("sparseness", "Sparseness (Gini)", "complexity", HIGHER, "Chalasani et al. 2020",
               "Quantus 0.6 Sparseness", "map"),
    MetricInfo("complexity", "Complexity (entropy)", "complexity", LOWER, "Bhatt et al. 2020",
               "Quantus 0.6 Complexity", "map"),
    MetricInfo("random_logit", "Random-logit SSIM", "randomisation", LOWER, "Sixt et al. 2020",
               "Quantus 0.6 RandomLogit", "explain"),
)}


def metric_info(column: str) -> MetricInfo:
    """The entry for `column`; ValueError listing the known ones."""
    if column not in METRICS:
        raise ValueError(f"unknown faithfulness metric {column!r}; choose one of: {', '.join(METRICS)}")
    return METRICS[column]
