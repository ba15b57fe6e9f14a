"""Answers do not depend on units: X × c and y × c, c from 1e-3 to 1e3, give the same relevant set and the
same predictions up to the scale, and a fit that stops at ``max_iter`` says so (ConvergenceWarning)."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_vd.linear import RVC, RVR, GKLClassifier, GKLRegression, VDClassifier, VDRegression
from pyro_vd.linear._convergence import ConvergenceWarning

REGRESSORS = [VDRegression, RVR, GKLRegression]
CLASSIFIERS = [VDClassifier, RVC, GKLClassifier]
#: c = 10^k · (1 + u), not only powers of two (the estimators' internal units)
SCALES = st.builds(lambda k, u: 10.0**k * (1.0 + u), st.integers(-3, 2), st.floats(0.0, 1.0))


def _data(classification, seed=0, n=40, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    score = X[:, 0] * 2.0 - X[:, 1] * 1.5
    if classification:
        return X, (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * score))).astype(int)
    return X, score + 0.3 * rng.normal(size=n)


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # no fit may run to max_iter here
        return estimator().fit(X, y)


_REFERENCE = {}


def _reference(estimator, classification):
    if estimator not in _REFERENCE:
        X, y = _data(classification)
        _REFERENCE[estimator] = (X, y, _fit(estimator, X, y))
    return _REFERENCE[estimator]


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: e.__name__)
@settings(max_examples=6, deadline=None, derandomize=True)
@given(c=SCALES, scale_y=st.booleans())
def test_regressors_are_unit_free(estimator, c, scale_y):
    X, y, reference = _reference(estimator, False)
    model = _fit(estimator, X, y * c) if scale_y else _fit(estimator, X * c, y)
    np.testing.assert_array_equal(model.relevance_, reference.relevance_)
    prediction = model.predict(X) / c if scale_y else model.predict(X * c)
    # G-KL's EM stops where the bound stops rising (relative 1e-6), a little short of its optimum
    tol = 1e-3 if estimator is GKLRegression else 1e-5
    np.testing.assert_allclose(prediction, reference.predict(X), rtol=tol, atol=tol * np.std(y))


@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=lambda e: e.__name__)
@settings(max_examples=4, deadline=None, derandomize=True)
@given(c=SCALES)
def test_classifiers_are_unit_free(estimator, c):
    X, y, reference = _reference(estimator, True)
    model = _fit(estimator, X * c, y)
    np.testing.assert_array_equal(model.relevance_, reference.relevance_)
    np.testing.assert_allclose(model.predict_proba(X * c), reference.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: e.__name__)
def test_stopping_at_max_iter_warns(estimator):
    X, y = _data(False)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        estimator(max_iter=1, tol=1e-15).fit(X, y)


# ------------------------------------------------------------------ one column's units, one offset
#: (multiplier, offset) per column of the regression data: one column in units 1e7 smaller, one 1e7
#: larger, one an offset of 1e7 of its spread, one a timestamp-like 1.7e9.
COLUMN_CASES = {
    "col1 x 1e-7": ([1.0, 1e-7, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]),
    "col0 x 1e7, col1 x 1e-7": ([1e7, 1e-7, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]),
    "col1 + 1e7": ([1.0, 1.0, 1.0, 1.0], [0.0, 1e7, 0.0, 0.0]),
    "col1 + 1.7e9, col3 + 1e6": ([1.0, 1.0, 1.0, 1.0], [0.0, 1.7e9, 0.0, 1e6]),
}


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("case", list(COLUMN_CASES), ids=list(COLUMN_CASES))
def test_one_columns_units_or_offset_do_not_decide_its_relevance(estimator, case):
    """A relevant column in small units was taken as constant by VDRegression (its spread below 1e-12 of
    the largest column's), and one with an offset by RVR and GKLRegression (units from the uncentred
    root mean square, in which its spread vanished): they were pruned, with no warning."""
    scale, offset = map(np.asarray, COLUMN_CASES[case])
    X, y, reference = _reference(estimator, False)
    model = _fit(estimator, X * scale + offset, y)
    np.testing.assert_array_equal(model.relevance_, reference.relevance_)
    assert reference.relevance_[:2].all()
    np.testing.assert_allclose(model.predict(X * scale + offset), reference.predict(X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("offset", [1e6, -1e8, 1e10])
def test_an_offset_of_y_is_the_intercepts(estimator, offset):
    """The residual floors were relative to Σ y²: at y + 1e6 the noise precision came out 100 times too
    small, at y + 1e8 every feature was pruned."""
    X, y, reference = _reference(estimator, False)
    model = _fit(estimator, X, y + offset)
    np.testing.assert_array_equal(model.relevance_, reference.relevance_)
    assert model.noise_precision_ == pytest.approx(reference.noise_precision_, rel=1e-3)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(model.predict(X) - offset, reference.predict(X), atol=1e-3)


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: e.__name__)
def test_a_column_constant_up_to_rounding_is_still_unusable(estimator):
    X, y, _ = _reference(estimator, False)
    X = X.copy()
    X[:, 2] = 0.1 * 3  # the same value in every row ...
    X[::2, 2] = 0.3  # ... and its neighbour one ulp away
    model = _fit(estimator, X, y)
    assert not model.relevance_[2] and model.coef_[2] == 0.0


def test_a_tiny_y_is_refused_in_a_sentence():
    """y_scale² underflowed to 0 below 1e-162: a ZeroDivisionError from the fit."""
    X, y, _ = _reference(VDRegression, False)
    with pytest.raises(ValueError, match=r"not finite.*rescale"):
        VDRegression().fit(X, y * 1e-170)


@pytest.mark.parametrize("estimator", [*REGRESSORS, VDClassifier], ids=lambda e: e.__name__)
@pytest.mark.parametrize("offset, spread", [(1e13, 1.0), (1.7e15, 1e3)], ids=["1e13 ± 1", "µs timestamp"])
def test_a_column_with_an_offset_far_beyond_its_spread_is_still_a_column(estimator, offset, spread):
    """Its spread is 1e-13 of its size, hundreds of units in the last place: a real column (at a
    constant-column rule of 1e-12 relative spread it was zeroed without a word)."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=300)
    x = offset + spread * z
    score = 2.0 * (x - x.mean()) / x.std()
    if estimator is VDClassifier:
        y = (score + rng.normal(size=300) > 0).astype(int)
    else:
        y = score + 0.3 * rng.normal(size=300)
    model, reference = _fit(estimator, x[:, None], y), _fit(estimator, z[:, None], y)
    assert model.relevance_.all() and reference.relevance_.all()
    assert model.score(x[:, None], y) == pytest.approx(reference.score(z[:, None], y), abs=0.01)
