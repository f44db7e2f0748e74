"""Models: every checkpoint with what it is and how it sees images; import a model from a file
(upload or server path) with its classes and preprocessing; train one on the current dataset as
a background job; map class names that differ in spelling; rename or delete. Thin layout over
medattn.models.importer, catalog, class_names and jobs (medattn.ui.train_panel)."""

import json
from pathlib import Path

import streamlit as st

from medattn import inference
from medattn.data.preprocess import INTENSITIES, INTERPOLATIONS, RESIZE_MODES, Preprocessing
from medattn.inference import list_all_checkpoints
from medattn.models.backbones import ARCHS
from medattn.models.catalog import (checkpoint_table, delete_checkpoint, free_name, read_meta, rename_checkpoint,
                                   test_metrics_table)
from medattn.models.class_names import exact_mapping, remember_class_map, suggest_mapping
from medattn.models.importer import DEFAULT_INTENSITY, Controls, import_checkpoint
from medattn.models.registry import HEADS
from medattn.ui import auth, uploads
from medattn.ui.errors import guard
from medattn.ui.plain import plain
from medattn.ui.sidebar import current, use_checkpoint
from medattn.ui.train_panel import running_trainings, train_panel

LIBRARIES = {"torchvision key names → medattn backbone": None, "TorchXRayVision": "torchxrayvision",
             "MONAI": "monai", "timm": "timm", "torchvision with its own head": "torchvision"}
ARCH_HINTS = {"torchxrayvision": "DenseNet", "monai": "DenseNet121", "timm": "resnet18", "torchvision": "vgg16"}
NONE = "— none —"

MAY_STAY_RANDOM = "May stay random (model tensors, patterns, space-separated)"
MAY_BE_DROPPED = "May be dropped (file tensors, patterns, space-separated)"
# the importer's advice in this page's words
PAGE_CONTROLS = Controls(allow_missing="'May stay random'", ignore="'May be dropped'", classes="'Output classes'",
                         channels="'Channels'")
auth.require_admin()  # first: nothing of this page before an admin is known
selection = current()
folder = inference.models_dir()  # where imports and trainings go: the user's, never the tracked checkpoints/
shipped = [f for f in inference.checkpoint_folders() if f != folder]
paths = list_all_checkpoints()
mine = [p for p in paths if p.parent == folder]
st.title("Models")
st.caption(f"Your models in {plain(folder)} (MEDATTN_MODELS), where imports and trainings are saved; "
           + "".join(f"the repository's in {plain(f)} (MEDATTN_CHECKPOINTS). " for f in shipped))

with guard("Listing the checkpoints"):
    if paths:
        table = checkpoint_table(paths)
        table.insert(1, "folder", ["yours" if p.parent == folder else "repository" for p in paths])
        st.dataframe(table, hide_index=True, width="stretch", key="models_table")
    else:
        st.info("No checkpoints yet: import one or train one below.")

running_trainings(folder)
listing, importing, training, classes_tab, manage = st.tabs(
    ["Details", "Import a model", "Train a model", "Class names", "Rename or delete"])

with listing:
    if paths:
        chosen = st.selectbox("Checkpoint", [p.name for p in paths], key="models_detail")
        meta = read_meta(next(p for p in paths if p.name == chosen))
        shown = {k: meta.get(k) for k in ("arch", "head", "library", "constructor", "classes", "task",
                                          "preprocessing", "dataset", "imported", "training") if meta.get(k) is not None}
        st.json(shown, expanded=1)
        test = (meta.get("metrics") or {}).get("test")
        if test:
            st.markdown(f"**Test metrics** ({test.get('n_images', '?')} images)")
            st.dataframe(test_metrics_table(test), hide_index=True, key="models_test_metrics",
                         column_config={c: st.column_config.NumberColumn(format="%.3f")
                                        for c in ("precision", "recall", "F1", "ROC AUC", "threshold")})

with importing:
    data = selection.dataset
    source_kind = st.radio("Weights", ["Path on this server", "Upload"], horizontal=True, key="models_source_kind")
    if source_kind == "Upload":
        upload = uploads.uploader(uploads.WEIGHTS, key="models_upload")
        server_path = ""
    else:
        upload = None
        server_path = st.text_input("Weights file", key="models_path", placeholder="/path/to/model.pth.tar")
    left, right = st.columns(2)
    library_label = left.selectbox("Model comes from", list(LIBRARIES), key="models_library")
    library = LIBRARIES[library_label]
    if library is None:
        arch = right.selectbox("Backbone", ARCHS, index=ARCHS.index("densenet121"), key="models_arch")
        head = left.selectbox("medattn head", list(HEADS), key="models_head")
        kwargs_text = "{}"
    else:
        arch = right.text_input("Class / model name", value=ARCH_HINTS[library], key=f"models_arch_{library}")
        head = "linear"
        kwargs_text = left.text_input("Constructor arguments (JSON; the class count and input channels are set "
                                      "from the classes and the preprocessing)", value="{}",
                                      key=f"models_kwargs_{library}")
    default_classes = "\n".join(data.classes) if data is not None and library != "torchxrayvision" else ""
    classes_text = st.text_area("Output classes, one per line, in the model's order (empty line: an untrained output)"
                                + ("; empty: TorchXRayVision's 18 pathologies" if library == "torchxrayvision" else ""),
                                value=default_classes, key=f"models_classes_{library}", height=120)
    a, b, c = st.columns(3)
    tasks = ["multilabel", "binary", "multiclass"]
    task = a.selectbox("Task", tasks, index=tasks.index(data.task) if data is not None else 0, key="models_task")
    name = b.text_input("Checkpoint name", key="models_name", placeholder="e.g. chexnet")
    trained_on = c.text_input("Trained on", key="models_trained_on", placeholder="e.g. NIH ChestX-ray14 train split")

    st.markdown("**Preprocessing** (stored with the model; applied wherever it sees an image)")
    a, b, c, d = st.columns(4)
    resize = a.selectbox("Resize", RESIZE_MODES, key="models_resize",
                         help="stretch: the whole image to a square; shorter_side_center_crop: Resize(size) → CenterCrop(input)")
    input_size = b.number_input("Input side (px)", 16, 2048, 224, key="models_input")
    resize_size = c.number_input("Shorter side before the crop (px)", 16, 4096, 256, key="models_resize_size",
                                 disabled=resize == "stretch")
    interpolation = d.selectbox("Interpolation", INTERPOLATIONS, index=1, key="models_interpolation",
                                help="bilinear: PIL's, as torchvision's Resize on PIL images; area: OpenCV")
    default_channels = 1 if library in ("torchxrayvision", "monai") else 3
    default_intensity = DEFAULT_INTENSITY.get(library or "", "imagenet")
    channels = a.selectbox("Channels", [1, 3], index=[1, 3].index(default_channels), key=f"models_channels_{library}")
    intensity = b.selectbox("Intensity", INTENSITIES, index=INTENSITIES.index(default_intensity), key=f"models_intensity_{library}",
                            help="imagenet z-score, xrv [-1024, 1024], unit [0, 1], meanstd: your mean/std")
    mean_text = c.text_input("Mean (meanstd)", key="models_mean", placeholder="0.5")
    std_text = d.text_input("Std (meanstd)", key="models_std", placeholder="0.25")
    a, b = st.columns(2)
    allow_missing = a.text_input(MAY_STAY_RANDOM, key="models_allow_missing",
                                 placeholder="e.g. classifier.*  — empty: refuse any partial load")
    ignore = b.text_input(MAY_BE_DROPPED, key="models_ignore",
                          placeholder="e.g. aux_logits.*  — empty: every file tensor must find its place")

    if st.button("Import", type="primary", key="models_import"):
        with guard("Import"):
            if not name.strip():
                raise ValueError("give the checkpoint a name")
            classes = [line.strip() for line in classes_text.splitlines()]
            while classes and not classes[-1]:
                classes.pop()
            if not classes and library == "torchxrayvision":
                import torchxrayvision as xrv

                classes = list(xrv.datasets.default_pathologies)
            numbers = {"mean": tuple(float(v) for v in mean_text.replace(",", " ").split()),
                       "std": tuple(float(v) for v in std_text.replace(",", " ").split())} if intensity == "meanstd" else {}
            geometry = ({"size": int(input_size)} if resize == "stretch"
                        else {"size": int(resize_size), "crop": int(input_size)})
            prep = Preprocessing(resize=resize, interpolation=interpolation, channels=int(channels),
                                 intensity=intensity, **geometry, **numbers)
            if upload is not None:
                weights = upload.path  # on disk under its own name: the importer reads the format from it
                shown = upload.name  # messages name the user's file, never where the server holds it
            elif server_path.strip():
                weights = Path(server_path.strip()).expanduser()
                shown = str(weights)
            else:
                raise ValueError("choose a weights file")
            with st.spinner("Importing…"):
                saved, report = import_checkpoint(
                    weights, free_name(folder, name.strip(), shipped), arch=arch, classes=classes, task=task,
                    preprocessing=prep, library=library, head=head, kwargs=json.loads(kwargs_text or "{}"),
                    allow_missing=allow_missing.split(), ignore=ignore.split(), dataset=trained_on.strip() or None,
                    shown=shown, controls=PAGE_CONTROLS)
            st.session_state["models_imported"] = (saved.name, report.notes, report.random, report.max_logit_difference)
            st.rerun()
    done = st.session_state.get("models_imported")
    if done:
        saved_name, notes, left_random, difference = done
        verified = f" Logits checked against the source architecture: max |Δ| = {difference:.2g}." if difference is not None else ""
        st.success(f"Imported **{plain(saved_name)}**.{verified}")
        for note in notes:
            st.caption(f"· {plain(note)}")
        if left_random:
            st.warning(f"Left random (allowed): {plain(', '.join(left_random[:8]))}")
        if st.button(f"Use {plain(saved_name)} in Compare", key="models_use"):
            use_checkpoint(saved_name)
            st.session_state.pop("models_imported")
            st.rerun()

with training:
    train_panel(selection, folder)

with classes_tab:
    data = selection.dataset
    if data is None:
        st.info("Load a dataset in the sidebar to map class names.")
    else:
        st.caption(f"Checkpoints whose class names differ from {plain(data.name)}'s ({plain(', '.join(data.classes))}). "
                   "Choose the output that answers each dataset class; the mapping is saved in the checkpoint's json.")
        shown = 0
        for path in paths:
            meta = read_meta(path)
            outputs = [str(c) for c in meta.get("classes") or []]
            if not outputs or exact_mapping(outputs, data.classes) is not None:
                continue
            shown += 1
            saved_map = (meta.get("class_map") or {}).get(data.name) or {}
            suggested = {**suggest_mapping(outputs, data.classes), **saved_map}
            with st.expander(f"{plain(path.name)}: {len([o for o in outputs if o])} outputs"
                             + (" · mapping saved" if saved_map else ""), expanded=not saved_map):
                with st.form(f"models_map_{path.name}"):
                    cols = st.columns(3)
                    choices = [NONE] + [o for o in outputs if o]
                    picked = {}
                    for i, cls in enumerate(data.classes):
                        guess = suggested.get(cls)
                        picked[cls] = cols[i % 3].selectbox(plain(cls), choices, index=choices.index(guess) if guess in choices else 0,
                                                            key=f"models_map_{path.name}_{cls}")
                    if st.form_submit_button("Save mapping"):
                        with guard("Saving the mapping"):
                            unmapped = [c for c, o in picked.items() if o == NONE]
                            if unmapped:
                                raise ValueError(f"choose an output for {', '.join(unmapped)}")
                            remember_class_map(path, data.name, picked)
                            st.success(f"Saved: {plain(path.name)} now answers {plain(data.name)}'s classes.")
        if not shown:
            st.success("Every checkpoint here uses this dataset's class names.")

with manage:
    if not mine:
        st.info(f"Your models folder ({plain(folder)}) is empty; the repository's checkpoints are not renamed or deleted here.")
    else:
        target = st.selectbox("Checkpoint (yours)", [p.name for p in mine], key="models_manage")
        a, b = st.columns(2)
        new_name = a.text_input("New name", key="models_new_name")
        if a.button("Rename", key="models_rename"):
            with guard("Rename"):
                rename_checkpoint(folder / target, new_name.strip())
                st.rerun()
        sure = b.checkbox(f"Delete {plain(target)} (both files, cannot be undone)", key="models_delete_sure")
        if b.button("Delete", key="models_delete", disabled=not sure):
            with guard("Delete"):
                delete_checkpoint(folder / target)
                st.rerun()
