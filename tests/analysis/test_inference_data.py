import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pyro
import pytest
import torch

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, local_reparameterization
from pyro_vd.analysis import import_arviz, relevance, to_inference_data
from pyro_vd.experiments.ard_data import make_ard_regression
from pyro_vd.linear import RVR, VDClassifier, VDRegression
from pyro_vd.models import LinearRegression

az = import_arviz()
NAMES = [f"f{i}" for i in range(8)]


def _loo(idata):
    # with a few dozen draws PSIS warns about its Pareto k; the test is that loo runs and is finite
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
        return az.loo(idata)


@pytest.fixture(scope="module")
def fitted():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    X, y, *_ = make_ard_regression(300, 8, 3, seed=0)
    x, t = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    model = LinearRegression(8, num_data=300)
    guide = AutoVariationalDropout(model)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    with local_reparameterization():
        for _ in range(600):
            svi.step(x, t)
    return model, guide, x, t, X, y


def test_pyro_model_to_inference_data(fitted):
    model, guide, x, t, *_ = fitted
    idata = to_inference_data(model, guide, x, t, num_samples=50, feature_names=NAMES)
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data", "variational"):
        assert group in idata.groups()
    weight = idata.posterior["net.weight"]
    assert weight.dims == ("chain", "draw", "output", "feature")
    assert list(weight.coords["feature"].values) == NAMES
    assert idata.log_likelihood["obs"].shape == (1, 50, 300)
    np.testing.assert_allclose(idata.observed_data["obs"].values, t.numpy())
    assert idata.variational["net.weight.log_alpha"].dims == ("output", "feature")
    # ArviZ's tools work on it
    summary = az.summary(idata, var_names=["net.weight"], kind="stats")
    assert len(summary) == 8
    loo = _loo(idata)
    assert np.isfinite(loo.elpd_loo)
    az.plot_forest(idata, var_names=["net.weight"])
    az.plot_posterior(idata, var_names=["net.weight"], coords={"feature": ["f0", "f1"]})
    plt.close("all")


def test_relevance_from_guide_and_from_inference_data_agree(fitted):
    model, guide, x, t, *_ = fitted
    table = relevance(guide, feature_names=NAMES)
    assert list(table.columns) == ["theta", "log_alpha", "snr", "relevant"]
    assert table["relevant"].iloc[:3].all()  # the 3 relevant features of the generator
    idata = to_inference_data(model, guide, x, t, num_samples=5, feature_names=NAMES)
    again = relevance(idata, feature_names=NAMES)
    np.testing.assert_allclose(again["log_alpha"], table["log_alpha"], rtol=1e-6)


@pytest.mark.parametrize("estimator", [VDRegression, RVR], ids=lambda e: e.__name__)
def test_estimator_to_inference_data(fitted, estimator):
    *_, X, y = fitted
    fit = estimator().fit(X, y)
    idata = to_inference_data(fit, X=X, y=y, num_samples=100, feature_names=NAMES)
    assert idata.posterior["coef"].shape == (1, 100, 8)
    assert np.isfinite(_loo(idata).elpd_loo)
    table = relevance(fit, feature_names=NAMES)
    np.testing.assert_array_equal(table["relevant"].values, fit.relevance_)
    assert set(table["snr"].nlargest(3).index) == {"f0", "f1", "f2"}  # the generator's relevant ones
    assert len(az.summary(idata, var_names=["coef"], kind="stats")) == 8
    # draws agree with the fitted coefficients
    mean = idata.posterior["coef"].mean(("chain", "draw")).values
    assert np.abs(mean - fit.coef_).max() < 0.05


def test_classifier_to_inference_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = (X[:, 0] + 0.3 * rng.standard_normal(200) > 0).astype(int)
    fit = VDClassifier().fit(X, y)
    idata = to_inference_data(fit, X=X, y=y, num_samples=40)
    assert set(np.unique(idata.posterior_predictive["y"].values)) <= {0, 1}
    assert (idata.log_likelihood["y"].values <= 0).all()


def test_bad_input():
    with pytest.raises(TypeError, match="not fitted"):
        to_inference_data(VDRegression(), X=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(ValueError, match="num_samples"):
        to_inference_data(VDRegression(), num_samples=0)
    with pytest.raises(TypeError, match="relevance"):
        relevance(object())


def _batchnorm_model():
    from torch import nn

    from pyro_vd import bayesianize

    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 2))
    return bayesianize(net, num_data=64)


def test_pyro_model_is_analysed_in_eval_mode_and_its_mode_restored():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = _batchnorm_model()
    guide = AutoVariationalDropout(model)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), VariationalDropoutELBO())
    for _ in range(5):
        svi.step(x, y)
    batchnorm = model.net[1]
    before = batchnorm.running_mean.clone(), batchnorm.num_batches_tracked.clone()
    model.train()  # a caller's own mix of modes: BatchNorm training, dropout not
    model.net[3].eval()
    modes = [m.training for m in model.modules()]
    idata = to_inference_data(model, guide, 5 * torch.randn(32, 4), y[:32], num_samples=4)
    assert torch.equal(batchnorm.running_mean, before[0])  # eval data did not overwrite the statistics
    assert torch.equal(batchnorm.num_batches_tracked, before[1])
    assert [m.training for m in model.modules()] == modes
    # eval mode: dropout off, so two draws with the same weights give the same outputs
    assert idata.posterior_predictive["obs"].shape == (1, 4, 32)


def test_random_subsampling_model_is_refused():
    from pyro_vd import LogUniform, deterministic

    def model(x, y=None):
        w = pyro.sample("w", LogUniform(event_shape=(3,)))
        with pyro.plate("data", len(x), subsample_size=10) as rows:
            obs = None if y is None else y[rows]
            pyro.sample("obs", pyro.distributions.Normal(x[rows] @ w, 1.0), obs=obs)
            return x[rows] @ w

    x, y = torch.randn(40, 3), torch.randn(40)
    guide = AutoVariationalDropout(model)
    guide(x, y)
    with pytest.raises(ValueError, match=r"plate 'data' draws a random subsample \(10 of 40 rows\)"):
        to_inference_data(model, guide, x, y, num_samples=3)
    with pytest.raises(ValueError, match="random subsample"):
        deterministic(model, guide)(x)
