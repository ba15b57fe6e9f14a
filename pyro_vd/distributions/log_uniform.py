"""The improper log-uniform prior of variational dropout."""

import numbers

import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.util import broadcast_shape, sum_rightmost
from torch.distributions import biject_to, constraints, transform_to


class _NonZeroReal(constraints.Constraint):
    """Finite real numbers other than zero: the support of :class:`LogUniform`."""

    is_discrete = False
    event_dim = 0

    def check(self, value):
        return torch.isfinite(value) & (value != 0)

    def __repr__(self):
        return "NonZeroReal()"


nonzero_real = _NonZeroReal()


@biject_to.register(_NonZeroReal)
@transform_to.register(_NonZeroReal)
def _no_transform(constraint):
    """The nonzero reals are two half-lines: no smooth bijection from ℝ reaches them, so Pyro's
    ``AutoNormal``, ``AutoDelta``, ``AutoDiagonalNormal``, HMC and NUTS cannot take a :class:`LogUniform`
    site. Their own error ("Cannot transform _NonZeroReal constraints") named no way out; this one does."""
    raise NotImplementedError(
        "a LogUniform weight (support: the nonzero reals, which no smooth bijection from ℝ reaches) cannot "
        "be guided by Pyro's AutoNormal / AutoDelta / AutoDiagonalNormal or sampled by HMC / NUTS: guide "
        "the weights with pyro_vd.AutoVariationalDropout, and other latents with an AutoGuideList part "
        "on poutine.block(model, hide=<the weight sites>)"
    )


#: log|w| bounds of the proper stand-in that :meth:`LogUniform.sample` draws from.
DEFAULT_SAMPLE_LOG_BOUNDS = (-6.0, 0.0)


def _check_shape(name, shape):
    if isinstance(shape, torch.Size):
        return shape
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(
            f"LogUniform's {name} must be a sequence of non-negative ints such as (3,) or torch.Size([3]); "
            f"got {shape!r} (for a vector of 3 weights write LogUniform(event_shape=(3,)))"
        )
    shape = tuple(shape)
    if not all(_is_size(n) for n in shape):
        raise TypeError(f"LogUniform's {name} must hold non-negative ints; got {shape!r}")
    return torch.Size(shape)


def _is_size(n):
    """A non-negative int, or a 0-dim integer tensor (a size under torch.jit tracing)."""
    if isinstance(n, torch.Tensor):
        return n.dim() == 0 and not n.is_floating_point() and not n.is_complex() and bool(n >= 0)
    return isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0


def _check_sample_log_bounds(bounds):
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise TypeError(f"sample_log_bounds must be a pair (low, high) of log|w|; got {bounds!r}") from None
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not abs(value) < float("inf"):
            raise ValueError(f"sample_log_bounds must be two finite numbers; got {bounds!r}")
    if not low < high:
        raise ValueError(f"sample_log_bounds must have low < high; got {bounds!r}")
    return float(low), float(high)


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

    The prior has no normalizing constant: fit it with a variational dropout guide,
    :class:`~pyro_vd.distributions.VDNormal` at the site (see
    :func:`~pyro_vd.distributions.kl_log_uniform` for the KL that Pyro's
    :class:`~pyro.infer.TraceMeanField_ELBO` then uses), e.g.
    :class:`~pyro_vd.guides.AutoVariationalDropout`.

    **Sampling draws from a proper stand-in.** Pyro's own tools run a model's prior once to learn its
    shapes (:class:`~pyro.infer.Predictive`, :class:`~pyro.infer.autoguide.AutoGuideList` and every
    autoguide's set-up), so :meth:`sample` must return a value in the support. It draws from the
    log-uniform prior *truncated* to :math:`\log|w| \in [a, b]` = ``sample_log_bounds`` (default
    :math:`[-6, 0]`, i.e. :math:`|w| \in [0.0025, 1]`) with a random sign, as Pyro's
    :class:`~pyro.distributions.ImproperUniform` docstring suggests a proper stand-in (``.mask(False)``).
    :meth:`log_prob` stays the improper :math:`-\log|w|`. The stand-in is only what a prior predictive
    (``Predictive(model, num_samples=...)`` without a guide) draws: there is no "prior predictive" of an
    improper prior, so read such draws as those of the truncated prior you chose.

    In every other respect it is an ordinary Pyro distribution; shapes are given as for
    :class:`~pyro.distributions.ImproperUniform`::

        w = pyro.sample("w", LogUniform(event_shape=(10,)))        # a weight vector
        w = pyro.sample("w", LogUniform().expand([10]).to_event(1))  # the same
        with pyro.plate("units", 10):
            w = pyro.sample("w", LogUniform())                     # the same, batched

    :param torch.Size batch_shape: The batch shape.
    :param torch.Size event_shape: The event shape.
    :param tuple sample_log_bounds: ``(a, b)``: :meth:`sample` draws :math:`\log|w| \sim \mathcal{U}(a, b)`
        with a random sign.
    :param torch.dtype dtype: the dtype of :meth:`sample`'s draws (default: torch's default dtype); a
        :class:`~pyro_vd.models.VDModel` sets it, and ``device``, to its input's at every call.
    :param device: the device of :meth:`sample`'s draws (default: torch's default device).
    :param bool validate_args: Whether :meth:`log_prob` rejects values outside the support
        (0, NaN, ±inf).
    """

    arg_constraints = {}
    support = nonzero_real
    has_rsample = False

    def __init__(
        self,
        batch_shape=(),
        event_shape=(),
        *,
        sample_log_bounds=DEFAULT_SAMPLE_LOG_BOUNDS,
        dtype=None,
        device=None,
        validate_args=None,
    ):
        self.sample_log_bounds = _check_sample_log_bounds(sample_log_bounds)
        self.dtype = dtype
        self.device = device
        batch_shape = _check_shape("batch_shape", batch_shape)
        event_shape = _check_shape("event_shape", event_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogUniform, _instance)
        new.sample_log_bounds = self.sample_log_bounds
        new.dtype, new.device = self.dtype, self.device
        batch_shape = _check_shape("batch_shape", batch_shape)
        super(LogUniform, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        r""":math:`\log p(w) = -\sum_{\text{event}} \log|w|` (up to the prior's missing constant)."""
        if self._validate_args:
            self._validate_sample(value)
        log_prob = sum_rightmost(-value.abs().log(), self.event_dim)
        return log_prob.expand(broadcast_shape(log_prob.shape, self.batch_shape))

    def sample(self, sample_shape=torch.Size()):
        r"""A draw from the proper stand-in: :math:`\log|w| \sim \mathcal{U}(a, b)`, sign ±1 with
        probability ½ each (``sample_log_bounds`` = :math:`(a, b)`); never 0, NaN or inf."""
        shape = self._extended_shape(sample_shape)
        low, high = self.sample_log_bounds
        dtype = self.dtype or torch.get_default_dtype()
        with torch.no_grad():
            magnitude = torch.exp(low + (high - low) * torch.rand(shape, dtype=dtype, device=self.device))
            sign = torch.randint(0, 2, shape, dtype=dtype, device=self.device).mul_(2).sub_(1)
            return magnitude * sign

    def __repr__(self):
        return f"LogUniform(batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"
