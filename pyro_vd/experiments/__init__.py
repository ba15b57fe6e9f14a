"""The seed's experiments, callable from Python (the ``pyro-vd`` command wraps them)."""

from .kl_table import format_kl_table, kl_table

__all__ = ["format_kl_table", "kl_table"]
