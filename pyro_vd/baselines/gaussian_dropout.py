"""Gaussian dropout: multiplicative noise ξ ~ N(1, α) with a fixed α (Srivastava et al. 2014)."""

import torch
from torch import nn


class GaussianDropout(nn.Module):
    r"""
    Multiplies its input by :math:`\xi \sim \mathcal{N}(1, \alpha)` in training mode, the Gaussian
    counterpart of binary dropout with rate :math:`p`: same mean and variance when
    :math:`\alpha = p / (1 - p)`. Identity in eval mode (no rescaling needed: :math:`E\xi = 1`).

    :param float alpha: the noise variance α > 0; or give ``p`` instead.
    :param float p: a binary-dropout rate in (0, 1), converted to α = p / (1 − p).
    """

    def __init__(self, alpha=None, *, p=None):
        super().__init__()
        if (alpha is None) == (p is None):
            raise TypeError("GaussianDropout needs exactly one of alpha or p")
        if p is not None:
            if not 0 < p < 1:
                raise ValueError(f"p must be in (0, 1); got {p!r}")
            alpha = p / (1 - p)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0; got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x):
        if not self.training:
            return x
        return x * torch.randn_like(x).mul_(self.alpha**0.5).add_(1.0)

    def extra_repr(self):
        return f"alpha={self.alpha:g}"
