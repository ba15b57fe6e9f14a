"""Shared machinery of the linear classifiers: label checks and one-vs-rest."""

import numpy as np

from ._base import BaseEstimator, ClassifierMixin, check_is_fitted, flatten_column, set_features, validate_X


def column_rms(X):
    """Root mean square of each column of X, computed without squaring X (no overflow); 0 for a zero
    column."""
    peak = np.max(np.abs(X), axis=0)
    safe = np.where(peak > 0, peak, 1.0)
    return peak * np.sqrt(np.mean((X / safe) ** 2, axis=0))


def ard_relevance(fits, bound):
    r"""
    Relevance of the ARD classifiers: α below ``bound`` once expressed for columns of unit root mean
    square, :math:`\alpha_d / \overline{x_d^2}` (a weight's prior standard deviation above
    ``bound``:sup:`-1/2` in logits per unit of x_d's scale), so the rule does not depend on the units of X;
    for any class in one-vs-rest.
    """
    relevant = np.zeros(len(fits[0]["alpha"]), dtype=bool)
    for fit in fits:
        rms = fit["x_rms"]
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            standardized = fit["alpha"] / rms / rms
        relevant |= np.isfinite(fit["alpha"]) & (rms > 0) & (standardized < bound)
    return relevant


class LinearClassifierBase(ClassifierMixin, BaseEstimator):
    """
    Binary models fitted by ``_fit_binary(X, t)`` (``t`` in {0, 1}, returns a dict with ``coef``,
    ``intercept`` and whatever ``_binary_proba`` needs); more than two classes: one model per class
    against the rest, probabilities normalized. Fitted ``coef_`` has shape (n_features,) for two
    classes and (n_classes, n_features) otherwise. Fitted on a data frame with string column names,
    ``feature_names_in_`` holds them and the prediction methods check them (scikit-learn's rule).
    """

    def _check_targets(self, X, y):
        if y is None:
            raise ValueError("requires y to be passed, but the target y is None")
        y = flatten_column(np.asarray(y))
        if y.ndim != 1 or len(y) != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},); got {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity.")
        if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
            raise ValueError(
                f"Unknown label type: continuous targets; {type(self).__name__} needs class labels"
            )
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 class ({classes[0]!r})"
            )
        return y, classes

    def fit(self, X, y):
        X, names = validate_X(self, X, reset=True)
        y, classes = self._check_targets(X, y)
        self._check_params()
        problems = [classes[1:]] if len(classes) == 2 else [[c] for c in classes]
        fits = [self._fit_binary(X, np.isin(y, p).astype(np.float64)) for p in problems]
        self.classes_, self._fits = classes, fits
        set_features(self, X, names)
        self.coef_ = self._stacked("coef")
        self.intercept_ = self._stacked("intercept")
        self._set_relevance()
        self.n_iter_ = max(f["n_iter"] for f in self._fits)
        return self

    def _stacked(self, key):
        """``key`` of the single binary fit, or stacked over the one-vs-rest fits (one row per class)."""
        if len(self._fits) == 1:
            return self._fits[0][key]
        return np.stack([fit[key] for fit in self._fits])

    def predict_proba(self, X):
        """Predictive class probabilities, shape (n_samples, n_classes)."""
        check_is_fitted(self)
        X, _ = validate_X(self, X, reset=False)
        if len(self.classes_) == 2:
            p = self._binary_proba(X, self._fits[0])
            return np.column_stack([1.0 - p, p])
        p = np.column_stack([self._binary_proba(X, fit) for fit in self._fits])
        return p / np.clip(p.sum(1, keepdims=True), 1e-300, None)

    def decision_function(self, X):
        """Log-odds of the predictive probability (binary) or log probabilities (one-vs-rest)."""
        p = np.clip(self.predict_proba(X), 1e-300, 1.0)
        if len(self.classes_) == 2:
            return np.log(p[:, 1]) - np.log(p[:, 0])
        return np.log(p)

    def predict(self, X):
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
