"""Variational dropout and ARD baselines for linear models (scikit-learn conventions)."""

from .alpha_update import optimal_log_alpha, optimal_log_alpha_profile
from .gkl_regression import GKLRegression
from .relevance import DEFAULT_ALPHA_BOUND, DEFAULT_LOG_ALPHA_THRESHOLD
from .rvr import RVR
from .vd_classifier import VDClassifier
from .vd_regression import VDRegression

__all__ = [
    "DEFAULT_ALPHA_BOUND",
    "DEFAULT_LOG_ALPHA_THRESHOLD",
    "RVR",
    "GKLRegression",
    "VDClassifier",
    "VDRegression",
    "optimal_log_alpha",
    "optimal_log_alpha_profile",
]
