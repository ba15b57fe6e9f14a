"""The seed's networks as variational dropout models.

Keyword arguments are those of :class:`VDModel`, e.g. ``LeNet500300(num_data, neuron_noise=True)`` for
structured dropout on every layer's input neurons."""

from torch import nn

from .architectures import lenet5, lenet300100, lenet500300, mlp
from .vd_model import VDModel


class LeNet300100(VDModel):
    """LeNet-300-100 (784-300-100-10, ReLU) with log-uniform priors on its weights; Categorical likelihood."""

    def __init__(self, num_data=None, **kwargs):
        super().__init__(lenet300100(), num_data=num_data, **kwargs)


class LeNet500300(VDModel):
    """LeNet-500-300 (784-500-300-10, ReLU) with log-uniform priors on its weights."""

    def __init__(self, num_data=None, **kwargs):
        super().__init__(lenet500300(), num_data=num_data, **kwargs)


class LeNet5(VDModel):
    """LeNet-5-Caffe (conv 20@5, pool, conv 50@5, pool, fc 500, fc 10) with log-uniform priors."""

    def __init__(self, num_data=None, **kwargs):
        super().__init__(lenet5(), num_data=num_data, **kwargs)


class BayesianMLP(VDModel):
    """An MLP of layer widths ``sizes`` with log-uniform priors on its weights.

    :param sizes: e.g. ``[784, 1000, 1000, 1000, 10]`` (the seed's 3FC(1000)).
    :param activation: the nonlinearity class between layers.
    :param likelihood: as for :class:`VDModel`.
    """

    def __init__(self, sizes, num_data=None, *, activation=nn.ReLU, likelihood="categorical", **kwargs):
        super().__init__(mlp(sizes, activation), num_data=num_data, likelihood=likelihood, **kwargs)
