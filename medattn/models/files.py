"""Checkpoint files as files: their paths, hashes and kinds. A leaf module that both
`checkpoint` (reading and writing medattn checkpoints) and `importer` (other tools' files) use."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(NAME.safetensors, NAME.json) for NAME, NAME.json or NAME.safetensors."""
    base = Path(path)
    if base.suffix in (".json", ".safetensors"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def unique_checkpoints(paths: Sequence[Any]) -> list[Any]:
    """Each checkpoint once, in the order given: a shell glob `checkpoints/demo_*` names every
    checkpoint twice (NAME.json, NAME.safetensors). Entries that are not paths (a loaded model)
    are kept as they are."""
    seen: set[Path] = set()
    kept = []
    for entry in paths:
        if isinstance(entry, (str, os.PathLike)):
            base = checkpoint_paths(entry)[1].with_suffix("").resolve()
            if base in seen:
                continue
            seen.add(base)
        kept.append(entry)
    return kept


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sniff(path: Path) -> str:
    """What a weights file is, from its first bytes: "safetensors", "torch" (torch.save's zip
    or legacy pickle format) or "unknown"."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "torch"
    return "unknown"


def brief(items: list[str], shown: int = 4) -> str:
    """The first `shown` items and how many more: error messages name a few, not thousands."""
    more = f", … ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
