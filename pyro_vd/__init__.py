"""pyro_vd: variational dropout for Pyro (sparse Bayesian neural networks, ARD for linear models)."""

from . import distributions
from .distributions import (
    DEFAULT_KL_METHOD,
    KL_METHODS,
    LogUniform,
    VDNormal,
    exact_kl,
    kl_log_uniform,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_KL_METHOD",
    "KL_METHODS",
    "LogUniform",
    "VDNormal",
    "__version__",
    "distributions",
    "exact_kl",
    "kl_log_uniform",
]
