"""Train any arch × head on any dataset folder: `python -m medattn.train --help`.

Seed-paper protocols are presets (Gonçalves 2021, Wang 2021, Aggarwal 2020); every preset value
can be overridden. The best weights by validation loss become the checkpoint; per-epoch metrics,
the test-split classification report and the training provenance go into its json. A resume
file (`NAME.resume.pt`, tensors and numbers only, read with weights_only=True) lets an
interrupted run continue where it stopped (after its last finished epoch).

`train(config, progress=…, stop=…)` is also what a background job runs (`medattn.jobs`,
`train_spec`; the Models page): `progress(done, total, stage=…)` counts batches over all epochs,
and `stop()` is asked between batches; when it says so, training raises `Stopped` and the resume
file keeps the last finished epoch.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from medattn.data import load_dataset
from medattn.data.torch_dataset import ImageSplit
from medattn.data.preprocess import Preprocessing
from medattn.data.transforms import training_augmentation
from medattn.device import best_device

MIN_INPUT_SIZE = 32  # the backbones' output stride: a 32 px input leaves a 1×1 feature map


@dataclass
class Preset:
    """A training protocol; fields map one to one onto CLI flags."""

    lr: float
    epochs: int
    batch_size: int
    augment: str
    patience: int | None
    note: str


PRESETS: dict[str, Preset] = {
    # Gonçalves 2021 §3.2.7: Adam 1e-4, BCE, up to 300 epochs, best by val and by train loss.
    "goncalves": Preset(1e-4, 300, 4, "goncalves", None, "Gonçalves 2021: Adam 1e-4, BCE, augmentation"),
    # Wang 2021: Adam 1e-3, categorical cross-entropy, 50 epochs, batch 16.
    "wang": Preset(1e-3, 50, 16, "none", None, "Wang 2021: Adam 1e-3, cross-entropy, 50 epochs, batch 16"),
    # Aggarwal 2020: batch 64, BCE, Adam, early stopping with patience 10 on the loss.
    "aggarwal": Preset(1e-4, 100, 64, "none", 10, "Aggarwal 2020: Adam, BCE, batch 64, early stopping 10"),
}


@dataclass
class TrainConfig:
    dataset: str
    arch: str
    head: str
    out: str
    preset: str = "goncalves"
    lr: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    augment: str | None = None
    patience: int | None = None
    input_size: int = 224
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    workers: int = 0
    pretrained: bool = False
    consistency_weight: float = 0.0
    save_best_train: bool = False
    dtype: str = "float32"
    schedule: str = "constant"
    head_params: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] | None = None  # Preprocessing fields; None: stretch to input_size, ImageNet z-score

    def prep(self) -> Preprocessing:
        """The model's preprocessing (its input side must be `input_size`)."""
        prep = Preprocessing(**self.preprocessing) if self.preprocessing else Preprocessing(size=self.input_size)
        if prep.input_size != self.input_size:
            raise ValueError(f"preprocessing gives {prep.input_size} px inputs but input_size is {self.input_size}")
        return prep

    def resolved(self) -> "TrainConfig":
        """Fill unset values from the preset; ValueError for a value no training can use (0 or
        fewer epochs, a batch under 1, a learning rate that is not a positive number, an input
        under MIN_INPUT_SIZE px), so that it fails before anything runs rather than "finishing"
        without a checkpoint."""
        preset = PRESETS[self.preset]
        done = copy.copy(self)
        for name in ("lr", "epochs", "batch_size", "augment", "patience"):
            if getattr(done, name) is None:
                setattr(done, name, getattr(preset, name))
        problems = [f"{name} must be 1 or more, got {getattr(done, name)}" for name in ("epochs", "batch_size")
                    if getattr(done, name) < 1]
        if not (math.isfinite(done.lr) and done.lr > 0):
            problems.append(f"lr must be a positive number, got {done.lr}")
        if done.input_size < MIN_INPUT_SIZE:
            problems.append(f"input_size must be {MIN_INPUT_SIZE} px or more, got {done.input_size}")
        if problems:
            raise ValueError("; ".join(problems))
        return done


def as_stored(state: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """The state dict after a save/load round trip at this storage precision."""
    from medattn.models.quantize import dequantize, store

    if dtype == "float32":
        return state
    return dequantize(store({k: v.cpu() for k, v in state.items()}, dtype)[0])


class Stopped(Exception):
    """Training was asked to stop (`stop()` between batches); `epoch` epochs are finished and
    kept in the resume file, which a later `train` with the same config continues from."""

    def __init__(self, epoch: int, epochs: int, resume_path: Path):
        self.epoch, self.epochs, self.resume_path = epoch, epochs, resume_path
        super().__init__(f"stopped after {epoch}/{epochs} finished epochs; {resume_path.name} keeps them")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def learning_rate_schedule(optimiser: torch.optim.Optimizer, schedule: str, epochs: int):
    """None for a constant rate; "cosine" anneals it to zero over the epochs (per epoch), which
    lets a network trained from scratch settle in few epochs (the MobileNetV2 demo model)."""
    if schedule == "constant":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, epochs))
    raise ValueError(f"unknown schedule {schedule!r}; choose constant or cosine")


def loss_function(task: str) -> nn.Module:
    """BCE on logits for binary/multilabel, cross-entropy for multiclass."""
    return nn.CrossEntropyLoss() if task == "multiclass" else nn.BCEWithLogitsLoss()


def _targets(labels: torch.Tensor, task: str) -> torch.Tensor:
    return labels.argmax(dim=1) if task == "multiclass" else labels


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)


def _batches(split: ImageSplit, batch_size: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(split, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=generator)


def evaluate(model: nn.Module, loader: DataLoader, task: str, device: torch.device,
             preprocessing: Preprocessing | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, scores (N, C) and labels (N, C) over a loader, without gradients."""
    preprocessing = preprocessing or Preprocessing()
    criterion = loss_function(task)
    model.eval()
    total, count, scores, labels = 0.0, 0, [], []
    with torch.inference_mode():
        for images, target, _ in loader:
            images = preprocessing.intensity_scale(images.to(device))
            target = target.to(device)
            logits = model(images).float()
            total += criterion(logits, _targets(target, task)).item() * len(images)
            count += len(images)
            scores.append(probabilities(logits, task).cpu().numpy())
            labels.append(target.cpu().numpy())
    return total / max(count, 1), np.concatenate(scores), np.concatenate(labels)


def _mean_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(labels[:, c], scores[:, c]) for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < len(labels)]
    return float(np.mean(aucs)) if aucs else float("nan")


def train(config: TrainConfig, log=print, progress: Callable[..., None] | None = None,
          stop: Callable[[], bool] | None = None) -> Path:
    """Run one training; returns the checkpoint path (without suffix).

    `progress(done, total, stage="epoch e/E")`: batches done over all epochs (a resumed run
    starts at its finished epochs); given, it replaces the terminal progress bar. `stop()`:
    asked before every batch; True raises `Stopped` (the finished epochs stay in the resume
    file; the batches of the epoch in progress are lost)."""
    from medattn.metrics.classification import classification_report, to_json_safe
    from medattn.models import build, save_checkpoint
    from medattn.store.files import write_atomic

    cfg = config.resolved()
    seed_everything(cfg.seed)
    dataset = load_dataset(cfg.dataset)
    device = best_device(cfg.device)
    splits = {name: dataset.split(name).index for name in ("train", "val", "test")}
    if len(splits["train"]) == 0 or len(splits["val"]) == 0:
        raise SystemExit(f"{cfg.dataset}: training needs images in both the train and val splits")
    augment = training_augmentation(cfg.augment)
    prep = cfg.prep()
    train_set = ImageSplit(dataset, splits["train"], prep, augment)
    val_set = ImageSplit(dataset, splits["val"], prep)
    model = build(cfg.arch, cfg.head, len(dataset.classes), pretrained=cfg.pretrained, **cfg.head_params).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = learning_rate_schedule(optimiser, cfg.schedule, cfg.epochs)
    criterion = loss_function(dataset.task)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    resume_path = out.with_name(out.name + ".resume.pt")

    history: list[dict[str, float]] = []
    best_val = best_train = math.inf
    best_state = best_train_state = None
    start_epoch, stale = 0, 0
    if resume_path.exists():
        state = torch.load(resume_path, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        if scheduler is not None and "scheduler" in state:
            scheduler.load_state_dict(json.loads(state["scheduler"]))
        best_state, best_train_state = state["best_model"], state.get("best_train_model")
        history = json.loads(state["history"])
        start_epoch, best_val, best_train, stale = int(state["epoch"]), float(state["best_val"]), float(state["best_train"]), int(state["stale"])
        torch.set_rng_state(state["rng"])
        log(f"resuming {out.name} after epoch {start_epoch}")

    started = time.time()
    per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    if progress is not None:
        progress(start_epoch * per_epoch, total, stage=f"epoch {min(start_epoch + 1, cfg.epochs)}/{cfg.epochs}")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        running, seen = 0.0, 0
        loader = _batches(train_set, cfg.batch_size, True, cfg.workers, cfg.seed + epoch)
        bar = tqdm(loader, desc=f"{out.name} epoch {epoch + 1}/{cfg.epochs}", leave=False, file=sys.stderr,
                   disable=progress is not None)
        for batch, (images, labels, _) in enumerate(bar):
            if stop is not None and stop():
                raise Stopped(epoch, cfg.epochs, resume_path)
            images = prep.intensity_scale(images.to(device))
            labels = labels.to(device)
            with torch.autocast(device.type, enabled=cfg.amp and device.type == "cuda"):
                # Heads with auxiliary outputs (the recurrent head's crude branch) are supervised
                # on each; the first is the model's output.
                outputs = model.training_outputs(images) if hasattr(model, "training_outputs") else [model(images)]
                targets = _targets(labels, dataset.task)
                loss = sum(criterion(logits.float(), targets) for logits in outputs) / len(outputs)
                if cfg.consistency_weight > 0 and hasattr(model, "class_maps"):
                    from medattn.models.consistency_loss import attention_consistency_loss

                    loss = loss + cfg.consistency_weight * attention_consistency_loss(model.class_maps(images), labels)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            running += loss.item() * len(images)
            seen += len(images)
            bar.set_postfix(loss=f"{running / seen:.4f}")
            if progress is not None:
                progress(epoch * per_epoch + batch + 1, total, stage=f"epoch {epoch + 1}/{cfg.epochs}")
        train_loss = running / seen
        lr = optimiser.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        val_loss, val_scores, val_labels = evaluate(model, _batches(val_set, 64, False, cfg.workers, 0), dataset.task, device, prep)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_mean_auc": _mean_auc(val_labels, val_scores), "lr": lr, "seconds": time.time() - started}
        history.append(row)
        if val_loss < best_val:
            best_val, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if train_loss < best_train:
            best_train = train_loss
            best_train_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.save_best_train else None
        # Through a temporary and a rename: a kill while it is written leaves the previous one.
        resume_state = {
                "model": model.state_dict(), "optimiser": optimiser.state_dict(), "best_model": best_state,
                "best_train_model": best_train_state, "history": json.dumps(history), "epoch": epoch + 1,
                "best_val": best_val, "best_train": best_train, "stale": stale, "rng": torch.get_rng_state(),
                **({"scheduler": json.dumps(scheduler.state_dict())} if scheduler is not None else {}),
            }
        write_atomic(resume_path, lambda tmp: torch.save(resume_state, tmp))
        log(f"{out.name} epoch {epoch + 1}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, val mean AUC {row['val_mean_auc']:.3f}")
        if cfg.patience is not None and stale >= cfg.patience:
            log(f"early stop: validation loss has not improved for {stale} epochs")
            break

    test_set = ImageSplit(dataset, splits["test"], prep)
    provenance = {k: v for k, v in asdict(cfg).items() if k not in ("dataset", "out")}
    for state, suffix, criterion_name in ((best_state, "", "val_loss"), (best_train_state, "_by_train_loss", "train_loss")):
        if state is None:
            continue
        # Evaluate the weights as they will be stored, so the json reports the shipped model.
        model.load_state_dict(as_stored(state, cfg.dtype))
        metrics: dict[str, Any] = {"history": to_json_safe(history), "selected_by": criterion_name}
        if len(test_set):
            _, scores, labels = evaluate(model, _batches(test_set, 64, False, cfg.workers, 0), dataset.task, device, prep)
            metrics["test"] = classification_report(labels, scores, dataset.task, dataset.classes)
        save_checkpoint(
            model.float().cpu(), out.with_name(out.name + suffix), dtype=cfg.dtype,
            classes=dataset.classes, task=dataset.task, input_size=cfg.input_size,
            preprocessing=prep.to_meta(), **({"normalisation": {"mean": list(prep.mean), "std": list(prep.std)}} if prep.mean else {}),
            dataset=dataset.name, dataset_hash=dataset.hash, metrics=metrics, training=provenance,
        )
        model.to(device)
    resume_path.unlink(missing_ok=True)
    return out


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m medattn.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset folder (dataset.json, images.csv, boxes.csv)")
    parser.add_argument("--arch", required=True, help="backbone, e.g. resnet18, densenet121, mobilenet_v2")
    parser.add_argument("--head", default="linear", help="linear, mldam, wildcat, recurrent, channel_attention, residual_attention")
    parser.add_argument("--out", help="checkpoint path without suffix; default ARCH_HEAD in your models folder "
                        "(MEDATTN_MODELS, default ~/.local/share/medattn/models, which the app lists)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="goncalves")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--augment", choices=["goncalves", "none"])
    parser.add_argument("--patience", type=int, help="early stopping after this many epochs without val-loss gain")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, mps")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument("--workers", type=int, default=0, help="data-loader processes")
    parser.add_argument("--pretrained", action="store_true", help="ImageNet initialisation (downloads weights; needs internet)")
    parser.add_argument("--consistency-weight", type=float, default=0.0, help="weight of the attention-map consistency loss")
    parser.add_argument("--save-best-train", action="store_true", help="also save the best weights by training loss (NAME_by_train_loss)")
    parser.add_argument("--dtype", choices=["float32", "float16", "int8"], default="float32", help="storage precision of the weights")
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant", help="learning-rate schedule over the epochs")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="head parameter, e.g. --param kmax=0.1")
    args = parser.parse_args(argv)
    params = {}
    for item in args.param:
        if "=" not in item:
            parser.error(f"--param {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        params[key] = _parse_value(value)
    values = {k: v for k, v in vars(args).items() if k != "param"}
    if values["out"] is None:
        from medattn.inference import models_dir

        values["out"] = str(models_dir() / f"{args.arch}_{args.head}")
    return TrainConfig(**values, head_params=params)


def main(argv: list[str] | None = None) -> int:
    """Train from the command line; bad input prints one clear line and exits with 2."""
    from medattn.errors import MedattnError

    config = parse_args(argv)
    try:
        path = train(config)
    except (MedattnError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
