"""Reading `torch.save` files from other tools without running their code.

Files are loaded with `torch.load(weights_only=True)` and, beside tensors and plain containers,
only numpy scalars and dtypes allowed (`NUMPY_GLOBALS`, through torch's `safe_globals`): what
training scripts put beside the weights (`best_auc` as a `numpy.float64`, an epoch as
`numpy.int64`). Anything else (a whole pickled model, an argparse Namespace, an optimizer object)
is refused, and `refusal` says which globals the file needs (torch's
`get_unsafe_globals_in_checkpoint`, which reads the pickle without running it) and how to
re-save it for what the file actually holds, read off its pickle by `sketch`, a reader that
records the classes the file names and never imports or calls any of them.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# numpy scalars and dtypes, under numpy 2's module paths and numpy 1's (files pickled by numpy 1
# name numpy.core.multiarray.scalar)
NUMPY_GLOBALS: list[Any] = [
    np._core.multiarray.scalar, (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype,
    *[cls for cls in vars(np.dtypes).values() if isinstance(cls, type) and issubclass(cls, np.dtype)],
]


def load(path: Path) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU with numpy scalars and dtypes allowed."""
    with torch.serialization.safe_globals(NUMPY_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def unsafe_globals(path: Path) -> list[str]:
    """The globals `path` needs beyond torch's defaults and NUMPY_GLOBALS ([] when unknown)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - a file torch cannot open: no names to give
        return []
    allowed = {_qualified(g) for g in NUMPY_GLOBALS}
    return [name for name in found if name not in allowed]


def _qualified(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f"{entry.__module__}.{entry.__qualname__}"


@dataclass(frozen=True)
class Stub:
    """An object the file would create: its class's dotted name (never imported)."""

    name: str


class _StubObject:
    """Base of the stand-in classes `_Sketcher` makes: takes any arguments and state."""

    stub_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_StubObject":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> "_StubObject":  # e.g. getattr(cls, name)(...)
        return type(self)()

    def __setitem__(self, key: Any, value: Any) -> None:  # an OrderedDict's items
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # a list subclass's items
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)


class _Sketcher(pickle.Unpickler):
    """Builds the pickle's containers with every class replaced by a fresh stand-in class that
    only records its name: nothing named in the file is imported or called."""

    def find_class(self, module: str, name: str) -> Any:
        return type("Stand_in", (_StubObject,), {"stub_name": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        return None


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of torch.save's legacy (pre-1.6) format


def sketch(path: Path) -> Any:
    """The top-level object of a torch file (zip format, legacy format, or a bare pickle) with
    containers kept (dict, list, tuple) and every other object as a `Stub` of its class; None
    when the file cannot be read so."""
    try:
        if is_zip(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                if name is None:
                    return None
                data = archive.read(name)
            return _plain(_Sketcher(io.BytesIO(data)).load())
        with open(path, "rb") as file:  # legacy: magic number, protocol, sys info, then the object
            first = _Sketcher(file).load()
            if first != LEGACY_MAGIC:
                return _plain(first)
            _Sketcher(file).load(), _Sketcher(file).load()
            return _plain(_Sketcher(file).load())
    except Exception:  # noqa: BLE001 - an odd pickle: the generic recipe applies
        return None


def _plain(value: Any, depth: int = 0) -> Any:
    if isinstance(value, _StubObject) and value.stub_name == "collections.OrderedDict":
        value = dict(value.__dict__.get("items", {}))
    if isinstance(value, _StubObject) or (isinstance(value, type) and issubclass(value, _StubObject)):
        return Stub(value.stub_name)
    if depth > 3:
        return value
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, depth + 1) for v in value)
    return value


TENSOR_BUILDERS = ("torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter")


def _is_tensor(value: Any) -> bool:
    return isinstance(value, Stub) and value.name.startswith(TENSOR_BUILDERS)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(_is_tensor(v) for v in value.values())


def is_zip(path: Path) -> bool:
    """Whether `path` is in torch.save's zip format (PyTorch 1.6 on), not a legacy pickle."""
    return zipfile.is_zipfile(path)


def resave_recipe(path: Path, wrappers: tuple[str, ...], shown: str | None = None) -> tuple[str, str]:
    """(what the file holds, the lines that re-save its weights as a state dict) for a file
    `torch.load(weights_only=True)` refuses, read off its `sketch`. The lines load the file as
    `shown` (default: its path), run where the file was made."""
    shown = repr(shown or str(path))
    top = sketch(path)
    load_line = f"    checkpoint = torch.load({shown}, weights_only=False)   # trusted file, where it was made\n"
    if isinstance(top, Stub):
        return (f"a whole pickled model ({top.name})",
                f"    model = torch.load({shown}, weights_only=False)   # trusted file, where it was made\n"
                "    torch.save(model.state_dict(), 'state_dict.pt')")
    if isinstance(top, dict):
        allowed = {_qualified(g) for g in NUMPY_GLOBALS}
        models = [k for k, v in top.items() if isinstance(v, Stub) and not _is_tensor(v) and v.name not in allowed]
        states = [k for k, v in top.items() if _is_state_dict(v)]
        preferred = [k for k in wrappers if k in states] + [k for k in states if k not in wrappers]
        if preferred:
            key = preferred[0]
            others = ", ".join(f"{k!r} ({top[k].name})" for k in models) or "objects beside it"
            return (f"a dict with a state dict under {key!r} and {others}",
                    load_line + f"    torch.save(checkpoint[{key!r}], 'state_dict.pt')")
        held = [k for k in [*wrappers, *models] if k in models]
        if held:
            key = held[0]
            return (f"a dict holding a whole model under {key!r} ({top[key].name})",
                    load_line + f"    torch.save(checkpoint[{key!r}].state_dict(), 'state_dict.pt')")
    return ("pickled Python objects",
            f"    model = torch.load({shown}, weights_only=False)   # trusted file, where it was made\n"
            "    torch.save(model.state_dict(), 'state_dict.pt')   # or the dict entry that holds the weights")
