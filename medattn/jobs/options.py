"""Command-line options shared by `python -m medattn.jobs.precompute` and `python -m medattn.jobs
start`, without importing torch (the jobs command only needs it in the worker); their values
become settings in `medattn.jobs.precompute.metric_choices`."""

from __future__ import annotations

import argparse


def add_metric_options(parser: argparse.ArgumentParser) -> None:
    """--metrics, --metric-steps, --road-percentages, --metric-samples, --references."""
    parser.add_argument("--metrics", nargs="*", metavar="METRIC",
                        help="faithfulness metrics in every row (names of medattn.metrics.faithfulness.METRICS: "
                             "deletion, insertion, road_morf, road_lerf, pixel_flipping, region_perturbation, "
                             "faithfulness_correlation, infidelity, max_sensitivity, sparseness, complexity, "
                             "random_logit); given without names: deletion insertion road_morf road_lerf sparseness "
                             "complexity. Also scores the reference maps unless --references says otherwise")
    parser.add_argument("--metric-steps", type=int, help="deletion/insertion/pixel-flipping steps (default 50)")
    parser.add_argument("--road-percentages", type=int, nargs="+",
                        help="ROAD removal percentages (default 10 30 50 70 90)")
    parser.add_argument("--metric-samples", type=int,
                        help="infidelity samples and faithfulness-correlation subsets (default 32)")
    parser.add_argument("--references", nargs="*", metavar="KIND",
                        help="reference maps scored beside the methods: blank, random, center, box_prior, or none "
                             "(default with --metrics: all four)")
