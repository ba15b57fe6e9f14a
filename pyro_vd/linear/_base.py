"""Estimator plumbing shared by the linear models: scikit-learn conventions without requiring it.

scikit-learn is not a runtime dependency. When it is installed the estimators inherit its own
``BaseEstimator`` and mixins (so ``clone``, pipelines, ``check_estimator`` and tags work exactly);
otherwise a minimal stand-in gives ``get_params`` / ``set_params`` / ``score``."""

import contextlib
import inspect
import numbers
import warnings

import numpy as np

from .._validation import positive_int as check_positive_int
from .._warnings import warn_at_caller

try:  # pragma: no cover - exercised through whichever branch the environment has
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError:  # pragma: no cover

    class BaseEstimator:
        """get_params / set_params from the keyword-only ``__init__`` signature."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values() if p.name != "self")

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}")
                setattr(self, key, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class RegressorMixin:
        def score(self, X, y, sample_weight=None):
            y = np.asarray(y, dtype=float)
            residual = ((y - self.predict(X)) ** 2).sum()
            total = ((y - y.mean()) ** 2).sum()
            return 1.0 - residual / total if total > 0 else 0.0

    class ClassifierMixin:
        def score(self, X, y, sample_weight=None):
            return float(np.mean(self.predict(X) == np.asarray(y)))


try:  # pragma: no cover
    from sklearn.exceptions import DataConversionWarning, NotFittedError
except ImportError:  # pragma: no cover

    class NotFittedError(ValueError, AttributeError):
        """Raised by ``predict`` before ``fit`` (a ValueError and an AttributeError, as scikit-learn's)."""

    class DataConversionWarning(UserWarning):
        """A target of shape (n, 1) was flattened to (n,)."""


def is_dask(X):
    """Whether ``X`` is a Dask collection, told by its type's module: Dask itself is not imported."""
    return type(X).__module__.partition(".")[0] in ("dask", "dask_expr")


def dask_method(estimator, method, *args, **kwargs):
    """``method`` ("fit", "partial_fit", "predict") of ``estimator`` on Dask input, from
    :mod:`pyro_vd.linear.dask` (imported only now: Dask is an optional extra)."""
    from . import dask

    return getattr(dask, method)(estimator, *args, **kwargs)


def check_is_fitted(estimator, attribute="coef_"):
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with appropriate "
            "arguments before using this estimator."
        )


def missing_values(array):
    """Elements of an object array that are pandas' or Python's missing values (pd.NA, None, NaT)."""
    try:
        import pandas

        return np.asarray(pandas.isna(array), dtype=bool)
    except ImportError:
        return np.vectorize(lambda v: v is None, otypes=[bool])(array)


def _to_float_array(value, name):
    if type(getattr(value, "dtype", None)).__module__.startswith("pandas"):
        # a pandas extension dtype (Float64, Int64, boolean, category): numpy cannot read it as a dtype;
        # as floats with pd.NA as NaN (which the finiteness check names), else as objects (named below)
        try:
            value = value.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            value = value.to_numpy(dtype=object)
    if hasattr(value, "dtype") and np.issubdtype(getattr(value, "dtype", None), np.complexfloating):
        raise ValueError(f"Complex data not supported: {name} is complex")
    try:
        array = np.asarray(value)
    except Exception as error:  # e.g. ragged lists
        raise ValueError(f"{name} could not be converted to a numeric array: {error}") from error
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"Complex data not supported: {name} is complex")
    if array.dtype == object:
        # pandas' missing values (pd.NA, None) become NaN, reported by the finiteness check; numpy's own
        # TypeError names an element that is not a number
        try:
            return np.where(missing_values(array), np.nan, array).astype(np.float64)
        except (TypeError, ValueError) as error:  # (the same type: scikit-learn's checks expect it)
            raise type(error)(f"{name} must be numeric: {error}") from error
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be numeric; got dtype {array.dtype}") from error
    return array.astype(np.float64, copy=False)


def check_X(X, *, n_features=None, estimator=None, name="X", check_finite=True):
    """A finite float64 (n_samples, n_features) array, or a ValueError naming what is wrong.

    ``check_finite=False`` leaves the NaN/inf scan to the caller (who then checks its own reductions of
    X, e.g. with :func:`check_finite_statistics`: one pass over X fewer)."""
    if X is None:
        raise ValueError(f"{name} must be an array of shape (n_samples, n_features), not None")
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array (e.g. X.toarray())")
    if is_dask(X):  # the estimators that fit Dask input dispatch before this check
        owner = type(estimator).__name__ if estimator is not None else "this function"
        raise TypeError(
            f"{name} is a Dask collection and {owner} does not take one (only VDRegression, RVR, "
            f"GKLRegression, RVC and VDClassifier(solver='newton') fit one): compute it into memory first "
            f"({name}.compute()) if it fits there"
        )
    X = _to_float_array(X, name)
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {'scalar' if X.ndim == 0 else f'{X.ndim}D'} array instead: {name} "
            "must have shape (n_samples, n_features). Reshape your data either using array.reshape(-1, 1) "
            "if your data has a single feature or array.reshape(1, -1) if it contains a single sample."
        )
    if X.shape[0] < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.shape[1] < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if check_finite and not np.isfinite(X).all():
        raise ValueError(f"Input {name} contains NaN or infinity.")
    if n_features is not None and X.shape[1] != n_features:
        owner = type(estimator).__name__ if estimator is not None else "the estimator"
        raise ValueError(
            f"X has {X.shape[1]} features, but {owner} is expecting {n_features} features as input."
        )
    return X


def feature_names_of(X):
    """
    The column names of a data frame as an object array, or None: scikit-learn's
    ``_get_feature_names`` without importing pandas (a data frame is anything with ``columns``: pandas,
    polars, …). Only all-string names count; a mix of strings and other names is a TypeError.
    """
    columns = getattr(X, "columns", None)
    if columns is None or callable(columns) or isinstance(columns, str):
        return None
    try:
        columns = list(columns)
    except TypeError:
        return None
    if not columns:
        return None
    types = sorted({type(name).__qualname__ for name in columns})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, but your input "
            f"has {types} as feature name / column name types. If you want feature names to be stored and "
            "validated, you must convert them all to strings, by using X.columns = X.columns.astype(str) "
            "for example. Otherwise you can remove feature / column names from your input data, or "
            "convert them all to a non-string data type."
        )
    if types != ["str"]:
        return None
    names = np.empty(len(columns), dtype=object)
    names[:] = columns
    return names


def _list_names(names):
    shown = "".join(f"- {name}\n" for name in names[:5])
    return shown + ("- ...\n" if len(names) > 5 else "")


def check_feature_names(estimator, X, *, reset):
    """
    scikit-learn's feature-name rule (``sklearn.utils.validation._check_feature_names``). ``reset``
    (``fit``, a first ``partial_fit``): returns the names ``X`` carries, for :func:`set_features` to
    record once the fit succeeded. Otherwise compares them with ``feature_names_in_``: a ValueError when
    names differ or are reordered, a UserWarning when only one side has names.
    """
    names = feature_names_of(X)
    if reset:
        return names
    fitted = getattr(estimator, "feature_names_in_", None)
    owner = type(estimator).__name__
    if fitted is None and names is None:
        return None
    if fitted is None:
        warnings.warn(f"X has feature names, but {owner} was fitted without feature names", UserWarning, 3)
        return None
    if names is None:
        warnings.warn(
            f"X does not have valid feature names, but {owner} was fitted with feature names", UserWarning, 3
        )
        return fitted
    if len(fitted) == len(names) and np.all(fitted == names):
        return fitted
    message = "The feature names should match those that were passed during fit.\n"
    unexpected = sorted(set(names) - set(fitted))
    missing = sorted(set(fitted) - set(names))
    if unexpected:
        message += "Feature names unseen at fit time:\n" + _list_names(unexpected)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + _list_names(missing)
    if not unexpected and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def validate_X(estimator, X, *, reset, check_finite=True):
    """
    :func:`check_feature_names` then :func:`check_X` (against ``n_features_in_`` unless ``reset``), in
    scikit-learn's order; returns ``(X, names)`` and sets nothing.
    """
    names = check_feature_names(estimator, X, reset=reset)
    n_features = None if reset else getattr(estimator, "n_features_in_", None)
    return check_X(X, n_features=n_features, estimator=estimator, check_finite=check_finite), names


@contextlib.contextmanager
def unchanged_on_failure(estimator):
    """The estimator's attributes put back as they were where the fit inside raises (a warning turned
    into an error included): a failed refit of RVR had set ``n_features_in_`` to the new X's and kept
    the old ``coef_``, so ``predict`` refused the old X and failed on the new one."""
    saved = dict(vars(estimator))
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(saved)
        raise


def set_features(estimator, X, names):
    """Record ``n_features_in_`` and ``feature_names_in_`` of a successful fit (drop stale names)."""
    estimator.n_features_in_ = X.shape[1]
    if names is not None:
        estimator.feature_names_in_ = names
    elif "feature_names_in_" in vars(estimator):
        del estimator.feature_names_in_


def check_finite_statistics(X, *statistics, name="X"):
    """After ``check_X(..., check_finite=False)``: sums of a NaN or inf are NaN or inf, so finite
    ``statistics`` (reductions of X) prove X finite; otherwise the usual error, or one about overflow
    when X itself is finite."""
    if all(np.isfinite(s).all() for s in statistics):
        return
    if not np.isfinite(X).all():
        raise ValueError(f"Input {name} contains NaN or infinity.")
    raise ValueError(f"{name} has values so large that their squares overflow float64; rescale it")


def flatten_column(y):
    """A column vector (n, 1) as (n,), with scikit-learn's DataConversionWarning; anything else as is."""
    if y.ndim == 2 and y.shape[1] == 1:
        warn_at_caller(
            "A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
            "(n_samples,), for example using ravel().",
            DataConversionWarning,
        )
        return y[:, 0]
    return y


def check_y(y, n_samples, *, name="y"):
    """A finite 1-D float64 target of ``n_samples`` values."""
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    y = flatten_column(_to_float_array(y, name))
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (n_samples,); got shape {y.shape}")
    if len(y) != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n_samples}, {len(y)}]"
        )
    if not np.isfinite(y).all():
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return y


def check_real(value, name, *, low=-np.inf, high=np.inf, low_open=False):
    """A finite real number (Python or numpy, not bool) in [low, high] (``(low, high]`` with
    ``low_open``), as a float; else a ValueError naming ``name`` and the allowed range."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    bounded = f" in {interval}" if np.isfinite(low) or np.isfinite(high) else ""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number{bounded}; got {value!r}")
    value = float(value)
    if value < low or value > high or (low_open and value == low):
        raise ValueError(f"{name} must be in {interval}; got {value!r}")
    return value


def check_random_state(random_state):
    """
    A torch seed from scikit-learn's ``random_state`` conventions: an int seeds, None draws a fresh seed
    from numpy's global generator, a ``numpy.random.RandomState`` or ``Generator`` is drawn from (and
    advanced); anything else is a ValueError.
    """
    if random_state is None:
        # numpy's global generator, as scikit-learn: np.random.seed(...) makes None reproducible
        return int(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool | np.bool_):
        if random_state < 0 or random_state >= 2**63:
            raise ValueError(f"random_state must be in [0, 2**63) when an int; got {random_state!r}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    raise ValueError(
        "random_state must be None, an int, a numpy.random.RandomState or a numpy.random.Generator; "
        f"got {random_state!r}"
    )


def power_of_two_scales(values, axis=0):
    """
    Per slice along ``axis`` (per column of X by default; a 1-D ``values`` gives one number): the power
    of two nearest the root mean square, 1 for an all-zero slice. Dividing by it is exact in binary
    floating point (a fit in these units maps back without rounding), and it is computed without
    squaring ``values`` themselves, so that no finite input overflows.
    """
    magnitude = np.abs(values)
    peak = np.max(magnitude, axis=axis)
    peak = np.where(peak > 0, peak, 1.0)
    rms = peak * np.sqrt(np.mean((magnitude / np.expand_dims(peak, axis)) ** 2, axis=axis))
    with np.errstate(divide="ignore"):
        exponent = np.round(np.log2(np.where(rms > 0, rms, 1.0)))
    return np.ldexp(1.0, exponent.astype(int))


#: A column whose spread about its mean, relative to its root mean square, is at most this carries no
#: usable variation: it is constant up to rounding (1e-14 is about 45 units in the last place; a
#: microsecond timestamp 1.7e15 ± 1e3, at 6e-13, is a real column and was lost at 1e-12). The same rule
#: for every estimator, relative to each column's own size, so that neither a column's units nor its
#: offset decide (a column 1e7 times smaller than another, or with an offset of 1e6 of its spread, is as
#: usable as any), nor the other columns (relative to the largest ratio, columns all constant up to
#: rounding were all usable: RVR read a column 1.7e9 ± 1 ulp as relevant).
CONSTANT_RATIO = 1e-14


def column_rms(X):
    """Root mean square of each column of X (of a 1-D X: one number), computed without squaring X (no
    overflow); 0 for a zero column."""
    peak = np.max(np.abs(X), axis=0)
    safe = np.where(peak > 0, peak, 1.0)
    return peak * np.sqrt(np.mean((X / safe) ** 2, axis=0))


def fitted_units(values, center):
    """
    How a regressor with (``center``) or without an intercept sees each column of ``values`` (a 1-D
    ``values`` is one column, y): ``(scale, ratio)``. ``ratio`` is the root mean square of the column as
    fitted — about its mean with ``center``, as is without — relative to its plain root mean square (0 for
    an all-zero column; 1 without ``center``). ``scale`` is the power of two nearest the fitted root mean
    square, so that an offset does not set the units (it is the intercept's), or nearest the plain one
    where the ratio is at most :data:`CONSTANT_RATIO` (a column constant up to rounding).
    """
    plain = power_of_two_scales(values)
    scaled = values / plain
    fitted = scaled - scaled.mean(0) if center else scaled
    rms, spread = column_rms(scaled), column_rms(fitted)
    ratio = spread / np.where(rms > 0, rms, 1.0)
    with np.errstate(divide="ignore"):
        exponent = np.round(np.log2(np.where(spread > 0, spread, 1.0)))
    scale = np.where(ratio > CONSTANT_RATIO, plain * np.ldexp(1.0, exponent.astype(int)), plain)
    return scale, ratio


def usable_columns(ratio):
    """The columns with usable variation, from their :func:`fitted_units` ratios (see
    :data:`CONSTANT_RATIO`)."""
    return np.asarray(ratio, dtype=float) > CONSTANT_RATIO


def count_candidates(usable):
    """d of the evidence rule's prior odds 1 : d: the columns that vary (a constant column is no
    candidate; counted, 100 of them moved τ from −1.17 to −2.31 and dropped a relevant feature), at
    least 1."""
    return max(1, int(np.sum(usable)))


def check_positive_float(value, name, *, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")
    return float(value)


__all__ = [
    "CONSTANT_RATIO",
    "BaseEstimator",
    "ClassifierMixin",
    "DataConversionWarning",
    "NotFittedError",
    "RegressorMixin",
    "check_X",
    "check_feature_names",
    "check_is_fitted",
    "check_positive_float",
    "check_positive_int",
    "check_random_state",
    "check_real",
    "check_y",
    "column_rms",
    "dask_method",
    "feature_names_of",
    "fitted_units",
    "flatten_column",
    "is_dask",
    "power_of_two_scales",
    "set_features",
    "usable_columns",
    "validate_X",
]
