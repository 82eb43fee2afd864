"""`deepsmlm localize --report`: one self-contained HTML page (input, model, image, histograms, detections per
frame, drift and FRC when asked, the command), PNGs embedded and valid, z histograms only in 3D, opening in
headless Chromium without console errors, and one-line errors for bad report options."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import deepsmlm
from deepsmlm.api.model import CLASSIC, Model, Run
from deepsmlm.api.report import write_run_report
from deepsmlm.cli import app
from deepsmlm.config import load_config
from deepsmlm.inference.stream import StackResult
from deepsmlm.io.localization_files import read_localizations
from deepsmlm.localizations import Localizations, Metadata

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">')
FRAMES, PHOTONS, BACKGROUND = 300, 1000.0, 10.0
MOVIE = {"name": "report_filaments", "frame": {"height": 32, "width": 32, "pixel_size_nm": 100.0},
         "psf": {"model": "gaussian", "patch_px": 11, "gaussian": {"sigma_nm": 110.0}}, "camera": {"type": "ideal"},
         "emitters": {"density_per_um2": 1.0, "photons": {"distribution": "constant", "low": PHOTONS},
                      "blinking": {"enabled": False}, "structure": {"kind": "filaments", "n_filaments": 4}},
         "background": {"photons_per_px": [BACKGROUND, BACKGROUND]}}


def section(page: str, anchor: str) -> str:
    """The HTML of the section with id ``anchor`` (empty when absent)."""
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    return found.group(1) if found else ""


def facts(html_part: str) -> dict[str, str]:
    return dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", html_part))


def images(html_part: str) -> dict[str, tuple[int, int]]:
    """alt → (width, height) of each embedded image, checked to be PNG data."""
    sizes = {}
    for data, alt in IMAGE.findall(html_part):
        png = base64.b64decode(data, validate=True)
        assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR", alt
        sizes[alt] = struct.unpack(">II", png[16:24])
    return sizes


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """gaussian-mle over a simulated filament movie with --report (in a folder not yet made) --report-drift
    --report-frc, run as from a shell: (folder, argv, report path, CLI result)."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "movie.yaml").write_text(yaml.safe_dump(MOVIE))
    deepsmlm.simulate(folder / "movie.yaml", frames=FRAMES, seed=2, out_dir=folder / "sim")
    report = folder / "reports" / "run one.html"
    argv = ["localize", str(folder / "sim" / "frames.tif"), "--model", CLASSIC, "--config", str(folder / "movie.yaml"),
            "-o", str(folder / "locs.parquet"), "--report", str(report), "--report-drift", "--report-frc"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["/somewhere/bin/deepsmlm", *argv])
        result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, (result.output, result.exception)
    return folder, argv, report, result


def test_report_holds_every_section_with_valid_images(report_run):
    folder, argv, report, result = report_run
    page = report.read_text(encoding="utf-8")
    assert f"report → {report}" in result.output
    for anchor, alts in [("input", []), ("model", []), ("image", ["super-resolved image"]),
                         ("statistics", ["histograms"]), ("detections", ["detections per frame"]),
                         ("drift", ["drift curve"]), ("frc", ["FRC curve"])]:
        shown = images(section(page, anchor))
        assert sorted(shown) == alts, anchor
        assert all(w > 100 and h > 100 for w, h in shown.values()), (anchor, shown)
    assert not re.search(r"<script|<link|<iframe|(src|href)=\"(?!data:)", page)  # nothing loaded from elsewhere
    table = read_localizations(folder / "locs.parquet")
    seen = facts(section(page, "input"))
    assert seen["frames"] == str(FRAMES) and seen["frame shape"].startswith("32 × 32 px")
    assert seen["pixel size"] == "100 nm" and seen["localizations"] == f"{len(table):,}"
    assert facts(section(page, "model"))["kind"] == CLASSIC


def test_report_states_the_fitted_values_and_the_command(report_run):
    folder, argv, report, _ = report_run
    page = report.read_text(encoding="utf-8")
    stats = facts(section(page, "statistics"))
    assert "z (nm)" not in stats and "axial σ (nm)" not in stats  # a 2D run
    median = {k: float(re.match(r"median ([-\d.e+]+)", v).group(1)) for k, v in stats.items()}
    assert abs(median["photons"] / PHOTONS - 1) < 0.1  # the simulated emitters' constant 1000 photons
    assert abs(median["background (photons/px)"] / BACKGROUND - 1) < 0.1
    assert 3 < median["lateral σ (nm)"] < 15  # √CRLB of 1000 photons over 10/px with a 110 nm PSF
    drift = facts(section(page, "drift"))
    assert all(abs(float(v)) < 10 for v in re.findall(r"[-+]\d+\.\d", drift["range (nm)"]))  # none simulated
    assert re.match(r"\d+\.\d nm", facts(section(page, "frc"))["resolution (1/7 threshold)"])
    command = re.search(r"<pre><code>(.*?)</code></pre>", section(page, "command"), re.S).group(1)
    expected = f"cd {shlex.quote(os.getcwd())} && deepsmlm {shlex.join(argv)}"
    assert command.replace("&amp;", "&").replace("&#x27;", "'") == expected
    assert "'" in expected  # the report's name has a space: quoted


def synthetic_run(config: str, three_d: bool, n: int = 3000, n_frames: int = 200) -> tuple[Run, Model]:
    """A run of shipped model ``config`` (its network not needed: a stand-in) with localizations in 3 µm
    carrying photons, background, σ and (3D) z uniform over ±500 nm."""
    rng = np.random.default_rng(1)
    cfg = load_config(Path(deepsmlm.__file__).parent / "pretrained" / config / "config.yaml")
    assert cfg.localizes_z() == three_d
    table = Localizations.from_arrays(
        np.sort(rng.integers(0, n_frames, n)), rng.uniform(0, 3000, n), rng.uniform(0, 3000, n),
        rng.uniform(-500, 500, n) if three_d else None, photons=rng.lognormal(7, 0.4, n), bg=rng.normal(20, 2, n),
        sigma_x_nm=rng.uniform(5, 15, n), sigma_y_nm=rng.uniform(5, 15, n),
        sigma_z_nm=rng.uniform(20, 40, n) if three_d else np.full(n, np.nan)).table
    meta = Metadata(pixel_size_nm=100.0, image_shape=(30, 30), n_frames=n_frames, source="synthetic.tif")
    return (Run(cfg, meta, StackResult(table, None, 2.0, n_frames, n)),
            Model(config, cfg, torch.nn.Identity(), torch.device("cpu"), f"model {config}"))


@pytest.mark.parametrize("config,three_d", [("default-2d", False), ("tetrapod-3d", True)])
def test_z_histograms_only_in_3d(tmp_path, config, three_d):
    run, model = synthetic_run(config, three_d)
    done = write_run_report(tmp_path / "r.html", run, model)
    page = done.path.read_text(encoding="utf-8")
    stats = facts(section(page, "statistics"))
    assert ("z (nm)" in stats) == three_d and ("axial σ (nm)" in stats) == three_d
    assert {"photons", "background (photons/px)", "lateral σ (nm)"} <= set(stats)
    if three_d:
        z_median = float(re.match(r"median ([-\d.e+]+)", stats["z (nm)"]).group(1))
        assert abs(z_median) < 50  # uniform over ±500 nm
    assert "histograms" in images(section(page, "statistics"))
    model_facts = facts(section(page, "model"))
    assert model_facts["localizes"].startswith("3D" if three_d else "2D")
    assert model_facts["kind"] == ("deepstorm3d" if three_d else "deepstorm2d")
    assert re.match(r"Jaccard 0\.\d{3}, lateral RMSE", model_facts["best validation"])  # from its training log
    assert "training curves" in images(section(page, "model"))
    assert not section(page, "drift") and not section(page, "frc") and not section(page, "command")
    assert done.drift is None and done.frc is None


def test_drift_and_frc_the_data_refuse_are_noted_not_fatal(tmp_path):
    run, model = synthetic_run("default-2d", False, n=500, n_frames=1)
    done = write_run_report(tmp_path / "r.html", run, model, drift=True, frc=True)
    page = done.path.read_text(encoding="utf-8")
    assert done.drift is None and done.frc is None and len(done.notes) == 2
    assert "drift not estimated" in section(page, "drift") and "one frame" in section(page, "drift")
    assert "FRC not measured" in section(page, "frc")
    assert images(section(page, "image")) and images(section(page, "detections"))  # the rest is all there


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


@pytest.mark.skipif(chromium() is None, reason="no Chromium on this machine (Debian: apt-get install chromium)")
def test_report_opens_in_headless_chromium_and_shows_its_images(report_run, tmp_path):
    _, _, report, _ = report_run
    page = report.read_text(encoding="utf-8")
    # the test's own probe, added to a copy: once loaded, the page records each image's decoded width
    probe = ("<script>addEventListener('load', () => document.body.dataset.widths = "
             "JSON.stringify([...document.images].map(i => i.complete ? i.naturalWidth : -1)))</script>")
    copy = tmp_path / "probed.html"
    copy.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/p",
                           "--enable-logging=stderr", "--v=0", "--dump-dom", copy.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [line for line in done.stderr.splitlines() if "CONSOLE" in line]  # no script errors, no failed loads
    widths = json.loads(re.search(r'data-widths="([^"]*)"', done.stdout).group(1).replace("&quot;", '"'))
    assert len(widths) == len(IMAGE.findall(page)) == 5 and min(widths) > 100


@pytest.mark.parametrize("options,needle", [
    (["--report", "{stack}"], ".html"),  # the stack is never written over
    (["--report", "{blocker}/r.html"], "is a file"),  # a folder that cannot exist
    (["--report", "{tmp}/r.txt"], ".html"),
    (["--report-frc"], "--report PATH"),
])
def test_bad_report_options_fail_in_one_line_before_work(runner, tmp_path, one_line, options, needle):
    stack, blocker = tmp_path / "s.tif", tmp_path / "blocker"
    stack.write_bytes(b"not read")
    blocker.write_text("a file")
    args = [o.format(stack=stack, blocker=blocker, tmp=tmp_path) for o in options]
    res = runner.invoke(app, ["localize", str(stack), "--model", CLASSIC, "-o", str(tmp_path / "l.csv"), *args])
    assert res.exit_code == 2 and needle in one_line(res.output), res.output
    assert stack.read_bytes() == b"not read" and not (tmp_path / "l.csv").exists()
