import numpy as np
import pytest

from pyro_vd.experiments.ard_data import (
    make_ard_classification,
    make_ard_regression,
    make_dense_classification,
    make_dense_regression,
)


def test_regression_generator():
    X, y, X_test, y_test, w = make_ard_regression(5000, 30, n_relevant=4, noise=0.1, seed=3, n_test=200)
    assert X.shape == (5000, 30) and X_test.shape == (200, 30) and y.shape == (5000,)
    assert (w[4:] == 0).all() and (w[:4] != 0).all()
    residual = y - X @ w
    # Noise variance 0.1: the sample variance of 5000 draws is within 5 se (se = 0.1·√(2/4999)).
    assert abs(residual.var() - 0.1) < 5 * 0.1 * np.sqrt(2 / 4999)
    again = make_ard_regression(5000, 30, n_relevant=4, noise=0.1, seed=3, n_test=200)
    assert all(np.array_equal(a, b) for a, b in zip((X, y, X_test, y_test, w), again, strict=True))


def test_classification_generator():
    X, y, _, y_test, w = make_ard_classification(20000, 10, n_relevant=3, seed=1, n_test=50)
    assert set(np.unique(y)) == {0, 1} and y_test.shape == (50,)
    p = 1 / (1 + np.exp(-X @ w))
    assert abs(y.mean() - p.mean()) < 5 * np.sqrt(p.mean() * (1 - p.mean()) / 20000)


@pytest.mark.parametrize(
    "kwargs", [{"n": 0, "d": 3}, {"n": 5, "d": 3, "n_relevant": 4}, {"n": 5, "d": 3, "noise": -1.0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_ard_regression(**kwargs)


def test_make_dense_regression_draws_what_it_says():
    X, y, X_test, truth, relevant = make_dense_regression(
        300, 20, 12, low=0.5, high=1.5, noise_sd=0.1, seed=3
    )
    assert X.shape == (300, 20) and X_test.shape == (2000, 20) and len(set(relevant)) == 12
    w = np.linalg.lstsq(X_test, truth, rcond=None)[0]
    assert np.all((np.abs(w[relevant]) >= 0.5 - 1e-9) & (np.abs(w[relevant]) <= 1.5 + 1e-9))
    assert np.allclose(np.delete(w, relevant), 0.0, atol=1e-9)
    assert np.std(y - X @ w) == pytest.approx(0.1, rel=0.15)  # 300 draws: sd of the sd ≈ 4 %
    correlated = make_dense_regression(5000, 3, 1, low=1, high=1, noise_sd=0, rho=0.8, n_test=1)[0]
    assert np.corrcoef(correlated.T)[0, 1] == pytest.approx(0.8, abs=0.03)
    with pytest.raises(ValueError, match="noise_sd"):
        make_dense_regression(10, 3, 1, low=1, high=2, noise_sd=-1.0)


def test_make_dense_classification_draws_what_it_says():
    X, y, X_test, y_test, relevant = make_dense_classification(20000, 6, 4, low=0.5, high=1.5, seed=3)
    assert X.shape == (20000, 6) and X_test.shape == (5000, 6) and len(set(relevant)) == 4
    assert set(np.unique(y)) == {0, 1} and len(y_test) == 5000
    from sklearn.linear_model import LogisticRegression

    w = LogisticRegression(C=1e6).fit(X, y).coef_[0]  # 20 000 rows: sd of each weight about 0.02
    assert np.all((np.abs(w[relevant]) > 0.4) & (np.abs(w[relevant]) < 1.6))
    assert np.allclose(np.delete(w, relevant), 0.0, atol=0.1)
    with pytest.raises(ValueError, match="low and high"):
        make_dense_classification(10, 3, 1, low=2, high=1)
