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
from pyro_vd.linear import RVC, RVR, GKLClassifier, GKLRegression, VDClassifier, VDRegression
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
    assert list(relevance(idata).index) == NAMES  # (they were x0, x1, … there and in plot_coefficients)
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


def _three_classes(n=240, d=5, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    scores = X[:, :2] @ np.array([[3.0, 0.0, -3.0], [0.0, 3.0, -3.0]]) + 0.5 * rng.standard_normal((n, 3))
    return X, np.array(["ant", "bee", "cat"])[np.argmax(scores, 1)]


@pytest.fixture(scope="module")
def three_class_fits():
    X, y = _three_classes()
    small = {"RVC": RVC(), "GKLClassifier": GKLClassifier()}  # both fast now
    return X, y, {"VDClassifier": VDClassifier().fit(X, y), **{k: e.fit(X, y) for k, e in small.items()}}


@pytest.mark.parametrize("name", ["VDClassifier", "RVC", "GKLClassifier"])
def test_multiclass_relevance_has_a_row_per_class_and_feature(three_class_fits, name):
    *_, fits = three_class_fits
    fit = fits[name]
    table = relevance(fit, feature_names=NAMES[:5])
    assert table.index.names == ["class", "feature"] and len(table) == 3 * 5
    for k, label in enumerate(["ant", "bee", "cat"]):
        rows = table.xs(label, level="class")
        assert list(rows.index) == NAMES[:5]
        np.testing.assert_array_equal(rows["theta"].values, fit.coef_[k])  # each class's own θ
        if name == "VDClassifier":
            np.testing.assert_array_equal(rows["log_alpha"].values, fit.log_alpha_[k])
            np.testing.assert_array_equal(rows["relevant"].values, fit.log_alpha_[k] <= fit.threshold_)
        else:
            np.testing.assert_array_equal(rows["alpha"].values, fit.alpha_[k])
            np.testing.assert_array_equal(rows["relevant"].values, fit.alpha_[k] < fit.alpha_bound)
    union = table.groupby(level="feature", sort=False)["relevant"].any()
    np.testing.assert_array_equal(union.values, fit.relevance_)
    assert np.isfinite(table["snr"]).all()


@pytest.mark.parametrize("name", ["VDClassifier", "RVC"])
def test_multiclass_to_inference_data(three_class_fits, name):
    X, y, fits = three_class_fits
    fit = fits[name]
    idata = to_inference_data(fit, X=X, y=y, num_samples=60, feature_names=NAMES[:5])
    coef = idata.posterior["coef"]
    assert coef.dims == ("chain", "draw", "class", "feature") and coef.shape == (1, 60, 3, 5)
    assert list(coef.coords["class"].values) == ["ant", "bee", "cat"]
    assert idata.variational["theta"].dims == ("class", "feature")
    np.testing.assert_array_equal(idata.variational["theta"].values, fit.coef_)
    assert (coef.std("draw").values[0][fit.coef_ != 0] > 0).all()  # draws from the posterior, not θ alone
    # observed and predicted labels are indices into classes_; the log-likelihood is the normalized
    # one-vs-rest categorical of each draw, the intercept taken at the column means X_offset_
    np.testing.assert_array_equal(idata.observed_data["y"].values, np.searchsorted(fit.classes_, y))
    assert set(np.unique(idata.posterior_predictive["y"].values)) <= {0, 1, 2}
    draw = coef.values[0, 7]
    eta = (X - fit.X_offset_) @ draw.T + fit.intercept_ + fit.coef_ @ fit.X_offset_
    log_sigmoid = -np.logaddexp(0.0, -eta)
    expected = log_sigmoid - np.logaddexp.reduce(log_sigmoid, axis=1, keepdims=True)
    observed = np.searchsorted(fit.classes_, y)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0, 7], expected[np.arange(len(y)), observed])
    assert np.isfinite(_loo(idata).elpd_loo)
    # the table read back from the InferenceData has the same rows
    again = relevance(idata)
    np.testing.assert_array_equal(
        again["theta"].values, relevance(fit, feature_names=NAMES[:5])["theta"].values
    )
    assert again.index.names == ["class", "feature"]


def test_feature_names_of_a_data_frame_flow_into_the_analysis():
    pd = pytest.importorskip("pandas")
    X, y, *_ = make_ard_regression(200, 8, 3, seed=0)
    frame = pd.DataFrame(X, columns=NAMES)
    fit = VDRegression().fit(frame, y)
    assert list(relevance(fit).index) == NAMES
    idata = to_inference_data(fit, X=frame, y=y, num_samples=10)
    assert list(idata.posterior["coef"].coords["feature"].values) == NAMES
    assert list(idata.variational["theta"].coords["feature"].values) == NAMES
    assert list(relevance(idata).index) == NAMES
    with pytest.raises(ValueError, match="same order as they were in fit"):
        to_inference_data(fit, X=frame[NAMES[::-1]], y=y, num_samples=10)
    # an explicit feature_names still wins
    assert list(relevance(fit, feature_names=list("abcdefgh")).index) == list("abcdefgh")
    classes = VDClassifier().fit(frame, (y > 0).astype(int))
    assert list(relevance(classes).index) == NAMES
    idata = to_inference_data(classes, X=frame, y=(y > 0).astype(int), num_samples=10)
    assert list(idata.posterior["coef"].coords["feature"].values) == NAMES


def test_factor_and_deterministic_sites_are_not_data():
    # pyro.factor is a term of the density, pyro.deterministic a function of the draws: neither is an
    # observation, so az.loo sees one log-likelihood
    from pyro_vd import LogUniform

    def model(x, y=None):
        w = pyro.sample("w", LogUniform(event_shape=(3,)))
        pyro.factor("penalty", -0.1 * w.abs().sum())
        mean = pyro.deterministic("mean", x @ w)
        with pyro.plate("data", len(x)):
            pyro.sample("obs", pyro.distributions.Normal(mean, 1.0), obs=y)

    x, y = torch.randn(40, 3), torch.randn(40)
    guide = AutoVariationalDropout(model)
    guide(x, y)
    idata = to_inference_data(model, guide, x, y, num_samples=20)
    assert list(idata.log_likelihood.data_vars) == ["obs"]
    assert list(idata.observed_data.data_vars) == ["obs"]
    assert "mean" in idata.posterior and "penalty" not in idata.posterior
    assert np.isfinite(_loo(idata).elpd_loo)


def test_relevance_of_a_guide_takes_the_evidence_rule():
    from pyro_vd.linear.relevance import evidence_log_alpha_threshold

    pyro.set_rng_seed(0)
    X, y, *_ = make_ard_regression(400, 8, n_relevant=3, seed=0)
    model = LinearRegression(8, num_data=400)
    guide = AutoVariationalDropout(model, hold_log_alpha=0)  # (300 steps: within the default hold)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), VariationalDropoutELBO())
    X, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    for _ in range(300):
        svi.step(X, y)
    log_alpha = guide.get_log_alpha("net.weight").numpy().ravel()
    table = relevance(guide, threshold="evidence")
    assert (table["relevant"].to_numpy() == (log_alpha <= evidence_log_alpha_threshold(8))).all()
    assert (relevance(guide, threshold="sparse_vd")["relevant"].to_numpy() == (log_alpha <= 3)).all()
    # ±inf as sparsity takes them (relevance refused the inf sparsity took): nothing pruned, all pruned
    from pyro_vd.inference import sparsity

    assert (
        relevance(guide, threshold=np.inf)["relevant"].all() and sparsity(guide, threshold=np.inf).kept == 8
    )
    assert not relevance(guide, threshold=-np.inf)["relevant"].any()
    assert sparsity(guide, threshold=-np.inf).kept == 0


@pytest.mark.parametrize("estimator", [VDClassifier, RVC, GKLClassifier])
def test_pointwise_likelihood_does_not_move_with_a_column_shift(estimator):
    """The classifiers take q's intercept at the column means, so a weight draw multiplies x − x̄: the
    ArviZ log predictive density per row must equal the one of predict_proba (within Monte Carlo error
    of 400 draws, measured ≤ 5e-4 here) at any shift of the columns (at +1000 it was −0.697, chance
    level, where predict_proba gives −0.552)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 5))
    y = (X[:, 0] - X[:, 1] + rng.logistic(size=150) > 0).astype(int)
    for shift in (0.0, 1000.0):
        model = estimator().fit(X + shift, y)
        p = model.predict_proba(X + shift)[:, 1]
        expected = np.mean(np.where(y == 1, np.log(p), np.log1p(-p)))
        data = to_inference_data(model, X=X + shift, y=y, num_samples=400, seed=0)
        lppd = np.mean(np.log(np.exp(data.log_likelihood["y"].values).mean((0, 1))))
        assert lppd == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("estimator", [VDRegression, RVR, GKLRegression])
def test_regressors_predictive_spread_does_not_move_with_a_column_shift(estimator):
    """The regressors fit on centred columns, so their intercept sits at the column means: the predictive
    standard deviation and the ArviZ pointwise log-likelihood must not change when the columns are
    shifted (at +30 the standard deviation was 3.3–3.6 where it is 0.98, and the draws' likelihood
    dropped with it)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = 2 * X[:, 0] - X[:, 1] + rng.normal(size=200)
    results = []
    for shift in (0.0, 30.0):
        model = estimator().fit(X + shift, y)
        _, std = model.predict(X + shift, return_std=True)
        data = to_inference_data(model, X=X + shift, y=y, num_samples=400, seed=0)
        results.append((std, data.log_likelihood["y"].values.mean()))
    (std_0, loglik_0), (std_30, loglik_30) = results
    # GKLRegression's own optimizer tolerance moves its fit by ~5e-5 between the two (measured)
    np.testing.assert_allclose(std_30, std_0, rtol=1e-3)
    assert loglik_30 == pytest.approx(loglik_0, abs=1e-3)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
@pytest.mark.parametrize("estimator", [RVR, GKLRegression, RVC], ids=lambda e: e.__name__)
def test_an_ard_estimators_relevance_is_read_in_any_units(estimator, scale):
    """relevance(idata) read the raw α (in the units of X and y) against 1e4: RVR on X·1000 kept none."""
    X, y, *_ = make_ard_regression(200, 6, 2, seed=1)
    if estimator is RVC:
        y = (y > np.median(y)).astype(int)
    fit = estimator().fit(X * scale, y)
    idata = to_inference_data(fit)
    np.testing.assert_array_equal(relevance(idata)["relevant"].to_numpy(), fit.relevance_)
    assert fit.relevance_[:2].all()
    with pytest.raises(ValueError, match="its own rule"):
        relevance(idata, threshold=1e4)


@pytest.mark.parametrize("estimator", [RVC, GKLClassifier], ids=lambda e: e.__name__)
def test_a_multiclass_ard_tables_flags_follow_the_estimators_rule_in_any_units(estimator):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(240, 4))
    y = np.argmax(X[:, :3] @ rng.normal(size=(3, 3)) + 0.3 * rng.normal(size=(240, 3)), axis=1)
    fit = estimator().fit(X * 1000.0, y)
    table = relevance(fit)
    flags = table.groupby(level="feature", sort=False)["relevant"].any()
    np.testing.assert_array_equal(flags, fit.relevance_)
    assert fit.relevance_.any()


def test_a_named_rule_on_a_weight_matrix_reads_its_rows_from_inference_data():
    """relevance(idata, threshold="evidence") flattened the site first: τ(1200) for a 40 × 30 weight."""
    from pyro_vd.models import BayesianMLP

    model = BayesianMLP([30, 40, 3], num_data=100)
    guide = AutoVariationalDropout(model, parameterization="multiplicative", init_log_alpha=-2.3)
    x, y = torch.randn(100, 30), torch.randint(0, 3, (100,))
    guide(x, y)
    idata = to_inference_data(model, guide, x, y, num_samples=2)
    site = "net.fc1.weight"
    for rule in ("evidence", "sparse_vd", -2.0):
        expected = relevance(guide, site, threshold=rule)["relevant"].to_numpy()
        np.testing.assert_array_equal(relevance(idata, site, threshold=rule)["relevant"].to_numpy(), expected)
    assert relevance(guide, site, threshold="evidence")["relevant"].all()  # -2.3 ≤ τ(30) = -1.94


def test_an_estimators_data_by_position_are_its_data():
    """to_inference_data(fit, X, y) read y as X and dropped the likelihood groups without a word."""
    X, y, *_ = make_ard_regression(100, 4, 2, seed=3)
    fit = VDRegression().fit(X, y)
    by_name = to_inference_data(fit, X=X, y=y, num_samples=5)
    by_position = to_inference_data(fit, X, y, num_samples=5)
    assert set(by_position.groups()) == set(by_name.groups()) >= {"log_likelihood", "posterior_predictive"}
    np.testing.assert_array_equal(by_position.log_likelihood["y"], by_name.log_likelihood["y"])
    with pytest.raises(ValueError, match="both X and y"):
        to_inference_data(fit, X)
    with pytest.raises(TypeError, match="by position and by keyword"):
        to_inference_data(fit, X, X=X)
    with pytest.raises(TypeError, match="unexpected"):
        to_inference_data(fit, X=X, y=y, z=1)


def _ard_draw():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 6))
    y = X @ np.array([1.5, -2.0, 0.8, 0, 0, 0]) + 0.5 * rng.standard_normal(300)
    return X, y


@pytest.mark.parametrize("estimator", [RVR, GKLRegression], ids=lambda e: e.__name__)
def test_an_ard_estimators_inference_data_has_its_posteriors_snr(estimator):
    """relevance(idata) of an ARD estimator took SNR = |θ|·√α, the prior's scale (about 1 at the ARD
    optimum: 1.0 against 51 for RVR), so plot_coefficients(idata) drew error bars of about |θ|. It reads
    the posterior's |m| / √Σ_dd now, as relevance(estimator) does; the draws' spread agrees."""
    X, y = _ard_draw()
    fit = estimator().fit(X, y)
    idata = to_inference_data(fit, X, y, num_samples=4000)
    direct, read = relevance(fit), relevance(idata)
    np.testing.assert_allclose(read["snr"], direct["snr"], rtol=1e-12)
    relevant = direct["relevant"].to_numpy()
    assert relevant[:3].all() and read["snr"].to_numpy()[:3].min() > 20
    spread = idata.posterior["coef"].std(("chain", "draw")).values[relevant]
    sd = np.abs(direct["theta"].to_numpy()[relevant]) / direct["snr"].to_numpy()[relevant]
    np.testing.assert_allclose(spread, sd, rtol=0.05)  # 4000 draws: the sd's error is about 1.1 %


def test_a_threshold_for_an_estimator_is_applied_or_refused():
    """VD: log α against the threshold asked for, as for its InferenceData (it was ignored); ARD: refused,
    as for its InferenceData (it was accepted and ignored)."""
    X, y = _ard_draw()
    vd = VDRegression().fit(X, y)
    assert relevance(vd)["relevant"].sum() == 3
    assert relevance(vd, threshold=-20.0)["relevant"].sum() == 0
    assert relevance(to_inference_data(vd), threshold=-20.0)["relevant"].sum() == 0
    with pytest.raises(ValueError, match="alpha_bound"):
        relevance(RVR().fit(X, y), threshold=5.0)


def _trained(model, steps, *args, guide_kwargs=None):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoVariationalDropout(model, **(guide_kwargs or {}))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    for _ in range(steps):
        svi.step(*args)
    return guide


def test_a_convolutions_evidence_rule_from_inference_data_reads_a_kernels_row():
    """Conv2d(1, 4, 3): d = 1·3·3 = 9, as the guide's own rule reads it (from InferenceData it took the
    kernel width, τ(3), and flagged 7 weights where the guide flagged 6)."""
    from pyro_vd import bayesianize

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 3)
    )
    x, t = torch.randn(32, 1, 6, 6), torch.randint(0, 3, (32,))
    model = bayesianize(net, num_data=32)
    guide = _trained(model, 20, x, t)
    idata = to_inference_data(model, guide, x, t, num_samples=3)
    for threshold in ("evidence", None, 0.0):
        direct = relevance(guide, "net.0.weight", threshold=threshold)["relevant"].to_numpy()
        read = relevance(idata, "net.0.weight", threshold=threshold)["relevant"].to_numpy()
        assert (direct == read).all()
    with pytest.raises(ValueError, match="'nope' is not a weight site"):
        relevance(idata, "nope")


def _vector_model(X, y=None):
    import pyro.distributions as dist

    from pyro_vd import LogUniform

    w = pyro.sample("w", LogUniform(event_shape=(X.shape[1],)))
    with pyro.plate("data", len(X)):
        return pyro.sample("y", dist.Normal(X @ w, 0.5), obs=y)


def test_a_sites_draws_theta_and_log_alpha_share_their_dims():
    """ArviZ named them w_dim_0, w.theta_dim_0 and w.log_alpha_dim_0, so |θ|·exp(log α / 2) or the draws'
    mean − θ broadcast to 8 × 8 tables; they are on one dim now."""
    X = torch.randn(200, 8)
    y = X[:, :2] @ torch.tensor([2.0, -1.0]) + 0.5 * torch.randn(200)
    guide = _trained(_vector_model, 50, X, y)
    idata = to_inference_data(_vector_model, guide, X, y, num_samples=20)
    variational = idata["variational"]
    sd = abs(variational["w.theta"]) * np.exp(0.5 * variational["w.log_alpha"])
    assert sd.shape == (8,)
    assert (idata.posterior["w"].mean(("chain", "draw")) - variational["w.theta"]).shape == (8,)


def _small_linear(steps=30):
    X, y, *_ = make_ard_regression(200, 4, n_relevant=2, seed=0)
    X, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    model = LinearRegression(4, num_data=200)
    return model, _trained(model, steps, X, y, guide_kwargs={"hold_log_alpha": 0}), X, y


def test_to_inference_data_leaves_numpys_and_pythons_generators_alone():
    import random

    model, guide, x, t = _small_linear()
    np.random.seed(123)  # noqa: NPY002 (the global generators are the point)
    random.seed(123)
    expected = [(np.random.rand(), random.random()) for _ in range(3)]  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    drawn = []
    for _ in range(3):  # (before: seed 0's first draws after every call)
        to_inference_data(model, guide, x, t, num_samples=2)
        drawn.append((np.random.rand(), random.random()))  # noqa: NPY002
    assert drawn == expected


def _noise_model(X, y=None):
    import pyro.distributions as dist

    from pyro_vd import LogUniform

    w = pyro.sample("w", LogUniform(event_shape=(X.shape[1],)))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(X)):
        return pyro.sample("y", dist.Normal(X @ w, sigma), obs=y)


def test_a_latent_the_guide_does_not_draw_is_refused_and_the_whole_guide_list_works():
    """guide[0] of an AutoGuideList drew σ from its LogNormal prior at every draw (mean pointwise
    log-likelihood −1.91 where σ at its guide's value gives −0.72); the whole list was a raw
    AttributeError. Now the part is refused and the list gives θ and log α of its VD part."""
    from pyro.infer.autoguide import AutoDelta, AutoGuideList

    X = torch.randn(200, 4)
    y = X[:, 0] - X[:, 1] + 0.3 * torch.randn(200)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoGuideList(_noise_model)
    guide.append(AutoVariationalDropout(pyro.poutine.block(_noise_model, hide=["sigma"])))
    guide.append(AutoDelta(pyro.poutine.block(_noise_model, expose=["sigma"])))
    svi = pyro.infer.SVI(_noise_model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    for _ in range(300):
        svi.step(X, y)
    with pytest.raises(ValueError, match=r"latent sites \['sigma'\] that the guide does not draw"):
        to_inference_data(_noise_model, guide[0], X, y, num_samples=5)
    sigma = float(guide[1].median()["sigma"])
    with pyro.poutine.condition(data={"sigma": torch.tensor(sigma)}):  # fixed around the call: taken
        fixed = to_inference_data(_noise_model, guide[0], X, y, num_samples=5)
    assert np.isfinite(fixed.log_likelihood["y"].values).all()
    # fixed as the refusal advises: σ stays fixed in the predictive (uncondition drew it from its prior at
    # every draw: mean 1.65 for σ = 0.49, and y's predictive noise sd 2.6)
    wrapped = pyro.poutine.condition(_noise_model, data={"sigma": torch.tensor(sigma)})
    held = to_inference_data(wrapped, guide[0], X, y, num_samples=50)
    assert np.allclose(held.posterior_predictive["sigma"].values, sigma)
    noise = held.posterior_predictive["y"].values[0] - held.posterior["w"].values[0] @ X.numpy().T
    assert abs(noise.std() / sigma - 1) < 0.05  # 10 000 draws: the sd's own error is about 0.7 %
    idata = to_inference_data(_noise_model, guide, X, y, num_samples=50)
    assert np.allclose(idata.posterior["sigma"].values, sigma)
    assert set(idata["variational"].data_vars) == {"w.theta", "w.log_alpha"}
    assert relevance(idata)["relevant"].to_numpy()[:2].all()


def test_a_multi_output_target_is_scored_per_row():
    """A bayesianized nn.Linear(3, 2) with a Normal likelihood: y is (n, 2) under .to_event(1) in the data
    plate. Pyro scores a row as one observation; the pointwise log-likelihood was per element (120 points
    for 60 rows), and a lone nn.Linear(3, 2) failed on its output coordinate."""
    from pyro_vd import bayesianize

    x = torch.randn(60, 3)
    t = torch.stack([x[:, 0], -x[:, 1]], 1) + 0.1 * torch.randn(60, 2)
    for net in (torch.nn.Sequential(torch.nn.Linear(3, 2)), torch.nn.Linear(3, 2)):
        model = bayesianize(net, num_data=60, likelihood="normal")
        guide = _trained(model, 30, x, t)
        idata = to_inference_data(model, guide, x, t, num_samples=10)
        assert idata.log_likelihood["obs"].shape == (1, 10, 60)
    assert idata["variational"]["net.weight.theta"].dims == ("output", "feature")
    # per element, the observed value's shape (what az.loo_pit needs), summing to the rows' values
    element = to_inference_data(model, guide, x, t, num_samples=10, pointwise="element")
    assert element.log_likelihood["obs"].shape == (1, 10, 60, 2)
    np.testing.assert_allclose(
        element.log_likelihood["obs"].values.sum(-1), idata.log_likelihood["obs"].values, rtol=1e-5
    )
    # a masked row (.mask() over .to_event(1)) counts 0 in every element
    import pyro.distributions as dist

    from pyro_vd import LogUniform

    keep = torch.arange(60) % 3 > 0

    def masked(x, y=None):
        w = pyro.sample("w", LogUniform(event_shape=(3, 2)))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(x @ w, 0.5).to_event(1).mask(keep), obs=y)

    masked_guide = _trained(masked, 5, x, t)
    rows = to_inference_data(masked, masked_guide, x, t, num_samples=3).log_likelihood["obs"].values
    elements = to_inference_data(masked, masked_guide, x, t, num_samples=3, pointwise="element")
    elements = elements.log_likelihood["obs"].values
    assert elements.shape == (1, 3, 60, 2) and (elements[:, :, ~keep.numpy()] == 0).all()
    np.testing.assert_allclose(elements.sum(-1), rows, rtol=1e-5)
    with pytest.raises(ValueError, match="pointwise must be 'row' or 'element'"):
        to_inference_data(model, guide, x, t, pointwise="rows")


def test_to_inference_data_under_local_reparameterization_draws_weights():
    """Called inside the training loop's local_reparameterization(), it failed ("a layer applied
    twice"): its draws are whole weights from q, whatever handler is around it."""
    model, guide, x, t = _small_linear()
    outside = to_inference_data(model, guide, x, t, num_samples=5, seed=3)
    with local_reparameterization():
        inside = to_inference_data(model, guide, x, t, num_samples=5, seed=3)
    np.testing.assert_array_equal(
        inside.posterior["net.weight"].values, outside.posterior["net.weight"].values
    )


def test_nan_log_alpha_is_refused_not_read_as_irrelevant():
    """A diverged run's NaN log α read as "not relevant" (log α ≤ bound is False), without a word."""
    model, guide, x, t = _small_linear()
    store = pyro.get_param_store()
    with torch.no_grad():
        for name in [k for k in store.keys() if "log_alpha" in k]:
            store[name].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="are NaN"):
        relevance(guide)
    with pytest.raises(ValueError, match="are NaN"):
        relevance(to_inference_data(model, guide, x, t, num_samples=2))


def test_relevance_during_the_hold_warns():
    X, y, *_ = make_ard_regression(200, 4, n_relevant=2, seed=0)
    X, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    guide = _trained(LinearRegression(4, num_data=200), 5, X, y)
    with pytest.warns(
        UserWarning, match="holds log α at its start for 500 training steps .* has taken 5"
    ) as w:
        relevance(guide)
    assert w[0].filename == __file__


def test_an_estimators_y_is_checked():
    X, y = _ard_draw()
    fit = VDRegression().fit(X, y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        to_inference_data(fit, X, np.where(np.arange(300) == 4, np.nan, y))
    with pytest.raises(ValueError, match="must be numeric"):  # (as fit says; numeric strings pass both)
        to_inference_data(fit, X, np.array(["a"] * 300))
    assert "y" in to_inference_data(fit, X, y.astype(object), num_samples=3).log_likelihood  # as fit takes
    with pytest.raises(ValueError, match="Complex data not supported"):  # (its real part was taken)
        to_inference_data(fit, X, y + 1j)
    assert to_inference_data(fit, num_samples=np.int64(3)).posterior["coef"].shape == (1, 3, 6)


def test_a_multiclass_vd_classifiers_class_flags_are_what_its_fit_keeps():
    """The evidence rule selects inside the fit: a feature a class's fit keeps is relevant for that class,
    also where its log α ended a hair above τ(d) (here −1.503 against −1.504: before, the class's row said
    not relevant while ``relevance_`` said relevant)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((150, 10))
    W = rng.standard_normal((3, 10)) * (rng.random((3, 10)) < 0.3) * 0.6
    y = np.argmax(X @ W.T + rng.gumbel(size=(150, 3)), 1)
    fit = VDClassifier().fit(X, y)
    kept = np.isfinite(fit.log_alpha_)
    assert (kept & (fit.log_alpha_ > fit.threshold_)).any()  # the case this test is about
    table = relevance(fit)
    assert (table["relevant"].to_numpy().reshape(3, 10) == kept).all()
    assert (table.groupby(level="feature", sort=False)["relevant"].any().to_numpy() == fit.relevance_).all()


def test_relevance_names_what_it_cannot_read():
    from pyro.infer.autoguide import AutoDelta, AutoGuideList

    with pytest.raises(TypeError, match="VDRegression is not fitted"):
        relevance(VDRegression())
    guide = AutoGuideList(_noise_model)
    guide.append(AutoVariationalDropout(pyro.poutine.block(_noise_model, hide=["sigma"])))
    guide.append(AutoDelta(pyro.poutine.block(_noise_model, expose=["sigma"])))
    with pytest.raises(TypeError, match=r"pass its AutoVariationalDropout part, e.g. guide\[0\]"):
        relevance(guide)


def test_an_enumerated_discrete_latent_is_named_as_such():
    import pyro.distributions as dist

    from pyro_vd import LogUniform

    def mixture(X, y=None):
        w = pyro.sample("w", LogUniform(event_shape=(X.shape[1],)))
        with pyro.plate("data", len(X)):
            z = pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            return pyro.sample("y", dist.Normal(X @ w + 2.0 * z, 0.5), obs=y)

    X, y = torch.randn(30, 3), torch.randn(30)
    pyro.clear_param_store()
    guide = AutoVariationalDropout(pyro.poutine.block(mixture, hide=["z"]))
    guide(X, y)
    with pytest.raises(ValueError, match=r"discrete latent sites \['z'\] that it enumerates"):
        to_inference_data(mixture, guide, X, y, num_samples=2)


@pytest.mark.parametrize("pointwise", ["row", "element"])
def test_rows_masked_by_poutine_mask_score_zero_as_in_pyro(pointwise):
    """poutine.mask was ignored (a masked row scored as any other, and az.loo counted rows the user had
    left out); .mask() on the distribution was not. Both now agree with Pyro's own compute_log_prob."""
    from pyro import poutine

    X = torch.randn(10, 3)
    y = X[:, 0] + 0.1 * torch.randn(10)
    keep = torch.arange(10) < 5
    guide = _trained(_vector_model, 5, X, y)
    masked = poutine.mask(_vector_model, mask=keep)
    idata = to_inference_data(masked, guide, X, y, num_samples=2, pointwise=pointwise)
    scored = torch.as_tensor(idata.log_likelihood["y"].values[0, 0])
    assert torch.all(scored[5:] == 0) and torch.all(scored[:5] != 0)
    draw = torch.as_tensor(idata.posterior["w"].values[0, 0])
    trace = poutine.trace(poutine.condition(masked, data={"w": draw})).get_trace(X, y)
    trace.compute_log_prob()
    torch.testing.assert_close(scored, trace.nodes["y"]["log_prob"].float(), rtol=1e-5, atol=1e-5)


def test_a_guide_kept_from_an_earlier_run_is_refused_not_exported_with_the_other_runs_values():
    """Run A trained, the store cleared, run B trained under the same names: to_inference_data(A's model,
    A's guide) exported B's θ and biases without a word and left A's guide holding them."""
    from pyro_vd.models import BayesianMLP

    X, y = torch.randn(30, 5), torch.randint(0, 2, (30,))

    def run(seed):
        pyro.clear_param_store()
        pyro.set_rng_seed(seed)
        model = BayesianMLP([5, 4, 2], num_data=30)
        guide = AutoVariationalDropout(model)
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.1}), VariationalDropoutELBO())
        for _ in range(5):
            svi.step(X, y)
        return model, guide

    model_a, guide_a = run(0)
    theta_a = guide_a.get_theta("net.fc1.weight")
    run(1)
    with pytest.raises(ValueError, match="param store holds other values"):
        to_inference_data(model_a, guide_a, X, y, num_samples=2)
    pyro.clear_param_store()  # then the guide's own values are what it exports
    idata = to_inference_data(model_a, guide_a, X, y, num_samples=2)
    np.testing.assert_array_equal(idata.variational["net.fc1.weight.theta"].values, theta_a.numpy())


def test_an_estimators_inference_data_reads_a_threshold_as_the_estimator_does():
    """relevance(idata, threshold=...) took τ over every column (10 constant of 30 moved it: seed 35's
    feature 3 at log α −1.92 was relevant by the estimator and not by its InferenceData) and counted a
    feature at the cap (α = ∞, θ = 0) as relevant at a threshold above the cap."""
    rng = np.random.default_rng(35)
    X = rng.normal(size=(200, 30))
    X[:, 20:] = 1.0
    y = 0.5 * X[:, 0] + 0.15 * X[:, 1] + rng.normal(size=200)
    for estimator in (VDRegression(threshold="sparse_vd"), VDRegression(max_log_alpha=5.0)):
        estimator.fit(X, y)
        idata = to_inference_data(estimator)
        for threshold in (None, "evidence", "sparse_vd", 6.0):
            by_estimator = relevance(estimator, threshold=threshold)["relevant"].to_numpy()
            by_idata = relevance(idata, threshold=threshold)["relevant"].to_numpy()
            np.testing.assert_array_equal(by_idata, by_estimator, err_msg=str(threshold))
    assert not by_idata[20:].any()  # the constant columns are out of the model at the cap


def test_arguments_to_inference_data_would_drop_are_refused():
    """coords=/dims= with an estimator and feature_names= on a model that is not linear were dropped
    without a word; seed=None was a raw TypeError from int(); a lone conv layer a raw unpacking error."""
    from pyro_vd import bayesianize

    X, y, *_ = make_ard_regression(100, 4, n_relevant=2, seed=0)
    estimator = VDRegression().fit(X, y)
    with pytest.raises(TypeError, match="coords= and dims= name a Pyro model's sites"):
        to_inference_data(estimator, coords={"feature": list("abcd")})
    for seed in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed must be"):
            to_inference_data(estimator, seed=seed)
    model, guide, x, t = _small_linear(steps=2)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        to_inference_data(model, guide, x, t, num_samples=2, seed=2**32)
    pyro.set_rng_seed(5)
    first = to_inference_data(model, guide, x, t, num_samples=2, seed=None).posterior["net.weight"].values
    second = to_inference_data(model, guide, x, t, num_samples=2, seed=None).posterior["net.weight"].values
    assert not np.array_equal(first, second)  # the global generator moved on
    images, labels = torch.randn(6, 2, 5), torch.randint(0, 3, (6,))
    conv = bayesianize(torch.nn.Sequential(torch.nn.Conv1d(2, 3, 5), torch.nn.Flatten()), num_data=6)
    conv_guide = _trained(conv, 1, images, labels)
    with pytest.raises(ValueError, match="feature_names label the weight of a linear model"):
        to_inference_data(conv, conv_guide, images, labels, num_samples=2, feature_names=["a", "b"])
    assert "net.0.weight" in to_inference_data(conv, conv_guide, images, labels, num_samples=2).posterior


def test_a_test_set_larger_than_the_training_set_is_analysed():
    """num_data is the training set's size, which scales a training batch's likelihood; the pointwise
    log-likelihood of a larger test set reads no scale, and it was refused as a misgiven num_data."""
    model, guide, x, t = _small_linear(steps=2)  # num_data=200
    test_x, test_t = torch.cat([x, x]), torch.cat([t, t])
    idata = to_inference_data(model, guide, test_x, test_t, num_samples=3)
    assert idata.log_likelihood["obs"].shape == (1, 3, 400)
    again = to_inference_data(model, guide, x, t, num_samples=3)  # the same first draw: the same scores
    np.testing.assert_allclose(
        idata.log_likelihood["obs"].values[0, 0, :200], again.log_likelihood["obs"].values[0, 0]
    )
    with pytest.raises(ValueError, match="num_data is 200"):  # training on it is still refused
        pyro.infer.Trace_ELBO().loss(model, guide, test_x, test_t)
    from pyro_vd.poutine import FullDataMessenger

    with pytest.raises(ValueError, match="num_data is 200"), FullDataMessenger("a user's evaluation"):
        pyro.infer.Trace_ELBO().loss(model, guide, test_x, test_t)  # (scaled, as outside it)


def test_the_predictive_holds_what_poutine_condition_fixed_and_redraws_data():
    """Held: a site a poutine.condition supplies and another site reads (a scale fixed at 0.49, whose own
    prior reads the guide's τ, came back with mean 2.02). Drawn afresh: data given by obs= (a covariate
    whose prior reads no latent was frozen at the data by a first rule), and data conditioned that
    nothing reads."""
    import pyro.distributions as dist
    from pyro import poutine
    from pyro.infer.autoguide import AutoGuideList, AutoNormal

    from pyro_vd import LogUniform

    x = 2 * torch.randn(50) + 3
    y = 1.5 * x + 0.5 * torch.randn(50)

    def model(x, y=None):
        tau = pyro.sample("tau", dist.LogNormal(0.0, 0.3))
        s = pyro.sample("s", dist.LogNormal(tau.log(), 1.0))
        w = pyro.sample("w", LogUniform(event_shape=(1,)))
        with pyro.plate("data", 50):
            covariate = pyro.sample("x", dist.Normal(pyro.param("m", torch.tensor(0.0)), 2.0), obs=x)
            return pyro.sample("y", dist.Normal(w * covariate, s), obs=y)

    fixed = poutine.condition(model, data={"s": torch.tensor(0.49), "y": y})  # y as data, by handler
    pyro.clear_param_store()
    guide = AutoGuideList(fixed)
    guide.append(AutoVariationalDropout(poutine.block(fixed, expose=["w"])))
    guide.append(AutoNormal(poutine.block(fixed, hide=["w"])))
    svi = pyro.infer.SVI(fixed, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    for _ in range(20):
        svi.step(x)
    predictive = to_inference_data(fixed, guide, x, num_samples=20).posterior_predictive
    assert np.all(predictive["s"].values == np.float32(0.49))
    assert predictive["x"].values.std(axis=(0, 1)).mean() > 1  # (its prior's sd is 2)
    assert not np.allclose(predictive["y"].values, y.numpy())


def test_a_guide_without_a_vd_part_is_exported():
    """A plain AutoNormal guide: a raw KeyError 'variational' (no VD site, no variational group)."""
    import pyro.distributions as dist
    from pyro.infer.autoguide import AutoNormal

    x = torch.randn(30)
    y = 2 * x + torch.randn(30)

    def model(x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 30):
            pyro.sample("y", dist.Normal(w * x, 1.0), obs=y)

    pyro.clear_param_store()
    guide = AutoNormal(model)
    guide(x, y)
    idata = to_inference_data(model, guide, x, y, num_samples=5)
    assert "variational" not in idata.groups() and idata.posterior["w"].shape == (1, 5)


def test_relevance_refuses_a_string_of_names_and_a_site_an_estimator_lacks():
    X, y, *_ = make_ard_regression(100, 3, n_relevant=2, seed=0)
    estimator = VDRegression().fit(X, y)
    with pytest.raises(TypeError, match="not a string"):  # ("abc" named the features a, b, c)
        relevance(estimator, feature_names="abc")
    with pytest.raises(ValueError, match="site='nope'"):  # (taken without a word)
        relevance(to_inference_data(estimator), site="nope")
