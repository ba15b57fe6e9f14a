"""Linear and logistic regression as Pyro models with log-uniform priors (the linear issue's card)."""

from torch import nn

from .vd_model import VDModel

#: What :class:`~pyro_vd.guides.AutoVariationalDropout` uses for a linear model's settings left at None.
#: A linear model is not a deep net: its weights start nearly dropped out (log α = 3, as the seed's
#: VD-RVC code starts from log σ² = +1) and the data pull the relevant ones in; the "shrinkage"
#: parameterization θ = φ / (1 + α) keeps φ's optimum fixed while α moves (the optimal θ given α is
#: r / (S (1 + α)) for a linear model), so that α reaches the exact optimum's side of the threshold
#: within a few thousand Adam steps (measured in benchmarks/svi_agreement.py).
LINEAR_GUIDE_DEFAULTS = {"parameterization": "shrinkage", "init_log_alpha": 3.0}


class LinearRegression(VDModel):
    r"""
    :math:`t \sim \mathcal{N}(w^\top x + b, \sigma^2)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro
    counterpart of :class:`~pyro_vd.linear.VDRegression`, trained by SVI in minibatches (the weight site
    ``net.weight`` has shape (1, n_features), so the local reparameterization applies). The noise scale
    σ is learned (a point estimate maximizing the same ELBO, so :math:`\sigma^{-2}` estimates
    ``VDRegression``'s ``noise_precision_``) unless given.

    :attr:`guide_defaults` holds the settings :class:`~pyro_vd.guides.AutoVariationalDropout` takes
    when they are left at None (see :data:`LINEAR_GUIDE_DEFAULTS`).
    """

    def __init__(self, n_features, num_data=None, *, noise_scale=None):
        super().__init__(
            nn.Linear(n_features, 1), num_data=num_data, likelihood="normal", noise_scale=noise_scale
        )
        self.guide_defaults = dict(LINEAR_GUIDE_DEFAULTS)


class LogisticRegression(VDModel):
    r"""
    :math:`p(t = 1) = \sigma(w^\top x + b)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro counterpart
    of :class:`~pyro_vd.linear.VDClassifier` (binary), trained by SVI in minibatches. Its
    :attr:`guide_defaults` are those of :class:`LinearRegression`.
    """

    def __init__(self, n_features, num_data=None):
        super().__init__(nn.Linear(n_features, 1), num_data=num_data, likelihood="bernoulli")
        self.guide_defaults = dict(LINEAR_GUIDE_DEFAULTS)
