"""With-AI / without-AI arms of a detection study (an MRMC design), counterbalanced across readers.

Designs (spec field `arms`):
- "crossed" (default; fully crossed, what MRMCaov's factorial analysis and RJafroc's iMRMC
  reader expect): every image is two cases, one per arm; every reader reads every case. A
  reader's order is two sessions, one arm each, shuffled within; even readers (joining order)
  read without AI first, odd readers with AI first. Leave a wash-out between the sessions.
- "split": every image is one case; the cases are split once (seeded) into halves A and B; even
  readers read A with AI and B without, odd readers the reverse. Each reader reads each image
  once; with an even number of readers each case is read equally often in each arm (iMRMC
  handles this design; a factorial analysis does not).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from medattn.reader.order import case_order

WITH_AI = "with_ai"
WITHOUT_AI = "without_ai"
ARMS = (WITHOUT_AI, WITH_AI)
DESIGNS = ("crossed", "split")


def split_arms(case_ids: Sequence[str], seed: int, reader_index: int) -> dict[str, str]:
    """{case_id: arm} for the `reader_index`-th reader (0-based, in joining order), split design."""
    rng = np.random.default_rng([int(seed), 0xA5])
    shuffled = [case_ids[i] for i in rng.permutation(len(case_ids))]
    half_a = set(shuffled[: (len(shuffled) + 1) // 2])
    a_arm, b_arm = (WITH_AI, WITHOUT_AI) if reader_index % 2 == 0 else (WITHOUT_AI, WITH_AI)
    return {case: (a_arm if case in half_a else b_arm) for case in case_ids}


def crossed_order(case_arms: Mapping[str, str], seed: int, reader: str, reader_index: int) -> list[str]:
    """Crossed design: the reader's cases as two sessions (one arm each, each shuffled), the
    without-AI session first for even readers, the with-AI session first for odd ones."""
    first = WITHOUT_AI if reader_index % 2 == 0 else WITH_AI
    sessions = [[case for case, arm in case_arms.items() if arm == which]
                for which in (first, WITH_AI if first == WITHOUT_AI else WITHOUT_AI)]
    return [case for session in sessions for case in case_order(session, seed, reader)]
