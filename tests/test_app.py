"""Every page through Streamlit's AppTest: the Compare grid and its numbers, failure cases that
open in Compare, the leaderboard with precompute, the Data page, and errors shown as messages."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from medattn import inference, pipeline
from medattn.data import load_dataset
from medattn.store import Run
from tests.app_env import app_env, texts
from tests.sight import in_sight

APP = str(Path(__file__).resolve().parents[1] / "workbench.py")
TIMEOUT = 300


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, above all on a shared CPU
    world = app_env(tmp_path_factory.getbasetemp() / "app_env")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "CHECKPOINT_DIR", world.checkpoints)
        patch.setattr(pipeline, "CACHE_DIR", world.cache)
        patch.setenv("MEDATTN_DATASET", str(world.dataset))
        patch.setenv("MEDATTN_PREFETCH", "0")  # only test_next_image_opens_from_the_cache wants it
        yield world
    torch.set_num_threads(threads)


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_compare_grid_scores_every_model_and_method(env):
    at = start()
    numbers = at.dataframe[0].value
    # 2 models × (saliency, integrated gradients, PDA, WILDCAT), less WILDCAT maps of the linear head
    assert len(numbers) == 7
    assert set(numbers["method"]) == {"saliency", "integrated_gradients", "pda", "wildcat"}
    assert set(numbers.loc[numbers["method"] == "wildcat", "checkpoint"]) == {"tiny_wildcat"}
    assert np.isfinite(numbers["auprc"]).all()  # the default filter opens on an image with findings
    assert set(numbers["hit"]) <= {0.0, 1.0} and numbers["probability"].between(0, 1).all()
    figure = at.get("plotly_chart")[0].proto.spec
    assert "AUPRC=" in figure and "no class maps" not in figure  # no panel spent on it…
    assert "Not shown: wildcat for tiny_linear (linear head has no class maps)." in texts(at.caption)  # …said once
    assert len(at.get("download_button")) == 2

    image = at.selectbox(key="image").value
    dataset = load_dataset(env.dataset)
    boxed = [c for c in dataset.classes if c in set(dataset.boxes_for(image)["label"])]
    labelled = [c for c in dataset.classes if dataset.images.at[image, c]]
    assert at.selectbox(key="cmp_target").value == (boxed or labelled)[0]  # the class it can be scored on
    assert set(numbers["seconds"]) - {"cached"}, "the first view computed some maps"
    ready = f"for {image}, target {(boxed or labelled)[0]}"  # the status line once the grid is complete
    assert any(t.startswith("7 of 7 maps ready (") and t.endswith(ready) for t in texts(at.caption).split("\n"))
    at.run()
    assert (at.dataframe[0].value["seconds"] == "cached").all()  # the second view reads every map from the cache
    assert f"7 of 7 maps ready (7 from the cache) {ready}" in texts(at.caption)

    at.button(key="cmp_next").click().run()
    assert at.selectbox(key="image").value != image
    before = at.dataframe[0].value["probability"].to_numpy()
    other = next(c for c in ("nodule", "opacity", "effusion") if c != at.selectbox(key="cmp_target").value)
    at.selectbox(key="cmp_target").set_value(other).run()
    assert not at.exception and len(at.dataframe[0].value) == 7
    assert not np.allclose(at.dataframe[0].value["probability"].to_numpy(), before)  # now explaining `other`


# Images outside the filter the page opens with (positive test images), and one inside it.
@pytest.mark.parametrize("split, finding", [("train", True), ("val", False), ("test", False)])
def test_deep_link_opens_that_image(env, split, finding):
    dataset = load_dataset(env.dataset)
    images = dataset.split(split)
    image_id = images.index[dataset.label_matrix(images.index).any(axis=1) == finding][-1]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sb_methods"] = ["saliency"]  # quick: this is about which image opens
    at.query_params["image"] = image_id
    at.run()
    assert not at.exception
    assert at.selectbox(key="image").value == image_id and at.query_params["image"] == image_id  # not rewritten
    assert f"**{image_id}** · split {split}" in texts(at.caption)
    assert set(at.dataframe[0].value["method"]) == {"saliency"}
    at.button(key="cmp_next").click().run()  # and the chooser goes on from there, in the image's split
    assert at.selectbox(key="image").value in set(images.index) - {image_id}


def test_deep_link_to_an_unknown_image_says_so(env):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sb_methods"] = ["saliency"]
    at.query_params["image"] = "no_such_image"
    at.run()
    assert not at.exception
    warnings = texts(at.warning)
    assert "'no_such_image'" in warnings and "does not have" in warnings


def test_next_image_opens_from_the_cache(env, monkeypatch):
    import time

    from medattn.ui.background import worker

    monkeypatch.setenv("MEDATTN_PREFETCH", "1")
    for stored in env.cache.rglob("predictions/*.parquet"):  # as on a fresh server: no probabilities yet
        stored.unlink()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sb_methods"] = ["gradcam", "smoothgrad"]  # never precomputed: quick, and one slow
    at.run()
    deadline = time.monotonic() + 120
    while worker().pending() and time.monotonic() < deadline:  # the neighbours' maps, computed while we "look"
        time.sleep(0.2)
    # a map computing with these models (a neighbour's prefetch, another reader) holds their
    # locks: a grid whose maps and probabilities are stored must not wait for one
    import contextlib

    from medattn.ui import loaders

    @contextlib.contextmanager
    def busy(name):
        raise AssertionError(f"the page waited for {name}'s lock")
        yield

    monkeypatch.setattr(loaders, "model_lock", busy)
    at.button(key="cmp_next").click().run()
    numbers = at.dataframe[0].value
    assert not at.exception and len(numbers) == 4 and (numbers["seconds"] == "cached").all()


def test_compare_filters_and_display_controls(env):
    at = start()
    test_ids = set(load_dataset(env.dataset).split("test").index)
    at.selectbox(key="cmp_label").set_value("any").run()
    assert set(at.selectbox(key="image").options) == test_ids
    at.selectbox(key="cmp_outcome").set_value("correct (all models)").run()
    chooser = [s for s in at.selectbox if s.key == "image"]
    assert (chooser and set(chooser[0].options) <= test_ids) or "No image matches" in texts(at.warning)
    at.selectbox(key="cmp_outcome").set_value("any").run()
    dataset = load_dataset(env.dataset)
    at.toggle(key="cmp_boxed").set_value(True).run()
    assert set(at.selectbox(key="image").options) == test_ids & set(dataset.boxes["image_id"])
    at.selectbox(key="cmp_class").set_value("nodule").run()
    nodules = set(dataset.boxes.loc[dataset.boxes["label"] == "nodule", "image_id"])
    assert set(at.selectbox(key="image").options) == test_ids & nodules
    at.selectbox(key="cmp_class").set_value("any").run()
    at.toggle(key="cmp_boxed").set_value(False).run()
    at.toggle(key="cmp_fair").set_value(True).run()
    assert not at.exception
    at.toggle(key="cmp_fair").set_value(False).run()
    at.radio(key="cmp_view").set_value("side by side").run()
    at.radio(key="cmp_norm").set_value("shared per method").run()
    at.slider(key="cmp_width").set_value(0.5).run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert "degenerate" in at.dataframe[0].value.columns
    at.selectbox(key="cmp_protocol").set_value("arun2021").run()  # scores under Arun et al. 2021
    assert not at.exception and len(at.dataframe[0].value) == 7


def test_unreadable_image_is_a_message_and_the_page_goes_on(env, tmp_path):
    copy = Path(shutil.copytree(env.dataset, tmp_path / "broken"))
    dataset = load_dataset(copy)
    first = next(i for i in dataset.split("test").index if dataset.labels(i).any())
    (copy / "images" / dataset.images.at[first, "path"]).write_bytes(b"not an image")
    at = start()
    at.text_input(key="sb_dataset_path").input(str(copy)).run()
    assert not at.exception
    assert "cannot read image" in texts(at.error)
    assert at.selectbox(key="image").value == first  # the chooser still works
    at.button(key="cmp_next").click().run()
    assert at.dataframe and not at.exception


def test_missing_dataset_is_reported_on_every_page(env, tmp_path):
    at = start()
    at.text_input(key="sb_dataset_path").input(str(tmp_path / "nowhere")).run()
    assert "not a folder" in texts(at.sidebar.error)
    assert "Choose a valid dataset" in texts(at.info)
    for page in ("failures", "leaderboard", "data"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception and (at.info or at.warning)


def test_unreadable_checkpoint_is_named_and_the_others_still_load(env, tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "broken.safetensors").write_bytes(b"\0" * 16)
    at = start()
    at.text_input(key="sb_extra_checkpoint").input(str(tmp_path / "broken.safetensors")).run()
    assert not at.exception
    assert "broken" in texts(at.sidebar.warning)
    assert len(at.dataframe[0].value) == 7  # the two good checkpoints still fill the grid


def test_build_real_rsna_on_the_data_page_and_compare_without_matching_checkpoints(env, shared_data, tmp_path):
    at = start("data")
    at.selectbox(key="data_kind").set_value("rsna").run()
    at.text_input(key="data_source").input(str(shared_data / "rsna-pneumonia-sample"))
    at.text_input(key="data_out_rsna").input(str(tmp_path / "rsna"))
    at.toggle(key="data_all_test").set_value(True)  # an external model's evaluation: every image in test
    at.button(key="data_build").click().run()
    assert not at.exception and "Built" in texts(at.success)
    at.button(key="data_use").click().run()
    assert at.text_input(key="sb_dataset_path").value == str(tmp_path / "rsna")
    counts = at.dataframe[0].value
    assert counts.loc["total", "images"] == 100 and counts.loc["total", "boxes"] == 172
    assert counts.loc["test", "images"] == 100
    warnings = texts(at.sidebar.warning)
    assert ("**tiny_linear**, **tiny_wildcat** not used: predicts nodule, opacity, effusion, but the dataset has "
            "Pneumonia; map or import on the Models page") in warnings
    assert warnings.count("nodule") == 1  # one line for every checkpoint trained on other classes

    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert "No selected checkpoint predicts this dataset's classes" in texts(at.warning)
    assert len(at.get("plotly_chart")) == 1  # the real image and its boxes are still shown
    for page in ("failures", "leaderboard"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception and "trained on its classes" in texts(at.info)


def test_failure_case_opens_in_compare(env):
    at = start("failures")
    assert at.title[0].value == "Failure cases"
    at.selectbox(key="fail_model").set_value("tiny_linear").run()
    at.selectbox(key="fail_method").set_value("saliency").run()
    buttons = [b for b in at.button if b.key and b.key.startswith("fail_open_")]
    assert buttons, "no failure case found"
    captions = [t for t in texts(at.caption).split("\n") if "·" in t and "**" in t]
    image_id = captions[0].split("**")[1]
    target_class = captions[0].split(" · ")[2].split()[0]
    buttons[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Compare"
    assert at.selectbox(key="image").value == image_id
    assert at.selectbox(key="cmp_target").value == target_class


def test_leaderboard_precompute_tables_and_sanity_rows(env):
    at = start("leaderboard")
    table = at.dataframe[0].value
    assert {("tiny_linear", "saliency"), ("tiny_wildcat", "wildcat")} <= set(zip(table["checkpoint"], table["method"]))
    assert table["auprc"].str.match(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]").all()
    assert at.metric and "95% CI" in texts(at.caption)  # a paired difference
    classification = at.dataframe[1].value
    assert set(classification["checkpoint"]) == {"tiny_linear", "tiny_wildcat"}
    assert len(at.get("plotly_chart")) == 3  # CI bars, PR, ROC

    at.multiselect(key="lb_pre_methods").set_value(["gradcam"])
    at.number_input(key="lb_pre_limit").set_value(3)
    at.button(key="lb_pre_run").click().run()
    assert not at.exception
    wait_for_jobs(env)
    at.run()
    methods = set(at.dataframe[0].value["method"])
    assert "gradcam" in methods

    dataset = load_dataset(env.dataset)
    Run.for_dataset(dataset, env.cache / "runs").scores.append(  # rows as medattn.metrics.sanity writes them
        [{"image_id": dataset.split("test").index[0], "checkpoint": "tiny_linear", "checkpoint_hash": _hash(at),
          "method": f"sanity:cascading:saliency@{step}", "check": "cascading", "explainer": "saliency", "step": step,
          "layer": layer, "other_checkpoint": "", "target": "0", "target_class": "nodule", "ssim": ssim,
          "spearman": ssim} for step, layer, ssim in ((0, "none", 1.0), (1, "head", 0.4))])
    at.run()
    assert "Sanity checks" in [h.value for h in at.header]
    assert not any(m.startswith("sanity:") for m in at.dataframe[0].value["method"])
    assert len(at.get("plotly_chart")) == 4  # and the cascading randomisation chart


def test_coming_back_to_the_leaderboard_shows_the_running_precompute_with_its_stop(env, tmp_path, monkeypatch):
    """The job's progress and Stop were inside the precompute expander, collapsed once the page
    has scores."""
    from medattn.jobs import manager as jobs

    monkeypatch.setattr(jobs, "default_root", lambda: tmp_path / "jobs")  # test_leaderboard… waits for the others
    at = start("leaderboard")
    at.multiselect(key="lb_pre_methods").set_value(["pda"])  # long on a CPU: still running when we come back
    at.button(key="lb_pre_run").click().run()
    [job] = jobs.JobManager().list()
    try:
        again = start("leaderboard")
        assert not again.exception and in_sight(again, "lb_pre_stop")
        assert "Background jobs (1 running)" in [e.label for e in again.expander]
        # another tab's Run is disabled and says why (it gave no reason before)
        assert again.button(key="lb_pre_run").disabled
        assert any("already running" in str(c.value) for c in again.caption)
        again.button(key="lb_pre_stop").click().run()
        assert jobs.JobManager().status(job.id).state in ("stopped", "interrupted")
    finally:
        jobs.JobManager().stop(job.id)


def wait_for_jobs(env, timeout: float = 180) -> None:
    """Until every background job under the app's cache has ended; each must have finished."""
    from medattn.jobs import JobManager

    manager, deadline = JobManager(env.cache / "jobs"), time.monotonic() + timeout
    while any(j.active for j in manager.list()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(j.state == "done" for j in manager.list()), [(j.state, j.message, manager.log_tail(j.id)) for j in manager.list()]


def _hash(at: AppTest) -> str:
    return next(m.hash for m in at.session_state["medattn_selection"].models if m.name == "tiny_linear")


def test_data_page_counts_browses_and_checks_folders(env, tmp_path):
    at = start("data")
    dataset = load_dataset(env.dataset)
    counts = at.dataframe[0].value
    assert counts.loc["total", "images"] == 60 and counts.loc["total", "boxes"] == len(dataset.boxes)
    assert counts.loc["test", "images"] == len(dataset.split("test"))
    assert sum(1 for b in at.button if b.key and b.key.startswith("data_open_")) == 12
    at.number_input(key="data_page").set_value(2).run()
    assert not at.exception

    broken = Path(shutil.copytree(env.dataset, tmp_path / "broken"))
    (broken / "images.csv").write_text((broken / "images.csv").read_text().replace(",test,", ",exam,", 1))
    at.text_input(key="data_folder").input(str(broken))
    at.button(key="data_check").click().run()
    assert "field 'split' is 'exam'" in texts(at.error)

    at.text_input(key="data_folder").input(str(env.dataset))
    at.button(key="data_check").click().run()
    assert "no problems found" in texts(at.success)
    at.button(key="data_use").click().run()
    assert at.text_input(key="sb_dataset_path").value == str(env.dataset)


def test_background_worker_joins_jobs_in_flight():
    import threading

    from medattn.ui.background import Worker

    release, calls = threading.Event(), []

    def work(progress):
        calls.append(1)
        progress(1, 4)
        release.wait(10)
        return "map"

    worker = Worker()
    first = worker.submit(("model", "image", "pda"), work)
    second = worker.submit(("model", "image", "pda"), work)  # a rerun asking for the same map
    assert second is first
    release.set()
    assert first.future.result(10) == "map" and len(calls) == 1 and first.progress == [1, 4]
    third = worker.submit(("model", "image", "pda"), work)  # finished jobs are forgotten: the cache has the map
    assert third.future.result(10) == "map" and len(calls) == 2


def test_precompute_job_outlives_the_page_and_its_rows_appear(env):
    """Started from the Leaderboard, the job runs in its own process: switching to Compare
    does not stop it, and the Leaderboard then shows its rows."""
    from medattn.jobs import JobManager

    at = start("leaderboard")
    at.multiselect(key="lb_pre_methods").set_value(["guided_backprop"])
    at.number_input(key="lb_pre_limit").set_value(4)
    at.button(key="lb_pre_run").click().run()
    assert not at.exception
    manager = JobManager(env.cache / "jobs")
    [job] = [j for j in manager.list() if "guided_backprop" in j.title]
    assert job.active
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    wait_for_jobs(env)
    finished = manager.status(job.id)
    assert finished.done == finished.total > 0
    at.switch_page("pages/leaderboard.py").run()
    assert not at.exception
    assert "guided_backprop" in set(at.dataframe[0].value["method"])
    assert any(p.proto.text.startswith("done:") for p in at.get("progress"))  # the panel reports the job done


def test_unreadable_cache_and_predictions_are_set_aside_and_compare_still_renders(env, monkeypatch, caplog):
    from medattn.store import HeatmapCache

    keys: dict[str, list[str]] = {}
    real_key = HeatmapCache.key

    def spy(self, checkpoint_hash, image_hash, method, params=None, target=None):
        key = real_key(self, checkpoint_hash, image_hash, method, params, target)
        keys.setdefault(method, []).append(key)
        return key

    monkeypatch.setattr(HeatmapCache, "key", spy)
    start()
    cache = HeatmapCache(env.cache / "heatmaps")
    damaged = [cache.path(k) for k in keys["saliency"]]
    predictions = Run.for_dataset(load_dataset(env.dataset), env.cache / "runs").prediction_store.path("tiny_linear")
    for path in [*damaged, predictions]:
        path.write_bytes(b"half a file")
    with caplog.at_level("WARNING", logger="medattn.store"):
        at = start()
    assert len(at.dataframe[0].value) == 7
    for path in [*damaged, predictions]:
        assert any(str(path) in m and "set aside" in m for m in caplog.messages), path
        assert list(path.parent.glob(f"{path.name}.corrupt-*")) and path.exists()  # set aside, then recomputed


def test_prefetch_waits_behind_readers_and_yields_to_them():
    import threading

    from medattn.ui.background import Worker

    order, gate = [], threading.Event()

    def work(name, ticks=0):
        def run(progress):
            gate.wait(10)
            for tick in range(ticks):
                progress(tick, ticks)  # a prefetch yields here when a reader's job is queued
                order.append(f"{name}@{tick}")
                if name == "next-pda" and tick == 0:
                    reader.set()
                    waited.wait(10)
            order.append(name)
            return name
        return run

    reader, waited = threading.Event(), threading.Event()
    worker = Worker()
    blocker = worker.submit("blocker", work("blocker"))  # keeps the queue from draining while we fill it
    worker.prefetch("session", [("next-pda", work("next-pda", ticks=2)), ("next-saliency", work("next-saliency"))])
    worker.prefetch("session", [("next-pda", work("next-pda", ticks=2))])  # the reader moved on: saliency dropped
    gate.set()
    assert blocker.future.result(10) == "blocker"
    assert reader.wait(10)
    now = worker.submit("current", work("current"))  # a reader asks while the prefetch runs
    waited.set()
    assert now.future.result(10) == "current"
    assert worker.submit("next-pda", work("next-pda", ticks=2)).future.result(10) == "next-pda"
    assert order[:3] == ["blocker", "next-pda@0", "current"] and "next-saliency" not in order
    assert order[-1] == "next-pda"
    worker.stop()


def test_compare_opens_on_the_class_of_the_box_and_drops_methods_no_model_has(env, tmp_path):
    """An image labelled with two findings whose only box is of the second opens on the
    second (not "no box" of the first); with the linear model alone, WILDCAT is not in the grid."""
    from medattn.ui.compare_request import first_target

    copy = Path(shutil.copytree(env.dataset, tmp_path / "one_box"))
    dataset = load_dataset(copy)
    image = next(i for i in dataset.images.index
                 if dataset.labels(i).sum() >= 2 and len(set(dataset.boxes_for(i)["label"])) >= 2)
    labelled = [c for c in dataset.classes if dataset.images.at[image, c]]
    boxes = dataset.boxes[~((dataset.boxes["image_id"] == image) & (dataset.boxes["label"] == labelled[0]))]
    boxes.to_csv(copy / "boxes.csv", index=False)
    remaining = set(boxes.loc[boxes["image_id"] == image, "label"])
    assert first_target(load_dataset(copy), image) == [c for c in labelled if c in remaining][0] != labelled[0]

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sb_checkpoints"] = ["tiny_linear"]
    at.run()
    assert not at.exception
    assert at.multiselect(key="sb_methods").value == ["saliency", "integrated_gradients", "pda"]
    assert set(at.dataframe[0].value["method"]) == {"saliency", "integrated_gradients", "pda"}
    assert "Not shown" not in texts(at.caption)
    at.pills(key="sb_checkpoints").set_value(["tiny_linear", "tiny_wildcat"]).run()  # the default follows the models
    assert "wildcat" in at.multiselect(key="sb_methods").value


def test_a_reload_keeps_the_dataset_models_and_image(env, tmp_path):
    copy = Path(shutil.copytree(env.dataset, tmp_path / "elsewhere"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sb_methods"] = ["saliency"]
    at.run()
    at.text_input(key="sb_dataset_path").input(str(copy)).run()
    at.pills(key="sb_checkpoints").set_value(["tiny_linear"]).run()
    at.button(key="cmp_next").click().run()
    image = at.selectbox(key="image").value
    assert not at.exception
    link = dict(at.query_params)
    assert link["dataset"] in (str(copy), [str(copy)]) and link["image"] in (image, [image])
    assert link["models"] in ("tiny_linear", ["tiny_linear"])

    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT)  # a new tab: a fresh session with the link
    reloaded.session_state["sb_methods"] = ["saliency"]
    for key, value in link.items():
        reloaded.query_params[key] = value
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.text_input(key="sb_dataset_path").value == str(copy)
    assert reloaded.pills(key="sb_checkpoints").value == ["tiny_linear"]
    assert reloaded.selectbox(key="image").value == image
    assert set(reloaded.dataframe[0].value["checkpoint"]) == {"tiny_linear"}


def test_score_pages_name_their_split_and_say_when_results_are_partial(env):
    dataset = load_dataset(env.dataset)
    at = start("leaderboard")
    assert at.selectbox(key="lb_split").value == "test"
    first = dataset.split("test").index[0]
    part = Run.for_dataset(dataset, env.cache / "runs").scores.append(  # a stopped job's one row
        [{"image_id": first, "checkpoint": "tiny_linear", "checkpoint_hash": _hash(at), "model": "resnet18 + linear",
          "method": "occlusion", "target": "0", "target_class": "nodule", "label": 1, "probability": 0.6,
          "predicted": 1, "correct": 1, "n_boxes": 1, "split": "test", "auprc": 0.5, "hit": 1.0, "miou": 0.2,
          "degenerate": False, "scoring": pipeline.SCORING, "protocol": "medattn"}])
    try:
        at.run()
        n = len(dataset.split("test"))
        assert f"tiny_linear · occlusion: 1 of {n} images" in texts(at.warning)
        assert "Partial results on the test split" in texts(at.warning)
        table = at.dataframe[0].value.set_index(["checkpoint", "method"])
        assert table.at[("tiny_linear", "occlusion"), "images"] == f"1 / {n}"
        assert table.at[("tiny_linear", "saliency"), "images"] == f"{n} / {n}"
        at.switch_page("pages/failures.py").run()
        assert not at.exception and "on the test split" in texts(at.subheader)
        assert "Partial results on the test split" in texts(at.warning)
    finally:
        part.unlink()  # the other tests see the world's complete scores


def test_leaderboard_faithfulness_columns_reference_rows_and_compare_curves(env, tmp_path, monkeypatch):
    """Rows precompute stored with faithfulness metrics and reference maps fill the Leaderboard's
    faithfulness table (reference maps as rows of their own) and its rank-agreement view; Compare
    draws a panel's deletion and insertion curves on demand. On a copy of the app's cache, so
    the other tests see the rows they expect."""
    from medattn.jobs.precompute import precompute
    from medattn.store import HeatmapCache

    cache = tmp_path / "cache"
    shutil.copytree(env.cache, cache)
    monkeypatch.setattr(pipeline, "CACHE_DIR", cache)
    dataset = load_dataset(env.dataset)
    settings = pipeline.FaithfulnessSettings(steps=5, percentages=(50,))
    methods = ["saliency", "gradcam", "reference:blank", "reference:center", "reference:box_prior"]
    for name in ("tiny_linear", "tiny_wildcat"):
        precompute(dataset, [env.checkpoints / name], methods, image_ids=list(dataset.split("test").index[:4]),
                   run=Run.for_dataset(dataset, cache / "runs"), cache=HeatmapCache(cache / "heatmaps"), device="cpu",
                   progress=lambda *_: None, faithfulness=settings)
    at = start("leaderboard")
    assert "Faithfulness" in [h.value for h in at.header]
    faith = next(d.value for d in at.dataframe if "Deletion AUC ↓" in d.value.columns)
    assert {"reference · blank", "reference · box_prior", "saliency", "gradcam"} <= set(faith["method"])
    assert faith["Insertion AUC ↑"].str.match(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]").all()
    agreement = next(d.value for d in at.dataframe if "tau" in d.value.columns)
    assert set(agreement["checkpoint"]) == {"tiny_linear", "tiny_wildcat", "all"}
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("lower is better" in spec and "Deletion AUC" in spec for spec in charts)  # the axis says which way
    localization = at.dataframe[0].value
    assert "reference:box_prior" in set(localization["method"])  # AUPRC beside the methods'
    at.checkbox(key="lb_agree_refs").check().run()
    assert not at.exception

    at = start("compare")
    at.multiselect(key="cmp_curve_panels").set_value(at.multiselect(key="cmp_curve_panels").options[:1])
    at.select_slider(key="cmp_curve_steps").set_value(10)
    at.button(key="cmp_curves_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    figure = at.get("plotly_chart")[-1].proto.spec
    assert "deletion (AUC" in figure and "insertion (AUC" in figure


def test_a_grid_that_fails_midway_leaves_no_still_frame_claiming_to_compute(env, monkeypatch):
    """A session's first grid is a still image until its final grid: when the grid fails after
    a frame was sent (e.g. an error outside the panels), that frame ('computing…', 'until its
    maps are final') stayed under the error box."""
    from medattn.ui import compare_grid

    def failing(selection, image_id, target, display, show, **kwargs):
        image = np.zeros((32, 32), np.float32)
        show([[compare_grid.Panel(m.name, "saliency", image, note="computing…") for m in selection.models]])
        raise RuntimeError("the grid broke")

    monkeypatch.setattr(compare_grid, "compute_grid", failing)
    at = start()
    assert "Computing the grid: RuntimeError: the grid broke" in texts(at.error)
    assert not at.get("image") and not at.get("plotly_chart")
