"""Checkpoint files as files: their paths, hashes and kinds. A leaf module that both
`checkpoint` (reading and writing medattn checkpoints) and `importer` (other tools' files) use."""

from __future__ import annotations

import hashlib
import os
import zipfile
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


# torch.save writes its zip members stored, not compressed: what a torch file unpacks to is about
# its own size. A member that inflates far beyond that is a decompression bomb.
MAX_INFLATION = 4.0  # unpacked bytes per byte of file, all members together
UNPACK_SLACK = 16 * 2**20


def check_unpacked_size(path: Path) -> None:
    """ValueError naming the file when a zip (torch.save's format) would unpack to more than
    MAX_INFLATION × its size (+ 16 MiB): read from the zip's central directory, before any
    member is inflated (a 1 MB file that inflates to 1 GiB is refused at once)."""
    if not zipfile.is_zipfile(path):
        return
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path}: unreadable zip archive: {error}") from None
    if unpacked > MAX_INFLATION * size + UNPACK_SLACK:
        raise ValueError(f"{path}: its members would unpack to {unpacked / 2**20:.0f} MiB from a "
                         f"{size / 2**20:.1f} MiB file (torch.save stores them uncompressed): refused as a "
                         "decompression bomb")


def brief(items: list[str], shown: int = 4) -> str:
    """The first `shown` items and how many more: error messages name a few, not thousands."""
    more = f", … ({len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
