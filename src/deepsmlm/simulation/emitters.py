"""Emitter sets: positions (nm), photons and frame indices, as torch tensors, and their samplers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from deepsmlm.config import BlinkingConfig, EmitterConfig, FrameConfig, PhotonConfig
from deepsmlm.localizations import field_size_nm
from deepsmlm.sampling import standard_gamma
from deepsmlm.simulation.structures import filament_paths, sample_on_ellipsoid, sample_on_filaments


@dataclass
class Emitters:
    """A set of emitter appearances, one row per (molecule, frame) in which it is on.

    xyz_nm: (E, 3) float, x along columns, y along rows, origin at the top-left corner of pixel
    (0, 0); z relative to the nominal focal plane, positive into the sample.
    photons: (E,) signal photons collected in that frame.
    frame: (E,) int64, 0-based frame index.
    molecule: (E,) int64, identity of the molecule (equal across the frames it blinks in).
    color: (E,) int64 dye index, or None.
    """

    xyz_nm: torch.Tensor
    photons: torch.Tensor
    frame: torch.Tensor
    molecule: torch.Tensor
    color: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.photons.shape[0])

    @classmethod
    def empty(cls, dtype: torch.dtype = torch.float32) -> "Emitters":
        z = torch.zeros(0, dtype=torch.int64)
        return cls(torch.zeros(0, 3, dtype=dtype), torch.zeros(0, dtype=dtype), z, z.clone())

    def select(self, keep: torch.Tensor | slice) -> "Emitters":
        """Rows where the boolean mask (or index tensor, or slice: a view) ``keep`` selects."""
        return Emitters(**{f.name: (getattr(self, f.name)[keep] if getattr(self, f.name) is not None else None)
                           for f in fields(self)})

    def to(self, device: torch.device | str) -> "Emitters":
        return Emitters(**{f.name: (getattr(self, f.name).to(device) if getattr(self, f.name) is not None else None)
                           for f in fields(self)})

    @staticmethod
    def cat(parts: list["Emitters"]) -> "Emitters":
        """Concatenate emitter sets (colors kept only when every part has them)."""
        if not parts:
            return Emitters.empty()
        colors = [p.color for p in parts]
        return Emitters(
            xyz_nm=torch.cat([p.xyz_nm for p in parts]),
            photons=torch.cat([p.photons for p in parts]),
            frame=torch.cat([p.frame for p in parts]),
            molecule=torch.cat([p.molecule for p in parts]),
            color=torch.cat(colors) if all(c is not None for c in colors) else None,
        )


def sample_photons(cfg: PhotonConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` photon counts (float32, photons) from the configured distribution.

    gamma: shape k, scale theta (mean k theta); uniform: [low, high); lognormal: mean ``mean``
    and standard deviation ``sigma`` of log(photons), i.e. mu = log(mean) - sigma^2 / 2;
    constant: ``low``.
    """
    if cfg.distribution == "gamma":
        values = cfg.scale * standard_gamma(torch.full((n,), cfg.shape, dtype=torch.float64), generator)
    elif cfg.distribution == "uniform":
        values = cfg.low + (cfg.high - cfg.low) * torch.rand(n, generator=generator, dtype=torch.float64)
    elif cfg.distribution == "lognormal":
        mu = math.log(cfg.mean) - cfg.sigma**2 / 2
        values = torch.exp(mu + cfg.sigma * torch.randn(n, generator=generator, dtype=torch.float64))
    else:
        values = torch.full((n,), cfg.low, dtype=torch.float64)
    return values.float()


def sample_emitters(
    emitters: EmitterConfig, frame: FrameConfig, n_frames: int, generator: torch.Generator
) -> Emitters:
    """Emitters for frames 0 .. n_frames - 1, rows sorted by frame.

    Positions follow ``emitters.structure`` (uniform in ``z_range_nm`` and the field less ``margin_px``, on
    filaments, or on an ellipsoid surface centred on the field and on the middle of the z range).
    Without blinking each frame holds fresh molecules: ``count`` uniform in [low, high] or
    Poisson(density x placement area). With blinking a fixed pool of molecules switches on and off
    (see ``_blinking_emitters``). With ``dyes`` every molecule carries one dye (``color``).
    """
    place = _position_sampler(emitters, frame, generator)
    if emitters.blinking.enabled:
        out = _blinking_emitters(emitters, frame, n_frames, place, generator)
    else:
        counts = _counts_per_frame(emitters, frame, n_frames, generator)
        total = int(counts.sum())
        out = Emitters(
            xyz_nm=place(total).float(),
            photons=sample_photons(emitters.photons, total, generator),
            frame=torch.repeat_interleave(torch.arange(n_frames), counts),
            molecule=torch.arange(total),
        )
    if emitters.dyes:
        out.color = dye_labels(emitters, out.molecule, generator)
    return out


@dataclass(frozen=True)
class EmitterSampler:
    """Draws a movie's emitters: ``statistics`` (density or count, photons, z range, structure, blinking,
    dyes) on a field of ``frame``'s geometry (see :func:`sample_emitters`)."""

    statistics: EmitterConfig
    frame: FrameConfig

    def __call__(self, n_frames: int, generator: torch.Generator) -> Emitters:
        return sample_emitters(self.statistics, self.frame, n_frames, generator)


def dye_labels(emitters: EmitterConfig, molecule: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(E,) int64 dye index per emitter: one draw per molecule, in proportion to the dyes' fractions."""
    fractions = torch.tensor([d.fraction for d in emitters.dyes], dtype=torch.float64)
    n_molecules = int(molecule.max()) + 1 if len(molecule) else 0
    if n_molecules == 0:
        return torch.zeros(0, dtype=torch.int64)
    per_molecule = torch.multinomial(fractions, n_molecules, replacement=True, generator=generator)
    return per_molecule[molecule]


def placement_area_um2(emitters: EmitterConfig, frame: FrameConfig) -> float:
    """Area (µm²) uniform emitters are placed in: the frame less ``emitters.margin_px`` on each side."""
    inner = 2 * emitters.margin_px
    return (frame.width - inner) * (frame.height - inner) * (frame.pixel_size_nm / 1000) ** 2


def mean_emitters_per_frame(emitters: EmitterConfig, frame: FrameConfig) -> float:
    """Expected emitters per frame: (low + high) / 2 for a count range, else density x area."""
    if emitters.count is not None:
        return (emitters.count[0] + emitters.count[1]) / 2
    return emitters.density_per_um2 * placement_area_um2(emitters, frame)


def _counts_per_frame(
    emitters: EmitterConfig, frame: FrameConfig, n_frames: int, generator: torch.Generator
) -> torch.Tensor:
    """(n_frames,) int64 emitter counts: uniform integers in ``count`` or Poisson(density x area)."""
    if emitters.count is not None:
        low, high = emitters.count
        return torch.randint(low, high + 1, (n_frames,), generator=generator)
    rate = torch.full((n_frames,), mean_emitters_per_frame(emitters, frame), dtype=torch.float64)
    return torch.poisson(rate, generator=generator).long()


def _position_sampler(
    emitters: EmitterConfig, frame: FrameConfig, generator: torch.Generator
) -> Callable[[int], torch.Tensor]:
    """A function n -> (n, 3) float64 positions in nm on the configured structure (drawn once here)."""
    width, height = field_size_nm(frame.height, frame.width, frame.pixel_size_nm)
    z_low, z_high = emitters.z_range_nm
    z_center = (z_low + z_high) / 2
    structure = emitters.structure
    if structure.kind == "filaments":
        paths = filament_paths(structure, width, height, z_center, generator)
        return lambda n: sample_on_filaments(paths, n, generator)
    if structure.kind == "ellipsoid":
        center = (width / 2, height / 2, z_center)
        return lambda n: sample_on_ellipsoid(structure.ellipsoid_semi_axes_nm, center, n, generator)
    margin = emitters.margin_px * frame.pixel_size_nm
    offset = torch.tensor([margin, margin, z_low], dtype=torch.float64)
    extent = torch.tensor([width - 2 * margin, height - 2 * margin, z_high - z_low], dtype=torch.float64)
    return lambda n: offset + extent * torch.rand(n, 3, generator=generator, dtype=torch.float64)


def stationary_on_fraction(blinking: BlinkingConfig) -> float:
    """Stationary probability of the on state, p_off_to_on / (p_on_to_off + p_off_to_on); 1 if both are 0."""
    rate = blinking.p_on_to_off + blinking.p_off_to_on
    return blinking.p_off_to_on / rate if rate > 0 else 1.0


def _blinking_emitters(
    emitters: EmitterConfig,
    frame: FrameConfig,
    n_frames: int,
    place: Callable[[int], torch.Tensor],
    generator: torch.Generator,
) -> Emitters:
    """A fixed pool of molecules, each a two-state on/off Markov chain over frames.

    Molecules start in the stationary distribution (on-fraction f). The pool holds
    Poisson(mean / f) molecules for a density, round(mean / f) for a count range, so that before
    bleaching the mean number on per frame equals the configured mean. Each on-frame emits
    ``sample_photons``; with ``photon_budget`` a molecule bleaches when its cumulative photons
    reach its budget ~ Exponential(mean photon_budget): that frame emits only the remainder and
    the molecule never turns on again.
    """
    blinking = emitters.blinking
    on_fraction = stationary_on_fraction(blinking)
    if on_fraction == 0 or n_frames == 0:
        return Emitters.empty()
    pool_mean = mean_emitters_per_frame(emitters, frame) / on_fraction
    if emitters.count is not None:
        n_mol = round(pool_mean)
    else:
        n_mol = int(torch.poisson(torch.tensor(pool_mean, dtype=torch.float64), generator=generator))
    xyz = place(n_mol).float()
    on = torch.rand(n_mol, generator=generator) < on_fraction
    budget = torch.full((n_mol,), math.inf, dtype=torch.float64)
    if blinking.photon_budget is not None:
        budget.exponential_(1 / blinking.photon_budget, generator=generator)
    emitted = torch.zeros(n_mol, dtype=torch.float64)
    flip_prob = torch.tensor([blinking.p_off_to_on, blinking.p_on_to_off])
    molecules, photons, frames = [], [], []
    for t in range(n_frames):
        ids = (on & (emitted < budget)).nonzero().squeeze(1)
        ph = torch.minimum(sample_photons(emitters.photons, len(ids), generator).double(), budget[ids] - emitted[ids])
        emitted[ids] += ph
        molecules.append(ids)
        photons.append(ph.float())
        frames.append(torch.full_like(ids, t))
        on ^= torch.rand(n_mol, generator=generator) < flip_prob[on.long()]
    molecule = torch.cat(molecules)
    return Emitters(xyz_nm=xyz[molecule], photons=torch.cat(photons), frame=torch.cat(frames), molecule=molecule)
