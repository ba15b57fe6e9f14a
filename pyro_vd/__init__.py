"""pyro_vd: variational dropout for Pyro (sparse Bayesian neural networks, ARD for linear models)."""

from . import distributions, guides, inference, models, poutine
from .distributions import (
    DEFAULT_KL_METHOD,
    KL_METHODS,
    LogUniform,
    VDNormal,
    exact_kl,
    kl_log_uniform,
)
from .guides import AutoVariationalDropout
from .inference import VariationalDropoutELBO, deterministic, linear_warmup, sparsity
from .models import bayesianize
from .poutine import local_reparameterization

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_KL_METHOD",
    "KL_METHODS",
    "AutoVariationalDropout",
    "LogUniform",
    "VDNormal",
    "VariationalDropoutELBO",
    "__version__",
    "bayesianize",
    "deterministic",
    "distributions",
    "exact_kl",
    "guides",
    "inference",
    "kl_log_uniform",
    "linear_warmup",
    "local_reparameterization",
    "models",
    "poutine",
    "sparsity",
]
