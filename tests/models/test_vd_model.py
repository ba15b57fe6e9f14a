import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vd.distributions import LogUniform
from pyro_vd.models import BayesianMLP, LeNet5, LeNet300100, LeNet500300, VDModel, architectures, bayesianize


def test_bayesianize_leaves_the_original_alone():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    before = [p.detach().clone() for p in net.parameters()]
    model = bayesianize(net, num_data=10)
    assert isinstance(model, VDModel)
    assert model.weight_sites == ["net.0.weight", "net.2.weight"]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert type(net[0]) is nn.Linear
    assert model.template[0].weight.device.type == "meta"


def test_weights_are_log_uniform_sites_and_biases_parameters():
    model = LeNet300100(num_data=100)
    assert model.weight_sites == ["net.fc1.weight", "net.fc2.weight", "net.fc3.weight"]
    prior = model.net.fc1._pyro_samples["weight"]
    assert isinstance(prior, LogUniform) and prior.event_shape == (300, 784)
    assert isinstance(model.net.fc1.bias, torch.Tensor)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (LeNet300100(), (3, 1, 28, 28)),
        (LeNet500300(), (3, 784)),
        (LeNet5(), (3, 1, 28, 28)),
        (BayesianMLP([5, 4, 2]), (3, 5)),
    ],
    ids=["lenet300100", "lenet500300", "lenet5", "mlp"],
)
def test_architectures_forward(model, shape):
    x = torch.rand(shape)
    weights = {name: torch.randn(prior.event_shape) * 0.01 for name, prior in _priors(model).items()}
    out = pyro.poutine.condition(model, data=weights)(x)
    assert out.shape == (3, 10 if shape[-1] in (28, 784) else 2)


def _priors(model):
    return {
        f"net.{name}.weight": module._pyro_samples["weight"]
        for name, module in model.net.named_modules()
        if "weight" in getattr(module, "_pyro_samples", {})
    }


def test_lenet5_is_the_caffe_variant():
    net = architectures.lenet5()
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(20, (5, 5)), (50, (5, 5))]
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [500, 10]


@pytest.mark.parametrize("likelihood", ["bernoulli", "normal"])
def test_other_likelihoods(likelihood):
    model = BayesianMLP([4, 3, 1], num_data=20, likelihood=likelihood)
    weights = {name: torch.randn(p.event_shape) for name, p in _priors(model).items()}
    y = torch.rand(5).round() if likelihood == "bernoulli" else torch.randn(5)
    trace = pyro.poutine.trace(pyro.poutine.condition(model, data=weights)).get_trace(torch.randn(5, 4), y)
    obs = trace.nodes["obs"]
    assert obs["scale"] == 4.0  # N / B
    assert isinstance(obs["fn"], dist.Bernoulli if likelihood == "bernoulli" else dist.Normal)


def test_exclude_keeps_a_layer_deterministic():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model = bayesianize(net, exclude=["0"])
    assert model.weight_sites == ["net.2.weight"]


def test_bad_input():
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        bayesianize(lambda x: x)
    with pytest.raises(ValueError, match="num_data"):
        LeNet300100(num_data=0)
    with pytest.raises(ValueError, match="likelihood"):
        BayesianMLP([2, 2], likelihood="poisson")
    with pytest.raises(ValueError, match="no Linear or Conv"):
        bayesianize(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="exclude"):
        bayesianize(nn.Linear(2, 2), exclude=["fc9"])
    model = BayesianMLP([4, 3, 2], num_data=2)
    weights = {name: torch.randn(p.event_shape) for name, p in _priors(model).items()}
    conditioned = pyro.poutine.condition(model, data=weights)
    with pytest.raises(ValueError, match=r"x of shape \(5, 7\) does not fit the network"):
        conditioned(torch.randn(5, 7))
    with pytest.raises(ValueError, match="y must be a tensor with 5 rows"):
        conditioned(torch.randn(5, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_data is 2: num_data is the number of training rows"):
        conditioned(torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    assert conditioned(torch.randn(5, 4)).shape == (5, 2)  # predictions on more rows than num_data
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        conditioned([[1.0] * 4])


# ------------------------------------------------------------------------------ targets and inputs
@pytest.mark.parametrize("dtype", [torch.long, torch.bool, torch.int32])
def test_integer_and_bool_labels_are_the_same_as_float_ones(dtype):
    """torch's Bernoulli failed on them with an error about casting (the data sets hold int labels)."""
    from pyro_vd.models import LinearRegression, LogisticRegression

    x, labels = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    for model in (LogisticRegression(3, num_data=6), LinearRegression(3, num_data=6)):
        conditioned = _conditioned(model)
        trace = pyro.poutine.trace(conditioned).get_trace(x, labels.to(dtype))
        reference = pyro.poutine.trace(pyro.poutine.replay(conditioned, trace=trace)).get_trace(
            x, labels.float()
        )
        assert trace.log_prob_sum().item() == pytest.approx(reference.log_prob_sum().item())


def _conditioned(model):
    weights = {name: torch.randn(p.event_shape) for name, p in _priors(model).items()}
    return pyro.poutine.condition(model, data=weights)


@pytest.mark.parametrize(
    ("likelihood", "sizes", "target"),
    [
        ("normal", [4, 3, 1], lambda b: torch.randn(b)),
        ("bernoulli", [4, 3, 1], lambda b: torch.rand(b).round()),
        ("categorical", [4, 3, 5], lambda b: torch.randint(0, 5, (b,))),
    ],
    ids=["normal", "bernoulli", "categorical"],
)
def test_a_column_target_is_squeezed_never_broadcast(likelihood, sizes, target):
    # (B, 1) targets against a (B,) likelihood used to broadcast into a B × B log-likelihood
    model = _conditioned(BayesianMLP(sizes, num_data=12, likelihood=likelihood))
    x, y = torch.randn(6, 4), target(6)
    pyro.set_rng_seed(0)
    flat = pyro.poutine.trace(model).get_trace(x, y)
    pyro.set_rng_seed(0)
    column = pyro.poutine.trace(model).get_trace(x, y.unsqueeze(-1))
    flat.compute_log_prob()
    column.compute_log_prob()
    assert column.nodes["obs"]["log_prob"].shape == (6,)
    assert torch.equal(flat.nodes["obs"]["log_prob_sum"], column.nodes["obs"]["log_prob_sum"])


@pytest.mark.parametrize(
    ("likelihood", "sizes", "bad"),
    [
        ("normal", [4, 3, 2], (6, 3)),  # two outputs, three targets each
        ("normal", [4, 3, 2], (6,)),  # two outputs, one target
        ("normal", [4, 3, 1], (6, 2)),
        ("categorical", [4, 3, 5], (6, 5)),  # one-hot targets
        ("bernoulli", [4, 3, 1], (6, 1, 1)),
    ],
    ids=str,
)
def test_targets_of_another_shape_are_refused(likelihood, sizes, bad):
    model = _conditioned(BayesianMLP(sizes, num_data=12, likelihood=likelihood))
    y = torch.zeros(bad, dtype=torch.long if likelihood == "categorical" else torch.float)
    with pytest.raises(ValueError, match=r"y has shape .* takes targets of shape"):
        model(torch.randn(6, 4), y)


def test_a_callable_likelihood_is_checked_too():
    model = _conditioned(
        BayesianMLP([4, 3, 1], num_data=12, likelihood=lambda out: dist.Normal(out, 1.0).to_event(1))
    )
    model(torch.randn(6, 4), torch.randn(6, 1))
    with pytest.raises(ValueError, match=r"takes targets of shape \(6, 1\)"):
        model(torch.randn(6, 4), torch.randn(6, 3))


@pytest.mark.parametrize("target_shape", [(6, 1), (6,)], ids=str)
def test_a_callable_likelihood_of_one_output_is_one_term_per_row(target_shape):
    """``lambda out: dist.Normal(out, 0.3)`` of a one-output net has batch shape (B, 1): the data plate (the
    rows, dim −1) broadcast it to (B, B), and the likelihood counted B times (−32173 against −643 at
    B = 50). It is the built-in "normal" likelihood's term now, for y of shape (B, 1) or (B,)."""
    torch.manual_seed(0)
    weights = {"net.0.weight": torch.randn(1, 4)}
    x, y = torch.randn(6, 4), torch.randn(target_shape)
    terms = []
    for likelihood in ("normal", lambda out: dist.Normal(out, 0.3)):
        model = bayesianize(
            nn.Sequential(nn.Linear(4, 1)), num_data=6, likelihood=likelihood, noise_scale=0.3
        )
        model.net[0].bias = torch.zeros(1)
        trace = pyro.poutine.trace(pyro.poutine.condition(model, data=weights)).get_trace(x, y)
        trace.compute_log_prob()
        assert trace.nodes["obs"]["log_prob"].shape == (6,)
        terms.append(trace.nodes["obs"]["log_prob_sum"])
    torch.testing.assert_close(terms[0], terms[1])
    bernoulli = bayesianize(nn.Linear(4, 1), num_data=6, likelihood=lambda out: dist.Bernoulli(logits=out))
    trace = pyro.poutine.trace(_conditioned(bernoulli)).get_trace(x, (y > 0).float())
    assert trace.nodes["obs"]["fn"].batch_shape == (6,)


def test_a_callable_likelihood_must_have_a_distribution_per_row():
    model = _conditioned(
        bayesianize(nn.Linear(4, 1), num_data=6, likelihood=lambda out: dist.Normal(out.sum(), 1.0))
    )
    with pytest.raises(ValueError, match=r"batch shape is \(\), but it must start with the batch's 6 rows"):
        model(torch.randn(6, 4), torch.randn(6))


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (
            torch.randn(5, 4, dtype=torch.float64),
            TypeError,
            r"float64 but the network computes in torch\.float32",
        ),
        (torch.ones(5, 4, dtype=torch.long), TypeError, "dtype torch.int64, which the network"),
        (torch.randn(4), ValueError, "batch dimension"),
        (torch.randn(0, 4), ValueError, "empty batch"),
    ],
    ids=["float64", "int64", "1-D", "empty"],
)
def test_bad_inputs_are_named(x, error, match):
    model = _conditioned(BayesianMLP([4, 3, 2], num_data=12))
    with pytest.raises(error, match=match):
        model(x)


# --------------------------------------------------------------------------------- layer coverage
def test_include_and_exclude_choose_the_layers():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    assert bayesianize(net, include=["2", "4"]).weight_sites == ["net.2.weight", "net.4.weight"]
    assert bayesianize(net, include=["2", "4"], exclude=["4"]).weight_sites == ["net.2.weight"]
    with pytest.raises(ValueError, match="include names"):
        bayesianize(net, include=["1"])  # a ReLU has no weight


def test_layers_without_variational_dropout_are_reported():
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.lstm = nn.LSTM(4, 4, batch_first=True)
            self.norm = nn.LayerNorm(4)
            self.head = nn.Linear(4, 3)

        def forward(self, tokens):
            h, _ = self.lstm(self.embed(tokens))
            return self.head(self.norm(h[:, -1]))

    with pytest.warns(UserWarning, match=r"point estimates.*embed\.weight.*lstm\.weight_ih_l0") as record:
        model = bayesianize(Tagger())
    assert "norm.weight" not in str(record[0].message)  # normalization layers are point estimates by design
    assert model.weight_sites == ["net.head.weight"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bayesianize(Tagger(), exclude=["embed", "lstm"])


# ----------------------------------------------------------------- one source of truth for params
def _train_steps(model, guide, svi, x, y, steps):
    for _ in range(steps):
        svi.step(x, y)


@pytest.mark.parametrize("route", ["param_store", "checkpoint"])
def test_restored_biases_are_the_ones_the_network_uses(route, tmp_path):
    from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, deterministic
    from pyro_vd.inference import load_checkpoint, save_checkpoint

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    model = BayesianMLP([4, 5, 2], num_data=64)
    guide = AutoVariationalDropout(model)
    optim = pyro.optim.Adam({"lr": 0.05})
    svi = pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO())
    _train_steps(model, guide, svi, x, y, 20)
    path = tmp_path / "state.pt"
    if route == "param_store":
        pyro.get_param_store().save(path)
    else:
        save_checkpoint(path, optim=optim, epoch=1, model=model, guide=guide)
    saved = pyro.get_param_store()["net.fc1.bias"].detach().clone()
    _train_steps(model, guide, svi, x, y, 20)  # the live biases move on
    assert not torch.equal(pyro.get_param_store()["net.fc1.bias"], saved)
    if route == "param_store":
        pyro.get_param_store().load(path)
        # the guide still holds its replaced θ outside a call: deterministic() mixed it with the loaded
        # biases; it refuses until the model and guide have run once and taken the store's values
        with pytest.raises(ValueError, match="param store holds other values than the model and guide"):
            deterministic(model, guide)
        pyro.infer.Predictive(model, guide=guide, num_samples=1)(x)
    else:
        load_checkpoint(path, optim=optim, model=model, guide=guide)
    # the network computes with the restored bias: deterministic() and the model's forward agree
    weights = {name: guide.get_theta(name) for name in guide.site_names}
    with torch.no_grad():
        forward = pyro.poutine.condition(model, data=weights)(x)
    net = deterministic(model, guide, threshold=float("inf"))
    assert torch.allclose(net(x), forward, atol=1e-6)
    assert torch.equal(net.fc1.bias, saved)
    # and training goes on updating the tensor the network uses
    _train_steps(model, guide, svi, x, y, 5)
    with torch.no_grad():
        moved = pyro.poutine.condition(model, data=weights)(x)
    assert not torch.allclose(moved, forward)
    assert torch.equal(pyro.get_param_store()["net.fc1.bias"].detach(), deterministic(model, guide).fc1.bias)


def test_integer_inputs_reach_an_embedding():
    net = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 2))
    model = _conditioned(bayesianize(net, num_data=5, exclude=["0"]))
    assert model(torch.randint(0, 10, (5, 2))).shape == (5, 2)


def test_a_float64_model_draws_its_prior_stand_in_in_float64():
    model = bayesianize(nn.Sequential(nn.Linear(3, 2)).double(), likelihood="normal", noise_scale=1.0)
    x = torch.randn(4, 3, dtype=torch.float64)
    samples = pyro.infer.Predictive(model, num_samples=3, return_sites=["net.0.weight", "obs"])(x)
    assert samples["net.0.weight"].dtype == torch.float64 and samples["obs"].dtype == torch.float64


@pytest.mark.parametrize("exclude", [None, ["a", "b"]], ids=["random", "excluded"])
def test_tied_weights_are_refused_not_untied(exclude):
    # b.weight = a.weight became two independent sites (or two point estimates in the param store):
    # trained apart, and sparsity counted the matrix twice
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.out(torch.relu(self.b(torch.relu(self.a(x)))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (excluded layers are reported as left deterministic)
        with pytest.raises(ValueError, match=r"tied parameters: \['a.weight', 'b.weight'\]"):
            bayesianize(Tied(), num_data=64, **({} if exclude is None else {"exclude": exclude}))


def test_a_network_returning_a_tuple_needs_and_takes_a_callable_likelihood():
    # (logits, features) raised "'tuple' object has no attribute 'shape'", callable likelihood or not
    import pyro_vd

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(x), x

    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    model = bayesianize(TwoOutputs(), num_data=16, likelihood=lambda out: dist.Categorical(logits=out[0]))
    guide = pyro_vd.AutoVariationalDropout(model)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), pyro_vd.VariationalDropoutELBO())
    assert torch.isfinite(torch.tensor(svi.step(x, y)))
    with pytest.raises(TypeError, match="net returns a tuple, not a tensor: pass likelihood= a callable"):
        bayesianize(TwoOutputs(), num_data=16)(x, y)


def test_one_module_at_two_places_is_one_site_used_twice_not_a_tie():
    from pyro import poutine

    import pyro_vd

    shared = nn.Linear(8, 8)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.Linear(8, 3))
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    model = bayesianize(net, num_data=32)
    guide = pyro_vd.AutoVariationalDropout(model)
    pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), pyro_vd.VariationalDropoutELBO()).step(x, y)
    assert len(guide.site_names) == 3
    with poutine.block(), torch.no_grad():
        expected = poutine.condition(model, pyro_vd.inference.pruned_weights(guide))(x)
        torch.testing.assert_close(pyro_vd.deterministic(model, guide)(x), expected)
