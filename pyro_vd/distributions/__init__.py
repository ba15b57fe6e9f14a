"""Distributions of variational dropout: the log-uniform prior, the N(θ, αθ²) family, their KL, and the
truncated log-normal / log-uniform pair of structured (neuron-level) dropout."""

from . import kl as _kl  # noqa: F401  (registers the KL divergences)
from .exact_kl import exact_kl
from .kl_log_uniform import (
    DEFAULT_KL_METHOD,
    KL_METHODS,
    kl_log_uniform,
    kl_log_uniform_additive,
    kl_log_uniform_additive_sum,
    kl_log_uniform_grad,
)
from .log_uniform import LogUniform, nonzero_real
from .truncated_log_normal import TruncatedLogNormal, log_diff_ndtr
from .truncated_log_uniform import TruncatedLogUniform
from .vd_normal import VDNormal

__all__ = [
    "DEFAULT_KL_METHOD",
    "KL_METHODS",
    "LogUniform",
    "TruncatedLogNormal",
    "TruncatedLogUniform",
    "VDNormal",
    "exact_kl",
    "kl_log_uniform",
    "kl_log_uniform_additive",
    "kl_log_uniform_additive_sum",
    "kl_log_uniform_grad",
    "log_diff_ndtr",
    "nonzero_real",
]
