import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, bayesianize, deterministic, sparsity
from pyro_vd.distributions import LogUniform
from pyro_vd.inference import pruned_weights
from pyro_vd.poutine import local_reparameterization


def _trained():
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model = bayesianize(net, num_data=64)
    guide = AutoVariationalDropout(model)
    x = torch.randn(64, 6)
    y = (x[:, :3] @ torch.randn(3, 3)).argmax(-1)  # a learnable signal: some weights are kept
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    with local_reparameterization():
        for _ in range(100):
            svi.step(x, y)
    return model, guide, x


def test_sparsity_report_counts():
    _, guide, _ = _trained()
    report = sparsity(guide, threshold=3.0)
    for name in guide.site_names:
        log_alpha = guide.get_log_alpha(name)
        assert report.layers[name].kept == int((log_alpha <= 3.0).sum())
        assert report.layers[name].total == log_alpha.numel()
    assert report.compression == report.total / report.kept
    assert "compression" in str(report) and report.to_dict()["kept"] == report.kept


def test_deterministic_is_plain_torch_and_matches_the_conditioned_model():
    model, guide, x = _trained()
    net = deterministic(model, guide, threshold=3.0)
    assert type(net) is nn.Sequential and not net.training
    assert all(type(p) is nn.Parameter for p in net.parameters())
    weights = pruned_weights(guide, 3.0)
    with pyro.poutine.block():
        expected = pyro.poutine.condition(model, data=weights)(x)
    assert torch.allclose(net(x), expected, atol=1e-6)
    assert torch.equal(net[1].weight, weights["net.1.weight"])
    assert (net[1].weight == 0).sum() == sparsity(guide).layers["net.1.weight"].total - sparsity(
        guide
    ).layers["net.1.weight"].kept


def test_deterministic_for_a_hand_written_model():
    def model(x):
        w = pyro.sample("w", LogUniform(event_shape=(6,)))
        out = x @ w
        pyro.sample("obs", dist.Normal(out, 1.0), obs=torch.zeros(len(x)))
        return out

    guide = AutoVariationalDropout(model)
    x = torch.randn(4, 6)
    guide(x)
    net = deterministic(model, guide)
    assert torch.allclose(net(x), x @ pruned_weights(guide)["w"])


def test_deterministic_reads_biases_where_the_forward_does():
    # under module_local_params the module holds the bias; a same-named store entry left by an earlier
    # run must not win
    import pyro

    from pyro_vd import AutoVariationalDropout, deterministic
    from pyro_vd.models import BayesianMLP

    pyro.get_param_store()["net.fc1.bias"] = torch.full((3,), 123.0)  # stale
    with pyro.settings.context(module_local_params=True):
        model = BayesianMLP([4, 3, 2], num_data=10)
        guide = AutoVariationalDropout(model)
        x = torch.randn(10, 4)
        guide(x, torch.zeros(10, dtype=torch.long))
        with torch.no_grad():
            model.net.fc1.bias_unconstrained.fill_(0.5)
        net = deterministic(model, guide)
    assert torch.equal(net.fc1.bias, torch.full((3,), 0.5))


def test_every_reader_of_a_linear_models_guide_applies_the_models_rule():
    """A linear model's relevance rule is the evidence rule, log α ≤ τ(d); every reader of its guide —
    relevance (of the guide and of its InferenceData), keep_mask, sparsity, deterministic, LogAlphaDrift,
    the plots — decides by that bound, so none keeps features the others prune (the guide starts at
    τ(d) + 1 < 3, where Sparse VD's 3 would keep every feature, with no hold)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from pyro_vd.analysis import relevance, to_inference_data
    from pyro_vd.inference import LogAlphaDrift, keep_mask, log_alpha_bound
    from pyro_vd.linear.relevance import evidence_log_alpha_threshold
    from pyro_vd.models import LinearRegression
    from pyro_vd.plots import plot_log_alpha_histogram

    g = torch.Generator().manual_seed(0)
    n, d = 400, 20
    x = torch.randn(n, d, generator=g)
    y = 2.0 * x[:, 0] - x[:, 1] + 0.3 * torch.randn(n, generator=g)
    model = LinearRegression(d, num_data=n)
    start = evidence_log_alpha_threshold(d) + 1.0
    guide = AutoVariationalDropout(model, init_log_alpha=start, hold_log_alpha=0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), VariationalDropoutELBO())
    with local_reparameterization():
        for _ in range(300):
            svi.step(x, y)
    guide.apply_average()
    tau = evidence_log_alpha_threshold(d)
    assert log_alpha_bound(guide, "net.weight") == tau
    log_alpha = guide.get_log_alpha("net.weight")[0]
    kept = (log_alpha <= tau).numpy()
    assert kept[:2].all() and kept.sum() < (log_alpha <= 3.0).sum()  # the rules differ here
    np.testing.assert_array_equal(relevance(guide)["relevant"].to_numpy(), kept)
    idata = to_inference_data(model, guide, x, y, num_samples=4)
    np.testing.assert_array_equal(relevance(idata)["relevant"].to_numpy(), kept)
    np.testing.assert_array_equal(keep_mask(guide, "net.weight")[0].numpy(), kept)
    assert sparsity(guide).layers["net.weight"].kept == kept.sum()
    net = deterministic(model, guide)
    weight = next(p for n_, p in net.named_parameters() if n_.endswith("weight"))
    np.testing.assert_array_equal((weight.detach()[0] != 0).numpy(), kept)
    assert LogAlphaDrift(guide).threshold == tau
    assert f"{100 * (1 - kept.mean()):.1f} % pruned" in plot_log_alpha_histogram(guide).axes[0].get_title()
    # an explicit rule still wins
    assert relevance(guide, threshold="sparse_vd")["relevant"].sum() == int((log_alpha <= 3.0).sum())


def test_a_nan_threshold_or_nan_log_alpha_is_refused_not_read_as_pruned():
    import math

    import pytest

    from pyro_vd.inference import LogAlphaDrift

    model, guide, _ = _trained()
    for threshold in (math.nan, "3", 1j):  # NaN pruned every weight; LogAlphaDrift said "settled"
        for reader in (lambda t: sparsity(guide, t), lambda t: deterministic(model, guide, t)):
            with pytest.raises(ValueError, match="threshold must be"):
                reader(threshold)
        with pytest.raises(ValueError, match="threshold must be"):
            LogAlphaDrift(guide, threshold)
    assert sparsity(guide, torch.tensor(3.0)).threshold == 3.0
    drift = LogAlphaDrift(guide)
    name = guide.site_names[0]
    with torch.no_grad():  # a diverged run's parameters: NaN counted as pruned, NaN weights deployed
        next(p for n, p in guide.named_parameters() if "log_sigma2s" in n).view(-1)[:3] = math.nan
    message = rf"3 of \d+ values of the log α of site '{name}' are NaN"
    for reader in (lambda: sparsity(guide), lambda: deterministic(model, guide), drift.update):
        with pytest.raises(ValueError, match=message):
            reader()


def test_the_evidence_rule_on_a_convolution_counts_a_row_of_its_weight():
    # a (4, 16, 3, 3) kernel's row holds 16·3·3 = 144 weights; the rule used d = 3 (its last dimension)
    from pyro_vd.inference.pruning import log_alpha_bound
    from pyro_vd.linear.relevance import evidence_log_alpha_threshold

    model = bayesianize(nn.Sequential(nn.Conv2d(16, 4, 3), nn.Flatten(), nn.Linear(4, 2)), num_data=8)
    guide = AutoVariationalDropout(model)
    guide(torch.randn(8, 16, 3, 3), torch.zeros(8, dtype=torch.long))
    assert log_alpha_bound(guide, "net.0.weight", "evidence") == evidence_log_alpha_threshold(144)
    assert log_alpha_bound(guide, "net.2.weight", "evidence") == evidence_log_alpha_threshold(4)


def test_the_evidence_rule_refuses_a_hand_written_column_weight_and_keeps_a_layers_rows():
    """A hand-written (d, 1) weight (``X @ w``) has rows of one weight: the rule read τ(1) = 34.4 and kept
    every weight, where (d,) and (1, d) give τ(d). Refused there, with the way out; a bayesianized
    Linear(1, 3), whose rows are known to be one input wide, keeps τ(1)."""
    import pytest

    from pyro_vd.analysis import relevance
    from pyro_vd.inference.pruning import log_alpha_bound
    from pyro_vd.linear.relevance import evidence_log_alpha_threshold

    X, y = torch.randn(20, 5), torch.randn(20)
    for shape in ((5,), (1, 5), (5, 1)):

        def model(X, y=None, shape=shape):
            w = pyro.sample("w", LogUniform(event_shape=shape))
            with pyro.plate("data", len(X)):
                pyro.sample("y", dist.Normal(X @ w.reshape(5), 1.0), obs=y)

        pyro.clear_param_store()
        guide = AutoVariationalDropout(model)
        guide(X, y)
        if shape == (5, 1):
            with pytest.raises(ValueError, match=r"shape \(5, 1\).*evidence_log_alpha_threshold\(5\)"):
                log_alpha_bound(guide, "w", "evidence")
            with pytest.raises(ValueError, match=r"shape \(5, 1\)"):
                relevance(guide, threshold="evidence")
            assert log_alpha_bound(guide, "w", 3.0) == 3.0  # a number, or Sparse VD's rule, as before
        else:
            assert log_alpha_bound(guide, "w", "evidence") == evidence_log_alpha_threshold(5)
    model = bayesianize(nn.Sequential(nn.Linear(1, 3), nn.Linear(3, 2)), num_data=8)
    guide = AutoVariationalDropout(model)
    x, t = torch.randn(8, 1), torch.zeros(8, dtype=torch.long)
    guide(x, t)
    assert log_alpha_bound(guide, "net.0.weight", "evidence") == evidence_log_alpha_threshold(1)
    # so after pickling (the guide keeps its layers' names, not its model) and from InferenceData
    import pickle

    from pyro_vd.analysis import to_inference_data

    unpickled = pickle.loads(pickle.dumps(guide))
    assert log_alpha_bound(unpickled, "net.0.weight", "evidence") == evidence_log_alpha_threshold(1)
    idata = to_inference_data(model, guide, x, t, num_samples=2)
    direct = relevance(guide, "net.0.weight", threshold="evidence")["relevant"].to_numpy()
    assert (relevance(idata, "net.0.weight", threshold="evidence")["relevant"].to_numpy() == direct).all()


def test_a_zero_width_layer_reports_nothing_pruned():
    import warnings

    with warnings.catch_warnings():  # torch: "Initializing zero-element tensors is a no-op"
        warnings.simplefilter("ignore", UserWarning)
        net = nn.Sequential(nn.Linear(8, 0), nn.Linear(0, 3))
    model = bayesianize(net, num_data=16)
    guide = AutoVariationalDropout(model)
    guide(torch.randn(16, 8), torch.zeros(16, dtype=torch.long))
    report = sparsity(guide)
    assert report.layers["net.0.weight"].pruned_fraction == 0.0 and "compression" in str(report)


def test_a_global_latent_the_guide_does_not_fix_is_refused_not_drawn_from_its_prior():
    # deterministic(model, guide[0]) of an AutoGuideList drew σ from its prior at every call: two calls
    # of the "deterministic" module differed by 11
    import pytest
    from pyro import poutine
    from pyro.infer.autoguide import AutoGuideList, AutoNormal

    pyro.set_rng_seed(0)
    X = torch.randn(200, 4)
    y = X[:, 0] * 2.0 + 0.5 * torch.randn(200)

    def model(X, y=None):
        w = pyro.sample("w", LogUniform(event_shape=(4,)))
        sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(X)):
            pyro.sample("y", dist.Normal(X @ w, sigma), obs=y)
        return X @ w, sigma

    guide = AutoGuideList(model)
    guide.append(AutoVariationalDropout(poutine.block(model, expose=["w"])))
    guide.append(AutoNormal(poutine.block(model, hide=["w"])))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    for _ in range(20):
        svi.step(X, y)
    with pytest.raises(ValueError, match=r"global latent sites \['sigma'\]"):
        deterministic(model, guide[0])(X)
    with pytest.raises(TypeError, match=r"AutoGuideList.*pass its AutoVariationalDropout part"):
        sparsity(guide)
    fixed = deterministic(poutine.condition(model, data=guide[1].median()), guide[0])
    (first, sigma), (second, _) = fixed(X), fixed(X)  # the likelihood site y (in its plate) is no latent
    assert torch.equal(first, second) and float(sigma) == float(guide[1].median()["sigma"])


def test_a_likelihood_outside_any_plate_is_no_latent_to_refuse():
    # the review's regression: sampled (obs=None) outside a plate, y was taken for a global latent
    from pyro import poutine

    X, y = torch.randn(40, 3), torch.randn(40)

    def model(X, y=None):
        w = pyro.sample("w", LogUniform(event_shape=(3,)))
        pyro.sample("y", dist.Normal(X @ w, 0.1).to_event(1), obs=y)
        return X @ w

    guide = AutoVariationalDropout(model)
    pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), VariationalDropoutELBO()).step(X, y)
    with poutine.block(), torch.no_grad():
        expected = poutine.condition(model, pruned_weights(guide))(X)
    torch.testing.assert_close(deterministic(model, guide)(X), expected)


def test_a_global_latent_read_only_by_the_return_value_is_refused():
    # a review's regression: nothing else depends on `scale`, but the output does (by provenance)
    import pytest

    X, y = torch.randn(40, 3), torch.randn(40)

    def model(X, y=None):
        w = pyro.sample("w", LogUniform(event_shape=(3,)))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(X)):
            pyro.sample("y", dist.Normal(X @ w, 0.1), obs=y)
        return scale * (X @ w)

    from pyro.infer.autoguide import AutoGuideList, AutoNormal

    guide = AutoGuideList(model)
    guide.append(AutoVariationalDropout(pyro.poutine.block(model, expose=["w"])))
    guide.append(AutoNormal(pyro.poutine.block(model, hide=["w"])))
    pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), VariationalDropoutELBO()).step(X, y)
    with pytest.raises(ValueError, match=r"global latent sites \['scale'\]"):
        deterministic(model, guide[0])(X)


def _steps(model, guide, x, y, steps):
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    for _ in range(steps):
        svi.step(x, y)


def _small(seed):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model = bayesianize(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), num_data=32)
    return model, AutoVariationalDropout(model)


def test_deterministic_refuses_a_model_and_guide_the_param_store_disagrees_with(tmp_path):
    # after pyro.get_param_store().load(...) the guide's readers gave its own (replaced) θ and the model's
    # biases came from the store: deterministic() exported a network of two training states
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    model, guide = _small(0)
    _steps(model, guide, x, y, 10)
    pyro.get_param_store().save(tmp_path / "store.pt")
    saved_theta = guide.get_theta("net.0.weight")
    saved_bias = pyro.param("net.0.bias").detach().clone()
    _steps(model, guide, x, y, 10)
    pyro.get_param_store().load(tmp_path / "store.pt")
    with pytest.raises(ValueError, match="param store holds other values than the model and guide"):
        deterministic(model, guide)
    pyro.infer.Predictive(model, guide=guide, num_samples=1)(x)  # they take the store's values
    net = deterministic(model, guide, threshold=math.inf)
    assert torch.equal(net[0].weight, saved_theta) and torch.equal(net[0].bias, saved_bias)


def test_a_guide_kept_from_an_earlier_run_is_refused_then_exported_as_trained():
    # a sweep that keeps its guides: the first run's model read the last run's biases from the store
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    first_model, first_guide = _small(0)
    _steps(first_model, first_guide, x, y, 10)
    theta, bias = first_guide.get_theta("net.0.weight"), pyro.param("net.0.bias").detach().clone()
    later_model, later_guide = _small(1)
    _steps(later_model, later_guide, x, y, 10)
    deterministic(later_model, later_guide)  # the live run: nothing to say
    with pytest.raises(ValueError, match=r"pyro\.clear_param_store"):
        deterministic(first_model, first_guide)
    pyro.clear_param_store()  # the first run's own values, as trained
    net = deterministic(first_model, first_guide, threshold=math.inf)
    assert torch.equal(net[0].weight, theta) and torch.equal(net[0].bias, bias)


def test_models_trained_module_local_export_one_after_another():
    # deterministic() read the biases inside the model's Pyro context, which registered the first
    # module-local model's biases in the global store; the second model's export then took them
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    pyro.clear_param_store()
    fits = []
    for seed in (0, 1):
        with pyro.settings.context(module_local_params=True):
            pyro.set_rng_seed(seed)
            model = bayesianize(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), num_data=32)
            guide = AutoVariationalDropout(model)
            loss_fn = VariationalDropoutELBO()(model, guide)
            loss_fn(x, y)
            optimizer = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
            for _ in range(5):
                optimizer.zero_grad()
                loss_fn(x, y).backward()
                optimizer.step()
            fits.append((model, guide, model.net[0].bias.detach().clone()))
    for model, guide, bias in fits:
        assert torch.equal(deterministic(model, guide)[0].bias, bias)
    assert not list(pyro.get_param_store().keys())
