"""Blinded panel codes: random per study, revealing neither model, method nor checkpoint.

Codes come from `secrets` (not from the study seed, which admins can read in the spec), use an
alphabet without look-alike characters, and carry no position: the order in which a reader sees
a case's panels is a separate seeded draw per reader × case.
"""

from __future__ import annotations

import secrets
from typing import Sequence

import numpy as np

from medattn.reader.order import name_key

ALPHABET = "ACDEFHJKMNPRTUVWXY3479"
CODE_LENGTH = 4


def panel_codes(n: int) -> list[str]:
    """`n` distinct random codes such as "K7RX"."""
    codes: list[str] = []
    while len(codes) < n:
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        if code not in codes:
            codes.append(code)
    return codes


def panel_order(codes: Sequence[str], seed: int, reader: str, case_id: str) -> list[str]:
    """The codes in the order one reader sees them on one case (seeded, so a reload repeats it)."""
    rng = np.random.default_rng([int(seed), name_key(reader), name_key(case_id)])
    return [codes[i] for i in rng.permutation(len(codes))]
