"""Running a trained network on frames: ADU → photons → normalised input → network → its head's output →
localizations. The predictor knows no output type: its head (:mod:`deepsmlm.heads`) decodes the output."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from deepsmlm.heads.base import OutputHead
from deepsmlm.inference.tiling import Footprint, Tile, TileResult
from deepsmlm.models.footprint import NetworkFootprint
from deepsmlm.physics.camera import Camera

MAX_OUTPUT_VOXELS = 1 << 25  # network outputs are made in passes of at most this many voxels (128 MB)
MAX_FRAMES_PER_PASS = 32


def normalised(photons: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """(B, H, W) photons → (B, 1, H, W) network input, or windows of T frames (B, T, H, W) → (B, T, H, W):
    minus offset, over scale (the one normalisation of training, design and inference)."""
    x = (photons - offset) / scale
    return x.unsqueeze(1) if x.dim() == 3 else x


def frame_windows(photons: torch.Tensor, frames: int) -> torch.Tensor:
    """Frames (F + T − 1, H, W) → the (F, T, H, W) windows of T consecutive frames (a view)."""
    return photons.unfold(0, frames, 1).movedim(-1, 1)


class Predictor:
    """A trained network with its camera model, input normalisation and output head, batched and
    device-agnostic. ``normalisation``: (offset, scale) photons of the network's input (the model's, set
    when training started); ``network``: its reach, tile alignment and activation memory; ``frames``: the
    consecutive frames T the network sees (the middle one localized). ``net``: the torch network, or any
    callable mapping the normalised input (B, T, H, W) to its raw output on the input's device (an
    :class:`~deepsmlm.inference.onnx_network.OnnxNetwork`)."""

    def __init__(self, net: nn.Module | Callable[[torch.Tensor], torch.Tensor], network: NetworkFootprint,
                 camera: Camera, normalisation: tuple[float, float], head: OutputHead,
                 device: str | torch.device = "cpu", frames: int = 1):
        self.device = torch.device(device)
        self.frames = frames
        self.net = net.to(self.device).eval() if isinstance(net, nn.Module) else net
        weights = net.parameters() if isinstance(net, nn.Module) else ()
        self.dtype = next((w.dtype for w in weights), torch.float32)  # the network's precision: its input's
        self.network = network
        self.camera = camera.to(self.device)
        self.offset, self.scale = normalisation
        self.head = head
        self.grid = head.grid
        self.upsampling = head.grid.upsampling

    def photons(self, adu: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ADU → photons on the predictor's device, by the camera model."""
        return self.camera.adu_to_photons(adu.to(self.device))

    @property
    def context_frames(self) -> int:
        """Frames the network needs on each side of a frame it localizes."""
        return (self.frames - 1) // 2

    @torch.inference_mode()
    def output(self, adu: torch.Tensor) -> torch.Tensor:
        """The head's output (B, …, u·H, u·W) for frames (B, H, W) or windows (B, T, H, W) ADU; a density
        head's is (B, C·D, u·H, u·W), D axial planes (1 in 2D) of C dyes (1 unless multicolour), clipped at
        zero."""
        return self.output_of_photons(self.photons(adu))

    @torch.inference_mode()
    def output_of_photons(self, photons: torch.Tensor) -> torch.Tensor:
        """``output`` of frames (or windows) already in photons; the input is normalised by the model's offset
        and scale (not per image) and given to the network in its precision; the output is float32."""
        x = normalised(photons, self.offset, self.scale).to(self.dtype)
        return self.head.activate(self.net(x.contiguous(memory_format=torch.channels_last)).float())

    def footprint(self, height: int, width: int) -> Footprint:
        """Working memory per pixel, reach, tile alignment and frames per pass of height × width px, for
        planning passes: the network's and its head's together."""
        net = self.network
        return Footprint(net.bytes_per_px + self.head.bytes_per_px, net.reach_px + self.head.reach_px,
                         net.align_px, self.frames_per_pass(height, width))

    def frames_per_pass(self, height: int, width: int) -> int:
        """Frames of ``height`` × ``width`` px per network pass: their output volumes hold at most
        MAX_OUTPUT_VOXELS voxels together (at least one frame, at most MAX_FRAMES_PER_PASS)."""
        return max(1, min(MAX_FRAMES_PER_PASS, MAX_OUTPUT_VOXELS // self.grid.voxels(height, width)))

    def localize_frames(self, adu: torch.Tensor, first_frame: int = 0,
                        threshold: float | None = None) -> pd.DataFrame:
        """Localizations (as ``localize``) in a stack of frames (F, H, W) ADU, in memory-bounded passes."""
        step = self.frames_per_pass(*adu.shape[-2:])
        return pd.concat([self.localize(self.output(adu[i:i + step]), first_frame + i, threshold)
                          for i in range(0, len(adu), step)], ignore_index=True)

    def localize(self, output: torch.Tensor, first_frame: int = 0, threshold: float | None = None,
                 peaks: torch.Tensor | None = None, origin: tuple[int, int] = (0, 0)) -> pd.DataFrame:
        """Canonical table rows (frame, x_nm, y_nm[, z_nm], prob[, color, color_prob]) of the detections in a
        batch of outputs (``peaks``, else those the head finds at ``threshold``, None: the head's).
        ``origin``: (row, col) of the outputs' first fine pixel in the frame (a tile's place)."""
        if peaks is None:
            peaks = self.head.detect(output, threshold)
        return self.head.decode(output, peaks, first_frame, origin)

    @torch.inference_mode()
    def localize_tile(self, photons: torch.Tensor, first_frame: int, tile: Tile, superres: bool) -> TileResult:
        """Detections whose peak lies in the core of ``tile`` of frames (B, H, W) in photons (with
        :attr:`context_frames` more on each side), and with ``superres`` the core's image: the head's image
        of all detections (also those in the halo, whose windows reach into the core)."""
        output = self.output_of_photons(frame_windows(photons, self.frames)[..., tile.rows, tile.cols])
        peaks = self.head.detect(output)
        rows, cols = tile.core_in_tile(self.upsampling)
        owned = peaks
        if not tile.is_whole:
            owned = torch.zeros_like(peaks)
            owned[..., rows, cols] = peaks[..., rows, cols]
        origin = (self.grid.fine_index(tile.rows.start), self.grid.fine_index(tile.cols.start))
        table = self.localize(output, first_frame, peaks=owned, origin=origin)
        _, plane, row, col = (i.cpu().numpy() for i in torch.nonzero(owned, as_tuple=True))
        height, width = self.grid.fine_shape(*tile.frame)
        order = (plane * height + row + origin[0]) * width + col + origin[1]
        image = self.head.image(output, peaks)[rows, cols] if superres else None
        return TileResult(table, order, image)
