"""The improper log-uniform prior of variational dropout."""

import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.util import broadcast_shape, sum_rightmost
from torch.distributions import constraints


class _NonZeroReal(constraints.Constraint):
    """Finite real numbers other than zero: the support of :class:`LogUniform`."""

    is_discrete = False
    event_dim = 0

    def check(self, value):
        return torch.isfinite(value) & (value != 0)

    def __repr__(self):
        return "NonZeroReal()"


nonzero_real = _NonZeroReal()


class LogUniform(TorchDistribution):
    r"""
    The improper log-scale uniform prior :math:`p(\log|w|) = \text{const}`, i.e.
    :math:`\log p(w) = -\log|w|` (Kingma et al. 2015; Molchanov et al. 2017).

    It is the prior of variational dropout, and the only one that makes the KL divergence of the
    dropout posterior :math:`q(w) = \mathcal{N}(\theta, \alpha\theta^2)` independent of :math:`\theta`.
    Write :math:`w = \theta(1 + \sqrt{\alpha}\,\varepsilon)`, :math:`\varepsilon \sim \mathcal{N}(0, 1)`:

    .. math::

        \mathrm{KL}(q \,\|\, p) = -\tfrac12 \log(2\pi e\,\alpha\theta^2) - \mathbb{E}_q \log p(w).

    For the KL to depend on :math:`\alpha` alone, :math:`\mathbb{E}_q \log p(w)` must equal
    :math:`-\log|\theta| + f(\alpha)` for every :math:`\theta` and :math:`\alpha`. Letting
    :math:`\alpha \to 0` gives :math:`\log p(\theta) = -\log|\theta| + \text{const}` for every
    :math:`\theta \ne 0`, so :math:`p(w) \propto 1/|w|`, and conversely :math:`p(w) \propto 1/|w|`
    gives :math:`\mathbb{E}_q \log p(w) = -\log|\theta| - \mathbb{E}\log|1 + \sqrt\alpha\,\varepsilon|`.
    This is what keeps the ELBO's optimum in :math:`\theta` the same as dropout training's.

    The prior has no normalizing constant, so it cannot be sampled: fit it with a variational
    dropout guide, :class:`~pyro_vd.distributions.VDNormal` at the site (see
    :func:`~pyro_vd.distributions.kl_log_uniform` for the KL that Pyro's
    :class:`~pyro.infer.TraceMeanField_ELBO` then uses). In every other respect it is an ordinary
    Pyro distribution; shapes are given as for :class:`~pyro.distributions.ImproperUniform`::

        w = pyro.sample("w", LogUniform(event_shape=(10,)))        # a weight vector
        w = pyro.sample("w", LogUniform().expand([10]).to_event(1))  # the same
        with pyro.plate("units", 10):
            w = pyro.sample("w", LogUniform())                     # the same, batched

    :param torch.Size batch_shape: The batch shape.
    :param torch.Size event_shape: The event shape.
    :param bool validate_args: Whether :meth:`log_prob` rejects values outside the support
        (0, NaN, ±inf).
    """

    arg_constraints = {}
    support = nonzero_real
    has_rsample = False

    def __init__(self, batch_shape=(), event_shape=(), *, validate_args=None):
        super().__init__(torch.Size(batch_shape), torch.Size(event_shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogUniform, _instance)
        super(LogUniform, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        r""":math:`\log p(w) = -\sum_{\text{event}} \log|w|` (up to the prior's missing constant)."""
        if self._validate_args:
            self._validate_sample(value)
        log_prob = sum_rightmost(-value.abs().log(), self.event_dim)
        return log_prob.expand(broadcast_shape(log_prob.shape, self.batch_shape))

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError(
            "LogUniform is an improper prior (p(log|w|) = const has no normalizing constant), so it "
            "cannot be sampled, and Pyro's autoguides cannot initialize from it. Fit it with a "
            "variational dropout guide: one that samples the site from "
            "pyro_vd.distributions.VDNormal(theta, log_sigma2), initialized by hand "
            "(e.g. theta ~ N(0, 1/fan_in), log_sigma2 = -10)."
        )

    def rsample(self, sample_shape=torch.Size()):
        return self.sample(sample_shape)

    def __repr__(self):
        return f"LogUniform(batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"
