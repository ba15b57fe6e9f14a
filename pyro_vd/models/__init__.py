"""Variational dropout models: log-uniform priors on the weights of torch networks."""

from . import architectures
from .lenet import BayesianMLP, LeNet5, LeNet300100, LeNet500300
from .linear import LinearRegression, LogisticRegression, StandardizationWarning, check_standardized
from .neuron_noise import NeuronNoise, apply_neuron_noise, neuron_noise_prior
from .vd_model import (
    LIKELIHOODS,
    TRANSPOSED_LAYERS,
    WEIGHT_LAYERS,
    DeterministicParametersWarning,
    VDModel,
    bayesianize,
)

__all__ = [
    "LIKELIHOODS",
    "TRANSPOSED_LAYERS",
    "WEIGHT_LAYERS",
    "BayesianMLP",
    "DeterministicParametersWarning",
    "LeNet5",
    "LeNet300100",
    "LeNet500300",
    "LinearRegression",
    "LogisticRegression",
    "NeuronNoise",
    "StandardizationWarning",
    "VDModel",
    "apply_neuron_noise",
    "architectures",
    "bayesianize",
    "check_standardized",
    "neuron_noise_prior",
]
