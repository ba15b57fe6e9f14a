"""The variational dropout posterior q(w) = N(θ, αθ²)."""

import math
import numbers

import torch
from pyro.distributions import Normal
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all, lazy_property

from .kl_log_uniform import (
    DEFAULT_KL_METHOD,
    check_kl_method,
    kl_log_uniform,
    kl_log_uniform_additive,
    kl_log_uniform_additive_sum,
)

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _working(tensor):
    """float16/bfloat16 as float32 (log θ² of a float16 θ below 7.8e-3 would floor θ² at float16's tiny
    and flip pruning decisions); other dtypes as they are."""
    return tensor.float() if tensor.dtype in _HALF_DTYPES else tensor


def _log_theta2_working(theta):
    theta = _working(theta)
    return theta.square().clamp_min(torch.finfo(theta.dtype).tiny).log()


def _log_theta2(theta):
    """log θ² = 2 log|θ|, finite at θ = 0 (θ² is floored at the smallest normal number of θ's dtype, or
    of float32 for float16/bfloat16, in which it is computed); in θ's dtype."""
    return _log_theta2_working(theta).to(theta.dtype)


def _log_alpha(log_sigma2, theta):
    """log α = log σ² − log θ² in θ's dtype, computed in float32 for a float16/bfloat16 θ and cast back
    once."""
    return (_working(log_sigma2) - _log_theta2_working(theta)).to(theta.dtype)


def _check_bound(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number or None; got {type(value).__name__}")
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    return float(value)


class _RefusePointMassGradient(torch.autograd.Function):
    """The identity on a log density, whose backward pass raises where q is degenerate: θ = 0 or a
    variance that underflows (see :meth:`VDNormal.log_prob`). A Function, not a tensor hook:
    ``torch.jit.trace`` keeps it, so ``JitTrace_ELBO`` raises too. ``degenerate`` has θ's shape."""

    @staticmethod
    def forward(ctx, log_prob, degenerate):
        ctx.save_for_backward(degenerate)
        return log_prob.view_as(log_prob)

    @staticmethod
    def backward(ctx, grad):
        (degenerate,) = ctx.saved_tensors
        count = int(degenerate.sum())
        if count:
            raise ValueError(
                f"VDNormal.log_prob: theta is 0 (or its variance alpha theta^2 underflows) at {count} of "
                f"{degenerate.numel()} entries of q(w) = N(theta, alpha theta^2), a point mass there, and "
                "the gradient of log q(w) - log p(w) at a sampled w is not finite. An ELBO that "
                "differentiates it (Trace_ELBO, JitTrace_ELBO, TraceGraph_ELBO) needs theta away from "
                "0: start it elsewhere (AutoVariationalDropout(..., init_theta='near_zero') rather than "
                "'zeros'), or use an ELBO with the closed-form KL (pyro_vd's VariationalDropoutELBO, or "
                "Pyro's TraceMeanField_ELBO)"
            )
        return grad, None


class VDNormal(Normal):
    r"""
    The variational dropout family :math:`q(w) = \mathcal{N}(\theta, \alpha\theta^2)`
    (Kingma et al. 2015), a :class:`~pyro.distributions.Normal` with ``loc = θ`` and
    ``scale = σ`` in every respect (``rsample``, ``log_prob``, ``entropy``, ``expand``,
    ``to_event``), parameterized by the dropout rate :math:`\alpha = \sigma^2/\theta^2` it implies.

    Two parameterizations:

    * **additive** (Sparse VD, Molchanov et al. 2017; the default): ``VDNormal(theta, log_sigma2)``
      with :math:`\sigma^2 = \alpha\theta^2` learned directly, so that
      :math:`\log\alpha = \log\sigma^2 - \log\theta^2`. The noise no longer scales the gradient of
      :math:`\theta`, which is what lets :math:`\alpha` grow without bound and prune weights.
    * **multiplicative** (Kingma et al. 2015): ``VDNormal.from_log_alpha(theta, log_alpha)``,
      :math:`w = \theta(1 + \sqrt\alpha\,\varepsilon)`. ``log_alpha`` may be shared, e.g. of shape
      ``(out, 1)`` for one :math:`\alpha` per output neuron, or a scalar for one per layer.

    ``min_log_alpha`` / ``max_log_alpha`` clip :math:`\log\alpha` consistently for the noise and the
    KL (the scale becomes :math:`|\theta|\sqrt{\alpha_\text{clipped}}`); ``max_log_alpha=0``
    reproduces Kingma's :math:`\alpha \le 1`.

    **Choosing the KL.** ``kl_method`` (``"molchanov"``, ``"kingma"`` or ``"exact"``; see
    :func:`~pyro_vd.distributions.kl_log_uniform`) is the one place where the KL to a
    :class:`~pyro_vd.distributions.LogUniform` prior is chosen:
    ``torch.distributions.kl_divergence(q, LogUniform())`` — and hence Pyro's
    :class:`~pyro.infer.TraceMeanField_ELBO` — computes it with that method, also through
    ``.to_event()``::

        def guide(x, y):
            theta = pyro.param("theta", 0.1 * torch.randn(10))
            log_sigma2 = pyro.param("log_sigma2", torch.full((10,), -10.0))
            pyro.sample("w", VDNormal(theta, log_sigma2, kl_method="exact").to_event(1))

    :param theta: the mean :math:`\theta`.
    :param log_sigma2: :math:`\log\sigma^2` (additive parameterization).
    :param log_alpha: :math:`\log\alpha` (multiplicative parameterization), instead of
        ``log_sigma2``; prefer :meth:`from_log_alpha`.
    :param float min_log_alpha: optional lower clip of :math:`\log\alpha`.
    :param float max_log_alpha: optional upper clip of :math:`\log\alpha`.
    :param float prune_above: optional **train-time pruning** (the Sparse VD authors' code,
        ``train_clip``): the mean is :math:`\theta\,[\log\alpha < \text{prune\_above}]`, so a
        weight past the pruning threshold adds only noise to the activations, as it adds nothing to the
        pruned network at test time; the variance :math:`\alpha\theta^2` and the KL keep the unpruned
        θ (``loc`` is then not θ: ``theta`` is).
    :param prune_log_alpha: optional log α that the pruning reads instead of this q's own (clipped) one,
        broadcast to θ's shape and detached: e.g. an iterate average of log α, steadier than the live
        iterate (:class:`~pyro_vd.guides.AutoVariationalDropout` passes its average).
    :param str kl_method: how the KL to :class:`LogUniform` is computed.
    """

    arg_constraints = {"theta": constraints.real}  # log σ² / log α: checked in __init__ (lazily derived)

    def __init__(
        self,
        theta,
        log_sigma2=None,
        *,
        log_alpha=None,
        min_log_alpha=None,
        max_log_alpha=None,
        prune_above=None,
        prune_log_alpha=None,
        kl_method=DEFAULT_KL_METHOD,
        validate_args=None,
    ):
        if (log_sigma2 is None) == (log_alpha is None):
            raise TypeError(
                "VDNormal needs exactly one of log_sigma2 (additive) or log_alpha (multiplicative)"
            )
        self.min_log_alpha = _check_bound("min_log_alpha", min_log_alpha)
        self.max_log_alpha = _check_bound("max_log_alpha", max_log_alpha)
        if (
            self.min_log_alpha is not None
            and self.max_log_alpha is not None
            and self.min_log_alpha > self.max_log_alpha
        ):
            raise ValueError(
                f"min_log_alpha ({self.min_log_alpha}) must not exceed max_log_alpha ({self.max_log_alpha})"
            )
        self.kl_method = check_kl_method(kl_method)
        self._multiplicative = log_alpha is not None
        self.theta, raw = broadcast_all(theta, log_alpha if self._multiplicative else log_sigma2)
        if self._multiplicative:
            self._raw_log_alpha = raw
        else:
            self._raw_log_sigma2 = raw
        self.prune_above = _check_bound("prune_above", prune_above)
        if prune_log_alpha is not None and self.prune_above is None:
            raise ValueError("prune_log_alpha is what prune_above is compared with; give prune_above too")
        self.loc = self.theta if self.prune_above is None else self._pruned_loc(prune_log_alpha)
        # Normal.__init__ is skipped: the scale is computed only when something asks for it (the local
        # reparameterization and the KL never do).
        super(torch.distributions.Normal, self).__init__(self.theta.shape, validate_args=validate_args)
        if self._validate_args:
            name = "log_alpha" if self._multiplicative else "log_sigma2"
            for label, value in (("theta", self.theta), (name, raw)):
                if not torch.isfinite(value).all():
                    found = "NaN" if torch.isnan(value).any() else "inf"
                    raise ValueError(
                        f"Expected parameter {label} of VDNormal to be finite real numbers, but found {found}"
                    )

    def _pruned_loc(self, prune_log_alpha=None):
        """θ with the weights whose (clipped) log α — or ``prune_log_alpha`` — is at or above
        ``prune_above`` set to 0 (the mask carries no gradient; the variance αθ² and the KL keep the
        unpruned θ)."""
        if prune_log_alpha is None:
            prune_log_alpha = self.log_alpha  # (the KL then reuses this log α)
        kept = torch.as_tensor(prune_log_alpha).detach().expand(self.theta.shape) < self.prune_above
        return torch.where(kept, self.theta, self.theta.new_zeros(()))

    def log_prob(self, value):
        r"""
        :math:`\log\mathcal{N}(w \mid \theta, \alpha\theta^2)`, as :class:`~pyro.distributions.Normal`'s.

        Where the scale follows θ (multiplicative, shrinkage, or a clipped log α), θ = 0 makes q(w) a
        point mass. An ELBO that differentiates :math:`\log q(w) - \log p(w)` at a sample w = θ + σε
        (Pyro's ``Trace_ELBO``, ``JitTrace_ELBO``, ``TraceGraph_ELBO``) relies on its ±1/θ terms
        cancelling: where θ² is floored (below the smallest normal number of its dtype) the scale no
        longer follows θ and the gradient is 1/w ≈ 10¹⁹ and up, and where the variance αθ² underflows
        it is NaN (measured: every parameter NaN at the first step from θ = 0, silently under
        ``JitTrace_ELBO``). "Underflows" is below the smallest normal number of θ's dtype (float16:
        6·10⁻⁵), and below its square root in a step compiled by ``torch.jit.trace``, whose backward
        pass goes through σ⁴ (NaN from log σ² ≈ −52 in float32). The value stays finite, but the
        backward pass through such a log density raises a ``ValueError``. ELBOs that compute this
        density but take the closed-form KL (``TraceMeanField_ELBO``;
        :class:`~pyro_vd.inference.VariationalDropoutELBO` never asks for it) do not differentiate it,
        and train from θ = 0.
        """
        log_prob = super().log_prob(value)
        if (self._multiplicative or self._clipped) and torch.is_grad_enabled() and log_prob.requires_grad:
            floor = torch.finfo(_working(self.theta).dtype).tiny  # where θ² is floored
            # the variance is computed in θ's own dtype (float16's smallest normal is 6e-5); a graph
            # traced by torch.jit (JitTrace_ELBO) takes its gradient through σ⁴, eager torch through σ²
            log_tiny = math.log(torch.finfo(self.theta.dtype).tiny)
            bound = log_tiny / 2 if torch.jit.is_tracing() else log_tiny
            degenerate = (_working(self.theta.detach()).square() < floor) | (self.log_sigma2.detach() < bound)
            log_prob = _RefusePointMassGradient.apply(log_prob, degenerate)
        return log_prob

    @classmethod
    def from_log_alpha(cls, theta, log_alpha, **kwargs):
        r"""The multiplicative parameterization: :math:`q(w) = \mathcal{N}(\theta, \alpha\theta^2)`."""
        return cls(theta, log_alpha=log_alpha, **kwargs)

    @property
    def _clipped(self):
        return self.min_log_alpha is not None or self.max_log_alpha is not None

    @lazy_property
    def log_alpha(self):
        r""":math:`\log\alpha = \log\sigma^2 - \log\theta^2` (clipped if asked), finite at θ = 0."""
        if self._multiplicative:
            log_alpha = self._raw_log_alpha
        else:
            log_alpha = _log_alpha(self._raw_log_sigma2, self.theta)
        if self._clipped:
            log_alpha = log_alpha.clamp(self.min_log_alpha, self.max_log_alpha)
        return log_alpha

    @lazy_property
    def log_sigma2(self):
        r""":math:`\log\sigma^2 = \log\alpha + \log\theta^2`: the variance actually used."""
        if not self._multiplicative and not self._clipped:
            return self._raw_log_sigma2
        return self.log_alpha + _log_theta2(self.theta)

    @lazy_property
    def scale(self):
        r""":math:`\sigma = \exp(\tfrac12\log\sigma^2)`."""
        return self.log_sigma2.mul(0.5).exp()

    @property
    def variance(self):
        r""":math:`\sigma^2 = \alpha\theta^2`."""
        return self.log_sigma2.exp()

    @property
    def alpha(self):
        r"""The dropout rate :math:`\alpha = \sigma^2/\theta^2` (binary dropout rate p = α / (1 + α))."""
        return self.log_alpha.exp()

    @property
    def _fused_kl(self):
        """Whether the KL can come straight from (θ, log σ²) in one fused node: additive, unclipped, and
        log α not already computed (then the KL of that tensor costs less)."""
        return not self._multiplicative and not self._clipped and "log_alpha" not in self.__dict__

    def kl_to_log_uniform(self, method=None):
        r"""
        :math:`\mathrm{KL}(q\,\|\,\text{LogUniform})` per element by ``method`` (default: ``kl_method``).
        For the additive, unclipped parameterization it is computed straight from
        :math:`(\theta, \log\sigma^2)` in one fused autograd node (first-order gradients only).
        """
        method = self.kl_method if method is None else check_kl_method(method)
        if self._fused_kl:
            return kl_log_uniform_additive(self.theta, self._raw_log_sigma2, method)
        return kl_log_uniform(self.log_alpha, method)

    def kl_to_log_uniform_sum(self, method=None):
        r"""
        :math:`\sum \mathrm{KL}(q\,\|\,\text{LogUniform})` over every element, a 0-dim tensor: what the
        ELBO needs, computed for the additive, unclipped parameterization in one fused node that
        returns the sum itself (:func:`~pyro_vd.distributions.kl_log_uniform_additive_sum`).
        """
        method = self.kl_method if method is None else check_kl_method(method)
        if self._fused_kl:
            return kl_log_uniform_additive_sum(self.theta, self._raw_log_sigma2, method)
        return kl_log_uniform(self.log_alpha, method).sum()

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(VDNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.min_log_alpha = self.min_log_alpha
        new.max_log_alpha = self.max_log_alpha
        new.prune_above = self.prune_above
        new.kl_method = self.kl_method
        new._multiplicative = self._multiplicative
        new.theta = self.theta.expand(batch_shape)
        if self._multiplicative:
            new._raw_log_alpha = self._raw_log_alpha.expand(batch_shape)
        else:
            new._raw_log_sigma2 = self._raw_log_sigma2.expand(batch_shape)
        for name in ("log_alpha", "log_sigma2", "scale"):
            if name in self.__dict__:
                new.__dict__[name] = self.__dict__[name].expand(batch_shape)
        new.loc = new.theta if self.prune_above is None else self.loc.expand(batch_shape)
        # Skip Normal.__init__ (it would broadcast loc/scale again): initialize the base Distribution.
        super(torch.distributions.Normal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def __repr__(self):
        parameterization = "log_alpha" if self._multiplicative else "log_sigma2"
        clip = ""
        if self._clipped:
            clip = f", log_alpha in [{self.min_log_alpha}, {self.max_log_alpha}]"
        return (
            f"VDNormal(batch_shape={tuple(self.batch_shape)}, {parameterization}, "
            f"kl_method={self.kl_method!r}{clip})"
        )
