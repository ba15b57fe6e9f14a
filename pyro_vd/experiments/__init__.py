"""The seed's experiments, callable from Python (the ``pyro-vd`` command wraps them)."""

from .kl_table import format_kl_table, kl_table
from .sparse_vd_mnist import run_sparse_vd_mnist, test_error

__all__ = ["format_kl_table", "kl_table", "run_sparse_vd_mnist", "test_error"]
