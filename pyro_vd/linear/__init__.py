"""Variational dropout for linear models (scikit-learn conventions)."""

from .alpha_update import optimal_log_alpha, optimal_log_alpha_profile
from .vd_regression import VDRegression

__all__ = ["VDRegression", "optimal_log_alpha", "optimal_log_alpha_profile"]
