r"""
Linear regression ARD on Dask arrays: sufficient statistics on the cluster, the fit on the client.

Every regressor here is a function of a few reductions of the rows: :class:`VDRegression` of
:math:`X^\top X`, :math:`X^\top t`, :math:`t^\top t`, the sums and :math:`N`; :class:`RVR` and
:class:`GKLRegression` of the same on centred data in power-of-two units
(:func:`pyro_vd.linear.rvr.prepare_ard_regression`). Each block of rows is reduced where it lives and
the partial results are merged in a tree, so the client receives d × d numbers, never rows, and one
pass over X suffices. ``predict`` maps the in-memory ``predict`` over the row blocks (a Dask array
back). Imported only when an estimator meets a Dask array: Dask is an optional extra
(``pip install "pyro-vd[dask]"``).

:class:`VDClassifier` (its Newton solver) and :class:`RVC` fit Dask arrays too, though no fixed
statistics summarize their rows: every step re-weights every row. Each Newton step's ELBO, gradient and
Hessian (:mod:`pyro_vd.linear._vd_newton`), and each IRLS step's log-likelihood, gradient and
:math:`\Phi^\top B\Phi` (:mod:`pyro_vd.linear.rvc`), are sums over rows, so each is reduced on the
cluster like the regressors' statistics (one pass over X per evaluation: 30–60 a VDClassifier fit,
30–50 an RVC fit on 100 000 × 100) and only O(d²) numbers come back; the units of the fit (column means
and scales) take one pass more. VDClassifier's L-BFGS solver (a torch autograd graph over all rows) and
:class:`GKLClassifier` (EM on an in-memory design) do not take Dask arrays (an error that says so).
"""

import numbers
import warnings

import dask
import dask.array as da
import numpy as np

from ._base import (
    CONSTANT_RATIO,
    check_feature_names,
    check_is_fitted,
    flatten_column,
    is_dask,
    set_features,
    usable_columns,
)
from ._classifier import check_missing_labels, unique_labels

#: Partial statistics merged per task of the reduction tree.
_TREE_WIDTH = 8


# ------------------------------------------------------------------------------------ entry points
def fit(estimator, X, y):
    """:meth:`VDRegression.fit` of a Dask array (RVR and GKLRegression come through
    :func:`prepare_ard_regression`)."""
    return _vd_update(estimator, X, y, reset=True)


def partial_fit(estimator, X, y):
    """:meth:`VDRegression.partial_fit` of a Dask array: its statistics added to those so far."""
    return _vd_update(estimator, X, y, reset="_stats" not in vars(estimator))


def predict(estimator, X, return_std=False):
    """The estimator's ``predict`` on every block of rows: a Dask array (a pair with ``return_std``)."""
    check_is_fitted(estimator)
    check_feature_names(estimator, X, reset=False)  # a Dask array has none: warns if fitted with names
    X = _check_X(X, n_features=estimator.n_features_in_, estimator=estimator)

    def block_predict(block):
        with warnings.catch_warnings():  # said once above, not once per block
            warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
            if return_std:
                return np.column_stack(estimator.predict(block, return_std=True))
            return estimator.predict(block)

    if not return_std:
        return X.map_blocks(block_predict, dtype=np.float64, drop_axis=1)
    both = X.map_blocks(block_predict, dtype=np.float64, chunks=(X.chunks[0], (2,)))
    return both[:, 0], both[:, 1]


def prepare_ard_regression(estimator, X, y):
    """
    :func:`pyro_vd.linear.rvr.prepare_ard_regression` of a Dask array: the same
    ``(n, x_mean, y_mean, G, Xᵀt, tᵀt, diag G, usable, yᵀy, scaling)`` from one pass over the rows.
    """
    from .rvr import ArdScaling, check_ard_params, target_energy

    X = _check_X(X)
    y = _check_y(y, X)
    check_ard_params(estimator)
    s = _reduce(X, y, _ard_block, _ard_merge, center=bool(estimator.fit_intercept))
    n = s["n"]
    # fitted_units from the merged statistics: the power of two nearest the root mean square as fitted
    # (centred with an intercept), the plain one for a column constant up to rounding
    x_scale, x_ratio = _fitted_units(np.diag(s["G"]), s["sq"], s["s"], n)
    y_scale, y_ratio = _fitted_units(s["tt"], s["ysq"], s["sy"], n)
    # from the units of the merge (s) to those of the fit (x_scale): exact factors, powers of two
    f, fy = s["s"] / x_scale, float(s["sy"] / y_scale)
    G = s["G"] * f[:, None] * f[None, :]
    diag = np.diag(G).copy()
    usable = usable_columns(x_ratio) & (diag > 0)
    scaling = object.__new__(ArdScaling)  # its __init__ would read the rows
    scaling.x, scaling.y = x_scale, float(y_scale)
    scaling.x_ratio, scaling.y_ratio = x_ratio, float(y_ratio)
    scaling.y_spread = float(s["yspread"] * fy**2)  # as prepare_ard_regression's
    set_features(estimator, X, None)
    return (
        n,
        s["mean"] * f,
        float(s["ymean"] * fy),
        G,
        s["Xt"] * f * fy,
        float(s["tt"] * fy**2),
        diag,
        usable,
        target_energy(float(s["tt"] * fy**2), float(s["ysq"] * fy**2), scaling),
        scaling,
    )


# ---------------------------------------------------------------------------------- VDRegression
def _vd_update(estimator, X, y, *, reset):
    """``VDRegression._update`` with the chunk statistics reduced on the cluster."""
    from .vd_regression import _chunk_statistics

    # as in memory: a later chunk without names (a Dask array has none) keeps the names of the first
    # (before, they were dropped without a word, and a reordered data frame then predicted silently)
    names = check_feature_names(estimator, X, reset=reset)
    X = _check_X(X, n_features=None if reset else estimator.n_features_in_, estimator=estimator)
    y = _check_y(y, X)
    estimator._check_params()
    return estimator._absorb(_reduce(X, y, _chunk_statistics, _accumulate_all), X, names, reset=reset)


def _accumulate_all(*parts):
    from .vd_regression import _accumulate

    total = parts[0]
    for part in parts[1:]:
        total = _accumulate(total, part)
    return total


# ------------------------------------------------------------------------------ RVR, GKLRegression
def _frexp_scale(peak):
    """A power of two ≤ ``peak`` < twice it (1/2 for 0): rows divided by it are below 2 in size."""
    return np.ldexp(1.0, np.frexp(peak)[1] - 1)


def _ard_block(X, y, *, center):
    r"""
    One block's statistics, in units ``s`` (a power of two per column, ``sy`` for y) below which its
    entries stay: Σ x², and the means and centred cross products (plain ones without ``center``).
    """
    peak = np.abs(X).max(0)
    if not np.isfinite(peak).all():
        raise ValueError("Input X contains NaN or infinity.")
    y_peak = float(np.abs(y).max())
    s, sy = _frexp_scale(peak), _frexp_scale(y_peak)
    X, y = X / s, y / sy
    mean = X.mean(0) if center else np.zeros(X.shape[1])
    ymean = float(y.mean()) if center else 0.0
    Xc, yc = X - mean, y - ymean
    ym = float(y.mean())  # y's own mean and spread, whether or not the fit centres
    return {
        "ym": ym,
        "yspread": float(((y - ym) ** 2).sum()),
        "n": X.shape[0],
        "s": s,
        "sy": sy,
        "sq": np.einsum("ij,ij->j", X, X),
        "ysq": float(y @ y),
        "mean": mean,
        "ymean": ymean,
        "G": Xc.T @ Xc,
        "Xt": Xc.T @ yc,
        "tt": float(yc @ yc),
    }


def _ard_merge(*parts):
    r"""
    Statistics of the union of blocks, in the largest of their units (exact rescalings by powers of
    two); centred products by Chan, Golub & LeVeque's pairwise update,
    :math:`M = M_a + M_b + \tfrac{n_a n_b}{n}\delta\delta^\top`, :math:`\delta = \bar x_b - \bar x_a`.
    """
    s = np.max([p["s"] for p in parts], axis=0)
    sy = max(p["sy"] for p in parts)
    total = None
    for p in parts:
        r, ry = p["s"] / s, p["sy"] / sy
        p = {
            "n": p["n"],
            "sq": p["sq"] * r**2,
            "ysq": p["ysq"] * ry**2,
            "mean": p["mean"] * r,
            "ymean": p["ymean"] * ry,
            "G": p["G"] * r[:, None] * r[None, :],
            "Xt": p["Xt"] * r * ry,
            "tt": p["tt"] * ry**2,
            "ym": p["ym"] * ry,
            "yspread": p["yspread"] * ry**2,
        }
        if total is None:
            total = p
            continue
        n = total["n"] + p["n"]
        weight = total["n"] * p["n"] / n
        delta, ydelta = p["mean"] - total["mean"], p["ymean"] - total["ymean"]
        total = {
            "n": n,
            "sq": total["sq"] + p["sq"],
            "ysq": total["ysq"] + p["ysq"],
            "mean": total["mean"] + delta * (p["n"] / n),
            "ymean": total["ymean"] + ydelta * (p["n"] / n),
            "G": total["G"] + p["G"] + weight * np.outer(delta, delta),
            "Xt": total["Xt"] + p["Xt"] + weight * delta * ydelta,
            "tt": total["tt"] + p["tt"] + weight * ydelta**2,
            "ym": total["ym"] + (p["ym"] - total["ym"]) * (p["n"] / n),
            "yspread": total["yspread"] + p["yspread"] + weight * (p["ym"] - total["ym"]) ** 2,
        }
    total["s"], total["sy"] = s, sy
    return total


def _fitted_units(fitted_sq, sq, unit, n):
    """:func:`~pyro_vd.linear._base.fitted_units` from Σ (x/unit)² as fitted (``fitted_sq``: about the
    mean with an intercept) and as is (``sq``) over n rows."""
    fitted_sq, sq = np.maximum(np.asarray(fitted_sq, float), 0.0), np.asarray(sq, float)
    ratio = np.sqrt(fitted_sq / np.where(sq > 0, sq, 1.0))
    fitted = _nearest_power_of_two(fitted_sq, unit, n)
    return np.where(ratio > CONSTANT_RATIO, fitted, _nearest_power_of_two(sq, unit, n)), ratio


def _nearest_power_of_two(sq, unit, n):
    """:func:`~pyro_vd.linear._base.power_of_two_scales` from Σ (x/unit)² over n rows: the power of two
    nearest the root mean square (1 for an all-zero column), in log₂ so that nothing overflows."""
    with np.errstate(divide="ignore"):
        log2_rms = np.log2(unit) + 0.5 * np.log2(np.asarray(sq) / n)
    exponent = np.where(np.asarray(sq) > 0, np.round(log2_rms), 0.0)
    return np.ldexp(1.0, exponent.astype(int))


# ---------------------------------------------------------------------------------- VDClassifier
def fit_classifier(estimator, X, y):
    """:meth:`VDClassifier.fit` (Newton) or :meth:`RVC.fit` of a Dask array: every step's sums over rows
    reduced on the cluster (the rows never come to the client)."""
    from ._classifier import CentredUnits, binary_problems, naming_the_class
    from ._threads import single_threaded_blas
    from .rvc import RVC
    from .vd_classifier import VDClassifier

    if not isinstance(estimator, VDClassifier | RVC):
        raise TypeError(
            f"{type(estimator).__name__} does not take a Dask array (VDClassifier, RVC, VDRegression, RVR "
            "and GKLRegression do): compute it into memory first (X.compute()) if it fits there"
        )
    X = _check_X(X)
    # the labels in their own dtype (float64 would merge integers above 2**53; strings are labels too)
    labels = y if is_dask(y) else np.asarray(y)
    if labels.dtype.kind in "USO":  # string labels, as in memory: only their shape to check
        labels = flatten_column(labels)
        if labels.ndim != 1 or labels.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},); got {labels.shape}")
        y_checked = da.zeros(X.shape[0], chunks=(X.chunks[0],))  # the units read X alone
    else:
        y_checked = _check_y(y, X)  # float64: validated, in X's row blocks
        labels = labels[:, 0] if labels.ndim == 2 else labels  # (n, 1): _check_y warned already
    labels = (
        labels.rechunk((X.chunks[0],)) if is_dask(labels) else da.from_array(labels, chunks=(X.chunks[0],))
    )
    estimator._check_params()
    if isinstance(estimator, VDClassifier) and estimator.solver != "newton":
        raise ValueError(
            f"VDClassifier fits a Dask array with solver='newton' only (its steps are sums over rows, "
            f"reduced on the cluster); got solver={estimator.solver!r}"
        )
    name = type(estimator).__name__
    if labels.dtype == object:  # None or pd.NA among them: np.unique could not even sort them
        from ._base import missing_values

        check_missing_labels(int(labels.map_blocks(missing_values, dtype=bool).sum().compute()))
    classes = unique_labels(labels, lambda y: da.unique(y).compute())  # the distinct labels only
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise ValueError("Input y contains NaN or infinity.")
    if len(classes) < 2:
        raise ValueError(f"{name} needs samples of at least 2 classes; got 1 class ({classes[0]!r})")
    if classes.dtype.kind == "f" and not np.all(np.mod(classes, 1) == 0):
        raise ValueError(f"Unknown label type: continuous targets; {name} needs class labels")
    # the units of the fit, from one pass: centred columns of unit root mean square (CentredUnits)
    s = _reduce(X, y_checked, _ard_block, _ard_merge, center=True)
    n = s["n"]
    coarse = _nearest_power_of_two(s["sq"], s["s"], n)
    offset = s["mean"] * (s["s"] / coarse)
    spread = np.sqrt(np.maximum(np.diag(s["G"]), 0.0) / n) * (s["s"] / coarse)
    units = CentredUnits.from_moments(coarse, offset, spread)
    Z = X.map_blocks(units.transform, dtype=np.float64)
    Phi = Z.map_blocks(_with_ones, dtype=np.float64, chunks=(Z.chunks[0], (Z.shape[1] + 1,)))  # RVC's
    fits = []
    with single_threaded_blas():  # the client's small solves, as in memory
        for positive in binary_problems(classes):
            with naming_the_class(classes, positive):
                fits.append(_fit_binary_rows(estimator, labels, positive, Z, Phi, units))
    return estimator._set_fits(X, None, classes, fits)


def _fit_binary_rows(estimator, labels, positive, Z, Phi, units):
    """The binary fit of ``estimator`` for the ``positive`` classes over the Dask rows: RVC's on
    Φ = [Z, 1] and t ∈ {0, 1}, VDClassifier's Newton on Z and t ∈ {−1, +1}."""
    from ._vd_newton import max_block_rows
    from .rvc import RVC

    if isinstance(estimator, RVC):
        t = labels.map_blocks(_indicator, np.asarray(positive), dtype=np.float64)
        return estimator._fit_rows(DaskRows(Phi, t, squares=False), units)
    t = labels.map_blocks(_signs, np.asarray(positive), dtype=np.float64)
    rows = DaskRows(Z, t, max_block_rows=max_block_rows(estimator.n_quadrature))
    theta, log_sigma2 = estimator._start(units.unit_rms)
    return estimator._finish(units, *estimator._newton(rows, theta, log_sigma2, units.usable))


def _with_ones(Z):
    return np.column_stack([Z, np.ones(len(Z))])


def _indicator(y, positive):
    """Binary targets 0/1: 1 for the ``positive`` classes."""
    return np.isin(y, positive).astype(np.float64)


def _signs(y, positive):
    """Binary targets ±1: +1 for the ``positive`` classes."""
    return 2.0 * np.isin(y, positive) - 1.0


class DaskRows:
    """
    The rows of a Dask array ``Z`` with targets ``t`` as :class:`~pyro_vd.linear._rows.InMemoryRows` sums
    them: each row block's sum computed where it lives (in blocks of its own, on the worker), the parts
    added ``_TREE_WIDTH`` at a time on the cluster; the client gets the final tuple.
    """

    def __init__(self, Z, t, **options):
        self.Z, self.t = Z.to_delayed().ravel(), t.to_delayed().ravel()
        self.n_samples = int(Z.shape[0])
        self.options = options  # InMemoryRows' (max_block_rows, squares) for each block
        self._block_rows = list(Z.chunks[0])

    def folds(self, k):
        """``k`` pairs (rows out of fold f, rows of fold f), fold f the blocks i ≡ f (mod k) (as
        :meth:`~pyro_vd.linear._rows.InMemoryRows.folds` does rows); None where there are fewer than k
        non-empty blocks."""
        blocks = [i for i, rows in enumerate(self._block_rows) if rows]
        if len(blocks) < k:
            return None
        return [
            (self._subset([b for j, b in enumerate(blocks) if j % k != f]), self._subset(blocks[f::k]))
            for f in range(k)
        ]

    def _subset(self, blocks):
        rows = DaskRows.__new__(DaskRows)
        rows.Z, rows.t = [self.Z[b] for b in blocks], [self.t[b] for b in blocks]
        rows.options, rows._block_rows = self.options, [self._block_rows[b] for b in blocks]
        rows.n_samples = sum(rows._block_rows)
        return rows

    def sum(self, function, active, *args):
        part = dask.delayed(_rows_sum, pure=True)
        parts = [
            part(zb, tb, function, active, args, self.options) for zb, tb in zip(self.Z, self.t, strict=True)
        ]
        return _merged(parts, _add_all)


def _rows_sum(Z, t, function, active, args, options):
    from ._rows import InMemoryRows

    rows = InMemoryRows(np.asarray(Z, dtype=np.float64), np.asarray(t, dtype=np.float64), **options)
    return rows.sum(function, active, *args)


def _add_all(*parts):
    from ._rows import add_parts

    total = None
    for part in parts:
        total = add_parts(total, part)
    return total


def map_rows(estimator, X, method):
    """A classifier's ``predict``, ``predict_proba`` or ``decision_function`` on every block of rows: a
    Dask array."""
    check_is_fitted(estimator)
    check_feature_names(estimator, X, reset=False)
    X = _check_X(X, n_features=estimator.n_features_in_, estimator=estimator)

    def block_method(block):
        with warnings.catch_warnings():  # said once above, not once per block
            warnings.filterwarnings("ignore", "X does not have valid feature names", UserWarning)
            return getattr(estimator, method)(block)

    if method == "predict":
        return X.map_blocks(block_method, dtype=estimator.classes_.dtype, drop_axis=1)
    n_columns = len(estimator.classes_)
    if method == "decision_function" and n_columns == 2:
        return X.map_blocks(block_method, dtype=np.float64, drop_axis=1)
    return X.map_blocks(block_method, dtype=np.float64, chunks=(X.chunks[0], (n_columns,)))


# ----------------------------------------------------------------------------------- the reduction
def _reduce(X, y, block_statistics, merge, **options):
    """``block_statistics(X_block, y_block, **options)`` on every row block, merged ``_TREE_WIDTH`` at a
    time on the cluster; only the final (small) statistics are computed back to the client."""
    x_blocks, y_blocks = X.to_delayed().ravel(), y.to_delayed().ravel()
    statistics = dask.delayed(_block, pure=True)
    parts = [statistics(xb, yb, block_statistics, options) for xb, yb in zip(x_blocks, y_blocks, strict=True)]
    return _merged(parts, merge)


def _merged(parts, merge):
    """The delayed ``parts`` merged ``_TREE_WIDTH`` at a time on the cluster; the result computed back."""
    combine = dask.delayed(merge, pure=True)
    while len(parts) > 1:
        parts = [combine(*parts[i : i + _TREE_WIDTH]) for i in range(0, len(parts), _TREE_WIDTH)]
    (result,) = dask.compute(parts[0])
    return result


def _block(X, y, block_statistics, options):
    y = np.asarray(y, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("Input y contains NaN or infinity.")
    return block_statistics(np.asarray(X, dtype=np.float64), y, **options)


# ------------------------------------------------------------------------------------------ checks
def _check_X(X, *, n_features=None, estimator=None):
    """A 2-D float Dask array in blocks of whole rows (checked without computing it)."""
    if not isinstance(X, da.Array):
        raise TypeError(
            f"X is a {type(X).__name__} from Dask; pass a Dask array (e.g. df.to_dask_array(lengths=True))"
        )
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError("Complex data not supported: X is complex")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"X must be numeric; got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead: X must have shape (n_samples, n_features)"
        )
    if any(isinstance(c, numbers.Real) and np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has blocks of unknown size; call X.compute_chunk_sizes() first")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(
            f"Found array with shape {X.shape} while at least 1 sample and 1 feature are required."
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting {n_features} "
            "features as input."
        )
    if 0 in X.chunks[0]:  # empty row blocks (after X[mask].compute_chunk_sizes()) hold nothing to sum
        X = X.rechunk({0: tuple(c for c in X.chunks[0] if c > 0)})
    return X.astype(np.float64).rechunk({1: -1})


def _check_y(y, X):
    """A 1-D float Dask array in the row blocks of ``X`` (a NumPy ``y`` is sent to the cluster)."""
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    if not is_dask(y):
        y = np.asarray(y)
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool) or np.issubdtype(
        y.dtype, np.complexfloating
    ):
        raise ValueError(f"y must be real numbers; got dtype {y.dtype}")
    y = flatten_column(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-dimensional (n_samples,); got shape {y.shape}")
    if is_dask(y) and any(isinstance(c, numbers.Real) and np.isnan(c) for c in y.chunks[0]):
        # (it read "inconsistent numbers of samples: [120, nan]")
        raise ValueError("y has blocks of unknown size; call y.compute_chunk_sizes() first")
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{X.shape[0]}, {y.shape[0]}]"
        )
    y = y.astype(np.float64)
    if is_dask(y):
        return y.rechunk((X.chunks[0],))
    return da.from_array(y, chunks=(X.chunks[0],))


__all__ = [
    "DaskRows",
    "fit",
    "fit_classifier",
    "map_rows",
    "partial_fit",
    "predict",
    "prepare_ard_regression",
]
