"""Numerics of the linear estimators at extreme scales, and their hyper-parameter checks (issue 12, item 9).

The ARD and VD priors are scale invariant, so a fit on X·c (or y·c) must be the fit on X (or y) mapped
back; pytest turns every warning into an error here, so each test is also a "no warning" test."""

import warnings

import numpy as np
import pytest

from pyro_vd.linear import (
    RVC,
    RVR,
    GKLClassifier,
    GKLRegression,
    InterpolationWarning,
    VDClassifier,
    VDRegression,
)
from pyro_vd.linear._convergence import ConvergenceWarning


def _regression(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ np.array([1.0, 0.0, -2.0])[:d] + 0.1 * rng.normal(size=n)


def _classification(n=60, seed=0):
    X, y = _regression(n, seed=seed)
    return X, (y > 0).astype(int)


CLASSIFIERS = [
    VDClassifier(),
    RVC(),
    GKLClassifier(),
]


@pytest.mark.parametrize("model", CLASSIFIERS, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("scale", [1e-100, 1e100, 1e150], ids=str)
def test_classifiers_fit_any_scale_of_X(model, scale):
    """VDClassifier once returned NaN coef_ (and predicted class 0) at X·1e100, GKLClassifier raised
    torch's LinAlgError."""
    X, y = _classification()
    reference = type(model)(**model.get_params()).fit(X, y)
    scaled = type(model)(**model.get_params()).fit(X * scale, y)
    assert np.isfinite(scaled.coef_).all() and np.isfinite(scaled.intercept_)
    np.testing.assert_allclose(scaled.coef_ * scale, reference.coef_, rtol=0.05, atol=0.05)
    proba = scaled.predict_proba(X * scale)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba, reference.predict_proba(X), atol=0.02)
    assert (scaled.predict(X * scale) == reference.predict(X)).mean() > 0.95


@pytest.mark.parametrize("estimator", [RVR, GKLRegression], ids=lambda e: e.__name__)
@pytest.mark.parametrize(("x_scale", "y_scale"), [(1e150, 1.0), (1e-150, 1.0), (1.0, 1e-100), (1.0, 1e150)])
def test_ard_regressors_fit_any_scale(estimator, x_scale, y_scale):
    """RVR once raised OverflowError (β²) at y·1e-100 and emitted 12 000 RuntimeWarnings at X·1e150:
    both now fit in unit-scale units and map back (powers of two: exactly, up to the iteration's rounding)."""
    X, y = _regression()
    reference = estimator().fit(X, y)
    scaled = estimator().fit(X * x_scale, y * y_scale)
    # G-KL also stops when its bound stops rising (relative tol): rounding at these scales can move that
    # stop by one EM iteration (measured: up to 3e-5 relative in the predictions); RVR agrees to 1e-6
    rtol = 1e-4 if estimator is GKLRegression else 1e-6
    np.testing.assert_allclose(scaled.coef_ * x_scale / y_scale, reference.coef_, rtol=rtol, atol=1e-9)
    assert scaled.intercept_ / y_scale == pytest.approx(reference.intercept_, rel=rtol, abs=1e-9)
    assert scaled.noise_precision_ * y_scale**2 == pytest.approx(reference.noise_precision_, rel=rtol)
    mean, std = scaled.predict(X * x_scale, return_std=True)
    reference_mean, reference_std = reference.predict(X, return_std=True)
    np.testing.assert_allclose(mean / y_scale, reference_mean, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(std / y_scale, reference_std, rtol=rtol)


@pytest.mark.parametrize("seed", [1, 2, 6, 14])
def test_rvr_on_a_wide_integer_design(seed):
    """3 × 60 integer designs (n ≪ d) once gave 25 to 5 158 RuntimeWarnings in one fit (these seeds):
    once the active bases span the data, rounding makes S_m < 0 or S_i ≥ α_i, and the add / delete
    formulas took logs of negative numbers (and argmax picked the NaN)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-3, 5, size=(3, 60))
    labels, values = rng.integers(0, 10, 3), rng.normal(size=3)
    y = labels if seed % 4 == 1 else values
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = RVR().fit(X, y)
    # once the 3 rows are fitted exactly the add/delete steps can cycle to max_iter: one warning says so,
    # and one that the fit interpolates its rows
    categories = [w.category for w in record]
    assert set(categories) <= {ConvergenceWarning, InterpolationWarning}
    assert categories.count(ConvergenceWarning) <= 1 and categories.count(InterpolationWarning) <= 1
    assert np.isfinite(model.coef_).all() and np.isfinite(model.predict(X, return_std=True)).all()
    np.testing.assert_allclose(model.predict(X), y, atol=0.1 * np.abs(y).max())


@pytest.mark.parametrize("estimator", [VDRegression, RVR, GKLRegression], ids=lambda e: e.__name__)
def test_all_zero_target(estimator):
    """An all-zero y once gave noise_precision_ = inf and elbo_ = NaN: it is taken as of unit scale."""
    X, _ = _regression()
    model = estimator().fit(X, np.zeros(len(X)))
    assert np.isfinite(model.noise_precision_) and np.all(model.coef_ == 0)
    assert np.isfinite(getattr(model, "elbo_", 0.0))
    mean, std = model.predict(X, return_std=True)
    assert np.all(mean == 0) and np.isfinite(std).all()


def test_max_log_alpha_range():
    """max_log_alpha ≥ 710 once pruned everything with elbo_ = NaN (e^710 overflows)."""
    X, y = _regression()
    for bad in (710.0, 1e6, 0.0, -1.0, np.nan, "30"):
        with pytest.raises(
            ValueError, match=r"max_log_alpha must be (in|a finite real number in) \(0, 700\]"
        ):
            VDRegression(max_log_alpha=bad).fit(X, y)
    reference = VDRegression().fit(X, y)
    for cap in (700.0, np.float32(100.0)):
        model = VDRegression(max_log_alpha=cap).fit(X, y)
        assert np.isfinite(model.elbo_) and model.relevance_.tolist() == [True, False, True]
        assert model.log_alpha_[1] == cap
        np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-8)
    # pruned: KL 0, not e^2100 (Kingma's KL has no evidence rule: the plain one)
    model = VDRegression(max_log_alpha=700.0, kl_method="kingma", threshold="sparse_vd").fit(X, y)
    assert np.isfinite(model.elbo_)
    with pytest.raises(ValueError, match="kl_method='exact' or 'molchanov'"):
        VDRegression(kl_method="kingma").fit(X, y)  # the evidence rule


def test_many_quadrature_points():
    """n_quadrature ≳ 370 once gave NaN probabilities (numpy's hermgauss weights overflow)."""
    X, y = _classification()
    reference = VDClassifier(max_iter=100).fit(X, y)
    model = VDClassifier(n_quadrature=400, max_iter=100).fit(X, y)
    np.testing.assert_allclose(model.predict_proba(X), reference.predict_proba(X), atol=1e-3)
    for bad in (1001, 0, 2.5, 1):  # one point: α ran off to ∞ while the means kept predicting
        for estimator in (VDClassifier, GKLClassifier):
            with pytest.raises(ValueError, match="n_quadrature must be"):
                estimator(n_quadrature=bad).fit(X, y)


def test_random_state_conventions():
    """random_state=None once raised a TypeError; scikit-learn's conventions now hold."""
    X, y = _classification()
    kwargs = {"n_quadrature": 8}
    fits = [VDClassifier(random_state=seed, **kwargs).fit(X, y).coef_ for seed in (3, np.int64(3))]
    np.testing.assert_array_equal(fits[0], fits[1])
    for state in (None, np.random.RandomState(0), np.random.default_rng(0)):
        assert np.isfinite(VDClassifier(random_state=state, **kwargs).fit(X, y).coef_).all()
    for bad in ("seed", 1.5, -1):
        with pytest.raises(ValueError, match="random_state must be"):
            VDClassifier(random_state=bad, **kwargs).fit(X, y)


@pytest.mark.parametrize("estimator", [VDRegression, VDClassifier], ids=lambda e: e.__name__)
def test_threshold_is_a_finite_real_number(estimator):
    """threshold=nan was accepted by VDClassifier (nothing relevant), np.float32(3) refused by
    VDRegression."""
    X, y = _classification() if estimator is VDClassifier else _regression()
    reference = estimator(threshold=3.0).fit(X, y)
    model = estimator(threshold=np.float32(3.0)).fit(X, y)
    np.testing.assert_array_equal(model.relevance_, reference.relevance_)
    for bad in (np.nan, np.inf, "3", None, True):
        with pytest.raises(ValueError, match="threshold must be a finite real number"):
            estimator(threshold=bad).fit(X, y)
