"""Text from a dataset (image ids, class names) is shown as text on every page: an id written as
markdown or a link shows its characters, never bold type or a live link."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from medattn import inference, pipeline
from tests.app_env import app_env

APP = str(Path(__file__).resolve().parents[1] / "workbench.py")
HOSTILE_ID = "**bold** [link](http://evil.example)"
HOSTILE_CLASS = "__cls__ [x](http://evil.example)"
# what markdown or Streamlit would act on if the text reached them unescaped
ACTIVE = ("**bold**", "](http://evil.example)", "__cls__")
MARKDOWN_KINDS = {"markdown", "caption", "alert", "title", "header", "subheader", "latex", "exception", "toast"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The app's demo world with its first test image renamed to HOSTILE_ID and its class
    'effusion' renamed to HOSTILE_CLASS (so the checkpoints no longer match: the sidebar names
    the dataset's classes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    world = app_env(tmp_path_factory.getbasetemp() / "app_env")
    root = Path(shutil.copytree(world.dataset, tmp_path_factory.mktemp("hostile") / "ds"))
    images = pd.read_csv(root / "images.csv", dtype=str, keep_default_na=False)
    boxes = pd.read_csv(root / "boxes.csv", dtype=str, keep_default_na=False)
    first = images.loc[images["split"] == "test", "image_id"].iloc[0]
    images.loc[images["image_id"] == first, "image_id"] = HOSTILE_ID
    boxes.loc[boxes["image_id"] == first, "image_id"] = HOSTILE_ID
    images = images.rename(columns={"effusion": HOSTILE_CLASS})
    boxes.loc[boxes["label"] == "effusion", "label"] = HOSTILE_CLASS
    images.to_csv(root / "images.csv", index=False)
    boxes.to_csv(root / "boxes.csv", index=False)
    meta = json.loads((root / "dataset.json").read_text())
    meta["classes"] = [HOSTILE_CLASS if c == "effusion" else c for c in meta["classes"]]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "CHECKPOINT_DIR", world.checkpoints)
        patch.setattr(pipeline, "CACHE_DIR", world.cache)
        patch.setenv("MEDATTN_DATASET", str(root))
        patch.setenv("MEDATTN_PREFETCH", "0")
        yield root
    torch.set_num_threads(threads)


def shown_markdown(at: AppTest) -> list[str]:
    """Every string the page hands to Streamlit's markdown renderer: text elements' bodies and
    widgets' labels and help."""
    found = []

    def walk(node) -> None:
        kind = getattr(node, "type", "")
        if kind in MARKDOWN_KINDS:
            found.append(str(node.value))
        for field in ("label", "help"):
            value = getattr(node, field, None)
            if isinstance(value, str):
                found.append(value)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


@pytest.mark.parametrize("page", ["compare", "data", "failures", "leaderboard", "models", "study_admin"])
def test_a_hostile_image_id_and_class_name_show_as_text(hostile, page):
    at = AppTest.from_file(APP, default_timeout=300)
    at.session_state["sb_methods"] = ["saliency"]
    at.query_params["image"] = HOSTILE_ID  # Compare opens on it
    at.run()
    if page != "compare":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    active = [text for text in shown_markdown(at) if any(a in text for a in ACTIVE)
              or "://evil" in re.sub(r"\\(.)", r"\1", text)]  # a bare URL: GitHub-flavoured markdown links it
    assert not active, active
