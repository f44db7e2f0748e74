"""Old module names that still work: a module moved in a layout change keeps its old name as an
alias, so that scripts and `python -m` commands written against it run unchanged (with a
DeprecationWarning naming the new place) until DESIGN.md's layout names the new one."""

from __future__ import annotations

import importlib
import runpy
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make module `old` the module `new`: imported, `old` is `new` (same objects, so patches and
    isinstance checks agree); run with `python -m old`, it runs `new` as the main module."""
    main = old == "__main__"
    name = sys.modules[old].__spec__.name if main else old
    warnings.warn(f"{name} moved to {new}; the old name will go", FutureWarning if main else DeprecationWarning,
                  stacklevel=3)
    if main:
        runpy.run_module(new, run_name="__main__", alter_sys=True)
    else:
        sys.modules[old] = importlib.import_module(new)
