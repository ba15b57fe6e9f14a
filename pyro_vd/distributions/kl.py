r"""
KL divergences to the :class:`LogUniform` prior, registered with
:func:`torch.distributions.kl_divergence` so that Pyro's
:class:`~pyro.infer.TraceMeanField_ELBO` uses them instead of a Monte Carlo estimate.

* ``VDNormal ‖ LogUniform`` — :func:`kl_log_uniform` with the guide's ``kl_method``.
* ``Normal ‖ LogUniform`` — any Normal is a member of the family, with
  :math:`\log\alpha = 2\log\sigma - \log\mu^2`; the default method is used (wrap it in
  :class:`VDNormal` to choose another).
* ``Independent ‖ LogUniform`` — a ``.to_event(n)`` guide against a prior whose ``event_shape`` was
  given directly (``LogUniform(event_shape=(d,))``): the elementwise KL summed over the event.
  ``Independent ‖ Independent`` (``LogUniform().to_event(n)``) is Pyro's own rule, which unwraps
  both sides and lands on one of the rules above.
* ``TruncatedLogNormal ‖ TruncatedLogUniform`` — structured dropout's neuron noise (Neklyudov et al.
  2017): the KL between the distributions of log θ (a KL is invariant under the bijection log),
  :math:`-H[\log\theta] + \log(b_p - a_p)`, when the guide's interval lies inside the prior's (else ∞).
"""

import math

import torch
from pyro.distributions.util import broadcast_shape, sum_rightmost
from torch.distributions import Independent, Normal, kl_divergence, register_kl

from .kl_log_uniform import DEFAULT_KL_METHOD, kl_log_uniform
from .log_uniform import LogUniform
from .truncated_log_normal import TruncatedLogNormal
from .truncated_log_uniform import TruncatedLogUniform
from .vd_normal import VDNormal, _log_alpha, _working


def _check_scalar_event(q, p):
    if p.event_shape:
        raise ValueError(
            f"KL({type(q).__name__} ‖ LogUniform): the prior has event_shape {tuple(p.event_shape)} but the "
            f"guide has event_shape (); declare the guide's event dimensions with .to_event("
            f"{len(p.event_shape)})"
        )


def _broadcast_to_batch(kl, q, p):
    return kl.expand(broadcast_shape(q.batch_shape, p.batch_shape))


@register_kl(VDNormal, LogUniform)
def _kl_vdnormal_loguniform(q, p):
    _check_scalar_event(q, p)
    return _broadcast_to_batch(q.kl_to_log_uniform(), q, p)


@register_kl(Normal, LogUniform)
def _kl_normal_loguniform(q, p):
    _check_scalar_event(q, p)
    log_alpha = _log_alpha(2.0 * _working(q.scale).log(), q.loc)
    return _broadcast_to_batch(kl_log_uniform(log_alpha, DEFAULT_KL_METHOD), q, p)


@register_kl(Independent, LogUniform)
def _kl_independent_loguniform(q, p):
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"KL(Independent ‖ LogUniform): event shapes differ, guide {tuple(q.event_shape)} vs prior "
            f"{tuple(p.event_shape)}"
        )
    n = q.reinterpreted_batch_ndims
    base_prior = LogUniform(p.batch_shape + p.event_shape[:n], p.event_shape[n:], validate_args=False)
    kl = kl_divergence(q.base_dist, base_prior)
    return sum_rightmost(kl, n)


@register_kl(TruncatedLogNormal, TruncatedLogUniform)
def _kl_truncatedlognormal_truncatedloguniform(q, p):
    kl = math.log(p.high - p.low) - q.entropy_log()
    if q.low < p.low or q.high > p.high:  # q puts mass where the prior has none
        kl = torch.full_like(kl, math.inf)
    return _broadcast_to_batch(kl, q, p)


__all__ = []
