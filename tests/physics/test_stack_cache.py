"""The fast path's on-disk z-stack cache returns exactly the stack it would build, and never a stale one:
another PSF (mask, physics option, z range) or a damaged entry means a fresh build."""

from __future__ import annotations

import torch

from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.optics.stack import StackPSF
from deepsmlm.optics.stack_cache import CACHE_ENV, cache_dir
from deepsmlm.optics.vectorial import VectorialPSF


def small_psf(kind=PupilPSF, **kwargs) -> PupilPSF:
    grid = PupilGrid(63, 100.0, 600.0, 1.4, 1.518, 1.33)
    return kind(grid, 11, 300.0, **kwargs)


def entries(folder) -> list:
    return sorted((folder / "psf").glob("*.safetensors")) if (folder / "psf").is_dir() else []


def test_a_rebuilt_stack_is_read_back_identical_and_a_changed_psf_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    base = small_psf()
    first = StackPSF(base, -300, 300, 50)
    assert len(entries(tmp_path)) == 1
    again = StackPSF(base, -300, 300, 50)
    assert len(entries(tmp_path)) == 1 and torch.equal(first.spectra, again.spectra)
    fresh = StackPSF(base, -300, 300, 50, cache=False)
    assert torch.equal(first.spectra, fresh.spectra)
    # every input of the stack is part of the key
    mask = torch.zeros(63, 63)
    mask[31, 32] = 0.5
    variants = [small_psf(mask_phase=mask), small_psf(pixel_integration=False), small_psf(VectorialPSF),
                small_psf(zernike_rad={5: 0.3})]
    for psf in variants:
        cached = StackPSF(psf, -300, 300, 50)
        assert torch.equal(cached.spectra, StackPSF(psf, -300, 300, 50, cache=False).spectra)
    StackPSF(base, -300, 250, 50)  # another z range
    assert len(entries(tmp_path)) == 2 + len(variants)


def test_a_damaged_entry_is_rebuilt_and_off_turns_the_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    base = small_psf()
    good = StackPSF(base, -200, 200, 50).spectra
    (entry,) = entries(tmp_path)
    entry.write_bytes(b"not a safetensors file")
    assert torch.equal(StackPSF(base, -200, 200, 50).spectra, good)
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_dir() is None
    StackPSF(small_psf(pixel_integration=False), -200, 200, 50)
    assert len(entries(tmp_path)) == 1  # nothing written
