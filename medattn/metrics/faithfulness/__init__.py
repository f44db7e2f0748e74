"""Does a map show what the model uses (faithfulness), and does it hold under tiny changes of
the input (robustness)? One value per image, batched, seeded; contract in DESIGN.md
("Faithfulness and robustness"), conventions in `_core`, each definition with its paper and
the reference code it is checked against in its docstring and in `METRICS`.
"""

from medattn.metrics.faithfulness._core import TASKS, class_scores, fill, pixel_ranks
from medattn.metrics.faithfulness.concentration import complexity, sparseness
from medattn.metrics.faithfulness.info import HIGHER, LOWER, METRICS, MetricInfo, metric_info
from medattn.metrics.faithfulness.perturbation import (
    deletion, faithfulness_correlation, insertion, pixel_flipping, region_perturbation,
)
from medattn.metrics.faithfulness.randomisation import random_logit
from medattn.metrics.faithfulness.references import (
    REFERENCE_MAPS, box_prior, center, is_reference, random_map, reference_map, reference_name,
)
from medattn.metrics.faithfulness.imputation import noisy_linear_imputation, road
from medattn.metrics.faithfulness.robustness import infidelity, max_sensitivity

__all__ = [
    "HIGHER",
    "LOWER",
    "METRICS",
    "REFERENCE_MAPS",
    "TASKS",
    "MetricInfo",
    "box_prior",
    "center",
    "class_scores",
    "complexity",
    "deletion",
    "faithfulness_correlation",
    "fill",
    "infidelity",
    "insertion",
    "is_reference",
    "max_sensitivity",
    "metric_info",
    "noisy_linear_imputation",
    "pixel_flipping",
    "pixel_ranks",
    "random_logit",
    "random_map",
    "reference_map",
    "reference_name",
    "region_perturbation",
    "road",
    "sparseness",
]
