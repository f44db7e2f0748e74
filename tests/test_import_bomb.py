"""A weights file that is a decompression bomb is refused from the zip's directory, before
anything is inflated (a 1 MB .pt inflating to 1 GiB was allocated before torch refused it)."""

from __future__ import annotations

import resource
import time
import zipfile

import pytest
import torch

from medattn.errors import CheckpointError
from medattn.models.importer import read_state_dict


def test_a_zip_bomb_pt_is_refused_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.pt"
    torch.save({"w": torch.zeros(4)}, bomb)  # a real torch zip, then one member that inflates 400-fold
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb/data/9", "w", force_zip64=True) as member:
            block = bytes(2**20)
            for _ in range(256):  # 256 MiB of zeros: about 250 kB in the file
                member.write(block)
    assert bomb.stat().st_size < 2 * 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match="decompression bomb"):
        read_state_dict(bomb)
    assert time.perf_counter() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 64 * 1024  # kB: nothing inflated


def test_an_ordinary_torch_file_still_loads(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(6.0)}, path)
    tensors, _ = read_state_dict(path)
    assert torch.equal(tensors["w"], torch.arange(6.0))
