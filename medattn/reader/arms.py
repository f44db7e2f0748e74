"""With-AI / without-AI arms of a detection study, counterbalanced across readers.

Split-plot design: the study's cases are split once (seeded) into two halves A and B. Readers
alternate by the order they joined: even readers read A with the heatmap and B without, odd
readers the reverse. Every reader reads every case once and both arms; with an even number of
readers every case is read equally often in each arm.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

WITH_AI = "with_ai"
WITHOUT_AI = "without_ai"
ARMS = (WITHOUT_AI, WITH_AI)


def assign_arms(case_ids: Sequence[str], seed: int, reader_index: int) -> dict[str, str]:
    """{case_id: arm} for the `reader_index`-th reader (0-based, in joining order)."""
    rng = np.random.default_rng([int(seed), 0xA5])
    shuffled = [case_ids[i] for i in rng.permutation(len(case_ids))]
    half_a = set(shuffled[: (len(shuffled) + 1) // 2])
    a_arm, b_arm = (WITH_AI, WITHOUT_AI) if reader_index % 2 == 0 else (WITHOUT_AI, WITH_AI)
    return {case: (a_arm if case in half_a else b_arm) for case in case_ids}
