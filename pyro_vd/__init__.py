"""pyro_vd: variational dropout for Pyro (sparse Bayesian neural networks, ARD for linear models)."""

from . import analysis, distributions, guides, inference, models, plots, poutine
from .distributions import (
    DEFAULT_KL_METHOD,
    KL_METHODS,
    LogUniform,
    TruncatedLogNormal,
    TruncatedLogUniform,
    VDNormal,
    exact_kl,
    kl_log_uniform,
)
from .guides import AutoVariationalDropout
from .inference import (
    FusedAdam,
    VariationalDropoutELBO,
    deterministic,
    linear_warmup,
    neuron_sparsity,
    prune_neurons,
    sparsity,
)
from .models import NeuronNoise, bayesianize
from .poutine import local_reparameterization

__version__ = "0.1.0"


def __getattr__(name):
    # pyro_vd.distributed (data-parallel training) is imported on first use only
    if name == "distributed":
        import importlib

        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_KL_METHOD",
    "KL_METHODS",
    "AutoVariationalDropout",
    "FusedAdam",
    "LogUniform",
    "NeuronNoise",
    "TruncatedLogNormal",
    "TruncatedLogUniform",
    "VDNormal",
    "VariationalDropoutELBO",
    "__version__",
    "analysis",
    "bayesianize",
    "deterministic",
    "distributed",
    "distributions",
    "exact_kl",
    "guides",
    "inference",
    "kl_log_uniform",
    "linear_warmup",
    "local_reparameterization",
    "models",
    "neuron_sparsity",
    "plots",
    "poutine",
    "prune_neurons",
    "sparsity",
]
