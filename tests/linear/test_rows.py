"""Sums over row blocks (pyro_vd.linear._rows): the same numbers for any number of threads."""

import numpy as np

from pyro_vd.linear._rows import SERIAL_ELEMENTS, InMemoryRows


def _moments(X, X2, t, w):
    return X.T @ (t * w), float(t.sum()), (X.T * t) @ X2


def test_sums_do_not_depend_on_threads_and_match_one_block():
    rng = np.random.default_rng(0)
    n, d = 4000, 80
    assert n * d > SERIAL_ELEMENTS  # several parts
    X, t, w = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal()
    active = rng.random(d) < 0.7
    one = InMemoryRows(X, t, n_threads=1, max_block_rows=100).sum(_moments, active, w)
    two = InMemoryRows(X, t, n_threads=2, max_block_rows=100).sum(_moments, active, w)
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a, b)  # parts fixed by the shape, summed in order
    Xa = X[:, active]
    direct = _moments(Xa, Xa * Xa, t, w)
    for a, b in zip(one, direct, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-10)


def test_active_set_copies_follow_the_mask():
    rng = np.random.default_rng(1)
    X, t = rng.normal(size=(50, 6)), rng.normal(size=50)
    rows = InMemoryRows(X, t)
    for active in (np.ones(6, bool), np.array([1, 0, 1, 0, 1, 1], bool), np.array([0, 0, 1, 0, 0, 1], bool)):
        (total,) = rows.sum(lambda Xb, X2b, tb: (X2b.sum(0),), active)
        np.testing.assert_allclose(total, (X[:, active] ** 2).sum(0))
