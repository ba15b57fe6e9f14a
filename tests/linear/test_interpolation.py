import warnings

import numpy as np
import pytest

from pyro_vd.linear import RVR, GKLRegression, InterpolationWarning, VDRegression


def _draw(n, d, seed, noise=0.5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + 500, d))
    w = np.zeros(d)
    w[:5] = 2.0 * rng.standard_normal(5)
    y = X @ w + noise * rng.standard_normal(n + 500)
    return X[:n], y[:n], X[n:], y[n:]


@pytest.mark.parametrize(
    "make", [RVR, GKLRegression, lambda: VDRegression(threshold="sparse_vd")], ids=["RVR", "GKL", "sparse_vd"]
)
@pytest.mark.parametrize("seed", [1, 2])
def test_a_fit_that_interpolates_its_rows_says_so(make, seed):
    # 20 rows, 200 columns, noise sd 0.5: RVR reported a noise sd of 1e-5 and a predictive sd of 1e-4
    # where its test error was 0.8-1.5, without a word. Measured over 96 draws per estimator
    # (benchmarks/interpolation.py): the fits warned about had a noise sd a median 1e-4 of the true one
    X, y, X_test, y_test = _draw(20, 200, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # (G-KL's EM also stops at max_iter there: a ConvergenceWarning)
        model = make().fit(X, y)
    said = [str(w.message) for w in caught if issubclass(w.category, InterpolationWarning)]
    assert len(said) == 1 and "interpolates its 20 training rows" in said[0]
    mean, sd = model.predict(X_test, return_std=True)
    rmse = np.sqrt(np.mean((y_test - mean) ** 2))
    assert rmse > 30 * sd.mean()  # what the warning is for
    assert model.noise_precision_**-0.5 < 0.05  # (true 0.5)


@pytest.mark.parametrize("n, d, noise", [(20, 200, 0.5), (100, 50, 0.5), (100, 50, 0.0), (30, 30, 1e-3)])
def test_the_evidence_rule_and_fits_with_more_rows_than_columns_do_not_warn(n, d, noise):
    # the evidence rule keeps few columns (2 of 200, noise sd 1.3-2.7 where the truth is 0.5); with more
    # rows than columns no fit can span the targets, even noise-free ones (n = 100, d = 50, σ = 0)
    X, y, _, _ = _draw(n, d, 0, noise)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InterpolationWarning)
        VDRegression().fit(X, y)
        if n > d:
            RVR().fit(X, y)
            GKLRegression().fit(X, y)
            VDRegression(threshold="sparse_vd").fit(X, y)


def test_a_constant_target_is_not_interpolation():
    X, _, _, _ = _draw(10, 40, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InterpolationWarning)
        for model in (RVR(), GKLRegression(), VDRegression(threshold="sparse_vd")):
            model.fit(X, np.full(10, 3.0))
            assert np.allclose(model.predict(X), 3.0)


def test_without_an_intercept_the_bar_is_y_s_spread_not_its_offset():
    # the user's own column of ones, y about 1000, noise sd 0.5: the fits (noise sd 0.41, test rmse 0.73)
    # were warned about against Σ y², which the offset fills (a noise sd "0.00041 of y's")
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 40))
    X[:, 0] = 1.0
    w = np.zeros(40)
    w[1:20] = 3 * rng.choice([-1, 1], 19)
    w[0] = 1000.0
    y = X @ w + 0.5 * rng.standard_normal(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (G-KL's EM may stop at max_iter here)
        warnings.simplefilter("error", InterpolationWarning)  # (the later filter comes first)
        for model in (RVR(fit_intercept=False), GKLRegression(fit_intercept=False)):
            model.fit(X, y)
            assert 0.2 < model.noise_precision_**-0.5 < 1.0
