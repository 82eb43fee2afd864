"""LocNet: a camera-resolution network predicting, per pixel, whether an emitter sits there and its
parameters (DECODE-style, Speiser et al., Nat. Methods 2021).

Input (B, T, H, W) normalised photons of T consecutive frames (T = 1, or 3 for temporal context: the
frame localized is the middle one); output (B, C, H, W) raw values, one channel per quantity of
:class:`~deepsmlm.heads.locnet.LocNetHead` (detection logit, offsets, photons, background, and the σ of
each regressed quantity). The body is a small U-Net with two 2×2 poolings: c/2 channels at full
resolution (one 3×3 convolution on the way down and one on the way up, where pixels cost most), c at
½ and 2c at ¼ resolution, skip connections by concatenation, then a 1×1 convolution to the outputs.
``levels`` 3 adds a level of 4c at ⅛ resolution (two 3×3 convolutions, one on the way up) for PSFs wider
than the two-level receptive radius of 19 px (the Tetrapod's lobes spread over ±30 px); at ⅛ it costs
about what the ¼ level does.
Batch norm sits inside ``nn.Sequential`` so the registry folds it into the convolutions at inference.
With c = 48 it runs ~3× faster than the ``cpu`` Deep-STORM 2D network on 64×64 frames.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deepsmlm.models.deepstorm2d import conv_bn_relu, double_conv, up_to


def locnet_outputs(axial: bool) -> int:
    """Output channels: detection logit, Q means, background, Q σ (Q: x, y, [z,] photons)."""
    return 2 + 2 * (4 if axial else 3)


class LocNet(nn.Module):
    """U-Net at camera resolution (``channels`` c: c/2 at full, c at ½, 2c at ¼ [and 4c at ⅛ for
    ``levels`` 3] resolution) on ``frames`` input channels with ``outputs`` channels per pixel."""

    def __init__(self, outputs: int, channels: int = 48, levels: int = 2, frames: int = 1):
        super().__init__()
        c, full = channels, max(channels // 2, 1)
        self.enc1 = conv_bn_relu(frames, full)
        self.enc2 = double_conv(full, c)
        self.bottleneck = double_conv(c, 2 * c)
        self.deep = nn.Sequential(double_conv(2 * c, 4 * c)) if levels == 3 else None
        self.dec3 = conv_bn_relu(4 * c + 2 * c, 2 * c) if levels == 3 else None
        self.dec2 = conv_bn_relu(2 * c + c, c)
        self.dec1 = conv_bn_relu(c + full, full)
        self.out = nn.Conv2d(full, outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2, ceil_mode=True))
        b = self.bottleneck(F.max_pool2d(e2, 2, ceil_mode=True))
        if self.deep is not None:
            b = self.dec3(torch.cat([up_to(self.deep(F.max_pool2d(b, 2, ceil_mode=True)), b), b], dim=1))
        d2 = self.dec2(torch.cat([up_to(b, e2), e2], dim=1))
        return self.out(self.dec1(torch.cat([up_to(d2, e1), e1], dim=1)))
