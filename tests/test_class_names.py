"""Which output answers which dataset class: spelling suggestions, refusals, and the selected
model's logits, class maps and explanations."""

from __future__ import annotations

import pytest
import torch

from medattn.explain import explain
from medattn.models import build
from medattn.models.class_names import OutputSelect, exact_mapping, output_indices, suggest_mapping

NIH = ["Atelectasis", "Infiltration", "Pleural_Thickening", "Effusion"]


@pytest.mark.parametrize("model_name,dataset_name", [
    ("Infiltrate", "Infiltration"), ("Pleural Thickening", "Pleural_Thickening"), ("pleural-thickening", "Pleural_Thickening"),
    ("ATELECTASIS", "Atelectasis"), ("Pleural Effusion", "Effusion"),
])
def test_spelling_variants_are_suggested_not_applied(model_name, dataset_name):
    outputs = [model_name if c == dataset_name else c for c in NIH]
    assert exact_mapping(outputs, NIH) is None
    assert suggest_mapping(outputs, NIH)[dataset_name] == model_name


def test_a_superset_with_empty_entries_maps_exactly():
    outputs = ["Effusion", "", "Atelectasis", "Pleural_Thickening", "Fracture", "Infiltration", ""]
    mapping = exact_mapping(outputs, NIH)
    assert output_indices(mapping, outputs, NIH) == [2, 5, 3, 0]
    assert exact_mapping(outputs, NIH + [""]) is None  # an empty (untrained) output never answers


def test_incomplete_or_wrong_mappings_name_the_classes():
    with pytest.raises(ValueError, match="no output chosen for Effusion"):
        output_indices({c: c for c in NIH[:3]}, NIH, NIH)
    with pytest.raises(ValueError, match="not an output of the model: Effusion → 'Fluid'"):
        output_indices({**{c: c for c in NIH}, "Effusion": "Fluid"}, NIH, NIH)


def test_selected_outputs_keep_logits_class_maps_and_explanations():
    torch.manual_seed(0)
    inner = build("resnet18", "wildcat", 5).eval()
    model = OutputSelect(inner, [3, 0]).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), inner(x)[:, [3, 0]])
        assert torch.equal(model.class_maps(x), inner.class_maps(x)[:, [3, 0]])
    assert model.arch == "resnet18" and model.num_classes == 2 and model.gradcam_layer is inner.gradcam_layer
    assert torch.allclose(torch.as_tensor(explain(model, x, 0, "gradcam")), torch.as_tensor(explain(inner, x, 3, "gradcam")))
    assert not hasattr(OutputSelect(build("resnet18", "linear", 5), [1]), "class_maps")
