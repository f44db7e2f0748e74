"""The Models page through AppTest: import a torchvision state dict from a server path, use it
in the Compare grid; a checkpoint whose class names differ only in spelling is explained in the
sidebar, mapped on the page, and then used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from streamlit.testing.v1 import AppTest

from medattn import inference, pipeline
from medattn.data import load_dataset
from tests.app_env import app_env, texts
from tests.sight import in_sight

APP = str(Path(__file__).resolve().parents[1] / "workbench.py")
TIMEOUT = 300


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The app tests' world, with its checkpoints linked into a folder of this module's own
    (so imports here never change what test_app.py sees), plus a spelling-variant checkpoint."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    env = app_env(tmp_path_factory.getbasetemp() / "app_env")
    folder = tmp_path_factory.mktemp("models_page")
    for file in env.checkpoints.iterdir():
        if file.suffix in (".json", ".safetensors"):
            (folder / file.name).symlink_to(file)
    meta = json.loads((env.checkpoints / "tiny_linear.json").read_text())
    meta["classes"] = [c.swapcase() for c in meta["classes"]]
    (folder / "variant.json").write_text(json.dumps(meta))
    (folder / "variant.safetensors").symlink_to(env.checkpoints / "tiny_linear.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "CHECKPOINT_DIR", folder)
        patch.setattr(inference, "MODELS_DIR", tmp_path_factory.mktemp("models_page_yours"))  # imports land here
        patch.setattr(pipeline, "CACHE_DIR", env.cache)
        patch.setenv("MEDATTN_DATASET", str(env.dataset))
        yield env, folder
    torch.set_num_threads(threads)


def start() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sb_methods"] = ["saliency"]  # one fast method keeps every grid cheap
    at.run()
    at.switch_page("pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_import_from_the_models_page_and_see_it_in_compare(world, tmp_path):
    env, folder = world
    classes = load_dataset(env.dataset).classes
    net = torchvision.models.resnet18(weights=None, num_classes=len(classes))
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "mine.pth.tar")
    at = start()
    assert set(at.dataframe[0].value["name"]) >= {"tiny_linear", "tiny_wildcat"}
    at.selectbox(key="models_arch").set_value("resnet18")
    at.text_input(key="models_path").input(str(tmp_path / "mine.pth.tar"))
    at.text_input(key="models_name").input("mine")
    at.number_input(key="models_input").set_value(64)
    at.button(key="models_import").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert "Imported **mine**" in texts(at.success)
    row = at.dataframe[0].value.set_index("name").loc["mine"]
    assert row["arch"] == "resnet18" and row["input"] == 64 and row["source"] == "imported from mine.pth.tar"
    at.button(key="models_use").click().run()
    assert "mine" in at.session_state["sb_checkpoints"]
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    numbers = at.dataframe[0].value
    assert "mine" in set(numbers["checkpoint"]) and numbers["probability"].between(0, 1).all()


def test_spelling_variants_are_explained_mapped_and_then_used(world):
    env, folder = world
    at = start()
    assert "variant" in at.session_state["sb_checkpoints"]  # a linear head: selected by default
    warning = texts(at.sidebar.warning)
    assert "**variant** not used: class names differ in spelling only" in warning
    assert "confirm the mapping on the Models page" in warning
    saved = at.button(key="FormSubmitter:models_map_variant-Save mapping")
    saved.click().run()
    assert not at.exception and "now answers" in texts(at.success)
    data = load_dataset(env.dataset)
    stored = json.loads((folder / "variant.json").read_text())["class_map"][data.name]
    assert stored == {c: c.swapcase() for c in data.classes}
    at.run()
    assert "variant" not in texts(at.sidebar.warning)


@pytest.mark.parametrize("name", ["../../tmp/evil", "/tmp/evil", "sub/evil", "", ".hidden", "taken"])
def test_a_new_checkpoint_name_stays_in_its_folder_and_never_overwrites(tmp_path, name):
    from medattn.models.catalog import free_name

    (tmp_path / "taken.json").write_text("{}")
    with pytest.raises(ValueError, match="letters, digits|already exists"):
        free_name(tmp_path, name)
    assert free_name(tmp_path, "chexnet") == tmp_path / "chexnet"


def test_a_too_long_checkpoint_name_is_refused_for_its_length():
    """150 letters used to be refused as not 'letters, digits, ...' only."""
    from medattn.models.catalog import free_name

    with pytest.raises(ValueError, match="at most 100 characters, got 150"):
        free_name("/tmp", "a" * 150)


def test_the_macro_row_supports_the_sum_of_the_classes():
    """Per-class support counts positives; the macro row showed the image count (246 under
    63 + 75 + 74 positives of a multilabel test split)."""
    from medattn.models.catalog import test_metrics_table

    per_class = {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "roc_auc": 0.7, "threshold": 0.5, "support": n}
                 for c, n in (("nodule", 63), ("opacity", 75), ("effusion", 74))}
    table = test_metrics_table({"per_class": per_class, "n_images": 246, "precision_macro": 0.5}).set_index("class")
    assert table.loc["all classes (macro)", "support"] == 212
    assert test_metrics_table({"n_images": 9}).set_index("class").loc["all classes (macro)", "support"] == 9


def test_train_from_the_models_page_runs_in_the_background_and_its_checkpoint_appears(world, tmp_path, monkeypatch):
    """Start a short training from the page, leave the page and come back: the job is listed
    (running or done, with its progress in batches); when it ends the checkpoint is in the list
    and can be used. Its own jobs folder: test_app waits for the jobs under the shared cache."""
    import time

    from medattn.jobs import manager as jobs

    env, folder = world
    monkeypatch.setattr(jobs, "default_root", lambda: tmp_path / "jobs")
    at = start()
    at.selectbox(key="models_train_arch").set_value("resnet18")
    at.selectbox(key="models_train_head").set_value("linear")
    at.selectbox(key="models_train_preset").set_value("wang")
    at.number_input(key="models_train_epochs").set_value(1)
    at.number_input(key="models_train_input").set_value(32)
    at.text_input(key="models_train_name").input("tiny_linear")  # taken: refused, nothing overwritten
    at.button(key="models_train_start").click().run()
    assert "already exists" in texts(at.error) and not jobs.JobManager().list()
    at.text_input(key="models_train_name").input("trained_here").run()
    at.button(key="models_train_start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    [job] = jobs.JobManager().list()
    assert job.kind == "train" and "train trained_here on" in job.title
    assert "**train trained_here on" in texts(at.markdown)

    at.switch_page("pages/data.py").run()  # away and back: the job goes on without the page
    at.switch_page("pages/models.py").run()
    assert not at.exception and "**train trained_here on" in texts(at.markdown)
    deadline = time.monotonic() + 120
    while jobs.JobManager().status(job.id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    done = jobs.JobManager().status(job.id)
    assert done.state == "done", jobs.JobManager().log_tail(job.id, 40)
    at.run()
    assert not at.exception
    assert "trained_here" in set(at.dataframe[0].value["name"])
    shown = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith(f"done: epoch 1/1 · {done.total}/{done.total} batches") for t in shown), shown
    at.button(key=f"models_train_{job.id}_use").click().run()
    assert "trained_here" in at.session_state["sb_checkpoints"]


def test_details_show_test_metrics_as_a_table(world):
    at = start()
    at.selectbox(key="models_detail").set_value("tiny_linear").run()
    tables = [d.value for d in at.dataframe if "ROC AUC" in d.value.columns]
    assert len(tables) == 1, "the test metrics table"
    table = tables[0].set_index("class")
    classes = [c for c in table.index if c != "all classes (macro)"]
    assert classes and table["ROC AUC"].dropna().between(0, 1).all() and table.loc["all classes (macro)", "support"] > 0


def test_a_resume_that_is_refused_says_why(world, tmp_path, monkeypatch):
    """Resume of a training whose checkpoint exists (it finished, then was resumed and stopped
    from the CLI) is refused; the page reran right after the refusal, so the click did nothing
    visible."""
    from medattn.jobs import manager as jobs

    env, folder = world
    monkeypatch.setattr(jobs, "default_root", lambda: tmp_path / "jobs")
    spec = jobs.train_spec(env.dataset, "resnet18", "linear", folder / "finished_meanwhile", "wang", epochs=1,
                           input_size=32, device="cpu")
    job = jobs.job_id(spec)
    (tmp_path / "jobs" / job).mkdir(parents=True)
    (tmp_path / "jobs" / job / "spec.json").write_text(json.dumps(spec))
    jobs._write_status(tmp_path / "jobs" / job, jobs.JobStatus(job, "train", jobs._title(spec), "stopped", unit="batches"))
    for suffix in (".json", ".safetensors"):
        shutil.copy(folder / f"tiny_linear{suffix}", folder / f"finished_meanwhile{suffix}")
    try:
        at = start()
        at.button(key=f"models_train_{job}_resume").click().run()
        assert "never overwrites" in texts(at.error) and not at.exception
        assert jobs.JobManager().status(job).state == "stopped"
    finally:
        for suffix in (".json", ".safetensors"):
            (folder / f"finished_meanwhile{suffix}").unlink()


def test_coming_back_to_the_page_shows_a_running_training_with_its_stop(world, tmp_path, monkeypatch):
    """The page opens on its Details tab: a running training's progress and Stop were in the
    Train tab, out of sight."""
    from medattn.jobs import manager as jobs

    env, folder = world
    monkeypatch.setattr(jobs, "default_root", lambda: tmp_path / "jobs")
    spec = jobs.train_spec(env.dataset, "resnet18", "linear", tmp_path / "long_training", "wang", epochs=500,
                           input_size=32, device="cpu")
    job = jobs.JobManager().start(spec).id
    try:
        at = start()  # a reader coming back to the page
        assert in_sight(at, f"models_train_{job}_stop")
        at.button(key=f"models_train_{job}_stop").click().run()
        assert not at.exception and jobs.JobManager().status(job).state in ("stopped", "interrupted")
    finally:
        jobs.JobManager().stop(job)


def test_imports_and_trainings_go_to_the_users_models_folder_never_the_repository(world, tmp_path, monkeypatch, capsys):
    """A new user's imports put 271 MB into the tracked checkpoints/ and broke the demo-checkpoint
    test (issue 17): the command lines write to the user's models folder, created on first use,
    and the app lists it beside the repository's."""
    from medattn.models.importer import main as importer
    from medattn.train import parse_args

    env, folder = world
    mine = tmp_path / "not_yet" / "models"
    monkeypatch.setattr(inference, "MODELS_DIR", mine)
    net = torchvision.models.resnet18(weights=None, num_classes=3)
    torch.save(net.state_dict(), tmp_path / "chexnet_like.pth")
    before = sorted(p.name for p in folder.iterdir())
    assert importer([str(tmp_path / "chexnet_like.pth"), "--arch", "resnet18", "--classes", "a", "b", "c",
                     "--task", "multilabel", "--input-size", "64"]) == 0, capsys.readouterr().err
    assert (mine / "chexnet_like.json").exists() and sorted(p.name for p in folder.iterdir()) == before
    assert importer([str(tmp_path / "chexnet_like.pth"), "--arch", "resnet18", "--classes", "a", "b", "c",
                     "--task", "multilabel", "--input-size", "64", "--name", "second"]) == 0
    assert (mine / "second.safetensors").exists()
    assert parse_args(["--dataset", str(env.dataset), "--arch", "resnet18", "--head", "wildcat"]).out == str(mine / "resnet18_wildcat")
    listed = [p for p in inference.list_all_checkpoints()]
    assert [p.name for p in listed[:2]] == ["chexnet_like", "second"] and {"tiny_linear", "tiny_wildcat"} <= {p.name for p in listed}
    at = start()
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["second", "folder"] == "yours" and table.loc["tiny_linear", "folder"] == "repository"
    assert str(mine) in texts(at.caption)
