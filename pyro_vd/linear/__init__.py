"""Variational dropout and ARD baselines for linear models (scikit-learn conventions)."""

from ._convergence import ConvergenceWarning
from ._interpolation import InterpolationWarning
from .alpha_update import optimal_log_alpha, optimal_log_alpha_profile
from .ard_update import fast_ard_alpha
from .gkl_classifier import GKLClassifier
from .gkl_regression import GKLRegression
from .relevance import DEFAULT_ALPHA_BOUND, DEFAULT_LOG_ALPHA_THRESHOLD, EvidenceRuleWarning
from .rvc import RVC
from .rvr import RVR
from .vd_classifier import VDClassifier
from .vd_regression import VDRegression

__all__ = [
    "DEFAULT_ALPHA_BOUND",
    "DEFAULT_LOG_ALPHA_THRESHOLD",
    "RVC",
    "RVR",
    "ConvergenceWarning",
    "EvidenceRuleWarning",
    "GKLClassifier",
    "GKLRegression",
    "InterpolationWarning",
    "VDClassifier",
    "VDRegression",
    "fast_ard_alpha",
    "optimal_log_alpha",
    "optimal_log_alpha_profile",
]
