r"""
Approximate leave-one-out log loss of a VD logistic-regression fit (:class:`~pyro_vd.linear.VDClassifier`):
an estimate of its test log loss from the training rows alone, with no refit (Rahnama Rad & Maleki 2020,
"A scalable estimate of the out-of-sample prediction error via approximate leave-one-out").

With :math:`\ell_n(m) = -\int\log\sigma(m + s_n y)\,\mathcal{N}(y\mid0,1)\,dy` the expected loss of row n at
signed margin :math:`m_n = t_n(x_n^\top\theta + b)`, its slope :math:`-f_n = \ell_n'(m_n)` and curvature
:math:`w_n = \ell_n''(m_n)`, the fit's curvature in (θ over the kept features A, b) is

.. math::  H = \tilde X^\top\operatorname{diag}(w)\tilde X + \operatorname{diag}(\kappa, 0),
    \qquad \kappa_d = \alpha_d\sum_n w_n x_{nd}^2,

:math:`\tilde x_n = (x_{nA}, 1)`; κ is the shrinkage of θ_d by its posterior variance
:math:`\alpha_d\theta_d^2`, as in linear regression, where the posterior mean solves
:math:`(X^\top X + \operatorname{diag}(\alpha_d S_{dd}))\,\theta = X^\top y` (the generalized
cross-validation of :class:`~pyro_vd.linear.VDRegression` uses the same). One Newton step from the fit
without row n moves its margin to

.. math::  m_{-n} = m_n - f_n\,\frac{a_n}{1 - w_n a_n}, \qquad a_n = \tilde x_n^\top H^{-1}\tilde x_n,

and the estimate is :math:`\frac1n\sum_n \ell_n(m_{-n})` (infinite where some :math:`w_na_n \ge 1`, a row
the fit interpolates). Two passes over the rows (:mod:`pyro_vd.linear._rows`, in memory or Dask's).
"""

import numpy as np
import scipy.linalg

from ._vd_newton import _log_sigmoid, _points, _sigmoid

#: κ_d is taken at log α ≤ LOG_ALPHA_CAP: beyond, the feature's θ is fixed for any purpose here (and
#: e^700 times a curvature would overflow).
LOG_ALPHA_CAP = 60.0


def _block_curvature(X, X2, t, theta, sigma2, b, nodes, weights):
    """One block's :math:`\\tilde X^\\top\\operatorname{diag}(w)\\tilde X`."""
    with np.errstate(over="ignore", invalid="ignore"):
        Z, _ = _points(X, X2, t, theta, sigma2, b, nodes, 0.0)
        p = _sigmoid(Z)
    w = (p * (1.0 - p)) @ weights
    X1 = np.column_stack([X, np.ones(len(X))])
    return (X1.T @ (w[:, None] * X1),)


def _block_loo(X, X2, t, theta, sigma2, b, nodes, weights, factor):
    """One block's :math:`\\sum_n \\ell_n(m_{-n})` (inf where a row has leverage ≥ 1)."""
    with np.errstate(over="ignore", invalid="ignore"):
        Z, s = _points(X, X2, t, theta, sigma2, b, nodes, 0.0)
        p = _sigmoid(Z)
    w = (p * (1.0 - p)) @ weights
    f = (1.0 - p) @ weights
    X1 = np.column_stack([X, np.ones(len(X))])
    a = np.einsum("ij,ji->i", X1, scipy.linalg.cho_solve(factor, X1.T, check_finite=False))
    room = 1.0 - w * a
    if not np.all(room > 0.0):
        return (np.inf,)
    m = t * (X @ theta + b) - f * a / room
    return (float(-(_log_sigmoid(m[:, None] + s[:, None] * nodes) @ weights).sum()),)


def loo_log_loss(rows, theta, rho, b, nodes, weights):
    """
    The approximate leave-one-out log loss per row (nats; module docstring) of the fit (θ, ρ = log σ², b)
    over ``rows`` (centred columns, ±1 targets), the features with ρ = −inf out of the model.
    """
    active = np.isfinite(rho)
    theta_a, rho_a = theta[active], rho[active]
    sigma2 = np.exp(np.minimum(rho_a, 700.0))
    (curvature,) = rows.sum(_block_curvature, active, theta_a, sigma2, b, nodes, weights)
    k = int(active.sum())
    log_alpha = rho_a - np.log(np.maximum(theta_a**2, np.finfo(float).tiny))
    shrinkage = np.exp(np.minimum(log_alpha, LOG_ALPHA_CAP)) * np.diag(curvature)[:k]
    curvature[np.arange(k), np.arange(k)] += shrinkage
    try:
        factor = scipy.linalg.cho_factor(curvature, lower=True, check_finite=False)
    except np.linalg.LinAlgError:  # a curvature the fit's own Newton steps would not have reached
        return np.inf
    (total,) = rows.sum(_block_loo, active, theta_a, sigma2, b, nodes, weights, factor)
    return total / rows.n_samples
