"""Inference for variational dropout: the ELBO, KL schedules, pruning, checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .kl_schedule import linear_warmup
from .pruning import (
    DEFAULT_THRESHOLD,
    LayerSparsity,
    SparsityReport,
    deterministic,
    keep_mask,
    pruned_weights,
    sparsity,
)
from .vd_elbo import VariationalDropoutELBO

__all__ = [
    "DEFAULT_THRESHOLD",
    "LayerSparsity",
    "SparsityReport",
    "VariationalDropoutELBO",
    "deterministic",
    "keep_mask",
    "linear_warmup",
    "load_checkpoint",
    "pruned_weights",
    "save_checkpoint",
    "sparsity",
]
