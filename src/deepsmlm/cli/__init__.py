"""Command-line interface (typer). Bad input ends in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepsmlm.cli.calibrate import calibrate_app
from deepsmlm.cli.batch import batch
from deepsmlm.cli.export import export
from deepsmlm.cli.resolution import drift, frc
from deepsmlm.cli.common import (ConfigArg, DeviceOpt, MinutesOpt, OneLineErrors, OverwriteOpt, StepsOpt,
                                 guard)

app = typer.Typer(cls=OneLineErrors, add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Deep-learning single-molecule localization microscopy and PSF design.")


def _version(value: bool) -> None:
    if value:
        from deepsmlm import __version__

        print(f"deepsmlm {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Deep-learning single-molecule localization microscopy and PSF design."""


@app.command()
def simulate(
    config: str = ConfigArg,
    out: Path = typer.Option(..., "-o", "--out", help="output folder"),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, help="number of frames (default: config)"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=2**63 - 1, help="random seed (default: config)"),
    density: Optional[float] = typer.Option(None, "--density", min=0, help="emitters per µm² per frame"),
    emitters: Optional[int] = typer.Option(None, "--emitters", min=0, help="emitters per frame"),
    device: str = DeviceOpt,
) -> None:
    """Simulate a movie: frames.tif (uint16 ADU), ground_truth.csv (ThunderSTORM), config.yaml."""
    from deepsmlm.commands.simulate import run_simulate

    guard(run_simulate, config, out, frames, seed, density, emitters, device)


@app.command()
def psf(
    config: str = ConfigArg,
    out: Path = typer.Option(..., "-o", "--out", help="output PNG"),
    planes: int = typer.Option(10, "--planes", min=1, help="number of z planes"),
) -> None:
    """Draw the PSF montage over the config's axial range."""
    from deepsmlm.commands.optics import run_psf

    guard(run_psf, config, out, planes)


@app.command()
def crlb(
    config: str = ConfigArg,
    mask: Optional[Path] = typer.Option(None, "--mask", help="phase mask file replacing the config's mask"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the figures as JSON"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="CRLB-vs-z plot (default: crlb.png beside --json)"),
    photons: Optional[float] = typer.Option(None, "--photons", min=0, help="signal photons (default: config mean)"),
    background: Optional[float] = typer.Option(None, "--background", min=0, help="background photons/px"),
    planes: int = typer.Option(41, "--planes", min=2, help="number of z planes"),
) -> None:
    """Cramér–Rao lower bounds of x, y, z against z for the config's PSF and camera."""
    from deepsmlm.commands.optics import run_crlb

    guard(run_crlb, config, mask, json_out, plot, photons, background, planes)


design_app = typer.Typer(no_args_is_help=True, help="Design phase masks: CRLB-optimal (tetrapod), learned with a "
                                                    "3D network (learn) or for telling dyes apart (multicolor).")
app.add_typer(design_app, name="design")


@design_app.command("tetrapod")
def design_tetrapod(
    config: str = ConfigArg,
    out: Path = typer.Option(..., "-o", "--out", help="output folder"),
    basis: str = typer.Option("zernike", "--basis", help="zernike (coefficients) or pixel (every pupil pixel)"),
    steps: int = typer.Option(200, "--steps", min=1, help="optimisation steps (Adam)"),
    max_noll: int = typer.Option(28, "--max-noll", min=4, help="highest Noll index of the Zernike basis"),
    smoothness: float = typer.Option(0.0, "--smoothness", min=0, help="weight of the pixel-basis smoothness term"),
    photons: Optional[float] = typer.Option(None, "--photons", min=0, help="signal photons (default: config mean)"),
    background: Optional[float] = typer.Option(None, "--background", min=0, help="background photons/px"),
    planes: int = typer.Option(21, "--planes", min=2, help="z planes over the config's axial range"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="seed of the starting mask"),
) -> None:
    """A phase mask minimising the mean 3D CRLB over the config's axial range (how the Tetrapod was designed)."""
    from deepsmlm.commands.design import run_design_tetrapod

    guard(run_design_tetrapod, config, out, basis, steps, max_noll, smoothness, photons, background, planes, seed)


LearnedModelOut = typer.Option(..., "-o", "--out", help="output folder (a model folder usable by localize)")
FromScratchOpt = typer.Option(False, "--from-scratch", help="start from no mask, not the config's mask")
SmoothnessOpt = typer.Option(0.0, "--smoothness", min=0, help="weight of the mask smoothness term")
ResumeDesignOpt = typer.Option(False, "--resume", help="continue the run in the output folder")
LearnBasisOpt = typer.Option("pixel", "--basis", help="learn every pupil pixel (pixel) or Zernike coefficients")
LearnMaxNollOpt = typer.Option(28, "--max-noll", min=4, help="zernike basis: highest Noll index learned")
CrlbCapOpt = typer.Option(None, "--crlb-cap", min=0.1,
                          help="information floor: penalise depths whose 3D CRLB (nm, mean photons and "
                               "background) exceeds this")


def _joint_design_command(runner: str, doc: str):
    """A `design` command that learns a mask with its network through ``commands.design.<runner>``."""

    def command(
        config: str = ConfigArg,
        out: Path = LearnedModelOut,
        steps: Optional[int] = StepsOpt,
        minutes: Optional[float] = MinutesOpt,
        from_scratch: bool = FromScratchOpt,
        smoothness: float = SmoothnessOpt,
        resume: bool = ResumeDesignOpt,
        device: str = DeviceOpt,
        basis: str = LearnBasisOpt,
        max_noll: int = LearnMaxNollOpt,
        crlb_cap: Optional[float] = CrlbCapOpt,
        overwrite: bool = OverwriteOpt,
    ) -> None:
        from deepsmlm.commands import design

        guard(getattr(design, runner), config, out, steps, minutes, from_scratch, smoothness, resume, device, basis,
               max_noll, crlb_cap, overwrite)

    command.__doc__ = doc
    return command


design_app.command("learn")(_joint_design_command(
    "run_design_learn", "Learn the phase mask and the 3D localization network together (end-to-end optics design)."))
design_app.command("multicolor")(_joint_design_command(
    "run_design_multicolor",
    "Learn one phase mask and a network that localizes emitters and tells 2–4 dyes apart by PSF shape."))


@app.command()
def train(
    config: str = ConfigArg,
    out: Path = typer.Option(..., "-o", "--out", help="model folder"),
    steps: Optional[int] = StepsOpt,
    minutes: Optional[float] = MinutesOpt,
    resume: bool = typer.Option(False, "--resume", help="continue the run in the model folder exactly"),
    overwrite: bool = OverwriteOpt,
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="start from this model's weights (shipped name or folder; same network)"),
    device: str = DeviceOpt,
) -> None:
    """Train a model on batches simulated on the fly from the config's physics."""
    from deepsmlm.commands.train import run_train

    guard(run_train, config, out, steps, minutes, resume, device, overwrite, init_from)


@app.command()
def localize(
    stack: Path = typer.Argument(..., help="TIFF stack, folder of TIFFs, .dax (+ .inf) or Picasso .raw (+ .yaml), in ADU"),
    model: str = typer.Option(..., "--model", help="shipped model name, model folder, gaussian-mle or psf-mle (3D), "
                                "or an .onnx file (with --backend onnx)"),
    out: Path = typer.Option(..., "-o", "--out", help="localization file (.csv ThunderSTORM, .hdf5, .parquet)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="thunderstorm, picasso, challenge or parquet"),
    render: Optional[Path] = typer.Option(None, "--render", help="also write the super-resolved image (PNG + TIFF)"),
    device: str = DeviceOpt,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="most frames read at once (default "
                                             "32 for a network, 256 for the fitters; fewer when --max-memory-gb asks)"),
    config: Optional[str] = typer.Option(None, "--config", help="the data's camera/pixel/z config (classic fitters need it)"),
    baseline_subtracted: bool = typer.Option(False, "--baseline-subtracted",
                                             help="the frames already had the camera baseline removed"),
    pixel_size_nm: Optional[float] = typer.Option(None, "--pixel-size-nm",
                                                  help="the data's pixel size (nm), for a file without one"),
    force: bool = typer.Option(False, "--force", help="run even when the data do not fit the model "
                                                      "(pixel size, background, noise, spot width or photons)"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="detection threshold: a network's summed "
                                              "density (0–1), or gaussian-mle's in noise standard deviations "
                                              "(default: the model's, 6 for gaussian-mle)"),
    max_memory_gb: Optional[float] = typer.Option(None, "--max-memory-gb", help="working-memory budget (GiB; default "
                                                  "half the memory available); large frames are tiled to fit it"),
    max_uncertainty_nm: Optional[float] = typer.Option(None, "--max-uncertainty-nm", help="drop localizations whose "
                                                       "lateral σ (uncertainty_xy, nm) exceeds this"),
    backend: str = typer.Option("torch", "--backend", help="torch; torch-bf16: the network in bfloat16 (≈2× "
                                "faster on CPUs with AMX or AVX512-BF16, positions within ≈1 nm); or onnx: the "
                                "network through onnxruntime on the CPU (--model an .onnx file from `deepsmlm "
                                "export`, or a shipped name or folder, then exported in memory first, a few "
                                "seconds); same pre- and post-processing"),
    report: Optional[Path] = typer.Option(None, "--report", help="also write a run report: one self-contained HTML "
                                          "page (input, model, image, histograms, detections per frame, command)"),
    report_drift: bool = typer.Option(False, "--report-drift", help="the report adds the drift curve (RCC)"),
    report_frc: bool = typer.Option(False, "--report-frc", help="the report adds the FRC resolution (after drift "
                                    "correction with --report-drift)"),
) -> None:
    """Localize every frame of a stack with a model or the classic Gaussian MLE fitter."""
    from deepsmlm.commands.localize import ReportRequest, run_localize

    guard(run_localize, stack, model, out, fmt, render, device, batch_size, config, baseline_subtracted,
           pixel_size_nm, force, threshold, max_memory_gb, max_uncertainty_nm, backend,
           ReportRequest(report, report_drift, report_frc))


@app.command()
def evaluate(
    gt: Path = typer.Option(..., "--gt", help="ground-truth localizations (any supported format)"),
    pred: Path = typer.Option(..., "--pred", help="predicted localizations"),
    lateral_tol: float = typer.Option(250.0, "--lateral-tol", min=0, help="lateral matching radius (nm)"),
    axial_tol: float = typer.Option(500.0, "--axial-tol", min=0, help="axial tolerance (nm), used when both have z"),
    match: str = typer.Option("hungarian", "--match", help="hungarian or greedy (the challenge's closest-first)"),
    border_nm: float = typer.Option(0.0, "--border-nm", min=0, help="exclude emitters this close to the field edge"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the metrics as JSON"),
    pixel_size_nm: Optional[float] = typer.Option(None, "--pixel-size-nm", help="pixel size for pixel-unit formats"),
) -> None:
    """Match predictions to ground truth per frame; Jaccard, RMSE, bias and SMLM-2016 efficiency."""
    from deepsmlm.commands.evaluate import run_evaluate

    guard(run_evaluate, gt, pred, lateral_tol, axial_tol, match, border_nm, json_out, pixel_size_nm)


@app.command()
def render(
    locs: Path = typer.Argument(..., help="localization file (any supported format)"),
    out: Path = typer.Option(..., "-o", "--out", help="output PNG (a float32 TIFF is written beside it)"),
    pixel_nm: float = typer.Option(10.0, "--pixel-nm", min=0.1, help="super-resolved pixel size (nm)"),
    color: str = typer.Option("none", "--color", help="none, z (depth colour-coded) or dye"),
    method: str = typer.Option("gaussian", "--method", help="gaussian or histogram"),
    sigma_nm: Optional[float] = typer.Option(None, "--sigma-nm", help="fixed Gaussian σ (default: per-localization uncertainty)"),
    pixel_size_nm: Optional[float] = typer.Option(None, "--pixel-size-nm", help="camera pixel size for pixel-unit formats"),
    view: str = typer.Option("xy", "--view", help="xy (top), or xz / yz (side view: z down the image)"),
    roi: Optional[str] = typer.Option(None, "--roi", help="x0,y0,x1,y1 in nm: render only this rectangle"),
    sigma_weighted: bool = typer.Option(False, "--sigma-weighted", help="each one a Gaussian of its own σ, all known"),
) -> None:
    """Render a super-resolved image from localizations."""
    from deepsmlm.commands.render import run_render

    guard(run_render, locs, out, pixel_nm, color, method, sigma_nm, pixel_size_nm, view, roi, sigma_weighted)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_output"), "-o", "--out", help="output folder"),
    frames: int = typer.Option(300, "--frames", min=1, help="frames to simulate"),
) -> None:
    """The main job: a dense simulated filament movie reconstructed by default-2d and gaussian-mle."""
    from deepsmlm.commands.demo import run_demo

    guard(run_demo, out, frames)


@app.command()
def estimate(
    movie: Path = typer.Argument(..., help="the raw movie (TIFF stack, folder of TIFFs, .dax, .raw), in ADU"),
    config: str = typer.Option(..., "--config", help="the microscope's config (camera, PSF; e.g. a calibrated.yaml)"),
    out: Path = typer.Option(..., "-o", "--out", help="the training config to write (.yaml; a .png plot beside)"),
    frames: int = typer.Option(300, "--frames", min=1, help="frames fitted, evenly spaced over the movie"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="the fitter's threshold (noise SDs)"),
    pixel_size_nm: Optional[float] = typer.Option(None, "--pixel-size-nm", help="the data's pixel size (nm)"),
    correct: bool = typer.Option(True, "--correct/--no-correct", help="correct for missed emitters by simulation"),
) -> None:
    """Estimate photons, background, density and z range from the raw movie; write a training config."""
    from deepsmlm.commands.estimate import run_estimate

    guard(run_estimate, movie, config, out, frames, threshold, pixel_size_nm, correct)


app.add_typer(calibrate_app, name="calibrate")
app.command("drift")(drift)
app.command("frc")(frc)
app.command("export")(export)
app.command("batch")(batch)


def main() -> None:
    """Console-script entry point."""
    app()
