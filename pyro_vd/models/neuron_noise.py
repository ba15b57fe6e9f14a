r"""
Multiplicative neuron noise: structured variational dropout (Structured Bayesian Pruning, Neklyudov et
al. 2017).

Each neuron (a feature of a ``Linear`` layer's input, a channel of a convolution's input) is multiplied
by a non-negative noise :math:`\theta_j` with the prior
:class:`~pyro_vd.distributions.TruncatedLogUniform` on :math:`[e^{-20}, e^{0}]`; the guide learns a
:class:`~pyro_vd.distributions.TruncatedLogNormal` per neuron, and a neuron whose noise has a low
signal-to-noise ratio is removed together with its row in the previous layer and its column in the next
(:func:`pyro_vd.inference.prune_neurons`).

Two ways to use it:

* inside your own :class:`~pyro.nn.PyroModule`, a :class:`NeuronNoise` module wherever the neurons'
  outputs are (``h = self.noise1(torch.relu(self.fc1(x)))``);
* through :func:`~pyro_vd.models.bayesianize` / :class:`~pyro_vd.models.VDModel` with
  ``neuron_noise=True`` (or a list of layer names): the noise goes on the **input** of each chosen
  ``Linear``/``Conv*`` layer — the outputs of the previous layer's neurons after their nonlinearity, or
  the network's input features for the first layer (SBP's 784 → 245 MNIST pixels). The site of layer
  ``fc1`` is ``net.fc1.input_noise``.

For a ReLU network, :math:`\mathrm{relu}(\theta a) = \theta\,\mathrm{relu}(a)` for :math:`\theta > 0`,
so noise on a layer's input and noise on the previous layer's pre-activation are the same model.
"""

import numbers

import torch
from pyro.nn import PyroModule, PyroSample
from torch import nn

from ..distributions.truncated_log_uniform import TruncatedLogUniform, check_log_bounds

#: SBP's truncation interval for log θ.
DEFAULT_LOW, DEFAULT_HIGH = -20.0, 0.0


def neuron_noise_prior(num_features, low=DEFAULT_LOW, high=DEFAULT_HIGH):
    """The prior of one layer's neuron noise: ``TruncatedLogUniform(low, high)`` over ``num_features``."""
    if isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral) or num_features < 1:
        raise ValueError(f"num_features must be a positive integer; got {num_features!r}")
    low, high = check_log_bounds(low, high)
    return TruncatedLogUniform(low, high).expand([int(num_features)]).to_event(1)


def apply_neuron_noise(x, theta, dim=1):
    """``x`` multiplied by ``theta`` (one value per feature) along dimension ``dim`` of ``x``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (the features)")
    dim = dim % x.dim() if -x.dim() <= dim < x.dim() else None
    if dim is None or x.shape[dim] != theta.shape[-1]:
        raise ValueError(
            f"neuron noise over {theta.shape[-1]} features cannot be applied to an input of shape "
            f"{tuple(x.shape)} along its dimension {dim!r}"
        )
    shape = [1] * x.dim()
    shape[dim] = theta.shape[-1]
    return x * theta.reshape(shape)


class NeuronNoise(PyroModule):
    r"""
    ``forward(x) = x · θ`` with one non-negative noise :math:`\theta_j \sim` ``TruncatedLogUniform`` per
    feature along ``dim`` (1: the features of ``(batch, features)`` and the channels of
    ``(batch, channels, *spatial)``). The sample site is ``<this module's name>.theta``; a guide such
    as :class:`~pyro_vd.guides.AutoVariationalDropout` gives it a ``TruncatedLogNormal`` posterior.

    :param int num_features: the number of neurons (features or channels).
    :param int dim: the dimension of ``x`` that indexes them.
    :param float low: lower bound of log θ (−20).
    :param float high: upper bound of log θ (0).
    """

    def __init__(self, num_features, *, dim=1, low=DEFAULT_LOW, high=DEFAULT_HIGH):
        super().__init__()
        self.num_features = int(num_features)
        self.dim = int(dim)
        self.theta = PyroSample(neuron_noise_prior(num_features, low, high))

    def forward(self, x):
        return apply_neuron_noise(x, self.theta, self.dim)

    def extra_repr(self):
        return f"num_features={self.num_features}, dim={self.dim}"


def input_features(layer):
    """The number of input neurons of a ``Linear`` (features) or ``Conv*`` (channels) layer."""
    return layer.weight.shape[1] * (getattr(layer, "groups", 1) or 1)


def _input_noise_hook(module, args):
    (x, *rest) = args
    return (apply_neuron_noise(x, module.input_noise, _input_dim(module, x)), *rest)


def _input_dim(layer, x):
    """The dimension of ``x`` that ``layer`` reads as its input neurons: a ``Linear``'s last (its input
    may be ``(batch, time, features)``), a convolution's channels (dimension 1, or 0 unbatched)."""
    if isinstance(layer, nn.Linear):
        return -1
    return 0 if x.dim() == len(layer.kernel_size) + 1 else 1


def add_input_noise(layer, low=DEFAULT_LOW, high=DEFAULT_HIGH):
    """Give a (Pyro-converted) ``Linear``/``Conv*`` layer a noise site ``input_noise`` on its input."""
    prior = neuron_noise_prior(input_features(layer), low, high)
    layer.input_noise = PyroSample(prior)
    layer.register_forward_pre_hook(_input_noise_hook)
    return prior
