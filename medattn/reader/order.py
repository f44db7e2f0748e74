"""Case order per reader: a seeded permutation, drawn once when the reader joins and stored."""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np


def name_key(name: str) -> int:
    """A stable 32-bit integer for a name (CRC-32), to seed per-reader and per-case draws."""
    return zlib.crc32(name.encode("utf-8"))


def case_order(case_ids: Sequence[str], seed: int, reader: str) -> list[str]:
    """`case_ids` in an order drawn from (study seed, reader name): reproducible, and different
    between readers so that order effects average out across them."""
    rng = np.random.default_rng([int(seed), name_key(reader)])
    return [case_ids[i] for i in rng.permutation(len(case_ids))]
