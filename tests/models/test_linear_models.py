"""The Pyro linear models, trained by SVI in minibatches, agree with the exact estimators."""

import numpy as np
import pyro
import pytest
import torch

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO
from pyro_vd.experiments.ard import agreement
from pyro_vd.linear import VDClassifier, VDRegression
from pyro_vd.models import LinearRegression, LogisticRegression
from pyro_vd.poutine import local_reparameterization

N, D, RELEVANT = 2000, 20, 5


def _data(seed=0):
    rng = np.random.default_rng(seed)
    w = np.zeros(D)
    w[:RELEVANT] = rng.choice([-1, 1], RELEVANT) * (1 + rng.random(RELEVANT))
    X = rng.normal(size=(N, D))
    return rng, X, w


def _svi(model, X, y, epochs=100, batch=200):
    """What a user gets by default: the guide's defaults (the model's recommendation), Adam(1e-2)."""
    pyro.set_rng_seed(0)
    guide = AutoVariationalDropout(model)
    svi = pyro.infer.SVI(
        model, guide, pyro.optim.Adam({"lr": 1e-2}), VariationalDropoutELBO(kl_method="exact")
    )
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    with local_reparameterization():
        for _ in range(epochs):
            order = torch.randperm(N)
            for start in range(0, N, batch):
                index = order[start : start + batch]  # pyro.plate in the model scales by N / batch
                svi.step(X[index], y[index])
    return guide.get_theta("net.weight")[0].numpy(), guide.get_log_alpha("net.weight")[0].numpy()


def test_linear_regression_svi_agrees_with_vd_regression():
    rng, X, w = _data(0)
    y = X @ w + np.sqrt(0.1) * rng.normal(size=N)
    exact = VDRegression().fit(X, y)
    model = LinearRegression(D, num_data=N)
    theta, log_alpha = _svi(model, X, y)
    found = agreement(theta, log_alpha, exact, truth=w)
    assert found["theta_error_true"] < 0.05
    assert np.abs(theta - exact.coef_).max() < 0.03
    assert (log_alpha[:RELEVANT] <= 3).all() and exact.relevance_[:RELEVANT].all()
    # the learned noise scale estimates VDRegression's noise precision (still 40 % high after these 1000
    # steps, within 3 % after 3000 on 20 000 rows: benchmarks/svi_agreement.py)
    assert abs(float(pyro.param("noise_scale").detach()) * exact.noise_precision_**0.5 - 1) < 0.5


def test_logistic_regression_svi_agrees_with_vd_classifier():
    rng, X, w = _data(1)
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ w))).astype(float)
    exact = VDClassifier().fit(X, y)
    theta, log_alpha = _svi(LogisticRegression(D, num_data=N), X, y)
    found = agreement(theta, log_alpha, exact, truth=w)
    assert found["theta_error_true"] < 0.05  # measured 0.046 after 1000 steps: still converging
    assert (log_alpha[:RELEVANT] <= 3).all() and exact.relevance_[:RELEVANT].all()


@pytest.mark.xfail(
    strict=True,
    reason="issue 11 item 1 not met yet: with Adam(1e-2) the irrelevant features' log α climbs from its "
    "start (3) by only ~0.3 per 1000 steps (minibatch noise in the residual correlation dominates "
    "its gradient), so after 1000 steps some sit just below 3 (measured: 2.92; exact: α = ∞)",
)
def test_linear_regression_svi_finds_vd_regressions_relevant_set():
    rng, X, w = _data(0)
    y = X @ w + np.sqrt(0.1) * rng.normal(size=N)
    exact = VDRegression().fit(X, y)
    theta, log_alpha = _svi(LinearRegression(D, num_data=N), X, y)
    assert agreement(theta, log_alpha, exact, truth=w)["symmetric_difference"] == 0
