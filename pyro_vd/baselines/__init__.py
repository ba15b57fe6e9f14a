"""Baselines for comparisons: binary / Gaussian / no dropout, trained by maximum likelihood."""

from .dropout_networks import DROPOUT_KINDS, train_maximum_likelihood, with_dropout
from .gaussian_dropout import GaussianDropout

__all__ = ["DROPOUT_KINDS", "GaussianDropout", "train_maximum_likelihood", "with_dropout"]
