"""Reproducible float32 maps on every CPU; bfloat16 only when asked for, keyed and recorded apart.

Each test forces the CPU-feature probe (`medattn.explain.base.native_bfloat16`) both ways, so
the suite checks a CPU with AVX512-BF16/AMX and one without on whichever it runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medattn.explain import explain, get_explainer
from medattn.explain import base
from medattn.metrics.similarity import spearman
from medattn.models import build

BFLOAT16_METHODS = ("integrated_gradients", "smoothgrad_ig", "occlusion", "pda")
SETTINGS = {"integrated_gradients": {"steps": 8}, "smoothgrad_ig": {"steps": 4, "n_samples": 2},
            "occlusion": {"window": 16, "stride": 16},
            "pda": {"window": 16, "stride": 16, "samples": 2, "reference": torch.randn(4, 3, 64, 64)}}


@pytest.fixture
def cpu(monkeypatch):
    """`cpu(True)`: this CPU has native bfloat16; `cpu(False)`: it has not."""
    def force(native: bool) -> None:
        monkeypatch.setattr(base, "native_bfloat16", lambda: native)
    return force


@pytest.fixture(scope="module")
def subject():
    torch.manual_seed(0)
    return build("resnet18", "wildcat", 3).eval(), torch.randn(1, 3, 64, 64)


def _map(subject, method: str, **options) -> np.ndarray:
    model, x = subject
    return explain(model, x, 1, method, device="cpu", **options, **SETTINGS.get(method, {}))


@pytest.mark.parametrize("method", [*BFLOAT16_METHODS, "saliency", "gradcam"])
def test_the_default_map_is_float32_whatever_the_cpu(subject, cpu, method):
    """The same model and image give the same map with and without bfloat16 instructions: the
    default never takes the bfloat16 path (it did on CPUs with AVX512-BF16, up to 9.9% of the
    map's maximum off Captum's occlusion)."""
    cpu(True)
    with_bf16 = _map(subject, method)
    assert get_explainer(method).used_precision(subject[0], "cpu") == "float32"
    cpu(False)
    without = _map(subject, method)
    np.testing.assert_array_equal(with_bf16, without)
    np.testing.assert_array_equal(with_bf16, _map(subject, method, precision="float32"))


@pytest.mark.parametrize("method", BFLOAT16_METHODS)
def test_bfloat16_is_used_only_where_asked_for_and_the_cpu_has_it(subject, cpu, method):
    model, _ = subject
    explainer = get_explainer(method)
    cpu(False)  # emulated bfloat16 would be slower than float32: the request falls back
    assert explainer.used_precision(model, "cpu", "bfloat16") == "float32"
    np.testing.assert_array_equal(_map(subject, method, precision="bfloat16"), _map(subject, method))
    cpu(True)
    assert explainer.used_precision(model, "cpu", "bfloat16") == "bfloat16"
    assert explainer.used_precision(model, "cuda", "bfloat16") == "float32"  # CPU autocast only
    assert explainer.used_precision(build("vgg16", "linear", 3), "cpu", "bfloat16") == "float32"
    fast, exact = _map(subject, method, precision="bfloat16"), _map(subject, method)
    assert not np.array_equal(fast, exact)  # the later stages did run in bfloat16
    assert spearman(fast, exact) > 0.95


@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "guided_backprop", "gradcam", "guided_gradcam",
                                    "pda_features", "wildcat"])
def test_methods_without_bfloat16_stages_are_float32_even_when_asked(subject, cpu, method):
    cpu(True)
    assert get_explainer(method).used_precision(subject[0], "cpu", "bfloat16") == "float32"


def test_an_unknown_precision_is_refused(subject):
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, got 'auto'"):
        _map(subject, "saliency", precision="auto")


def test_maps_are_cached_and_scored_by_the_precision_they_were_computed_in(tiny_demo, tiny_checkpoint, tmp_path, cpu):
    """A bfloat16 map never stands in for a float32 one: its own cache entry, its own run folder,
    and every row records its map's precision (float32 where bfloat16 did not apply)."""
    from medattn.data import load_dataset
    from medattn.inference import load_model
    from medattn.jobs.precompute import main, precompute
    from medattn.pipeline import compute_map
    from medattn.store import HeatmapCache, Run

    cpu(True)
    dataset = load_dataset(tiny_demo)
    loaded = load_model(tiny_checkpoint, "cpu", dataset)
    image_id = dataset.split("test").index[0]
    cache = HeatmapCache(tmp_path / "cache")
    params = {"steps": 8}
    exact = compute_map(loaded, dataset, image_id, "integrated_gradients", 0, params, cache)
    fast = compute_map(loaded, dataset, image_id, "integrated_gradients", 0, params, cache, precision="bfloat16")
    assert (exact.precision, fast.precision, exact.cached, fast.cached) == ("float32", "bfloat16", False, False)
    assert not np.array_equal(exact.raw, fast.raw)
    again = compute_map(loaded, dataset, image_id, "integrated_gradients", 0, params, cache)
    assert again.cached and np.array_equal(again.raw, exact.raw)

    ids = list(dataset.split("test").index[:2])
    frame = precompute(dataset, [tiny_checkpoint], ["saliency", "integrated_gradients"], image_ids=ids,
                       run=Run(tmp_path / "run"), cache=cache, device="cpu", precision="bfloat16",
                       params={"integrated_gradients": params})
    assert set(frame.loc[frame["method"] == "integrated_gradients", "precision"]) == {"bfloat16"}
    assert set(frame.loc[frame["method"] == "saliency", "precision"]) == {"float32"}
    assert Run.for_dataset(dataset, tmp_path, precision="bfloat16").root.name.endswith("-bfloat16")
    assert Run.for_dataset(dataset, tmp_path).root.name == f"{dataset.name}-{dataset.hash}"
    with pytest.raises(SystemExit):
        main(["--dataset", str(tiny_demo), "--checkpoints", str(tiny_checkpoint), "--precision", "auto"])


def test_faithfulness_scores_are_float32_unless_asked(subject, cpu):
    """Deletion's forward passes followed the CPU too (precision 'auto'): a row's faithfulness
    scores differed between CPUs with and without bfloat16."""
    from medattn.metrics.faithfulness import deletion

    model, x = subject
    saliency = _map(subject, "saliency")[None]
    cpu(True)
    with_bf16 = deletion(model, x, saliency, [1], steps=16)
    fast = deletion(model, x, saliency, [1], steps=16, precision="bfloat16")
    cpu(False)
    np.testing.assert_array_equal(with_bf16, deletion(model, x, saliency, [1], steps=16))
    assert not np.array_equal(fast, with_bf16)
    with pytest.raises(ValueError, match="precision must be one of"):
        deletion(model, x, saliency, [1], steps=16, precision="auto")
