"""Linear and logistic regression as Pyro models with log-uniform priors (the linear issue's card)."""

from torch import nn

from .vd_model import VDModel


class LinearRegression(VDModel):
    r"""
    :math:`t \sim \mathcal{N}(w^\top x + b, \sigma^2)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro
    counterpart of :class:`~pyro_vd.linear.VDRegression`, trained by SVI in minibatches (the weight site
    ``net.weight`` has shape (1, n_features), so the local reparameterization applies). The noise scale
    σ is learned (a point estimate) unless given.
    """

    def __init__(self, n_features, num_data=None, *, noise_scale=None):
        super().__init__(
            nn.Linear(n_features, 1), num_data=num_data, likelihood="normal", noise_scale=noise_scale
        )


class LogisticRegression(VDModel):
    r"""
    :math:`p(t = 1) = \sigma(w^\top x + b)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro counterpart
    of :class:`~pyro_vd.linear.VDClassifier` (binary), trained by SVI in minibatches.
    """

    def __init__(self, n_features, num_data=None):
        super().__init__(nn.Linear(n_features, 1), num_data=num_data, likelihood="bernoulli")
