r"""
How each linear model decides that a feature is relevant.

* **ARD models** (:class:`RVR`, :class:`RVC`, :class:`GKLRegression`, :class:`GKLClassifier`): irrelevant
  when the prior precision :math:`\alpha_d` exceeds 1e4 (prior standard deviation below 0.01; the bound of
  scikit-learn's ``ARDRegression.threshold_lambda``), or is infinite (basis removed).
* **Variational dropout**, posterior :math:`q(w_d) = \mathcal{N}(\theta_d, \alpha_d\theta_d^2)`: two rules.

  - ``"sparse_vd"``: irrelevant when :math:`\log\alpha_d > 3` (Molchanov et al. 2017): a signal-to-noise
    ratio :math:`\alpha_d^{-1/2}` below :math:`e^{-3/2}`. A test at a fixed level per feature: an
    irrelevant feature passes it with a fixed probability whatever N, so false features grow with d.
  - ``"evidence"`` (the default of :class:`VDRegression`): keep a feature when the ELBO it adds exceeds
    the log prior odds against it, :math:`\log d`.

**The evidence rule.** With the other weights fixed, the VD regression ELBO maximized over
:math:`\theta_d` is :math:`g(\alpha_d) = q_d/(1 + \alpha_d) - \mathrm{KL}(\alpha_d)` (plus terms free
of feature d), :math:`q_d = \beta r_d^2 / (2 S_{dd})` with :math:`r_d` the correlation of feature d with
the others' residual (:func:`~pyro_vd.linear.alpha_update.optimal_log_alpha_profile`). The feature
pruned (:math:`\theta_d = 0`, α = ∞) has :math:`g = 0` (KL(∞) = 0 is the convention under which the
pruned limit of the VD bound *is* the bound of the model without the feature), so the **gain**
:math:`\Delta_d = \max_\alpha g(\alpha) \ge 0` is the ELBO's log-odds for the feature. With prior odds
:math:`1 : d` that a feature is relevant (about one relevant feature expected a priori; the risk-inflation
penalty of Foster & George 1994, :math:`2\log d` in deviance units), the posterior odds favour it when

.. math::  \Delta_d > \log d .

For an irrelevant feature :math:`2q_d \approx \chi^2_1` whatever N, and :math:`\Delta \approx q -
\tfrac12\log 2q - 0.3` for large q, so each passes with probability :math:`\approx 1/(d\sqrt{\pi\log d})`:
the expected number of false features is below one and *falls* with d, instead of growing as d·level.

**Any VD posterior.** At the optimum of :math:`g`, :math:`q` is a function of :math:`\alpha^*` alone
(:math:`q = -\mathrm{KL}'(t)(1 + \alpha)^2/\alpha`, :math:`t = \log\alpha`), and both :math:`\alpha^*`
and Δ are monotone in q; so :math:`\Delta > \log d` is the same as :math:`\log\alpha \le \tau(d)`,
a bound that depends on d only (:func:`evidence_log_alpha_threshold`: τ(100) ≈ −2.3, τ(1000) ≈ −2.8).
For logistic regression or an SVI posterior the same bound is the rule under a local Gaussian
approximation of the likelihood in :math:`w_d`: :func:`vd_relevance` applies it to any log α.
"""

import functools

import numpy as np
from scipy.special import expit

from ..distributions.kl_log_uniform import check_kl_method
from ._kl_numpy import kl_slope_and_curvature, kl_value

#: Sparse VD's log α pruning threshold.
DEFAULT_LOG_ALPHA_THRESHOLD = 3.0
#: ARD prior-precision bound.
DEFAULT_ALPHA_BOUND = 1e4
#: The named VD relevance rules (a float ``threshold`` is a log α bound).
VD_RULES = ("evidence", "sparse_vd")


class EvidenceRuleWarning(UserWarning):
    """The evidence rule kept far fewer features than the data support: its prior odds of 1 : d per
    feature assume a sparse truth (raised by :class:`~pyro_vd.linear.VDRegression` and
    :class:`~pyro_vd.linear.VDClassifier`)."""


def profile_gain(q, log_alpha, kl_method="exact"):
    r""":math:`q\,\sigma(-t) - \mathrm{KL}(t)` at :math:`t = \log\alpha` (0 where log α is ``inf``): the ELBO
    of a feature at (its profile optimum) log α minus the ELBO with the feature pruned."""
    q = np.asarray(q, dtype=np.float64)
    log_alpha = np.broadcast_to(np.asarray(log_alpha, dtype=np.float64), q.shape)
    finite = np.isfinite(log_alpha)
    t = np.where(finite, log_alpha, 0.0)
    return np.where(finite, q * expit(-t) - kl_value(t, kl_method), 0.0)


def evidence_gain(q, kl_method="exact", *, max_log_alpha=None):
    r""":math:`\Delta(q) = \max_{t} q\,\sigma(-t) - \mathrm{KL}(t) \ge 0`, elementwise: what a feature with
    profile coefficient :math:`q = \beta r^2/(2S)` adds to the ELBO at its best α (0 when the supremum is
    α = ∞)."""
    from .alpha_update import LOG_ALPHA_MAX, optimal_log_alpha_profile

    cap = LOG_ALPHA_MAX if max_log_alpha is None else max_log_alpha
    t = optimal_log_alpha_profile(np.atleast_1d(q), kl_method, max_log_alpha=cap)
    t = np.where(t >= cap, np.inf, t)
    return np.maximum(profile_gain(np.atleast_1d(q), t, kl_method), 0.0).reshape(np.shape(q))


def evidence_penalty(n_features):
    r""":math:`\log d`: the log prior odds against a feature when the odds that it is relevant are 1 : d."""
    if isinstance(n_features, bool) or int(n_features) != n_features or n_features < 1:
        raise ValueError(f"n_features must be a positive integer; got {n_features!r}")
    return float(np.log(n_features))


def profile_q(log_alpha, kl_method="exact"):
    r"""The profile coefficient q for which ``log_alpha`` is the optimum of
    :math:`q\sigma(-t) - \mathrm{KL}(t)`: :math:`q = -\mathrm{KL}'(t)\,(1+\alpha)^2/\alpha`."""
    t = np.asarray(log_alpha, dtype=np.float64)
    slope, _ = kl_slope_and_curvature(t, kl_method)
    with np.errstate(divide="ignore", invalid="ignore"):  # |t| ≳ 745: σ(t)σ(−t) = 0, q = ±inf (as before)
        return -slope / (expit(t) * expit(-t))


@functools.lru_cache(maxsize=256)
def _critical_q(penalty, kl_method):
    """The smallest q whose gain reaches ``penalty`` (bisection on the monotone Δ(q))."""
    low, high = 0.5, max(2.0, 2.0 * penalty + 10.0)
    for _ in range(60):
        middle = 0.5 * (low + high)
        if evidence_gain(np.array([middle]), kl_method)[0] > penalty:
            high = middle
        else:
            low = middle
    return high


def check_evidence_kl(kl_method):
    """``kl_method`` if the evidence rule is defined for it, else a ValueError: the gain of a feature is
    measured against the pruned limit KL(∞) = 0, which Kingma's polynomial does not have (it falls to
    −∞ as α grows, so every gain would be 0 and every feature pruned)."""
    check_kl_method(kl_method)
    if kl_method == "kingma":
        raise ValueError(
            "the evidence rule needs a KL that vanishes as α → ∞ (kl_method='exact' or 'molchanov'); "
            "Kingma's approximation falls to -inf there, so no feature's gain is defined. Pass another "
            "kl_method, or threshold='sparse_vd' or a number"
        )
    return kl_method


def evidence_log_alpha_threshold(n_features, kl_method="exact"):
    r"""
    τ(d): the log α bound equivalent to the evidence rule :math:`\Delta > \log d` (module docstring). A
    feature is relevant when :math:`\log\alpha \le \tau(d)`. d = 1 gives the plain VD rule (any finite
    optimum with a positive gain).
    """
    from .alpha_update import optimal_log_alpha_profile

    check_evidence_kl(kl_method)
    q = _critical_q(evidence_penalty(n_features), kl_method)
    return float(optimal_log_alpha_profile(np.array([q]), kl_method)[0])


def check_vd_threshold(threshold):
    """``threshold`` if it is a rule name or a finite real number, else a ValueError."""
    if isinstance(threshold, str):
        if threshold not in VD_RULES:
            raise ValueError(
                f"threshold must be a finite real number, 'evidence' or 'sparse_vd'; got {threshold!r}"
            )
        return threshold
    from ._base import check_real

    return check_real(threshold, "threshold")


def log_alpha_threshold(threshold, n_features, kl_method="exact"):
    r"""The log α bound of ``threshold``: a number as is, ``"sparse_vd"`` → 3, ``"evidence"`` → τ(d)."""
    threshold = check_vd_threshold(threshold)
    if threshold == "sparse_vd":
        return DEFAULT_LOG_ALPHA_THRESHOLD
    if threshold == "evidence":
        return evidence_log_alpha_threshold(n_features, kl_method)
    return threshold


def vd_relevance(log_alpha, threshold="evidence", *, n_features=None, kl_method="exact"):
    r"""
    Relevance of VD weights from their log α (any VD posterior: :class:`VDRegression`,
    :class:`VDClassifier`, an SVI guide): ``log_alpha <= log_alpha_threshold(threshold, d)``, with d =
    ``n_features`` (default: the last axis of ``log_alpha``, the number of features competing; give the
    number that vary where some columns are constant, as the estimators count them: their ``threshold_``).
    """
    log_alpha = np.asarray(log_alpha, dtype=np.float64)
    d = log_alpha.shape[-1] if n_features is None else n_features
    return log_alpha <= log_alpha_threshold(threshold, d, kl_method)


__all__ = [
    "DEFAULT_ALPHA_BOUND",
    "DEFAULT_LOG_ALPHA_THRESHOLD",
    "VD_RULES",
    "EvidenceRuleWarning",
    "check_evidence_kl",
    "check_vd_threshold",
    "evidence_gain",
    "evidence_log_alpha_threshold",
    "evidence_penalty",
    "log_alpha_threshold",
    "profile_gain",
    "profile_q",
    "vd_relevance",
]
