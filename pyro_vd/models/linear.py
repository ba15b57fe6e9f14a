"""Linear and logistic regression as Pyro models with log-uniform priors (the linear issue's card)."""

from torch import nn

from .vd_model import VDModel

#: What :class:`~pyro_vd.guides.AutoVariationalDropout` uses for a linear model's settings left at None
#: (besides the start, :func:`linear_guide_defaults`). A linear model is not a deep net:
#:
#: * the "shrinkage" parameterization θ = φ / (1 + α) keeps φ's optimum fixed while α moves (the
#:   optimal θ given α is r / (S (1 + α)) for a linear model);
#: * the posterior is the polynomial-decay average of the iterates (η = 3, ``averaging``): with Adam's
#:   constant step the last iterate jitters around the optimum by several posterior standard deviations
#:   when minibatches are small (its spread grows as √(N/B)), the average does not;
#: * log α learned as 5ψ (``log_alpha_scale``): a relevant feature's log α travels 4–7 units from the
#:   start, and Adam's step on a noisy gradient is far below its learning rate (see
#:   :func:`linear_guide_defaults`);
#: * θ starts at 0 (``init_theta="zeros"``): without weight noise at the start the data's gradient on
#:   θ has one sign, so no relevant weight passes through θ ≈ 0 on its way (where nothing holds α down,
#:   and log α, learned 5 times as fast, could run off: from a random start, Adam(0.05) pruned a
#:   coefficient of 2 in 2 of 8 draws).
#:
#: Measured in benchmarks/svi_agreement.py.
LINEAR_GUIDE_DEFAULTS = {
    "parameterization": "shrinkage",
    "init_theta": "zeros",
    "averaging": 3.0,
    "log_alpha_scale": 5.0,
}

#: The relevance rule of the linear models (read by :func:`~pyro_vd.analysis.relevance` on their guide):
#: the evidence rule of :mod:`pyro_vd.linear.relevance`, log α ≤ τ(d), as ``VDRegression`` applies it.
LINEAR_RELEVANCE_RULE = "evidence"


def linear_guide_defaults(n_features):
    r"""
    The guide settings a linear model with ``n_features`` weights recommends: :data:`LINEAR_GUIDE_DEFAULTS`
    and the start :math:`\log\alpha_0 = \min(\tau(d) + 1, 3)`, one unit on the pruned side of the evidence
    rule's bound τ(d) (:func:`~pyro_vd.linear.relevance.evidence_log_alpha_threshold`: −1.8 at d = 20,
    −2.3 at d = 100, −2.7 at d = 1000). An irrelevant feature starts pruned and stays so; a relevant
    one's α has to fall by about one unit more than its own depth below τ(d), 4–7 units for a strong
    feature. Adam moves a parameter by at most its learning rate a step, and by much less where
    minibatch noise dominates the gradient, so a start far from the bound (the seed's +1 for log σ²,
    about log α = 3) leaves weakly relevant features pruned after 3000 steps; hence also
    ``log_alpha_scale`` = 5 (log α = 5ψ, which Adam moves 5 times as far a step): with log α learned
    directly, Adam(1e-2) on batches of 0.1 % left the relevant features' log α 1.2–1.8 above their
    optimum after 3000 steps, weakly relevant ones still pruned in 5 of 20 draws (measured in
    benchmarks/svi_agreement.py).
    """
    from ..linear.relevance import evidence_log_alpha_threshold

    start = min(evidence_log_alpha_threshold(n_features) + 1.0, 3.0)
    return {**LINEAR_GUIDE_DEFAULTS, "init_log_alpha": round(start, 3)}


class LinearRegression(VDModel):
    r"""
    :math:`t \sim \mathcal{N}(w^\top x + b, \sigma^2)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro
    counterpart of :class:`~pyro_vd.linear.VDRegression`, trained by SVI in minibatches (the weight site
    ``net.weight`` has shape (1, n_features), so the local reparameterization applies). The noise scale
    σ is learned (a point estimate maximizing the same ELBO, so :math:`\sigma^{-2}` estimates
    ``VDRegression``'s ``noise_precision_``) unless given.

    :attr:`guide_defaults` holds the settings :class:`~pyro_vd.guides.AutoVariationalDropout` takes
    when they are left at None (:func:`linear_guide_defaults`), and :attr:`relevance_rule` the rule
    :func:`~pyro_vd.analysis.relevance` applies to its guide by default (the evidence rule, as
    ``VDRegression`` decides).
    """

    def __init__(self, n_features, num_data=None, *, noise_scale=None):
        super().__init__(
            nn.Linear(n_features, 1), num_data=num_data, likelihood="normal", noise_scale=noise_scale
        )
        self.guide_defaults = linear_guide_defaults(n_features)
        self.relevance_rule = LINEAR_RELEVANCE_RULE


class LogisticRegression(VDModel):
    r"""
    :math:`p(t = 1) = \sigma(w^\top x + b)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro counterpart
    of :class:`~pyro_vd.linear.VDClassifier` (binary), trained by SVI in minibatches. Its
    :attr:`guide_defaults` and :attr:`relevance_rule` are those of :class:`LinearRegression`: it
    decides by the evidence bound τ(d) on its guide's log α, the rule ``VDClassifier``'s default applies
    inside its own fit.
    """

    def __init__(self, n_features, num_data=None):
        super().__init__(nn.Linear(n_features, 1), num_data=num_data, likelihood="bernoulli")
        self.guide_defaults = linear_guide_defaults(n_features)
        self.relevance_rule = LINEAR_RELEVANCE_RULE
