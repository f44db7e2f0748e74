"""The embedded demo dataset: synthetic chest-radiograph phantoms with exact lesion boxes.

The app, the tests and the demo checkpoints need a dataset that ships with the code, builds in
seconds without downloads, has boxes that are exact by construction, and carries a known
shortcut: a corner marker that tracks 'opacity' in train only, so explanation methods can be
seen catching a model that learned it. Every default (seed, count, size, prevalences, split
fractions, marker rates) lives in data_manifests/demo.json; this module only knows how to draw.

Shapes live in a body frame: X in [-1, 1] from the image's left to right, Y in [-1, 1] from
neck to abdomen. Images are PA views as radiographs are displayed, so the patient's left (heart,
stomach bubble, lower hemidiaphragm) is on the image right.

    python -m medattn.data.demo --out DIR [--n N] [--size S] [--seed K] [--workers W]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Sequence

import cv2
import numpy as np
import pandas as pd

from medattn.data.dataset import load_dataset, write_dataset

REPO = Path(__file__).resolve().parents[2]
RECIPE_PATH = REPO / "data_manifests" / "demo.json"
COMPLETE_MARKER = ".demo-complete"
MIN_SIZE = 64
AIR = 0.03
MARKER_VALUE = 0.97
VISIBLE = 0.02  # a lesion's box holds the pixels where it adds >= 0.02 attenuation (~5 grey levels)


def demo_dir() -> Path:
    """Where the demo lives: $MEDATTN_DEMO_DIR, else <repo>/demo_data (git-ignored)."""
    return Path(os.environ.get("MEDATTN_DEMO_DIR") or REPO / "demo_data")


DEMO_DIR = demo_dir()


def load_recipe(path: str | os.PathLike = RECIPE_PATH) -> dict[str, Any]:
    """The demo recipe (data_manifests/demo.json): the single source of every default."""
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------- the case plan


@dataclass(frozen=True)
class Anatomy:
    """One synthetic patient's body, in body-frame units."""

    body_w: float
    lung_top: float
    lung_cp: float  # height of the costophrenic angles
    lung_w: float
    lung_med: float
    dome_h: float
    left_drop: float  # the patient's left hemidiaphragm sits lower
    heart_x: float
    heart_y: float
    heart_rx: float
    heart_ry: float
    rib_y0: float
    rib_sp: float
    rib_curv: float
    clav_y: float
    tissue: float
    lung_dark: float
    female: bool


@dataclass(frozen=True)
class Shot:
    """One exposure of a patient: pose in the frame, view and exposure settings."""

    scale: float
    du: float
    dv: float
    rot: float
    ap: bool  # AP views magnify the heart
    contrast: float
    gamma: float
    brightness: float
    blur: float  # Gaussian sigma as a fraction of the image size
    noise: float
    quantum: float  # Poisson-like noise, scaled by sqrt(intensity)


@dataclass(frozen=True)
class Nodule:
    """A small round bright blob inside a lung."""

    kind: ClassVar[str] = "nodule"
    x: float
    y: float
    r: float
    amp: float

    def layer(self, X: np.ndarray, Y: np.ndarray, lungs: np.ndarray, texture: np.ndarray) -> np.ndarray:
        return self.amp * _step(self.r - np.hypot(X - self.x, Y - self.y), 0.5 * self.r)


@dataclass(frozen=True)
class Opacity:
    """A larger hazy patch with an irregular border, confined to its lung."""

    kind: ClassVar[str] = "opacity"
    side: int  # 0: image left, 1: image right
    x: float
    y: float
    rx: float
    ry: float
    angle: float
    amp: float

    def layer(self, X: np.ndarray, Y: np.ndarray, lungs: np.ndarray, texture: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = X - self.x, Y - self.y
        d = np.hypot((c * dx + s * dy) / self.rx, (c * dy - s * dx) / self.ry)
        d = d * (0.8 + 0.4 * texture)
        return self.amp * _step(1.0 - d, 0.7) * (0.7 + 0.6 * texture) * lungs[self.side]


@dataclass(frozen=True)
class Effusion:
    """Fluid filling the lung base up to a meniscus that climbs the lateral wall."""

    kind: ClassVar[str] = "effusion"
    side: int
    level: float
    meniscus: float
    amp: float

    def layer(self, X: np.ndarray, Y: np.ndarray, lungs: np.ndarray, texture: np.ndarray) -> np.ndarray:
        lateral = np.clip((np.abs(X) - 0.1) / 0.75, 0.0, 1.0)
        surface = self.level - self.meniscus * lateral**2
        return self.amp * _step(Y - surface, 0.05) * lungs[self.side]


Lesion = Nodule | Opacity | Effusion


@dataclass(frozen=True)
class Marker:
    """The spurious L-shaped lead marker; position and height as fractions of the image size."""

    x: float
    y: float
    h: float

    def box(self, size: int) -> tuple[int, int, int, int]:
        h = max(4, round(self.h * size))
        return round(self.x * size), round(self.y * size), max(3, round(0.6 * h)), h


@dataclass(frozen=True)
class Case:
    """Everything needed to draw one image, fixed before any pixel is drawn."""

    image_id: str
    patient_id: str
    split: str
    sex: str
    age: int
    anatomy: Anatomy
    shot: Shot
    lesions: tuple[Lesion, ...]
    marker: Marker | None
    seed: int

    @property
    def view(self) -> str:
        return "AP" if self.shot.ap else "PA"

    def has(self, kind: str) -> bool:
        return _has(self.lesions, kind)


def plan_cases(recipe: dict[str, Any], n: int, seed: int) -> list[Case]:
    """Draw every patient, label, lesion, split and marker from one seeded generator.

    Patients have one or two images; splits are drawn by patient. Cheap (no pixels), so tests
    can check counts and marker rates of the full default dataset without rendering it.
    """
    rng = np.random.default_rng(seed)
    classes = list(recipe["classes"])
    drafts: list[dict[str, Any]] = []
    owner: list[int] = []  # each draft's patient number
    patient = 0
    while len(drafts) < n:
        anatomy, sex, age = _sample_patient(rng, recipe["age_range"])
        images = 2 if rng.random() < recipe["second_image_rate"] and n - len(drafts) >= 2 else 1
        for _ in range(images):
            shot = _sample_shot(rng, recipe["view_rates"]["AP"])
            positive = {c: rng.random() < recipe["prevalence"][c] for c in classes}
            drafts.append(
                dict(
                    image_id=f"demo_{len(drafts):05d}",
                    patient_id=f"demo_p{patient:04d}",
                    sex=sex,
                    age=age,
                    anatomy=anatomy,
                    shot=shot,
                    lesions=_sample_lesions(rng, positive, anatomy),
                    seed=int(rng.integers(2**63)),
                )
            )
            owner.append(patient)
        patient += 1
    split_of = _patient_splits(rng, patient, recipe["split_fractions"])
    rates = recipe["spurious_marker"]
    cases = []
    for draft, number in zip(drafts, owner):
        split = split_of[number]
        if split == "train":
            rate = rates["train_rate_pos"] if _has(draft["lesions"], rates["class"]) else rates["train_rate_neg"]
        else:
            rate = rates["eval_rate"]
        marker = _sample_marker(rng) if rng.random() < rate else None
        cases.append(Case(split=split, marker=marker, **draft))
    return cases


def _has(lesions: Sequence[Lesion], kind: str) -> bool:
    return any(lesion.kind == kind for lesion in lesions)


def _sample_patient(rng: np.random.Generator, ages: Sequence[int]) -> tuple[Anatomy, str, int]:
    female = bool(rng.random() < 0.5)
    u = rng.uniform
    anatomy = Anatomy(
        body_w=u(0.9, 1.0),
        lung_top=u(-0.8, -0.7),
        lung_cp=u(0.48, 0.6),
        lung_w=u(0.72, 0.84),
        lung_med=u(0.05, 0.08),
        dome_h=u(0.12, 0.2),
        left_drop=u(0.02, 0.07),
        heart_x=u(0.15, 0.21),
        heart_y=u(0.26, 0.32),
        heart_rx=u(0.36, 0.42),
        heart_ry=u(0.26, 0.3),
        rib_y0=u(-0.98, -0.92),
        rib_sp=u(0.15, 0.17),
        rib_curv=u(0.45, 0.6),
        clav_y=u(-0.64, -0.58),
        tissue=u(0.5, 0.6),
        lung_dark=u(0.33, 0.4),
        female=female,
    )
    return anatomy, "F" if female else "M", int(rng.integers(ages[0], ages[1] + 1))


def _sample_shot(rng: np.random.Generator, ap_rate: float) -> Shot:
    u = rng.uniform
    return Shot(
        scale=u(0.86, 0.98),
        du=u(-0.04, 0.04),
        dv=u(-0.03, 0.05),
        rot=u(-0.05, 0.05),
        ap=bool(rng.random() < ap_rate),
        contrast=u(0.85, 1.15),
        gamma=u(0.8, 1.25),
        brightness=u(-0.04, 0.06),
        blur=u(0.0015, 0.004),
        noise=u(0.008, 0.02),
        quantum=u(0.01, 0.03),
    )


def _sample_lesions(rng: np.random.Generator, positive: dict[str, bool], a: Anatomy) -> tuple[Lesion, ...]:
    lesions: list[Lesion] = []
    effusion_level = {0: 9.0, 1: 9.0}  # per side: nodules stay above any fluid
    if positive.get("effusion"):
        sides = [0, 1] if rng.random() < 0.2 else [int(rng.integers(2))]
        for side in sides:
            level = a.lung_cp + (a.left_drop if side else 0.0) - rng.uniform(0.1, 0.3)
            effusion_level[side] = level - 0.1
            lesions.append(Effusion(side, level, rng.uniform(0.06, 0.14), rng.uniform(0.6, 0.9) * a.lung_dark))
    if positive.get("opacity"):
        for _ in range(1 if rng.random() < 0.8 else 2):
            rx, ry = rng.uniform(0.13, 0.22), rng.uniform(0.13, 0.22)
            side, x, y = _point_in_lung(rng, a, margin=0.5 * min(rx, ry), ceiling=effusion_level)
            lesions.append(Opacity(side, x, y, rx, ry, rng.uniform(0, math.pi), rng.uniform(0.28, 0.4)))
    if positive.get("nodule"):
        for _ in range(1 if rng.random() < 0.7 else 2):
            r = rng.uniform(0.06, 0.085)
            _, x, y = _point_in_lung(rng, a, margin=1.3 * r, ceiling=effusion_level)
            lesions.append(Nodule(x, y, r, rng.uniform(0.38, 0.5)))
    return tuple(lesions)


def _point_in_lung(
    rng: np.random.Generator, a: Anatomy, margin: float, ceiling: dict[int, float]
) -> tuple[int, float, float]:
    """A point whose disc of radius `margin` lies in a lung, clear of the heart and of fluid."""
    offsets = np.array([(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)], dtype=np.float64) * margin
    for _ in range(1000):
        side = int(rng.integers(2))
        x = (1 if side else -1) * rng.uniform(0.1, 0.85)
        y = rng.uniform(a.lung_top, a.lung_cp)
        if y + margin > ceiling[side]:
            continue
        lungs, mediastinum = _geometry(x + offsets[:, 0], y + offsets[:, 1], a, ap=False)
        if np.all(lungs[side] * (1 - mediastinum) > 0.9):
            return side, float(x), float(y)
    raise RuntimeError(f"no room for a lesion of radius {margin:.3f} in {a}")


def _patient_splits(rng: np.random.Generator, patients: int, fractions: dict[str, float]) -> list[str]:
    n_train = round(fractions["train"] * patients)
    n_val = round(fractions["val"] * patients)
    names = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (patients - n_train - n_val))
    return list(names[rng.permutation(patients)])


def _sample_marker(rng: np.random.Generator) -> Marker:
    h = rng.uniform(0.06, 0.08)
    x = rng.uniform(0.03, 0.08) if rng.random() < 0.5 else 1 - rng.uniform(0.03, 0.08) - 0.6 * h
    return Marker(x, rng.uniform(0.03, 0.08), h)


def summarize(cases: Sequence[Case], classes: Sequence[str]) -> dict[str, Any]:
    """Counts in the shape of the recipe's "counts" entry."""
    return {
        "images": len(cases),
        "patients": len({c.patient_id for c in cases}),
        "splits": {s: sum(c.split == s for c in cases) for s in ("train", "val", "test")},
        "positives": {k: sum(c.has(k) for c in cases) for k in classes},
        "normal": sum(not c.lesions for c in cases),
        "boxes": sum(len(c.lesions) for c in cases),
    }


# --------------------------------------------------------------------------- drawing


def _step(d: np.ndarray | float, width: float) -> np.ndarray:
    """Smooth 0 -> 1 as d crosses 0, over `width`: soft edges without aliasing."""
    t = np.clip(np.asarray(d) / width + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _geometry(X: np.ndarray, Y: np.ndarray, a: Anatomy, ap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks (0..1) of the two lungs, stacked (2, ...), and of mediastinum plus heart."""
    xl = np.abs(X)
    base = a.lung_cp + a.left_drop * (X > 0).astype(X.dtype)
    height = np.clip((Y - a.lung_top) / (base - a.lung_top), 0.0, 1.0)
    lateral = a.lung_med + (a.lung_w - a.lung_med) * np.sqrt(1 - (1 - height) ** 2) * (0.8 + 0.2 * height)
    across = np.clip((xl - a.lung_med) / (a.lung_w - a.lung_med), 0.0, 1.0)
    dome = base - a.dome_h * np.sin(np.pi * (0.25 + 0.75 * across))
    lung = (
        _step(lateral - xl, 0.03)
        * _step(xl - a.lung_med, 0.03)
        * _step(dome - Y, 0.03)
        * _step(Y - a.lung_top, 0.05)
    )
    lungs = np.stack([lung * (X < 0), lung * (X > 0)])
    grow = 1.12 if ap else 1.0
    heart = _step(1 - np.hypot((X - a.heart_x) / (grow * a.heart_rx), (Y - a.heart_y) / (grow * a.heart_ry)), 0.12)
    knob = _step(1 - np.hypot((X - 0.1) / 0.08, (Y + 0.33) / 0.1), 0.3)  # aortic knob
    column = _step(0.11 - xl, 0.03) * _step(a.lung_cp - Y, 0.05)
    return lungs, np.maximum(np.maximum(heart, knob), column)


def _bands(phase: np.ndarray, duty: float) -> np.ndarray:
    """Periodic bright bands (ribs): 1 mid-band, 0 at the edges, covering `duty` of each period."""
    t = np.clip((phase - np.floor(phase)) / duty, 0.0, 1.0)
    return 1 - (2 * t - 1) ** 4


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    return np.meshgrid(axis, axis)


def _body_frame(shot: Shot, size: int) -> tuple[np.ndarray, np.ndarray]:
    u, v = _grid(size)
    c, s = math.cos(shot.rot), math.sin(shot.rot)
    du, dv = u - shot.du, v - shot.dv
    return (c * du + s * dv) / shot.scale, (c * dv - s * du) / shot.scale


def _texture(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: random cells upsampled, for lung markings and hazy lesions."""
    coarse = rng.random((cells, cells), dtype=np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _density(
    X: np.ndarray, Y: np.ndarray, a: Anatomy, ap: bool, lungs: np.ndarray, mediastinum: np.ndarray, fine: np.ndarray
) -> np.ndarray:
    """Attenuation of the lesion-free chest: soft tissue minus air in the lungs, plus bones."""
    xl = np.abs(X)
    rise = np.clip((Y + 1.0) / 0.45, 0.0, 1.0)
    shoulders = rise * (2 - rise)
    chest = a.body_w * (1 - 0.08 * (Y - 0.35) ** 2)
    body = _step(0.2 + (chest - 0.2) * shoulders - xl, 0.05)
    lung = (lungs[0] + lungs[1]) * (1 - mediastinum)  # the aerated lung, not behind the heart
    density = AIR + (a.tissue - AIR) * body - a.lung_dark * lung
    # posterior ribs: one periodic band pattern, bent down laterally and widening downwards,
    # covers all ribs of both sides; bone shows best against the air in the lungs
    below = np.maximum(Y - (a.rib_curv * xl**2 - 0.15 * xl) - a.rib_y0, 0.0)
    phase = (below - 0.12 * below**2) / a.rib_sp
    ribs = _bands(phase, 0.42) * (below > 0) * (phase < 10) * _step(a.lung_cp + 0.1 - Y, 0.1)
    ribs *= _step(0.95 * a.body_w - xl, 0.06) * _step(xl - 0.06, 0.03)
    density += 0.08 * ribs * (0.35 + 0.65 * lung)
    # anterior ribs: fainter, descending towards the midline, seen over the lungs only
    phase = (Y + 0.45 * xl - a.rib_y0 - 0.2) / (1.15 * a.rib_sp)
    density += 0.035 * _bands(phase, 0.3) * lung * _step(xl - 0.22, 0.08)
    clavicle = a.clav_y - (0.04 if ap else 0.0) - 0.3 * xl + 0.15 * xl**2
    density += 0.1 * _step(0.035 - np.abs(Y - clavicle), 0.02) * _step(0.78 - xl, 0.06) * _step(xl - 0.05, 0.03)
    density += body * _step(0.075 - xl, 0.02) * (0.02 + 0.01 * np.cos(2 * np.pi * Y / 0.11))  # spine
    density -= 0.1 * _step(0.035 - xl, 0.015) * _step(-0.3 - Y, 0.05)  # trachea
    density += 0.08 * np.maximum(1 - ((xl - 0.2) ** 2 + (Y + 0.05) ** 2) / 0.03, 0.0) ** 2 * lung  # hila
    density += 0.06 * (fine - 0.5) * lung  # lung markings
    stomach = a.lung_cp + a.left_drop + 0.1
    density -= 0.16 * _step(1 - np.hypot((X - 0.38) / 0.1, (Y - stomach) / 0.06), 0.3)
    if a.female:
        for side in (-1, 1):
            density += 0.04 * _step(1 - np.hypot((X - side * 0.5) / 0.34, (Y - a.lung_cp + 0.2) / 0.22), 0.4)
    return density


def render_case(case: Case, size: int) -> tuple[np.ndarray, list[tuple[str, int, int, int, int]]]:
    """Draw one case: (uint8 image (size, size), [(label, x, y, w, h), ...] per lesion)."""
    rng = np.random.default_rng(case.seed)
    a, shot = case.anatomy, case.shot
    X, Y = _body_frame(shot, size)
    lungs, mediastinum = _geometry(X, Y, a, shot.ap)
    fine, coarse = _texture(rng, size, 28), _texture(rng, size, 9)
    density = _density(X, Y, a, shot.ap, lungs, mediastinum, fine)
    aerated = lungs * (1 - mediastinum)  # lesions show where the lung is not behind the heart
    boxes = []
    for lesion in case.lesions:
        layer = lesion.layer(X, Y, aerated, coarse)
        boxes.append((lesion.kind, *_tight_box(layer >= VISIBLE, case, lesion)))
        density += layer
    image = shot.brightness + shot.contrast * np.clip(density, 0.0, 1.0) ** shot.gamma
    if case.marker is not None:
        _draw_marker(image, case.marker.box(size))
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), shot.blur * size)
    image = np.clip(image, 0.0, 1.0)
    image += rng.standard_normal(image.shape, dtype=np.float32) * (shot.noise + shot.quantum * np.sqrt(image))
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), boxes


def _tight_box(mask: np.ndarray, case: Case, lesion: Lesion) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise RuntimeError(f"{case.image_id}: {lesion} is not visible")
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _draw_marker(image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x, y, w, h = box
    t = max(2, round(h / 4))
    image[y : y + h, x : x + t] = MARKER_VALUE
    image[y + h - t : y + h, x : x + w] = MARKER_VALUE


# --------------------------------------------------------------------------- dataset folder


def _render_to_file(job: tuple[Case, int, Path]) -> list[tuple[str, int, int, int, int]]:
    case, size, path = job
    image, boxes = render_case(case, size)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return boxes


def build_demo(
    out: str | os.PathLike,
    n: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    workers: int | None = None,
) -> Path:
    """Render the demo into `out` (defaults from the recipe), validate it, mark it complete."""
    recipe = load_recipe()
    n = recipe["n_images"] if n is None else int(n)
    size = recipe["size"] if size is None else int(size)
    seed = recipe["seed"] if seed is None else int(seed)
    if n < 1:
        raise ValueError(f"the demo needs at least one image, got n={n}")
    if size < MIN_SIZE:
        raise ValueError(f"demo images must be at least {MIN_SIZE} px, got size={size}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / COMPLETE_MARKER).unlink(missing_ok=True)
    cases = plan_cases(recipe, n, seed)
    jobs = [(case, size, out / "images" / f"{case.image_id}.png") for case in cases]
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    # Threads, not processes: OpenCV and numpy release the GIL for most of the rendering
    # (1.5x on 2 cores), and a process pool started from a Streamlit script re-runs that
    # script in its children (spawn) or inherits a held lock (fork), and hangs.
    with ThreadPoolExecutor(workers) as pool:
        boxes = list(pool.map(_render_to_file, jobs))
    write_dataset(
        out,
        name=recipe["name"],
        classes=recipe["classes"],
        task=recipe["task"],
        images=_images_table(cases, recipe["classes"], size),
        boxes=pd.DataFrame(
            [(case.image_id, *box) for case, rows in zip(cases, boxes) for box in rows],
            columns=["image_id", "label", "x", "y", "w", "h"],
        ),
        image_root="images",
        source="synthetic phantoms from medattn.data.demo (recipe data_manifests/demo.json)",
        description=recipe["description"],
        recipe={"n_images": n, "size": size, "seed": seed},
        box_rule=recipe["box_rule"],
        spurious_marker=recipe["spurious_marker"],
    )
    load_dataset(out)
    (out / COMPLETE_MARKER).write_text(_stamp(n, size, seed))
    return out


def _images_table(cases: Sequence[Case], classes: Sequence[str], size: int) -> pd.DataFrame:
    rows = []
    for case in cases:
        marker = case.marker.box(size) if case.marker else (None,) * 4
        rows.append(
            {
                "image_id": case.image_id,
                "path": f"{case.image_id}.png",
                "split": case.split,
                "patient_id": case.patient_id,
                "width": size,
                "height": size,
                **{k: int(case.has(k)) for k in classes},
                "sex": case.sex,
                "age": case.age,
                "view": case.view,
                "marker": int(case.marker is not None),
                **dict(zip(("marker_x", "marker_y", "marker_w", "marker_h"), marker)),
            }
        )
    table = pd.DataFrame(rows)
    for column in ("marker_x", "marker_y", "marker_w", "marker_h"):
        table[column] = table[column].astype("Int64")
    return table


def _stamp(n: int, size: int, seed: int) -> str:
    """Completion marker content: the build parameters and the recipe they came from."""
    recipe_hash = hashlib.sha256(RECIPE_PATH.read_bytes()).hexdigest()[:16]
    return json.dumps({"n_images": n, "size": size, "seed": seed, "recipe": recipe_hash}) + "\n"


def ensure_demo(out: Path | None = None) -> Path:
    """Build the default demo into `out` (default `demo_dir()`) unless a complete one is there.

    The completion marker is written last, so an interrupted build is redone; it records the
    recipe's hash, so editing the recipe rebuilds. A lock keeps concurrent callers (several
    app sessions) from building the same folder twice.
    """
    out = Path(out) if out is not None else demo_dir()
    recipe = load_recipe()
    stamp = _stamp(recipe["n_images"], recipe["size"], recipe["seed"])
    done = out / COMPLETE_MARKER
    if done.is_file() and done.read_text() == stamp:
        return out
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (done.is_file() and done.read_text() == stamp):
            build_demo(out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    recipe = load_recipe()
    parser = argparse.ArgumentParser(prog="python -m medattn.data.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--n", type=int, default=recipe["n_images"], help="number of images")
    parser.add_argument("--size", type=int, default=recipe["size"], help="image side in pixels")
    parser.add_argument("--seed", type=int, default=recipe["seed"])
    parser.add_argument("--workers", type=int, default=None, help="render threads (default: up to 2)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = build_demo(args.out, n=args.n, size=args.size, seed=args.seed, workers=args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    dataset = load_dataset(path)
    splits = dataset.images["split"].value_counts()
    print(
        f"wrote {path}: {len(dataset.images)} images "
        f"(train {splits.get('train', 0)}, val {splits.get('val', 0)}, test {splits.get('test', 0)}), "
        f"{dataset.images['patient_id'].nunique()} patients, {len(dataset.boxes)} boxes "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
