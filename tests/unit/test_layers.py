"""The layer contract of pyproject.toml (import-linter): the package keeps it, and a copy of the package
with one import against it (or one module without a layer) breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with ``project``'s pyproject.toml over the deepsmlm package in ``project``/src."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo", "pyproject.toml"], cwd=project,
                          env=env, capture_output=True, text=True)


def _all_but_code(folder: str, names: list[str]) -> list[str]:
    """What a copy of the package leaves out: data files and caches."""
    return [n for n in names if n == "__pycache__" or not (n.endswith(".py") or (Path(folder) / n).is_dir())]


def test_the_package_keeps_its_layers():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 1 kept, 0 broken." in done.stdout


@pytest.mark.parametrize("module, source, report", [
    # the upward import the design package removed: optics/design.py → physics/crlb.py → optics/psf.py
    ("optics/upward.py", "from deepsmlm.physics import crlb\n",
     "- deepsmlm.optics.upward -> deepsmlm.physics.crlb (l.1)"),
    ("io/upward.py", "import deepsmlm.commands.localize\n", "- deepsmlm.io.upward -> deepsmlm.commands.localize (l.1)"),
    # the seams of issue 19: a head knows nothing of the predictor, the forward model nothing of the assembly
    ("heads/upward.py", "from deepsmlm.inference import predict\n",
     "- deepsmlm.heads.upward -> deepsmlm.inference.predict (l.1)"),
    ("simulation/upward.py", "from deepsmlm.assembly.simulators import build_simulator\n",
     "- deepsmlm.simulation.upward -> deepsmlm.assembly.simulators (l.1)"),
    # independent siblings of one layer
    ("inference/sibling.py", "from deepsmlm.simulation.simulator import Simulator\n",
     "- deepsmlm.inference.sibling -> deepsmlm.simulation.simulator (l.1)"),
    # a top-level module with no layer
    ("stray.py", '"""A module nobody placed."""\n', "- deepsmlm.stray"),
])
def test_the_contract_breaks_on_an_import_against_the_layers(tmp_path, module, source, report):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "src" / "deepsmlm", tmp_path / "src" / "deepsmlm", ignore=_all_but_code)
    assert lint(tmp_path).returncode == 0  # the copy keeps the contract
    (tmp_path / "src" / "deepsmlm" / module).write_text(source)
    done = lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Contracts: 0 kept, 1 broken." in done.stdout and report in done.stdout, done.stdout
