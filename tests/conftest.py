"""Shared fixtures: a CLI runner, YAML config writers and the one-line-error check."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deepsmlm.config import SimulationConfig, dump_config


@pytest.fixture(scope="session", autouse=True)
def psf_stack_cache(tmp_path_factory):
    """One on-disk z-stack cache for the whole test session (hermetic: never the user's ~/.cache), shared
    by the tests and the CLI subprocesses they start; the preset stacks are built once."""
    import os

    from deepsmlm.optics.stack_cache import CACHE_ENV

    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("psf_cache"))
    yield Path(os.environ[CACHE_ENV])
    if old is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture
def one_thread():
    """Convolution sums are ordered by the thread count: bytes pinned by tests are pinned for one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def runner():
    """A typer CliRunner (stdout and stderr captured separately)."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def write_yaml(tmp_path: Path):
    """write_yaml(content, name="config.yaml") -> path; content is YAML text, a dict or a SimulationConfig."""

    def _write(content: str | dict | SimulationConfig, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, SimulationConfig):
            text = dump_config(content)
        elif isinstance(content, dict):
            text = yaml.safe_dump(content, sort_keys=False)
        else:
            text = content
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def uniform_gaussian_config(write_yaml) -> Path:
    """A small, fast config: 32x32 px of 100 nm, Gaussian PSF, ideal camera, uniform emitters, no blinking."""
    return write_yaml(
        {
            "name": "test_uniform_gaussian",
            "frame": {"height": 32, "width": 32, "pixel_size_nm": 100.0},
            "psf": {"model": "gaussian", "patch_px": 11, "gaussian": {"sigma_nm": 110.0}},
            "camera": {"type": "ideal"},
            "emitters": {
                "density_per_um2": 1.0,
                "photons": {"distribution": "constant", "low": 1000.0},
                "blinking": {"enabled": False},
                "structure": {"kind": "uniform"},
            },
            "background": {"photons_per_px": [10.0, 10.0]},
            "frames": 5,
        },
        name="uniform_gaussian.yaml",
    )


def _assert_one_line(text: str) -> str:
    """The text is exactly one non-empty line (a trailing newline allowed) and holds no traceback."""
    assert "Traceback" not in text, text
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].strip(), f"expected one line, got {text!r}"
    return lines[0]


@pytest.fixture
def one_line():
    """one_line(text) -> the single line of ``text``; fails unless it is exactly one line without a traceback."""
    return _assert_one_line
