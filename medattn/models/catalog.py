"""The checkpoints in a folder as a table, and renaming or deleting one (both files together).

Reads only the NAME.json files: listing a folder of large checkpoints never loads weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medattn.data.preprocess import Preprocessing
from medattn.models.checkpoint import checkpoint_paths

COLUMNS = ["name", "arch", "head", "input", "preprocessing", "classes", "task", "trained on",
           "test mean AUC", "source", "created", "MB"]
MAX_NAME = 100
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """NAME.json of checkpoint NAME as a dict; {} when missing or unreadable."""
    try:
        meta = json.loads(checkpoint_paths(path)[1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def test_metrics_table(test: dict) -> pd.DataFrame:
    """A checkpoint's test metrics (`metrics.test`, as `medattn.metrics.classification.
    classification_report` writes them) as a table: one row per class with precision, recall,
    F1, ROC AUC, threshold and support, then one "all classes" row with the macro averages and
    the mean ROC AUC."""
    columns = ["class", "precision", "recall", "F1", "ROC AUC", "threshold", "support"]
    rows = [{"class": name, "precision": m.get("precision"), "recall": m.get("recall"), "F1": m.get("f1"),
             "ROC AUC": m.get("roc_auc"), "threshold": m.get("threshold"), "support": m.get("support")}
            for name, m in (test.get("per_class") or {}).items()]
    rows.append({"class": "all classes (macro)", "precision": test.get("precision_macro"),
                 "recall": test.get("recall_macro"), "F1": test.get("f1_macro"), "ROC AUC": test.get("roc_auc_mean"),
                 "threshold": None, "support": _total_support(test)})
    return pd.DataFrame(rows, columns=columns)


def _total_support(test: dict) -> int | None:
    """The macro row's support: the per-class supports summed, as scikit-learn's report does
    (multilabel: the positive labels, not the images; multiclass: the images)."""
    supports = [m.get("support") for m in (test.get("per_class") or {}).values()]
    if supports and all(isinstance(s, (int, float)) for s in supports):
        return int(sum(supports))
    return test.get("n_images")


def checkpoint_table(paths: list[Path]) -> pd.DataFrame:
    """One row per checkpoint: what it is (arch, head or library, classes, task), how it sees
    images (input side, `Preprocessing.describe`), what it was trained on, its test mean AUC
    where training recorded one, where it came from (trained here or imported from a file)."""
    rows = []
    for path in paths:
        meta = read_meta(path)
        weights = checkpoint_paths(path)[0]
        classes = [c for c in meta.get("classes") or [] if c]
        try:
            prep = Preprocessing.from_meta(meta)
            described, side = prep.describe(), prep.input_size
        except (TypeError, ValueError) as exc:
            described, side = f"invalid: {exc}", None
        imported = meta.get("imported") or {}
        rows.append({
            "name": Path(path).name,
            "arch": meta.get("arch", "?"),
            "head": meta.get("head", "?") if "library" not in meta else f"{meta['library']} (its own)",
            "classes": f"{len(classes)}: {', '.join(classes[:3])}{', …' if len(classes) > 3 else ''}",
            "task": meta.get("task", ""),
            "input": side,
            "preprocessing": described,
            "trained on": meta.get("dataset", ""),
            "test mean AUC": _mean_auc(meta.get("metrics")),
            "source": f"imported from {imported['file']}" if imported.get("file") else ("trained here" if meta.get("training") else ""),
            "created": str(meta.get("created", ""))[:16].replace("T", " "),
            "MB": round(weights.stat().st_size / 1e6, 1) if weights.exists() else None,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _mean_auc(metrics: Any) -> float | None:
    test = (metrics or {}).get("test") if isinstance(metrics, dict) else None
    if not isinstance(test, dict):
        return None
    for key in ("roc_auc_mean",):
        if isinstance(test.get(key), (int, float)):
            return round(float(test[key]), 3)
    return None


def free_name(folder: str | os.PathLike, name: str, taken_in: Sequence[str | os.PathLike] = ()) -> Path:
    """The base path of a new checkpoint NAME in `folder`. ValueError for a name that is not a
    plain file name (letters, digits, '.', '_', '-': no folders, so nothing is written outside
    `folder`) or one already taken there or in the `taken_in` folders (nothing is overwritten,
    and no two listed checkpoints share a name)."""
    if len(name) > MAX_NAME:
        raise ValueError(f"checkpoint names have at most {MAX_NAME} characters, got {len(name)}")
    if not NAME.match(name):
        raise ValueError(f"checkpoint names start with a letter or digit and use letters, digits, '.', '_' and '-' "
                         f"only, got {name!r}")
    for place in (folder, *taken_in):
        weights, info = checkpoint_paths(Path(place) / name)
        if weights.exists() or info.exists():
            raise ValueError(f"a checkpoint named {name} already exists in {place}")
    return checkpoint_paths(Path(folder) / name)[0].with_suffix("")


def rename_checkpoint(path: str | os.PathLike, new_name: str) -> Path:
    """Rename NAME.safetensors + NAME.json to NEW in the same folder; returns the new base.
    ValueError for an invalid name or one already taken (nothing is overwritten)."""
    weights, info = checkpoint_paths(path)
    new_weights, new_info = checkpoint_paths(free_name(weights.parent, new_name))
    os.rename(weights, new_weights)
    os.rename(info, new_info)
    return new_weights.with_suffix("")


def delete_checkpoint(path: str | os.PathLike) -> None:
    """Remove NAME.safetensors and NAME.json."""
    for file in checkpoint_paths(path):
        file.unlink(missing_ok=True)
