"""The prior of structured (neuron-level) dropout: log-uniform on a bounded interval."""

import math
import numbers

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints


def check_log_bounds(low, high):
    """Validate the truncation bounds ``low < high`` (numbers in log space); return them as floats."""
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not abs(value) < float("inf"):
            raise ValueError(f"{name} must be a finite number (a bound on log θ); got {value!r}")
    if not low < high:
        raise ValueError(f"low must be smaller than high; got low={low!r}, high={high!r}")
    return float(low), float(high)


class TruncatedLogUniform(TorchDistribution):
    r"""
    The log-uniform distribution on :math:`[e^{a}, e^{b}]`: :math:`\log\theta \sim \mathcal{U}(a, b)`,

    .. math:: p(\theta) = \frac{1}{(b - a)\,\theta}, \qquad e^{a} \le \theta \le e^{b}.

    It is the prior of Structured Bayesian Pruning (Neklyudov et al. 2017) for the non-negative
    multiplicative noise θ of a neuron: the unbounded log-uniform prior would make the KL infinite for a
    distribution of log θ, so both prior and posterior are truncated to the same :math:`[a, b]`
    (default :math:`[-20, 0]`). Unlike :class:`LogUniform` it is proper and can be sampled.

    ``mean`` and ``variance`` are computed in float64 and in log space
    (:math:`\log\mathbb{E}\,\theta = b + \log(1 - e^{a-b}) - \log(b - a)`), so they are finite wherever
    the result is representable in the default dtype (float32: :math:`\mathbb{E}\,\theta` up to
    :math:`b \approx 88 + \log(b - a)`, not :math:`e^b` itself); beyond, they raise a ValueError that
    gives the logarithm (:meth:`log_moment` returns it for any bounds).

    :param float low: :math:`a`, the lower bound of log θ.
    :param float high: :math:`b`, the upper bound of log θ.
    :param torch.Size batch_shape: the batch shape (e.g. ``(n_neurons,)``); ``expand`` also works.
    :param torch.dtype dtype: the dtype of :meth:`rsample`'s draws (default: torch's default dtype); a
        :class:`~pyro_vd.models.VDModel` sets it, and ``device``, to its input's at every call (a float64
        model's prior draws were float32, on the CPU whatever the model's device).
    :param device: the device of :meth:`rsample`'s draws (default: torch's default device).
    """

    arg_constraints = {}
    has_rsample = True

    def __init__(
        self, low=-20.0, high=0.0, batch_shape=torch.Size(), *, dtype=None, device=None, validate_args=None
    ):
        self.low, self.high = check_log_bounds(low, high)
        self.dtype, self.device = dtype, device
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        bounds = torch.tensor([self.low, self.high], dtype=torch.float64).exp().tolist()  # e^710 = inf
        return constraints.interval(*bounds)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(TruncatedLogUniform, _instance)
        new.low, new.high = self.low, self.high
        new.dtype, new.device = getattr(self, "dtype", None), getattr(self, "device", None)
        super(TruncatedLogUniform, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        dtype = getattr(self, "dtype", None) or torch.get_default_dtype()
        u = torch.rand(shape, dtype=dtype, device=getattr(self, "device", None))
        return torch.exp(self.low + (self.high - self.low) * u)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        value = torch.as_tensor(value)
        log_prob = -torch.log(value) - torch.log(torch.tensor(self.high - self.low, dtype=value.dtype))
        return log_prob.expand(torch.broadcast_shapes(value.shape, self.batch_shape))

    def log_moment(self, k):
        r""":math:`\log\mathbb{E}\,\theta^k = kb + \log(1 - e^{-k(b-a)}) - \log(k(b - a))` for k > 0, as a
        Python float (float64; finite for any finite bounds)."""
        width = k * (self.high - self.low)
        return k * self.high + math.log(-math.expm1(-width)) - math.log(width)

    def _representable(self, name, log_value):
        dtype = torch.get_default_dtype()
        value = torch.tensor(math.exp(min(log_value, 709.0)), dtype=torch.float64).to(dtype)
        if log_value > 709.0 or not torch.isfinite(value):
            raise ValueError(
                f"the {name} of TruncatedLogUniform(low={self.low}, high={self.high}) is e^{log_value:.4g}, "
                f"which overflows {dtype}; use log_moment() or smaller bounds"
            )
        return value.expand(self.batch_shape)

    @property
    def mean(self):
        return self._representable("mean", self.log_moment(1))

    @property
    def variance(self):
        # Var = E θ² (1 − (E θ)² / E θ²), the ratio in log space (no e^{2b} − (e^b)² cancellation)
        log_second, log_ratio = self.log_moment(2), 2 * self.log_moment(1) - self.log_moment(2)
        return self._representable("variance", log_second + math.log(-math.expm1(min(log_ratio, -1e-300))))

    def entropy(self):
        r""":math:`H = \log(b - a) + (a + b)/2` (the entropy of θ, not of log θ)."""
        value = torch.tensor(self.high - self.low).log() + 0.5 * (self.low + self.high)
        return value.expand(self.batch_shape)
