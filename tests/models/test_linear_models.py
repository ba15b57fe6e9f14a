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


def _svi(model, X, y, epochs=300, batch=200):
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
    # the linear models hold log α for 500 steps and average their iterates
    assert guide.hold_log_alpha == 500 and guide.trained_steps == epochs * (N // batch)
    assert guide.apply_average() == epochs * (N // batch)
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
    # the learned noise scale estimates VDRegression's noise precision (within 3 % after 3000 steps on
    # 20 000 rows: benchmarks/svi_agreement.py)
    assert abs(float(pyro.param("noise_scale").detach()) * exact.noise_precision_**0.5 - 1) < 0.1


def test_logistic_regression_svi_agrees_with_vd_classifier():
    rng, X, w = _data(1)
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ w))).astype(float)
    exact = VDClassifier().fit(X, y)
    theta, log_alpha = _svi(LogisticRegression(D, num_data=N), X, y)
    found = agreement(theta, log_alpha, exact, truth=w)
    assert found["theta_error_true"] < 0.05
    assert (log_alpha[:RELEVANT] <= 3).all() and exact.relevance_[:RELEVANT].all()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_svi_finds_the_exact_solvers_relevant_set(task, seed):
    """Issue 11 item 1: the features SVI keeps, under the exact estimator's own rule (the evidence rule,
    τ(d), applied to SVI's α too), are the ones VDRegression / VDClassifier keep."""
    rng, X, w = _data(seed + 2)
    if task == "regression":
        y = X @ w + np.sqrt(0.1) * rng.normal(size=N)
        exact, model = VDRegression().fit(X, y), LinearRegression(D, num_data=N)
    else:
        y = (rng.random(N) < 1 / (1 + np.exp(-X @ w))).astype(float)
        exact = VDClassifier(solver="newton", threshold="evidence").fit(X, y)
        model = LogisticRegression(D, num_data=N)
    theta, log_alpha = _svi(model, X, y)
    found = agreement(theta, log_alpha, exact, truth=w)
    assert found["symmetric_difference"] == 0
    assert exact.relevance_.reshape(-1)[:RELEVANT].all() and (log_alpha[:RELEVANT] <= exact.threshold_).all()
    assert found["theta_error"] < 0.05


def test_train_time_pruning_at_the_bound_reaches_the_exact_searchs_theta():
    """The plain ELBO keeps a feature just past τ(d) at a finite α that still carries weight, while the
    exact solvers' search removes it and fits the others without it: on correlated columns the kept
    features' θ then differed by about 6 % (ρ = 0.6, seeds 0 and 1, the linear models' defaults). With
    train-time pruning at τ(d) (``train_prune``, by the averaged log α) SVI reaches the search's θ:
    measured 0.24–0.49 % on seeds 0, 1 and 3 (1.9–6.1 % without). Its limit, seed 2: a feature 0.27
    inside τ(d) that the search's exact refit removes stays in SVI, and its neighbour's θ is then 14 %
    off (3 % without the pruning, where a second near-threshold feature kept some weight and made up
    for it)."""
    from pyro_vd.experiments.ard import exact_vd, svi_linear
    from pyro_vd.experiments.ard_data import make_ard_classification
    from pyro_vd.linear.relevance import evidence_log_alpha_threshold

    X, y, _, _, w = make_ard_classification(2000, 20, 5, seed=0, n_test=1, rho=0.6)
    exact = exact_vd("classification", X, y)
    prune = {"train_prune": evidence_log_alpha_threshold(20)}
    theta, log_alpha, _, _ = svi_linear(
        X, y, classification=True, batch_size=200, steps=3000, guide_kwargs=prune
    )
    found = agreement(theta, log_alpha, exact, truth=w)
    assert found["symmetric_difference"] == 0
    assert found["theta_error"] < 0.02


def _first_batch(scale_y=1.0, offset_y=0.0, offset_x=0.0, n=64):
    torch.manual_seed(0)
    x = torch.randn(n, 5)
    x[:, 3] += offset_x
    y = (x[:, 0] - 2.0 * x[:, 1] + 0.3 * torch.randn(n)) * scale_y + offset_y
    return x, y


@pytest.mark.parametrize(
    ("case", "kwargs", "named"),
    [
        ("y x 100", {"scale_y": 100.0}, "y has mean"),
        ("an intercept of 10", {"offset_y": 10.0}, "y has mean"),
        ("a column + 100", {"offset_x": 100.0}, "column 3 has mean"),
    ],
)
def test_a_first_batch_far_from_standardized_data_is_said(case, kwargs, named):
    """SVI's defaults are set for standardized data: these gave all 20 features relevant (y × 100), five
    irrelevant ones and 10⁵ times the test error (intercept 10), a column standing in for the intercept."""
    from pyro_vd.models import StandardizationWarning

    x, y = _first_batch(**kwargs)
    model = LinearRegression(5, num_data=200)
    guide = AutoVariationalDropout(model)
    with pytest.warns(StandardizationWarning, match=named):
        guide(x, y)
    model(x, y)  # said once per model
    if "y" not in named:  # the classifier checks X
        with pytest.warns(StandardizationWarning, match=named):
            LogisticRegression(5, num_data=200)(x, (y > 0).float())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rho", [0.0, 0.6, 0.8])
def test_the_data_the_defaults_were_measured_on_are_not_warned_about(seed, rho):
    from pyro_vd.experiments.ard_data import make_ard_classification, make_ard_regression

    pairs = ((make_ard_regression, LinearRegression), (make_ard_classification, LogisticRegression))
    for make, model in pairs:
        X, y, *_ = make(2000, 100, 10, seed=seed, rho=rho)
        fitted = model(100, num_data=2000)
        for start in range(0, 80, 20):  # 20-row batches (0.1 % of 20 000 rows): judged on 64 rows
            rows = slice(start, start + 20)
            x, t = torch.tensor(X[rows], dtype=torch.float32), torch.tensor(y[rows], dtype=torch.float32)
            fitted(x, t)  # warnings are errors in the tests
        assert fitted.__dict__["_standardization"] == "checked"


def test_standardization_is_judged_on_the_first_64_rows_and_spares_indicator_columns():
    from pyro_vd.models import StandardizationWarning, check_standardized

    torch.manual_seed(1)
    model = LinearRegression(20, num_data=1000)
    for _ in range(40):  # 2-row batches of standardized data: judged together (alone they fall outside)
        x = torch.randn(2, 20)
        model(x, x[:, 0])
    x = torch.randn(8, 20)
    x[:, 3] += 100.0
    model(x, x[:, 0])  # (judged already: once per model)
    fresh = LinearRegression(20, num_data=1000)
    with pytest.warns(StandardizationWarning, match="the 64 first training rows are far.*column 3"):
        for _ in range(8):  # 8-row batches: the eighth completes the 64 rows
            x = torch.randn(8, 20)
            x[:, 3] += 100.0
            fresh(x, x[:, 0])
    # 0/1 columns (one-hot codes, rare or common indicators) are standard as they are
    codes = torch.nn.functional.one_hot(torch.randint(0, 100, (256,)), 100).double()
    common = (torch.rand(256, 1) < 0.95).double()
    assert check_standardized(model, torch.cat([codes, common, torch.randn(256, 3)], 1)) is None
    # a column constant far from 0 is judged
    with pytest.warns(StandardizationWarning, match="column 0 has mean 100 and standard deviation 0"):
        check_standardized(model, torch.cat([torch.full((16, 1), 100.0), torch.randn(16, 2)], 1))


def test_the_linear_models_name_bad_sizes_and_a_changed_column_count():
    """LinearRegression(-2) and (3.0) were torch's errors; a batch of 4 columns after 3-column ones,
    within the first 64 rows, a raw size mismatch from the standardization check's sums."""
    import pytest

    from pyro_vd.models import LinearRegression, LogisticRegression

    for make in (LinearRegression, LogisticRegression):
        for bad in (-2, 0, 3.0, True):
            with pytest.raises(ValueError, match="n_features must be a positive integer"):
                make(bad)
    with pytest.raises(ValueError, match="noise_scale must be a positive finite number"):
        LinearRegression(3, noise_scale=float("inf"))
    model = LinearRegression(3, num_data=100)
    model(torch.randn(10, 3), torch.randn(10))
    with pytest.raises(ValueError, match=r"x of shape \(10, 4\) does not fit the network"):
        model(torch.randn(10, 4), torch.randn(10))
