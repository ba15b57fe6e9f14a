"""The warning an estimator emits when it stops at ``max_iter`` before its convergence test passes."""

import importlib
import os
import sys
import warnings

import torch

try:  # pragma: no cover - whichever branch the environment has
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
except ImportError:  # pragma: no cover
    _SklearnConvergenceWarning = UserWarning


class ConvergenceWarning(_SklearnConvergenceWarning):
    """An iterative fit stopped at ``max_iter`` (a UserWarning; scikit-learn's ConvergenceWarning as well
    when scikit-learn is installed, so its filters catch it)."""


#: Frames in these folders are the library's own (and torch's decorators around its methods).
_INTERNAL = tuple(
    os.path.dirname(module.__file__) + os.sep for module in (importlib.import_module("pyro_vd"), torch)
)


def warn_at_caller(message, category):
    """``warnings.warn`` attributed to the first frame outside pyro_vd and torch: the user's call of
    ``fit``, however deep inside the estimator (and torch's ``inference_mode`` wrapper) the warning is
    made."""
    level, frame = 2, sys._getframe(1)  # stacklevel 1 is this function, 2 its caller
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def warn_not_converged(estimator, n_iter, detail=""):
    """Warn that ``estimator`` stopped after ``n_iter`` iterations (its ``max_iter``)."""
    name = type(estimator).__name__
    warn_at_caller(
        f"{name} stopped at max_iter={n_iter} before converging{': ' + detail if detail else ''}; "
        "raise max_iter or tol",
        ConvergenceWarning,
    )


__all__ = ["ConvergenceWarning", "warn_at_caller", "warn_not_converged"]
