"""The synthetic ARD data of the seed's linear experiments."""

import numpy as np


def _check(n, d, n_relevant, n_test):
    for name, value in (("n", n), ("d", d), ("n_test", n_test)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not isinstance(n_relevant, int | np.integer) or not 0 <= n_relevant <= d:
        raise ValueError(f"n_relevant must be an integer in [0, d]; got {n_relevant!r}")


def _correlate(X, rho):
    """Columns of X ~ N(0, 1) made AR(1)-correlated, corr(x_i, x_j) = ``rho``^|i − j|, unit variance."""
    if rho == 0:
        return X
    out = np.empty_like(X)
    out[:, 0] = X[:, 0]
    for j in range(1, X.shape[1]):
        out[:, j] = rho * out[:, j - 1] + np.sqrt(1.0 - rho**2) * X[:, j]
    return out


def _check_rho(rho):
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must be in (-1, 1); got {rho!r}")


def make_ard_regression(n, d, n_relevant=10, noise=0.1, seed=0, n_test=10000, *, rho=0.0):
    """
    X ~ N(0, 1) (n × d); the first ``n_relevant`` weights ~ N(0, 1), the others 0;
    y = Xw + ε, ε ~ N(0, ``noise``) (a variance: the seed's test MSE ≈ 0.102 suggests 0.1).
    A test set of ``n_test`` rows comes from the same distribution. ``rho`` ≠ 0 correlates neighbouring
    features, corr(x_i, x_j) = ρ^|i−j| (the relevant features with each other and with the first
    irrelevant ones); ``rho=0`` draws exactly the seed's data.

    :returns: ``(X, y, X_test, y_test, w)``.
    """
    _check(n, d, n_relevant, n_test)
    _check_rho(rho)
    if not noise >= 0:
        raise ValueError(f"noise must be a variance >= 0; got {noise!r}")
    rng = np.random.default_rng(seed)
    w = np.zeros(d)
    w[:n_relevant] = rng.normal(size=n_relevant)
    X, X_test = _correlate(rng.normal(size=(n, d)), rho), _correlate(rng.normal(size=(n_test, d)), rho)
    y = X @ w + np.sqrt(noise) * rng.normal(size=n)
    y_test = X_test @ w + np.sqrt(noise) * rng.normal(size=n_test)
    return X, y, X_test, y_test, w


def _dense_design(rng, rows, d, n_relevant, low, high, rho):
    """Rows of AR(1) columns, and weights: ``n_relevant`` chosen at random, of size uniform in
    [``low``, ``high``] with a random sign (the draws of the dense generators, in this order)."""
    X = _correlate(rng.standard_normal((rows, d)), rho)
    w = np.zeros(d)
    relevant = rng.choice(d, n_relevant, replace=False)
    w[relevant] = rng.uniform(low, high, n_relevant) * rng.choice([-1, 1], n_relevant)
    return X, w, relevant


def make_dense_regression(n, d, n_relevant, *, low, high, noise_sd, rho=0.0, seed=0, n_test=2000):
    """
    Regression data with many relevant features (a dense truth) where the evidence rule's search was
    measured (``benchmarks/evidence_dense.py``): X ~ N(0, 1) (n + ``n_test`` rows, AR(1)-correlated as
    :func:`make_ard_regression`'s for ``rho`` ≠ 0); ``n_relevant`` features chosen at random with weights
    of size uniform in [``low``, ``high``] and a random sign; y = Xw + ε, ε ~ N(0, ``noise_sd``²) (a
    standard deviation, unlike :func:`make_ard_regression`'s variance).

    :returns: ``(X, y, X_test, truth_test, relevant)``: the test rows' noiseless targets Xw and the
        relevant features' indices.
    """
    _check(n, d, n_relevant, n_test)
    _check_rho(rho)
    if not noise_sd >= 0:
        raise ValueError(f"noise_sd must be a standard deviation >= 0; got {noise_sd!r}")
    rng = np.random.default_rng(seed)
    X, w, relevant = _dense_design(rng, n + n_test, d, n_relevant, low, high, rho)
    y = X[:n] @ w + noise_sd * rng.standard_normal(n)
    return X[:n], y, X[n:], X[n:] @ w, relevant


def make_ard_classification(n, d, n_relevant=10, seed=0, n_test=10000, *, rho=0.0):
    """
    X ~ N(0, 1); the first ``n_relevant`` weights ~ N(0, 1), the others 0; labels y ∈ {0, 1} drawn from
    Bernoulli(σ(Xw)). A test set of ``n_test`` rows from the same distribution; ``rho`` as for
    :func:`make_ard_regression`.

    :returns: ``(X, y, X_test, y_test, w)``.
    """
    _check(n, d, n_relevant, n_test)
    _check_rho(rho)
    rng = np.random.default_rng(seed)
    w = np.zeros(d)
    w[:n_relevant] = rng.normal(size=n_relevant)
    X, X_test = _correlate(rng.normal(size=(n, d)), rho), _correlate(rng.normal(size=(n_test, d)), rho)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ w))).astype(np.int64)
    y_test = (rng.random(n_test) < 1.0 / (1.0 + np.exp(-X_test @ w))).astype(np.int64)
    return X, y, X_test, y_test, w


def make_dense_classification(n, d, n_relevant, *, low, high, rho=0.0, seed=0, n_test=5000):
    """
    Binary labels with many relevant features (a dense truth), where the classifier's evidence rule was
    measured (``benchmarks/evidence_dense_classifier.py``): X ~ N(0, 1) (n + ``n_test`` rows,
    AR(1)-correlated as :func:`make_ard_regression`'s for ``rho`` ≠ 0); ``n_relevant`` features chosen
    at random with weights of size uniform in [``low``, ``high``] and a random sign; y ∈ {0, 1} drawn
    from Bernoulli(σ(Xw)).

    :returns: ``(X, y, X_test, y_test, relevant)``: the relevant features' indices last.
    """
    _check(n, d, n_relevant, n_test)
    _check_rho(rho)
    if not 0 <= low <= high:
        raise ValueError(f"low and high must satisfy 0 <= low <= high; got {low!r}, {high!r}")
    rng = np.random.default_rng(seed)
    X, w, relevant = _dense_design(rng, n + n_test, d, n_relevant, low, high, rho)
    y = (rng.random(n + n_test) < 1.0 / (1.0 + np.exp(-X @ w))).astype(np.int64)
    return X[:n], y[:n], X[n:], y[n:], relevant
