"""Every command-line module (`python -m medattn.X.Y`) runs once, as __main__: importing its
package must not import it first, or runpy warns "found in sys.modules after import of package"
before the command's own output (and the module's top level runs twice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_modules() -> list[str]:
    """Dotted names of the package's modules with a `__main__` guard (not packages' __main__.py)."""
    found = []
    for path in sorted((REPO / "medattn").rglob("*.py")):
        if path.name != "__main__.py" and 'if __name__ == "__main__"' in path.read_text():
            found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


def test_no_package_imports_its_own_command_line_module():
    modules = cli_modules()
    assert "medattn.models.importer" in modules and "medattn.jobs.precompute" in modules
    script = ("import importlib, json, sys\n"
              f"modules = {modules!r}\n"
              "early = []\n"
              "for name in modules:\n"
              "    importlib.import_module(name.rsplit('.', 1)[0])\n"
              "    early += [name] if name in sys.modules else []\n"
              "print(json.dumps(early))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_readme_importer_command_starts_without_a_runtime_warning():
    done = subprocess.run([sys.executable, "-m", "medattn.models.importer", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "usage: python -m medattn.models.importer" in done.stdout
    assert "RuntimeWarning" not in done.stderr, done.stderr
