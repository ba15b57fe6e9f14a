import pyro
import pyro.distributions as dist
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
