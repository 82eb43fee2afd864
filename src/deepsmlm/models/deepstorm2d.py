"""Deep-STORM 2D (Nehme et al., Optica 2018): a fully convolutional encoder–decoder from a camera frame
to a super-resolved emitter-density image.

Two variants share the same input/output contract — input (B, 1, H, W) normalised photons, output
(B, 1, u·H, u·W) density (≈ 1 per emitter, summed over its spot). The output is a leaky ReLU (slope
0.01 below zero): nearly non-negative, yet it cannot die on sparse targets the way a final ReLU does;
inference clips at zero.

- ``paper``: the published network. The frame is upsampled ×u (nearest) first and an encoder of
  three conv+pool stages (32, 64, 128 channels), a 512-channel bottleneck and a mirrored decoder run at
  the fine resolution. Faithful, but every convolution runs on u² as many pixels.
- ``cpu`` (default): the same encoder–decoder idea at camera resolution (a small U-Net with skips),
  followed by a learned ×u sub-pixel upsampling (pixel shuffle) and a light fine-resolution head.
  About 20× fewer multiply-adds for u = 4, so it trains in minutes on 2 CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NEGATIVE_SLOPE = 0.01


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))


class DeepStorm2DCPU(nn.Module):
    """Camera-resolution U-Net (channels c, 2c, 4c) + pixel-shuffle ×u + fine head of k channels."""

    def __init__(self, upsampling: int = 4, channels: int = 32, head_channels: int = 16):
        super().__init__()
        c, k = channels, head_channels
        self.upsampling = upsampling
        self.enc1 = double_conv(1, c)
        self.enc2 = double_conv(c, 2 * c)
        self.bottleneck = double_conv(2 * c, 4 * c)
        self.dec2 = double_conv(4 * c + 2 * c, 2 * c)
        self.dec1 = double_conv(2 * c + c, c)
        self.to_fine = nn.Conv2d(c, k * upsampling * upsampling, 3, padding=1)
        self.head = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(k, k, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(k, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2, ceil_mode=True))
        b = self.bottleneck(F.max_pool2d(e2, 2, ceil_mode=True))
        d2 = self.dec2(torch.cat([up_to(b, e2), e2], dim=1))
        d1 = self.dec1(torch.cat([up_to(d2, e1), e1], dim=1))
        fine = F.pixel_shuffle(self.to_fine(d1), self.upsampling)
        return F.leaky_relu(self.head(fine), NEGATIVE_SLOPE)


class DeepStorm2DPaper(nn.Module):
    """The published architecture: nearest ×u upsampling, then conv/pool encoder and mirrored decoder."""

    def __init__(self, upsampling: int = 8, channels: int = 32):
        super().__init__()
        c = channels
        self.upsampling = upsampling
        self.encoder = nn.Sequential(
            conv_bn_relu(1, c), nn.MaxPool2d(2), conv_bn_relu(c, 2 * c), nn.MaxPool2d(2),
            conv_bn_relu(2 * c, 4 * c), nn.MaxPool2d(2), conv_bn_relu(4 * c, 16 * c))
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2), conv_bn_relu(16 * c, 4 * c), nn.Upsample(scale_factor=2),
            conv_bn_relu(4 * c, 2 * c), nn.Upsample(scale_factor=2), conv_bn_relu(2 * c, c))
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = F.interpolate(x, scale_factor=self.upsampling, mode="nearest")
        h, w = fine.shape[-2:]
        pad_h, pad_w = (-h) % 8, (-w) % 8
        y = self.decoder(self.encoder(F.pad(fine, (0, pad_w, 0, pad_h))))
        return F.leaky_relu(self.out(y), NEGATIVE_SLOPE)[..., :h, :w]


def up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Nearest ×2 upsampling cropped to the reference's spatial size."""
    return F.interpolate(x, scale_factor=2, mode="nearest")[..., : ref.shape[-2], : ref.shape[-1]]
