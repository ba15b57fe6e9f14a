"""Inference for variational dropout: the ELBO, KL schedules, weight and neuron pruning, checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .convergence import Drift, LogAlphaDrift
from .fused_adam import FusedAdam
from .kl_schedule import linear_warmup
from .neuron_pruning import (
    SelectInputs,
    count_neurons,
    neuron_keep_mask,
    neuron_scales,
    neuron_sparsity,
    prune_neurons,
    shrink,
)
from .optim import adam
from .pruning import (
    DEFAULT_SNR_THRESHOLD,
    DEFAULT_THRESHOLD,
    LayerSparsity,
    SparsityReport,
    deterministic,
    keep_mask,
    log_alpha_bound,
    pruned_weights,
    sparsity,
)
from .vd_elbo import DivergenceWarning, VariationalDropoutELBO

__all__ = [
    "DEFAULT_SNR_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "DivergenceWarning",
    "Drift",
    "FusedAdam",
    "LayerSparsity",
    "LogAlphaDrift",
    "SelectInputs",
    "SparsityReport",
    "VariationalDropoutELBO",
    "adam",
    "count_neurons",
    "deterministic",
    "keep_mask",
    "linear_warmup",
    "load_checkpoint",
    "log_alpha_bound",
    "neuron_keep_mask",
    "neuron_scales",
    "neuron_sparsity",
    "prune_neurons",
    "pruned_weights",
    "save_checkpoint",
    "shrink",
    "sparsity",
]
