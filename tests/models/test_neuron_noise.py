import math

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

from pyro_vd.distributions import TruncatedLogUniform
from pyro_vd.models import NeuronNoise, apply_neuron_noise, bayesianize
from pyro_vd.models.architectures import lenet5, mlp


def _base(fn):
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def test_bayesianize_puts_noise_on_every_layer_input():
    model = bayesianize(mlp([6, 5, 3]), 100, neuron_noise=True)
    assert model.noise_sites == ["net.fc1.input_noise", "net.fc2.input_noise"]
    assert model.weight_sites == ["net.fc1.weight", "net.fc2.weight"]
    weights = {"net.fc1.weight": torch.randn(5, 6), "net.fc2.weight": torch.randn(3, 5)}
    trace = poutine.trace(poutine.condition(model, weights)).get_trace(torch.randn(4, 6))
    site = trace.nodes["net.fc1.input_noise"]
    assert isinstance(_base(site["fn"]), TruncatedLogUniform)
    assert site["value"].shape == (6,) and site["fn"].event_dim == 1
    assert trace.nodes["net.fc2.input_noise"]["value"].shape == (5,)
    assert "net.fc1.weight" in trace.nodes


def test_noise_multiplies_the_layer_input():
    model = bayesianize(mlp([6, 5, 3]), neuron_noise=["fc2"], sparse_weights=False)
    assert model.noise_sites == ["net.fc2.input_noise"] and model.weight_sites == []
    x = torch.randn(4, 6)
    theta = torch.linspace(0.1, 1.0, 5)
    out = poutine.condition(model, {"net.fc2.input_noise": theta})(x)
    net = model.net
    hidden = torch.relu(torch.nn.functional.linear(x, net.fc1.weight, net.fc1.bias))
    expected = torch.nn.functional.linear(hidden * theta, net.fc2.weight, net.fc2.bias)
    torch.testing.assert_close(out, expected)


def test_conv_noise_is_per_input_channel():
    model = bayesianize(lenet5(), neuron_noise=True, sparse_weights=False)
    trace = poutine.trace(model).get_trace(torch.randn(2, 1, 28, 28))
    assert trace.nodes["net.conv1.input_noise"]["value"].shape == (1,)
    assert trace.nodes["net.conv2.input_noise"]["value"].shape == (20,)
    assert trace.nodes["net.fc1.input_noise"]["value"].shape == (800,)


def test_neuron_noise_module_inside_a_pyro_module():
    class Net(PyroModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.noise = NeuronNoise(3)

        def forward(self, x):
            return self.noise(torch.relu(self.fc(x)))

    net = Net()
    trace = poutine.trace(net).get_trace(torch.randn(2, 4))
    assert "noise.theta" in trace.nodes
    theta = trace.nodes["noise.theta"]["value"]
    assert ((theta > 0) & (theta <= 1)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="not Linear/Conv layers"):
        bayesianize(mlp([4, 3, 2]), neuron_noise=["act1"])
    with pytest.raises(TypeError, match="neuron_noise"):
        bayesianize(mlp([4, 3, 2]), neuron_noise="fc1")
    with pytest.raises(ValueError, match="leaves nothing random"):
        bayesianize(mlp([4, 3, 2]), sparse_weights=False)
    with pytest.raises(ValueError, match="num_features"):
        NeuronNoise(0)
    with pytest.raises(ValueError, match="cannot be applied"):
        apply_neuron_noise(torch.randn(2, 4), torch.ones(3))
    with pytest.raises(ValueError, match="low must be smaller"):
        bayesianize(mlp([4, 3, 2]), neuron_noise=True, noise_bounds=(0.0, -1.0))


def test_prior_samples_lie_in_the_truncation_interval():
    pyro.set_rng_seed(0)
    model = bayesianize(mlp([50, 2]), neuron_noise=True, sparse_weights=False)
    theta = poutine.trace(model).get_trace(torch.randn(1, 50)).nodes["net.fc1.input_noise"]["value"]
    assert theta.min() >= torch.exp(torch.tensor(-20.0)) and theta.max() <= 1.0


def test_sparse_weights_and_neuron_noise_take_what_they_say():
    # sparse_weights=["fc1"] (a list, as neuron_noise takes) gave every layer's weights the prior
    for value in (["0"], "0", 1, None):
        with pytest.raises(TypeError, match="sparse_weights must be True or False"):
            bayesianize(mlp([6, 8, 3]), neuron_noise=True, sparse_weights=value)
    # neuron_noise=1 was a raw "'int' object is not iterable"
    for value in (1, torch.tensor(True), ["fc1", 1]):
        with pytest.raises(TypeError, match="neuron_noise must be True, False or a list of layer names"):
            bayesianize(mlp([6, 8, 3]), neuron_noise=value)
    for value in (np.True_, {"fc1": 1}.keys()):  # (any iterable of names, numpy bools)
        assert bayesianize(mlp([6, 8, 3]), neuron_noise=value).noise_sites


def test_the_prior_draws_of_the_neuron_noise_follow_the_models_dtype():
    # a float64 model drew its input noise in float32 from the prior (and on the CPU whatever the device)
    model = bayesianize(mlp([6, 8, 3]), neuron_noise=True).double()
    trace = poutine.trace(model).get_trace(torch.randn(4, 6, dtype=torch.float64))
    noise = [site for name, site in trace.nodes.items() if name.endswith("input_noise")]
    assert noise and all(site["value"].dtype == torch.float64 for site in noise)
    draws = TruncatedLogUniform(-3.0, 0.0, dtype=torch.float64).expand([5]).rsample()
    assert draws.dtype == torch.float64 and ((draws >= math.exp(-3.0)) & (draws <= 1.0)).all()
