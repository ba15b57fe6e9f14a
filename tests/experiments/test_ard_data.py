import numpy as np
import pytest

from pyro_vd.experiments.ard_data import make_ard_classification, make_ard_regression


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
