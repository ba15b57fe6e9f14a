r"""The one-dimensional dropout-rate update of variational dropout for linear models."""

import numpy as np
import torch

from ..distributions.kl_log_uniform import kl_log_uniform, kl_log_uniform_grad

#: log α is searched in [LOG_ALPHA_MIN, LOG_ALPHA_MAX]; the upper end stands for α = ∞ (θ pruned).
LOG_ALPHA_MIN = -30.0
LOG_ALPHA_MAX = 60.0
#: Optima beyond this are reported as ``max_log_alpha`` (α = ∞): the KL is below 1e-15 there.
LOG_ALPHA_INFINITE = 35.0
_GRID_STEP = 0.25


def optimal_log_alpha(c, method="exact", *, max_log_alpha=LOG_ALPHA_MAX, bisections=34):
    r"""
    :math:`\arg\max_{t} \; -c\,e^{t} - \mathrm{KL}(t)` elementwise, :math:`t = \log\alpha`, :math:`c \ge 0`:
    the update of each :math:`\alpha_d` given the rest, with :math:`c_d = \tfrac{\beta}{2}\theta_d^2\sum_n
    x_{nd}^2` for regression (the term :math:`-\tfrac\beta2\kappa_d\theta_d^2`,
    :math:`\kappa_d = \alpha_d\sum_n x_{nd}^2`).

    With the exact KL the objective is concave (its derivative :math:`-ce^t + xF(x)` decreases), so
    the maximizer is the unique root; for the approximations it is found the same way after a grid
    search for the best bracket. :math:`c = 0` gives ``max_log_alpha`` (α → ∞).

    :param numpy.ndarray c: the coefficients, shape (d,).
    :param str method: the KL (see :func:`~pyro_vd.distributions.kl_log_uniform`).
    :param float max_log_alpha: the upper end of the search (also the result for c = 0).
    :returns: numpy float64 array of log α, shape (d,).
    """
    c = np.asarray(c, dtype=np.float64)

    def objective(t, cp):
        return -cp[:, None] * t.exp()[None, :] - kl_log_uniform(t, method)[None, :]

    def derivative(t, cp):
        return -cp * t.exp() - kl_log_uniform_grad(t, method)

    return _maximize(c, objective, derivative, max_log_alpha, bisections)


def optimal_log_alpha_profile(q, method="exact", *, max_log_alpha=LOG_ALPHA_MAX, bisections=34):
    r"""
    :math:`\arg\max_t \; q/(1 + e^t) - \mathrm{KL}(t)` elementwise, :math:`q \ge 0`: the joint update of
    :math:`(\theta_d, \alpha_d)` given the other weights. For linear regression, maximizing the ELBO
    over :math:`\theta_d` for a fixed :math:`\alpha_d` leaves
    :math:`\frac{\beta r_d^2}{2S_{dd}(1+\alpha_d)} - \mathrm{KL}(\alpha_d)` with :math:`r_d` the
    correlation of feature :math:`d` with the residual of the others, so
    :math:`q_d = \beta r_d^2 / (2S_{dd})`.
    As :math:`\alpha \to \infty` the derivative is :math:`(\tfrac12 - q)/\alpha`: a feature with
    :math:`q < \tfrac12` has its supremum at :math:`\alpha = \infty` (pruned in one step, where the plain
    :math:`\alpha` update only grows it by a constant factor per sweep).

    :returns: numpy float64 array of log α (``max_log_alpha`` where the supremum is at α = ∞).
    """
    q = np.asarray(q, dtype=np.float64)

    def objective(t, qp):
        return qp[:, None] * torch.sigmoid(-t)[None, :] - kl_log_uniform(t, method)[None, :]

    def derivative(t, qp):
        s = torch.sigmoid(t)
        return -qp * s * (1.0 - s) - kl_log_uniform_grad(t, method)

    return _maximize(q, objective, derivative, max_log_alpha, bisections)


def _maximize(coefficients, objective, derivative, max_log_alpha, bisections):
    """
    Per coefficient > 0, the maximizer over t ∈ [LOG_ALPHA_MIN, max_log_alpha] of ``objective``: the best
    point of a 0.25-spaced grid, refined by bisection on ``derivative`` within one grid step. A maximizer
    at the top of the grid or past LOG_ALPHA_INFINITE is reported as ``max_log_alpha`` (α = ∞), and so
    is every coefficient ≤ 0. The grid stops one unit past LOG_ALPHA_INFINITE (everything beyond is
    reported as α = ∞ anyway), so a large ``max_log_alpha`` costs nothing and e^t stays finite.
    """
    result = np.full(coefficients.shape, float(max_log_alpha))
    positive = coefficients > 0
    if not positive.any():
        return result
    cp = torch.as_tensor(coefficients[positive])
    top = min(float(max_log_alpha), LOG_ALPHA_INFINITE + 1.0)
    grid = torch.arange(LOG_ALPHA_MIN, top + _GRID_STEP / 2, _GRID_STEP, dtype=torch.float64)
    best = objective(grid, cp).argmax(dim=1)
    at_top = best == len(grid) - 1
    low = (grid[best] - _GRID_STEP).clamp(min=LOG_ALPHA_MIN)
    high = (grid[best] + _GRID_STEP).clamp(max=top)
    for _ in range(bisections):
        middle = 0.5 * (low + high)
        rising = derivative(middle, cp) > 0
        low = torch.where(rising, middle, low)
        high = torch.where(rising, high, middle)
    found = 0.5 * (low + high)
    infinite = at_top | (found >= min(LOG_ALPHA_INFINITE, max_log_alpha))
    result[positive] = torch.where(infinite, torch.full_like(found, float(max_log_alpha)), found).numpy()
    return result
