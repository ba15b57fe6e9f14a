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

Every quantity is a sum over rows (:mod:`pyro_vd.linear._rows`: blocks small enough for the cache, on
every core, or a Dask array's blocks on its workers). A step's first candidate is evaluated with its
gradient and Hessian in the same pass, since most steps are taken whole; halved candidates get the ELBO
alone. Everything is in double precision: the objective is not concave, and a Hessian in single
precision (tried: it halves the products' time) changed the steps enough to land in another local
optimum depending on the order of the rows or the blocks of a Dask array (breast-cancer data: ELBO
−50.61 or −49.17 by permutation).
"""

import math

import numpy as np
import scipy.linalg
import torch

from ..distributions.kl_log_uniform import kl_log_uniform, kl_log_uniform_grad

#: log α past which a feature is removed: its KL (≈ α⁻¹/2) is below 1e-17 nats.
PRUNE_LOG_ALPHA = 40.0
#: torch's grain size: its elementwise kernels run in the calling thread only on fewer elements than this
#: (at 32 768 and more they start OpenMP threads of their own, which inside the row parts' threads
#: would oversubscribe the cores).
TORCH_GRAIN_SIZE = 32768


def max_block_rows(n_quadrature):
    """Rows per block that keep rows × quadrature points below torch's grain size."""
    return max(1, (TORCH_GRAIN_SIZE - 1) // n_quadrature)


_SLOPE_STEP = 1e-4  # central difference of k' for k''
_MU_START, _MU_MAX = 1e-6, 1e12


def fit_log_alpha(theta, rho):
    """log α = ρ − log θ² of a fit's features, ∞ for those out of it (ρ = −inf)."""
    return np.where(np.isfinite(rho), rho - np.log(np.maximum(theta * theta, np.finfo(float).tiny)), math.inf)


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


def _log_sigmoid(Z):
    """log σ(Z) elementwise (torch's kernel: about twice scipy's ``log_expit`` on one core)."""
    return torch.nn.functional.logsigmoid(torch.from_numpy(Z)).numpy()


def _sigmoid(Z):
    """σ(Z) elementwise (torch's kernel)."""
    return torch.sigmoid(torch.from_numpy(Z)).numpy()


def _points(X, X2, t, theta, sigma2, b, nodes, floor):
    """The quadrature's points :math:`z_{nk} = m_n + s_n y_k` of a block, and s (its square at least
    ``floor``)."""
    m = t * (X @ theta + b)
    s = np.sqrt(np.maximum(X2 @ sigma2, floor))
    return m[:, None] + s[:, None] * nodes, s


def _block_elbo(X, X2, t, theta, sigma2, b, nodes, weights):
    r"""One block's data term :math:`\sum_n f(m_n, s_n)`."""
    with np.errstate(over="ignore", invalid="ignore"):
        Z, _ = _points(X, X2, t, theta, sigma2, b, nodes, 0.0)
    return (float((_log_sigmoid(Z) @ weights).sum()),)


def _block_elbo_and_derivatives(X, X2, t, theta, sigma2, b, nodes, weights):
    """One block's data term and the sums of :func:`_block_derivatives`, from one Z. A candidate step's:
    overflow there only refuses the step (numpy's error state is per thread, so it is set here, in the
    thread that sums the block)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _block_derivatives(X, X2, t, theta, sigma2, b, nodes, weights, with_data=True)


def _block_derivatives(X, X2, t, theta, sigma2, b, nodes, weights, with_data=False):
    r"""
    One block's sums for the data term's gradient and −Hessian (the module's formulas); the row weights
    of the products are bounded: :math:`|f_{mm}|, |f_{ms}| \le \tfrac12`, :math:`|f_{ss} - f_s/s| \le
    \tfrac12`, and :math:`0 \le u_{nd} \le s_n/2`.
    """
    Z, s = _points(X, X2, t, theta, sigma2, b, nodes, np.finfo(float).tiny)
    data = (float((_log_sigmoid(Z) @ weights).sum()),) if with_data else ()
    p = _sigmoid(Z)
    q = 1.0 - p
    wy = weights * nodes
    f_m, f_s = q @ weights, q @ wy
    pq = p * q
    f_mm, f_ms, f_ss = -(pq @ weights), -(pq @ wy), -(pq @ (wy * nodes))
    U = X2 * (sigma2 / 2.0) / s[:, None]
    # |f_ss| ≤ ¼ and |f_s/s| ≤ ¼ exactly (f_s = -s Σ_k w_k y_k² π'(ξ_k), as Σ_k w_k y_k = 0 and
    # Σ_k w_k y_k² = 1); for s near 0 the computed f_s is rounding (~1e-17, not ~s), so the ratio is
    # held to its bound (it reached 1e132 for s → 0)
    curvature_s = np.clip(f_ss - f_s / s, -0.5, 0.5)
    return data + (
        X.T @ (f_m * t),  # g_θ
        U.T @ f_s,  # g_ρ
        float((f_m * t).sum()),  # g_b
        _weighted_gram(X, -f_mm),  # H_θθ
        (X.T * -(f_ms * t)) @ U,  # H_θρ
        (U.T * -curvature_s) @ U,  # H_ρρ without the diagonal −g_ρ
        -(X.T @ f_mm),  # h_θb
        -(U.T @ (f_ms * t)),  # h_ρb
        -float(f_mm.sum()),  # h_bb
    )


def _weighted_gram(A, weights):
    r""":math:`A^\top \mathrm{diag}(w) A` for :math:`w \ge 0`, as :math:`Y^\top Y` with
    :math:`Y = \mathrm{diag}(\sqrt w) A` (BLAS's syrk: half the products of a general one)."""
    Y = A * np.sqrt(np.maximum(weights, 0.0))[:, None]
    return Y.T @ Y


class _Problem:
    """The objective over ``rows`` (:class:`~pyro_vd.linear._rows.InMemoryRows` or the Dask rows of
    :mod:`pyro_vd.linear.dask`): the data term summed block by block, the KL added once."""

    def __init__(self, rows, nodes, weights, method):
        self.rows, self.nodes, self.weights, self.method = rows, nodes, weights, method
        self.n_samples = rows.n_samples

    def log_alpha(self, theta, rho):
        return rho - np.log(np.maximum(theta * theta, np.finfo(float).tiny))

    def elbo(self, theta, rho, b, active):
        with np.errstate(over="ignore"):
            sigma2 = np.exp(rho[active])
        (data,) = self.rows.sum(_block_elbo, active, theta[active], sigma2, b, self.nodes, self.weights)
        return data - float(_kl(self.log_alpha(theta[active], rho[active]), self.method).sum())

    def gradient_and_curvature(self, theta, rho, b, active):
        """∇L and −∇²L over (θ_active, ρ_active, b)."""
        th, r = theta[active], rho[active]
        sigma2 = np.exp(r)
        parts = self.rows.sum(_block_derivatives, active, th, sigma2, b, self.nodes, self.weights)
        return self._assemble(th, r, parts)

    def evaluate(self, theta, rho, b, active):
        """
        The ELBO, ∇L and −∇²L in one pass over the rows: a candidate step's, whose derivatives the next
        step needs when it is accepted. ``(elbo, None, None)`` where σ² overflows (the ELBO alone then,
        −inf or NaN: the step is refused).
        """
        th, r = theta[active], rho[active]
        with np.errstate(over="ignore"):
            sigma2 = np.exp(r)
        if not np.isfinite(sigma2).all():
            return self.elbo(theta, rho, b, active), None, None
        data, *parts = self.rows.sum(
            _block_elbo_and_derivatives, active, th, sigma2, b, self.nodes, self.weights
        )
        elbo = data - float(_kl(self.log_alpha(th, r), self.method).sum())
        if not np.isfinite(elbo):
            return elbo, None, None
        gradient, curvature = self._assemble(th, r, parts)
        if not (np.isfinite(gradient).all() and np.isfinite(curvature).all()):
            return elbo, None, None  # computed again, and reported, where the step is taken
        return elbo, gradient, curvature

    def _assemble(self, th, r, parts):
        """∇L and −∇²L from the data term's sums and the KL's block-diagonal terms."""
        g_theta, g_rho, g_b, H_tt, H_tr, H_rr, h_tb, h_rb, h_bb = parts
        H_rr[np.diag_indices_from(H_rr)] -= g_rho
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


def newton_fit(rows, theta, rho, nodes, weights, method, max_iter, tol, *, b=0.0, active=None):
    """
    Maximize the ELBO over ``rows`` (:class:`~pyro_vd.linear._rows.InMemoryRows` of X and t, or Dask's)
    from (θ, ρ, b) over the ``active`` features (default: all; the others stay out). Returns
    ``(theta, rho, b, elbo, n_iter, converged)``; pruned features come back with θ = 0 and ρ = −inf.
    """
    problem = _Problem(rows, nodes, weights, method)
    theta, rho, b = theta.astype(float).copy(), rho.astype(float).copy(), float(b)
    active = np.ones(len(theta), dtype=bool) if active is None else np.asarray(active, dtype=bool).copy()
    theta[~active], rho[~active] = 0.0, -math.inf
    elbo, gradient, curvature = problem.evaluate(theta, rho, b, active)
    scale = tol * problem.n_samples  # nats: tol per data point
    mu = 0.0
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is returned
        if gradient is None:
            gradient, curvature = problem.gradient_and_curvature(theta, rho, b, active)
        k = int(active.sum())
        damping = np.diag(np.maximum(np.abs(np.diag(curvature)), 1e-12))
        accepted, first = False, True
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
                if first:  # most steps are taken whole: their derivatives come in the same pass
                    new_elbo, new_gradient, new_curvature = problem.evaluate(
                        new_theta, new_rho, new_b, active
                    )
                    first = False
                else:
                    new_elbo, new_gradient = problem.elbo(new_theta, new_rho, new_b, active), None
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
        gradient, curvature = new_gradient, (new_curvature if new_gradient is not None else None)
        mu = mu / 10.0 if mu > _MU_START else 0.0
        pruned = active & (problem.log_alpha(theta, rho) > PRUNE_LOG_ALPHA)
        if pruned.any():
            theta[pruned], rho[pruned] = 0.0, -math.inf
            active &= ~pruned
            elbo, gradient, curvature = problem.evaluate(theta, rho, b, active)
            continue
        if gain <= scale and decrement <= scale:
            converged = True
            break
    return theta, rho, b, elbo, n_iter, converged
