"""Small models for the reconstruction tests: a three-unit CNN and a head shared by two levels."""
from __future__ import annotations

import torch
from torch import nn


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    block = lambda c: nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
    return nn.Sequential(block(4), block(4), nn.Conv2d(4, 2, 1)).eval()


class Pyramid(nn.Module):
    """A head conv shared across two levels, like an FPN head."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 2, 3, padding=1)
        self.after = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.after(self.head(level)) for level in (x, x[:, :, ::2, ::2])]
