"""The warning an estimator emits when it stops at ``max_iter`` before its convergence test passes."""

from .._warnings import warn_at_caller

try:  # pragma: no cover - whichever branch the environment has
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
except ImportError:  # pragma: no cover
    _SklearnConvergenceWarning = UserWarning


class ConvergenceWarning(_SklearnConvergenceWarning):
    """An iterative fit stopped at ``max_iter`` (a UserWarning; scikit-learn's ConvergenceWarning as well
    when scikit-learn is installed, so its filters catch it)."""


def warn_not_converged(estimator, n_iter, detail=""):
    """Warn that ``estimator`` stopped after ``n_iter`` iterations (its ``max_iter``)."""
    name = type(estimator).__name__
    warn_at_caller(
        f"{name} stopped at max_iter={n_iter} before converging{': ' + detail if detail else ''}; "
        "raise max_iter or tol",
        ConvergenceWarning,
    )


__all__ = ["ConvergenceWarning", "warn_not_converged"]
