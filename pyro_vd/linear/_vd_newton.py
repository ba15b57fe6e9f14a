r"""
Damped Newton maximization of the VD logistic-regression ELBO (:class:`~pyro_vd.linear.VDClassifier`).

The objective, over :math:`(\theta, \rho = \log\sigma^2, b)`, with :math:`m_n = t_n(x_n^\top\theta + b)`,
:math:`s_n^2 = \sum_d x_{nd}^2 e^{\rho_d}` and :math:`\lambda_d = \log\alpha_d = \rho_d - \log\theta_d^2`:

.. math::

    \mathcal{L} = \sum_n f(m_n, s_n) - \sum_d k(\lambda_d), \qquad
    f(m, s) = \sum_k w_k \log\sigma(m + s\,y_k),

:math:`(y_k, w_k)` a Gauss–Hermite rule and :math:`k` the KL of the chosen method. Its derivatives are those
of the quadrature itself (so the optimum is the quadrature objective's, as with automatic differentiation):
with :math:`z_k = m + s y_k` and :math:`\pi_k = \sigma(z_k)`,
:math:`f_m = \sum_k w_k(1-\pi_k)`, :math:`f_s = \sum_k w_k(1-\pi_k)y_k`,
:math:`f_{mm} = -\sum_k w_k\pi_k(1-\pi_k)`, :math:`f_{ms} = -\sum_k w_k\pi_k(1-\pi_k)y_k`,
:math:`f_{ss} = -\sum_k w_k\pi_k(1-\pi_k)y_k^2`. With :math:`u_{nd} = \partial s_n/\partial\rho_d =
x_{nd}^2e^{\rho_d}/(2s_n)` and :math:`\partial^2 s_n/\partial\rho_d\partial\rho_e = \delta_{de}u_{nd} -
u_{nd}u_{ne}/s_n`, the data term's Hessian is three matrix products,

.. math::

    H_{\theta\theta} = X^\top \mathrm{diag}(f_{mm}) X, \quad
    H_{\theta\rho} = X^\top \mathrm{diag}(t f_{ms}) U, \quad
    H_{\rho\rho} = U^\top \mathrm{diag}(f_{ss} - f_s/s) U + \mathrm{diag}(U^\top f_s),

and the KL's is block-diagonal in :math:`(\theta_d, \rho_d)`: :math:`\partial_\rho = k'`,
:math:`\partial_\theta = -2k'/\theta`, :math:`\partial^2_\rho = k''`, :math:`\partial_\theta\partial_\rho =
-2k''/\theta`, :math:`\partial^2_\theta = (4k'' + 2k')/\theta^2` (:math:`k''` by a central difference of the
exact slope :math:`k'`: it shapes the step, never the optimum).

The step solves :math:`(-H + \mu\,\mathrm{diag}|H|)\,\delta = \nabla\mathcal{L}` with the smallest
:math:`\mu \ge 0` (from 0, then 10⁻⁶, ×10) that makes the matrix positive definite (the objective is not
concave in θ near 0), moves no log σ² by more than 5, and is halved until it raises :math:`\mathcal{L}`
(after 8 halvings :math:`\mu` grows instead). An irrelevant feature's optimum is at infinity
(:math:`\theta \to 0`, :math:`\sigma^2 \to 0`, :math:`\lambda \to \infty`); once :math:`\lambda_d` passes
``PRUNE_LOG_ALPHA`` its KL is below :math:`10^{-17}` and it is removed (θ = σ = 0, λ = ∞), as RVM
solvers remove α = ∞. The fit has converged when a step raises :math:`\mathcal{L}` by less than ``tol``
nats per data point and the Newton decrement :math:`\nabla\mathcal{L}^\top\delta` is as small.
"""

import math

import numpy as np
import scipy.linalg
import torch
from scipy.special import expit, log_expit

from ..distributions.kl_log_uniform import kl_log_uniform, kl_log_uniform_grad

#: log α past which a feature is removed: its KL (≈ α⁻¹/2) is below 1e-17 nats.
PRUNE_LOG_ALPHA = 40.0
_SLOPE_STEP = 1e-4  # central difference of k' for k''
_MU_START, _MU_MAX = 1e-6, 1e12
_MAX_LOG_STEP = 5.0  # the largest change of a log σ² in one step
_HALVINGS = 8  # backtracking halvings of a step before the damping grows


def _kl(log_alpha, method):
    return kl_log_uniform(torch.as_tensor(log_alpha), method).numpy()


def _kl_slopes(log_alpha, method):
    """(k', k'') at ``log_alpha``."""
    slope = kl_log_uniform_grad(torch.as_tensor(log_alpha), method).numpy()
    up = kl_log_uniform_grad(torch.as_tensor(log_alpha + _SLOPE_STEP), method).numpy()
    down = kl_log_uniform_grad(torch.as_tensor(log_alpha - _SLOPE_STEP), method).numpy()
    return slope, (up - down) / (2.0 * _SLOPE_STEP)


class _Problem:
    def __init__(self, X, t, nodes, weights, method):
        self.X, self.X2, self.t = X, X * X, t
        self.nodes, self.weights, self.method = nodes, weights, method
        self._columns_of = None  # the active set the copies below are of

    def columns(self, active):
        """X and X² restricted to the active features: copied once per active set (they only shrink),
        not at every evaluation."""
        if self._columns_of is None or not np.array_equal(self._columns_of, active):
            self._columns_of = active.copy()
            all_active = active.all()
            self._active_X = self.X if all_active else self.X[:, active]
            self._active_X2 = self.X2 if all_active else self.X2[:, active]
        return self._active_X, self._active_X2

    def log_alpha(self, theta, rho):
        return rho - np.log(np.maximum(theta * theta, np.finfo(float).tiny))

    def elbo(self, theta, rho, b, active):
        Xa, X2a = self.columns(active)
        m = self.t * (Xa @ theta[active] + b)
        with np.errstate(over="ignore"):
            s = np.sqrt(np.maximum(X2a @ np.exp(rho[active]), 0.0))
        Z = m[:, None] + s[:, None] * self.nodes
        data = float((log_expit(Z) @ self.weights).sum())
        return data - float(_kl(self.log_alpha(theta[active], rho[active]), self.method).sum())

    def gradient_and_curvature(self, theta, rho, b, active):
        """∇L and −∇²L over (θ_active, ρ_active, b)."""
        X, X2 = self.columns(active)
        th, r = theta[active], rho[active]
        m = self.t * (X @ th + b)
        s = np.sqrt(np.maximum(X2 @ np.exp(r), np.finfo(float).tiny))
        Z = m[:, None] + s[:, None] * self.nodes
        p = expit(Z)
        q = 1.0 - p
        pq = p * q
        w, y = self.weights, self.nodes
        f_m, f_s = q @ w, q @ (w * y)
        f_mm, f_ms, f_ss = -(pq @ w), -(pq @ (w * y)), -(pq @ (w * y * y))
        U = X2 * (np.exp(r) / 2.0) / s[:, None]
        # gradient of the data term
        g_theta = X.T @ (f_m * self.t)
        g_rho = U.T @ f_s
        g_b = float((f_m * self.t).sum())
        # −Hessian of the data term
        H_tt = -(X.T * f_mm) @ X
        H_tr = -(X.T * (f_ms * self.t)) @ U
        H_rr = -(U.T * (f_ss - f_s / s)) @ U
        H_rr[np.diag_indices_from(H_rr)] -= g_rho
        h_tb = -(X.T @ f_mm)
        h_rb = -(U.T @ (f_ms * self.t))
        h_bb = -float(f_mm.sum())
        # the KL, block-diagonal in (θ_d, ρ_d)
        k1, k2 = _kl_slopes(self.log_alpha(th, r), self.method)
        inv = np.where(th != 0.0, 1.0 / np.where(th != 0.0, th, 1.0), 0.0)
        g_theta = g_theta + 2.0 * k1 * inv
        g_rho = g_rho - k1
        H_tt[np.diag_indices_from(H_tt)] += (4.0 * k2 + 2.0 * k1) * inv * inv
        H_tr[np.diag_indices_from(H_tr)] += -2.0 * k2 * inv
        H_rr[np.diag_indices_from(H_rr)] += k2
        k = len(th)
        H = np.empty((2 * k + 1, 2 * k + 1))
        H[:k, :k], H[:k, k : 2 * k], H[k : 2 * k, :k] = H_tt, H_tr, H_tr.T
        H[k : 2 * k, k : 2 * k] = H_rr
        H[:k, -1] = H[-1, :k] = h_tb
        H[k : 2 * k, -1] = H[-1, k : 2 * k] = h_rb
        H[-1, -1] = h_bb
        return np.concatenate([g_theta, g_rho, [g_b]]), H


def newton_fit(X, t, theta, rho, nodes, weights, method, max_iter, tol):
    """
    Maximize the ELBO from (θ, ρ, b = 0). Returns ``(theta, rho, b, elbo, n_iter, converged)``; pruned
    features come back with θ = 0 and ρ = −inf.
    """
    problem = _Problem(X, t, nodes, weights, method)
    theta, rho, b = theta.astype(float).copy(), rho.astype(float).copy(), 0.0
    active = np.ones(len(theta), dtype=bool)
    elbo = problem.elbo(theta, rho, b, active)
    scale = tol * len(t)  # nats: tol per data point
    mu = 0.0
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is returned
        gradient, curvature = problem.gradient_and_curvature(theta, rho, b, active)
        k = int(active.sum())
        damping = np.diag(np.maximum(np.abs(np.diag(curvature)), 1e-12))
        accepted = False
        while not accepted and mu <= _MU_MAX:
            try:  # the smallest damping that makes the curvature positive definite
                factor = scipy.linalg.cho_factor(curvature + mu * damping, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                mu = max(10.0 * mu, _MU_START)
                continue
            step = scipy.linalg.cho_solve(factor, gradient, check_finite=False)
            # at most _MAX_LOG_STEP in any log σ² (e^ρ must not overflow), then backtracking
            step *= min(1.0, _MAX_LOG_STEP / max(np.abs(step[k : 2 * k]).max(initial=0.0), 1e-300))
            for _ in range(_HALVINGS):
                new_theta, new_rho = theta.copy(), rho.copy()
                new_theta[active] += step[:k]
                new_rho[active] += step[k : 2 * k]
                new_b = b + step[-1]
                new_elbo = problem.elbo(new_theta, new_rho, new_b, active)
                if np.isfinite(new_elbo) and new_elbo >= elbo:
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                mu = max(10.0 * mu, _MU_START)
        if not accepted:  # no step raises the ELBO any more: a (numerical) optimum
            converged = True
            break
        decrement = float(gradient @ step)
        gain = new_elbo - elbo
        theta, rho, b, elbo = new_theta, new_rho, new_b, new_elbo
        mu = mu / 10.0 if mu > _MU_START else 0.0
        pruned = active & (problem.log_alpha(theta, rho) > PRUNE_LOG_ALPHA)
        if pruned.any():
            theta[pruned], rho[pruned] = 0.0, -math.inf
            active &= ~pruned
            elbo = problem.elbo(theta, rho, b, active)
            continue
        if gain <= scale and decrement <= scale:
            converged = True
            break
    return theta, rho, b, elbo, n_iter, converged
