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
    with pytest.raises(ValueError, match="num_data is 2"):
        conditioned(torch.randn(5, 4))
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        conditioned([[1.0] * 4])
