"""Shared machinery of the linear classifiers: label checks, one-vs-rest, the centred units they fit in."""

import contextlib

import numpy as np

from .._warnings import warning_suffix
from ._base import (
    BaseEstimator,
    ClassifierMixin,
    check_is_fitted,
    column_rms,
    dask_method,
    flatten_column,
    is_dask,
    missing_values,
    power_of_two_scales,
    set_features,
    usable_columns,
    validate_X,
)
from ._threads import single_threaded_blas


class CentredUnits:
    r"""
    The units the binary classifiers fit in: every column centred and of unit root mean square,
    :math:`z_d = (x_d / c_d - o_d) / f_d` with :math:`c_d`, :math:`f_d` powers of two (exact divisions:
    :math:`c_d` near the column's root mean square, :math:`f_d` near the centred one's) and :math:`o_d`
    the column mean in units of :math:`c_d`. With a free intercept, :math:`x^\top w + b = z^\top v + b'`
    for :math:`w_d = v_d / (c_d f_d)` and :math:`b = b' - \sum_d v_d o_d / f_d`, so a fit in these units
    is the same for X, X + shift and X·scale (up to rounding), and its weights map back exactly.
    Columns with no usable variation (relative standard deviation at most
    :data:`~pyro_vd.linear._base.CONSTANT_RATIO`, the rule of every estimator) are set to 0 and
    ``usable`` is False there.
    """

    def __init__(self, X):
        self.coarse = power_of_two_scales(X)
        Z = X / self.coarse
        self.offset = Z.mean(0)
        Z -= self.offset
        self._set_spread(column_rms(Z))  # the standard deviation relative to the RMS, up to c_d

    @classmethod
    def from_moments(cls, coarse, offset, spread):
        """The units from the columns' statistics (a Dask fit's, reduced on the cluster): ``coarse`` the
        power of two nearest each column's root mean square, ``offset`` the mean of X / coarse,
        ``spread`` the root mean square of X / coarse − offset."""
        units = object.__new__(cls)
        units.coarse, units.offset = np.asarray(coarse, dtype=np.float64), np.array(offset, dtype=np.float64)
        units._set_spread(np.asarray(spread, dtype=np.float64))
        return units

    def _set_spread(self, spread):
        self.usable = usable_columns(spread)
        self.offset[~self.usable] = 0.0
        with np.errstate(divide="ignore"):  # the power of two nearest the centred columns' RMS
            exponent = np.round(np.log2(np.where(spread > 0, spread, 1.0)))
        self.fine = np.where(self.usable, np.ldexp(1.0, exponent.astype(int)), 1.0)
        #: the columns' standard deviations, in the units of X (0 where not usable)
        self.std = np.where(self.usable, spread, 0.0) * self.coarse
        #: the root mean square of each column in these units (1 where not usable): the scale of a start
        self.unit_rms = np.where(self.usable, spread / self.fine, 1.0)

    @property
    def centre(self):
        """The point the intercept is taken at, in the units of X: the column means (0 where not usable)."""
        return np.where(self.usable, self.offset * self.coarse, 0.0)

    def transform(self, X):
        """Columns of X in these units (unusable columns 0)."""
        Z = (X / self.coarse - self.offset) / self.fine
        Z[:, ~self.usable] = 0.0
        return Z

    def coef(self, v):
        """Weights in the units of X: :math:`v_d / (c_d f_d)`, the two divisions exact."""
        with np.errstate(over="ignore", under="ignore"):
            return v / self.fine / self.coarse

    def intercept(self, v, b):
        r"""The intercept for the columns of X: :math:`b' - \sum_d v_d o_d / f_d`."""
        return float(b - (self.offset / self.fine) @ v)

    def alpha(self, alpha):
        r"""Prior precisions in the units of X: :math:`\alpha_d (c_d f_d)^2` (exact factors)."""
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return alpha * self.fine**2 * self.coarse**2

    def map_back(self, fit):
        """A binary ARD fit made in these units, in place: ``coef``, ``intercept`` and ``alpha`` in the units
        and origin of X (the centred ones kept as ``coef_centred``/``intercept_centred``), ``x_rms`` the
        columns' standard deviations (what relevance standardizes by), ``units`` these units."""
        fit["units"], fit["coef_centred"], fit["intercept_centred"] = self, fit["coef"], fit["intercept"]
        fit["coef"] = self.coef(fit["coef_centred"])
        fit["intercept"] = self.intercept(fit["coef_centred"], fit["intercept_centred"])
        fit["alpha"] = self.alpha(fit["alpha"])
        fit["x_rms"] = self.std
        return fit

    def rows(self, matrix):
        """A matrix whose rows are indexed by weights (a covariance factor), in the units of X."""
        with np.errstate(over="ignore", under="ignore"):
            return matrix / self.fine[:, None] / self.coarse[:, None]


def unique_labels(labels, distinct=np.unique):
    """The sorted distinct labels (``distinct(labels)``: numpy's, or a Dask array's computed); a TypeError
    naming y where they cannot be ordered (labels of mixed types, such as 'a' and 1: the sort raised a bare
    "'<' not supported")."""
    try:
        return np.unique(distinct(labels))
    except TypeError as error:
        kinds = sorted({type(v).__name__ for v in labels}) if distinct is np.unique else []
        named = f" ({', '.join(kinds)})" if kinds else ""
        raise TypeError(
            f"y mixes labels of types that cannot be ordered{named}: give every label one type, e.g. all "
            "strings"
        ) from error


def check_missing_labels(count):
    """A ValueError where ``count`` labels are missing (None, NaN or pd.NA in an object array)."""
    if count:
        raise ValueError(f"Input y contains {count} missing labels (None, NaN or pd.NA)")


def binary_problems(classes):
    """The positive classes of each binary fit: the second class for two, each class against the rest
    (one-vs-rest) for more."""
    return [classes[1:]] if len(classes) == 2 else [[c] for c in classes]


def naming_the_class(classes, positive):
    """
    A context in which the binary fit for the ``positive`` classes warns with its class named under
    one-vs-rest (``... (class 'b' against the rest)``: the message still starts as it did, for filters
    that match it); with two classes there is one fit, and nothing is added. The warnings are not caught
    and issued again: filters and ``"default"``'s once per line work as for any warning.
    """
    if len(classes) == 2:
        return contextlib.nullcontext()
    label = (
        positive[0].item() if isinstance(positive[0], np.generic) else positive[0]
    )  # 'a', not np.str_('a')
    return warning_suffix(f" (class {label!r} against the rest)")


def ard_relevance(fits, bound):
    r"""
    Relevance of the ARD classifiers: α below ``bound`` once expressed for standardized columns,
    :math:`\alpha_d / \operatorname{sd}(x_d)^2` (a weight's prior standard deviation above
    ``bound``:sup:`-1/2` in logits per standard deviation of x_d), so the rule depends neither on the
    units nor on the origin of X (``x_rms`` of each fit: the centred columns' root mean square);
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
    ``X_offset_`` is the column means, where the intercept is taken: q's weight noise multiplies
    :math:`x - \bar x`, never the columns' offsets (its draws give the linear predictor
    :math:`(x - \bar x)^\top w + b + \bar x^\top\theta`).
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
        if y.dtype == object:
            check_missing_labels(int(missing_values(y).sum()))
        classes = unique_labels(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 class ({classes[0]!r})"
            )
        return y, classes

    def fit(self, X, y):
        if is_dask(X):
            return dask_method(self, "fit_classifier", X, y)
        X, names = validate_X(self, X, reset=True)
        y, classes = self._check_targets(X, y)
        self._check_params()
        # BLAS on one thread during the fits, as the regressors hold it: their products and solves are
        # small and many, and OpenBLAS's threads waiting for each other (or for the row sums' own
        # threads) made RVC 12× and G-KL 15× slower on the 1000 × 1000 table on 2 cores
        with single_threaded_blas():
            fits = []
            for positive in binary_problems(classes):
                with naming_the_class(classes, positive):
                    fits.append(self._fit_binary(X, np.isin(y, positive).astype(np.float64)))
        return self._set_fits(X, names, classes, fits)

    def _set_fits(self, X, names, classes, fits):
        self.classes_, self._fits = classes, fits
        set_features(self, X, names)
        self.coef_ = self._stacked("coef")
        self.intercept_ = self._stacked("intercept")
        self.X_offset_ = self._fits[0]["units"].centre  # the same columns for every one-vs-rest fit
        self._set_relevance()
        self.n_iter_ = max(f["n_iter"] for f in self._fits)
        return self

    def _stacked(self, key):
        """``key`` of the single binary fit, or stacked over the one-vs-rest fits (one row per class)."""
        if len(self._fits) == 1:
            return self._fits[0][key]
        return np.stack([fit[key] for fit in self._fits])

    def predict_proba(self, X):
        """Predictive class probabilities, shape (n_samples, n_classes) (a Dask array for a Dask X)."""
        if is_dask(X):
            return dask_method(self, "map_rows", X, "predict_proba")
        check_is_fitted(self)
        X, _ = validate_X(self, X, reset=False)
        if len(self.classes_) == 2:
            p = self._binary_proba(X, self._fits[0])
            return np.column_stack([1.0 - p, p])
        p = np.column_stack([self._binary_proba(X, fit) for fit in self._fits])
        return p / np.clip(p.sum(1, keepdims=True), 1e-300, None)

    def decision_function(self, X):
        """Log-odds of the predictive probability (binary) or log probabilities (one-vs-rest)."""
        if is_dask(X):
            return dask_method(self, "map_rows", X, "decision_function")
        check_is_fitted(self)
        if len(self.classes_) == 2:  # from the margin, not from rounded probabilities (ties beyond 36)
            X, _ = validate_X(self, X, reset=False)
            return self._binary_log_odds(X, self._fits[0])
        p = np.clip(self.predict_proba(X), 1e-300, 1.0)
        return np.log(p)

    def predict(self, X):
        """The most probable class of each row (a Dask array for a Dask X)."""
        if is_dask(X):
            return dask_method(self, "map_rows", X, "predict")
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
