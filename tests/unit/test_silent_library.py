"""A silent library: importing it loads neither rich nor matplotlib and drawing leaves the host's matplotlib
backend alone; library modules never print, pick a backend or import rich; training and localizing report
progress only to the caller's callback, and the CLI turns those reports into its bars and lines."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deepsmlm.inference.stream import run_stack
from deepsmlm.inference.tiling import Plan, Tile, TileResult
from deepsmlm.io.images import open_stack
from deepsmlm.io.tiff import write_stack
from deepsmlm.progress import ProgressEvent
from deepsmlm.training.trainer import Trainer
from tests.unit.test_deepstorm2d import tiny_config

SRC = Path(__file__).resolve().parents[2] / "src" / "deepsmlm"
LIBRARY_MODULES = ("deepsmlm", "deepsmlm.training.trainer", "deepsmlm.inference.stream",
                   "deepsmlm.analysis.render", "deepsmlm.plots", "deepsmlm.progress")
VALIDATION_LINE = r"step 2: val Jaccard \d\.\d{3} \(threshold 0\.\d\), RMSE \d+\.\d nm"


def in_fresh_python(code: str) -> dict:
    """What ``code`` prints as its last line, as JSON, run in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_library_loads_neither_rich_nor_matplotlib():
    loaded = in_fresh_python(
        f"import json, sys\nimport {', '.join(LIBRARY_MODULES)}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'matplotlib'))))")
    assert loaded == []


def test_drawing_figures_leaves_the_hosts_backend_alone(tmp_path):
    seen = in_fresh_python(f"""
import json, sys
import matplotlib
matplotlib.use("svg")  # the host's choice (a notebook, napari)
import numpy as np
import {', '.join(LIBRARY_MODULES)}
from deepsmlm.analysis.render import save_render
from deepsmlm.plots import crlb_plot
out = {str(tmp_path)!r}
crlb_plot(np.arange(3.0), {{"mask": {{"x": np.ones(3)}}}}, out + "/crlb.png")
save_render(np.eye(8, dtype=np.float32), out + "/render.png", 10.0, colorbar=("z (nm)", 0.0, 1.0, "turbo"))
print(json.dumps({{"backend": matplotlib.get_backend(), "pyplot": "matplotlib.pyplot" in sys.modules}}))
""")
    assert seen == {"backend": "svg", "pyplot": False}
    for name in ("crlb.png", "render.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def quiet_violations(path: Path) -> list[str]:
    """Lines of ``path`` that print, choose a matplotlib backend, or import rich or pyplot."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "print" or isinstance(f, ast.Attribute) and f.attr == "print":
                found.append(f"{path.name}:{node.lineno} prints")
            if isinstance(f, ast.Attribute) and f.attr in ("use", "switch_backend") and "matplotlib" in ast.unparse(f):
                found.append(f"{path.name}:{node.lineno} chooses a matplotlib backend")
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name.split(".")[0] == "rich" or name.startswith("matplotlib.pyplot"):
                found.append(f"{path.name}:{node.lineno} imports {name}")
    return found


def test_library_modules_do_not_print_choose_a_backend_or_import_rich_or_pyplot():
    library = [p for p in SRC.rglob("*.py") if not {"cli", "commands"} & set(p.relative_to(SRC).parts)]
    assert len(library) > 30
    assert [v for p in library for v in quiet_violations(p)] == []


def test_the_checker_sees_each_kind_of_noise(tmp_path):
    noisy = tmp_path / "noisy.py"
    noisy.write_text("import matplotlib\nmatplotlib.use('Agg')\nfrom rich.progress import Progress\n"
                     "import matplotlib.pyplot as plt\nprint(1)\nconsole.print(2)\n")
    assert sorted(quiet_violations(noisy), key=lambda v: int(v.split(":")[1].split()[0])) == [
        "noisy.py:2 chooses a matplotlib backend", "noisy.py:3 imports rich.progress",
        "noisy.py:4 imports matplotlib.pyplot", "noisy.py:5 prints", "noisy.py:6 prints"]


def test_training_reports_each_step_and_validation_to_the_callback_only(tmp_path, capfd):
    events: list[ProgressEvent] = []
    summary = Trainer(tiny_config(), tmp_path / "m").loop.run(steps=2, progress=events.append)
    assert capfd.readouterr() == ("", "")
    assert [e.task for e in events] == ["training"] * 3  # the start, then each step
    assert [e.done for e in events] == [0.0, 0.5, 1.0] and {e.total for e in events} == {1.0}
    assert events[0].status.startswith("step 0/2") and events[-1].status.startswith("step 2/2, ")
    assert re.fullmatch(r"loss \S+", events[-1].detail)
    assert [e.message for e in events[:2]] == [None, None]
    assert re.fullmatch(VALIDATION_LINE, events[-1].message)
    assert f"{summary['jaccard']:.3f}" in events[-1].message


class Constant:
    """A localizer finding one emitter per frame, at its first pixel."""

    upsampling = 1
    context_frames = 0

    def photons(self, adu: torch.Tensor) -> torch.Tensor:
        return adu

    def localize_tile(self, photons: torch.Tensor, first_frame: int, tile: Tile, superres: bool) -> TileResult:
        frames = np.arange(first_frame, first_frame + len(photons))
        table = pd.DataFrame({"frame": frames, "x_nm": 50.0, "y_nm": 50.0})
        return TileResult(table, np.zeros(len(frames)), None)


def test_localizing_reports_the_frames_done_to_the_callback_only(tmp_path, capfd):
    write_stack(tmp_path / "s.tif", np.full((5, 8, 8), 100, dtype=np.uint16), pixel_size_nm=100.0)
    events: list[ProgressEvent] = []
    with open_stack(tmp_path / "s.tif") as stack:
        result = run_stack(stack, Constant(), Plan(2, 2), progress=events.append)
    assert capfd.readouterr() == ("", "")
    assert result.n_localizations == 5
    assert [(e.task, e.done, e.total) for e in events] == [("localizing", d, 5) for d in (0, 2, 4, 5)]
    assert events[0].status == "" and all(re.search(r"frames/s|s/frame", e.status) for e in events[1:])


def test_the_train_command_shows_the_bar_and_the_validation_lines(runner, write_yaml, tmp_path):
    from deepsmlm.cli import app

    config = write_yaml({**tiny_config().model_dump(mode="json"), "name": "tiny"})
    res = runner.invoke(app, ["train", str(config), "-o", str(tmp_path / "m"), "--steps", "2"])
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(re.fullmatch(VALIDATION_LINE, line) for line in lines), res.stdout
    assert any(line.startswith("training") and "step 2/2" in line for line in lines), res.stdout
    assert lines[-1].startswith("trained 2 steps in ")
