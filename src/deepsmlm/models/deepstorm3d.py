"""DeepSTORM3D (Nehme et al., Nat. Methods 2020): from one camera frame of overlapping engineered PSFs
(the Tetrapod) to a voxel grid of emitter occupancy.

Input (B, 1, H, W) normalised photons; output (B, D, u·H, u·W): D axial planes evenly spanning the
trained z range, ≈ 1 per emitter summed over its voxels; leaky-ReLU output (slope 0.01), clipped at
zero at inference, as in 2D. A multicolour model predicts one such volume per dye: C·D planes, dye-major
(planes c·D … c·D + D − 1 hold dye c).

Feature extraction runs at camera resolution, as in the paper: a stem convolution, then one residual
block per entry of ``dilations`` (3×3 convolution with that dilation, batch norm, leaky ReLU, added to
the block's input), every block seeing the frame again (the input re-concatenated to its features).
The default dilations 1, 2, 4, 8, 12 give a receptive field of 57 px (6.3 µm at 110 nm): an output
pixel at an emitter sees both Tetrapod lobes, which lie up to ~1.5 µm from it.

- ``cpu`` (default): the features are lifted to the fine grid by a learned sub-pixel 3×3 convolution
  (pixel shuffle ×u) and a 1×1 head maps them to the D planes.
- ``paper``: ×2 nearest upsampling + 3×3 conv stages at full width until ×u, then two 3×3
  convolutions and a 1×1 to the D planes, all on the fine grid (the paper's upsampling and prediction
  modules; several times the compute of ``cpu``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deepsmlm.models.deepstorm2d import NEGATIVE_SLOPE


def conv_bn_act(c_in: int, c_out: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1, inplace=True))


class InputResidualBlock(nn.Module):
    """features + act(BN(conv_d([features, frame]))): a dilated residual block that sees the frame again."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.body = conv_bn_act(channels + 1, channels, dilation)

    def forward(self, features: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return features + self.body(torch.cat([features, frame], dim=1))


class DeepStorm3D(nn.Module):
    """Dilated residual features at camera resolution, ×u upsampling, D occupancy planes."""

    def __init__(self, planes: int, upsampling: int = 2, channels: int = 32,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 12), architecture: str = "cpu"):
        super().__init__()
        c, u = channels, upsampling
        self.upsampling = u
        self.stem = conv_bn_act(1, c)
        self.blocks = nn.ModuleList(InputResidualBlock(c, d) for d in dilations)
        if architecture == "paper":
            stages = []
            factor = 1
            while factor < u:
                stages += [nn.Upsample(scale_factor=2, mode="nearest"), conv_bn_act(c, c)]
                factor *= 2
            if factor != u:
                raise ValueError(f"the paper architecture upsamples by powers of 2, not {u}")
            self.lift = nn.Sequential(*stages)
            self.head = nn.Sequential(conv_bn_act(c, c), conv_bn_act(c, c), nn.Conv2d(c, planes, 1))
        else:
            self.lift = nn.Sequential(nn.Conv2d(c, c * u * u, 3, padding=1), nn.PixelShuffle(u),
                                      nn.LeakyReLU(0.1, inplace=True))
            self.head = nn.Conv2d(c, planes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        for block in self.blocks:
            features = block(features, x)
        return F.leaky_relu(self.head(self.lift(features)), NEGATIVE_SLOPE)


def receptive_field_px(dilations: tuple[int, ...]) -> int:
    """Camera pixels seen by one output pixel: the stem and each block add 2·dilation."""
    return 3 + 2 * sum(dilations)
