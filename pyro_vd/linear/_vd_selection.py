r"""
The evidence rule inside the VD logistic-regression fit (:class:`~pyro_vd.linear.VDClassifier`'s
``threshold="evidence"``), as :class:`~pyro_vd.linear.VDRegression` applies it inside its own.

A feature stays in the model while the ELBO it adds exceeds :math:`\log d`, the log prior odds 1 : d
against it (:mod:`pyro_vd.linear.relevance`); a feature out of the model has θ = σ = 0, α = ∞ and KL 0.
The fit is a point where both hold:

* **every feature in the model passes**: at the Newton optimum over the features in the model,
  :math:`\log\alpha_d \le \tau(d)`. With the others fixed and the likelihood locally Gaussian in
  :math:`w_d`, the optimum's α is a monotone function of the gain (its profile), so this is
  :math:`\Delta_d > \log d`;
* **no feature out of the model would pass**: with the expected log-likelihood
  :math:`\sum_n f(m_n, s_n)` expanded to second order in a new weight,
  :math:`\mathbb{E}_q\,\ell \approx \mathrm{const} + g_d\theta_d - \tfrac12 h_d(\theta_d^2 + \sigma_d^2)` with
  :math:`g_d = \sum_n x_{nd}t_n f_m(m_n, s_n)` and :math:`h_d = -\sum_n x_{nd}^2 f_{mm}(m_n, s_n)`
  (the score and curvature at :math:`\theta_d = \sigma_d = 0`), the feature's ELBO is
  :math:`q_d/(1+\alpha_d) - \mathrm{KL}(\alpha_d)` with :math:`q_d = g_d^2/(2h_d)`: linear regression's
  profile, whose gain :math:`\Delta(q_d)` (:func:`~pyro_vd.linear.relevance.evidence_gain`) must stay
  at most :math:`\log d`.

The search is the fast RVM's (Tipping & Faul 2003) on the VD bound: it starts from the intercept alone,
admits every feature whose score passes at once (at θ = 0 an irrelevant feature's :math:`2q_d` is about
:math:`\chi^2_1`, so at d = 1000 it passes with probability about 2e-5), fits the model's features by
Newton (:func:`~pyro_vd.linear._vd_newton.newton_fit`, from the profile optimum
:math:`\theta_d = g_d/(h_d(1+\alpha_d))` for a new one), removes the features that no longer pass, and
then admits the best feature out of the model one at a time (correlated features admitted together,
each useless given the other, would be removed together and cycle). A removed feature is admitted again
at most ``MAX_RETURNS`` times: the two Gaussian views (at the optimum and at θ = 0) may disagree by a
little about a feature on the bound, and the search must end.

Every Newton step runs on the features in the model only, so a fit that keeps k of d features costs
about k² per row a step instead of d², and the features with no signal never take the hundreds of
steps they take to creep towards α = ∞ in the plain fit.
"""

import math

import numpy as np

from ._vd_newton import _points, _sigmoid, newton_fit
from .alpha_update import optimal_log_alpha_profile
from .relevance import evidence_gain, evidence_log_alpha_threshold, evidence_penalty

#: A feature is admitted again, after it was removed, at most this many times.
MAX_RETURNS = 2


def _block_scores(X, X2, t, theta, sigma2, b, nodes, weights):
    r"""One block's score :math:`\sum_n x_{nd}t_nf_m` and curvature :math:`-\sum_n x_{nd}^2 f_{mm}` of every
    feature (θ and σ² of features out of the model are 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        Z, _ = _points(X, X2, t, theta, sigma2, b, nodes, 0.0)
        p = _sigmoid(Z)
    f_m = (1.0 - p) @ weights
    curvature = (p * (1.0 - p)) @ weights
    return X.T @ (f_m * t), X2.T @ curvature


def scores(rows, theta, rho, b, nodes, weights):
    """Every feature's profile coefficient :math:`q_d = g_d^2/(2h_d)` at (θ, ρ, b): meaningful for the
    features out of the model (θ_d = σ_d = 0)."""
    everything = np.ones(len(theta), dtype=bool)
    sigma2 = np.where(np.isfinite(rho), np.exp(np.minimum(rho, 700.0)), 0.0)
    theta = np.where(np.isfinite(rho), theta, 0.0)
    g, h = rows.sum(_block_scores, everything, theta, sigma2, b, nodes, weights)
    tiny = np.finfo(float).tiny
    q = np.where(h > tiny, 0.5 * g * g / np.maximum(h, tiny), 0.0)
    return q, g, h


def evidence_fit(rows, n_features, nodes, weights, method, max_iter, tol):
    """
    The evidence rule's fit over ``rows`` (module docstring). Returns ``(theta, rho, b, elbo, n_iter,
    converged, profile)`` as :func:`~pyro_vd.linear._vd_newton.newton_fit` does, n_iter counting every
    Newton step, and each feature's profile log α: its own for a feature in the model, the optimum of its
    Gaussian view (:math:`q_d` above) for one out of it (``LOG_ALPHA_MAX`` where that is α = ∞); features
    out of the model have θ = 0 and ρ = −inf.
    """
    d = n_features
    bound = evidence_log_alpha_threshold(d, method)
    penalty = evidence_penalty(d)
    theta, rho, b = np.zeros(d), np.full(d, -math.inf), 0.0
    active = np.zeros(d, dtype=bool)
    returns = np.zeros(d, dtype=int)  # times a feature was admitted after it had been removed
    was_in = np.zeros(d, dtype=bool)
    n_iter, converged, first = 0, False, True
    profile = np.full(d, np.nan)  # (a search stopped at max_iter reports no profile)
    while n_iter < max_iter:
        theta, rho, b, elbo, steps, converged = newton_fit(
            rows, theta, rho, nodes, weights, method, max_iter - n_iter, tol, b=b, active=active
        )
        n_iter += steps
        active = np.isfinite(rho)
        if not converged:
            break
        log_alpha = np.where(active, rho - np.log(np.maximum(theta * theta, np.finfo(float).tiny)), math.inf)
        failing = active & (log_alpha > bound)
        q, g, h = scores(rows, theta, rho, b, nodes, weights)
        gain = np.where(active, 0.0, evidence_gain(q, method))
        passing = ~active & (gain > penalty) & (returns < MAX_RETURNS)
        if not failing.any() and not passing.any():
            profile = optimal_log_alpha_profile(q, method)
            profile[active] = log_alpha[active]
            break
        converged = False
        theta[failing], rho[failing] = 0.0, -math.inf
        if passing.any() and not first:
            passing &= np.arange(d) == np.argmax(np.where(passing, gain, -np.inf))
        first = False
        returns += passing & was_in
        new = np.flatnonzero(passing)
        t = optimal_log_alpha_profile(q[new], method)
        theta[new] = g[new] / (h[new] * (1.0 + np.exp(t)))
        rho[new] = t + np.log(theta[new] ** 2)
        active = (active & ~failing) | passing
        was_in |= active
    return theta, rho, b, elbo, n_iter, converged, profile
