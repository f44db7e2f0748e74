"""The sidebar shows checkpoint names as typed: its pills render markdown, and a file named
`**x**<img src=x>` showed a bold x (a name like a markdown image would make the browser fetch it)."""

from __future__ import annotations

import shutil

from streamlit.testing.v1 import AppTest

from medattn import inference
from medattn.ui.plain import plain

NAME = "**x**<img src=x>"


def _page():
    from medattn.ui.sidebar import sidebar

    sidebar()


def test_checkpoint_pills_show_names_as_typed(tiny_demo, tiny_checkpoint, tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for part in tiny_checkpoint.parent.glob(f"{tiny_checkpoint.name}.*"):
        shutil.copy(part, folder / part.name.replace(tiny_checkpoint.name, NAME))
    monkeypatch.setattr(inference, "MODELS_DIR", tmp_path / "no_user_models")
    monkeypatch.setattr(inference, "CHECKPOINT_DIR", folder)
    monkeypatch.setenv("MEDATTN_DATASET", str(tiny_demo))
    at = AppTest.from_function(_page, default_timeout=120).run()
    assert not at.exception
    pills = at.get("button_group")[0]
    assert [option.content for option in pills.proto.options] == [plain(NAME)]
    assert at.session_state["sb_checkpoints"] == [NAME]  # the value stays the name itself
