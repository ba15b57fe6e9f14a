r"""The one-dimensional dropout-rate update of variational dropout for linear models."""

import functools

import numpy as np
from scipy.special import expit

from ..distributions.kl_log_uniform import check_kl_method
from ._kl_numpy import kl_slope_and_curvature, kl_value

#: log α is searched in [LOG_ALPHA_MIN, LOG_ALPHA_MAX]; the upper end stands for α = ∞ (θ pruned).
LOG_ALPHA_MIN = -30.0
LOG_ALPHA_MAX = 60.0
#: Optima beyond this are reported as ``max_log_alpha`` (α = ∞): the KL is below 1e-15 there.
LOG_ALPHA_INFINITE = 35.0
_GRID_STEP = 0.25
#: The refinement's tolerance on log α, and its cap on steps (bisection alone reaches 1e-12 in 39).
_TOL = 1e-12
#: How much worse than the grid's best point a bracket's end may be and still be taken (relative).
_END_TOL = 1e-12
_MAX_STEPS = 60


def optimal_log_alpha(c, method="exact", *, max_log_alpha=LOG_ALPHA_MAX):
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
    check_kl_method(method)

    def objective(t, cp, kl):
        return -cp * np.exp(t) - kl

    def derivatives(t, cp):
        slope, curvature = kl_slope_and_curvature(t, method)
        e = cp * np.exp(t)
        return -e - slope, -e - curvature

    return _maximize(np.asarray(c, dtype=np.float64), objective, derivatives, method, max_log_alpha)


def optimal_log_alpha_profile(q, method="exact", *, max_log_alpha=LOG_ALPHA_MAX):
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
    check_kl_method(method)

    def objective(t, qp, kl):
        return qp * expit(-t) - kl

    def derivatives(t, qp):
        # d/dt q σ(−t) = −q s(1 − s), s = σ(t); its derivative −q s(1 − s)(1 − 2s)
        slope, curvature = kl_slope_and_curvature(t, method)
        s = expit(t)
        w = qp * s * (1.0 - s)
        return -w - slope, -w * (1.0 - 2.0 * s) - curvature

    return _maximize(np.asarray(q, dtype=np.float64), objective, derivatives, method, max_log_alpha)


def _maximize(coefficients, objective, derivatives, method, max_log_alpha):
    """
    Per coefficient > 0, the maximizer over t ∈ [LOG_ALPHA_MIN, max_log_alpha] of
    ``objective(t, c, KL(t))``: the best point of a 0.25-spaced grid, refined within one grid step on
    either side by a safeguarded Newton iteration on the derivative (:func:`_refine`). A maximizer at the
    top of the grid or past LOG_ALPHA_INFINITE is reported as ``max_log_alpha`` (α = ∞), and so is every
    coefficient ≤ 0. The grid stops one unit past LOG_ALPHA_INFINITE (everything beyond is reported as
    α = ∞ anyway), so a large ``max_log_alpha`` costs nothing and e^t stays finite.
    """
    result = np.full(coefficients.shape, float(max_log_alpha))
    positive = coefficients > 0
    if not positive.any():
        return result
    cp = coefficients[positive]
    top = min(float(max_log_alpha), LOG_ALPHA_INFINITE + 1.0)
    grid, grid_kl = _grid(method, top)
    with np.errstate(over="ignore"):  # c e^t = inf for huge c: the objective is −inf there, as it should be
        values = objective(grid[None, :], cp[:, None], grid_kl[None, :])
        best = values.argmax(axis=1)
        # the grid's best point at its top stands for α = ∞: nothing to refine there
        inside = best < len(grid) - 1
        found = np.full(cp.shape, np.inf)
        if inside.any():
            cp, best = cp[inside], best[inside]
            best_value = values[np.flatnonzero(inside), best]
            low = np.maximum(grid[best] - _GRID_STEP, LOG_ALPHA_MIN)
            high = np.minimum(grid[best] + _GRID_STEP, top)
            # an end of the bracket may be the answer only if it is no worse than the grid's best point: a
            # bracket can hold a maximum and, past a minimum, a rise to its end (Kingma's KL below α = 1)
            ends = np.concatenate([low, high])
            floor = np.tile(best_value - _END_TOL * (1.0 + np.abs(best_value)), 2)
            at_ends = objective(ends, np.tile(cp, 2), kl_value(ends, method))
            good_low, good_high = np.split(at_ends >= floor, 2)
            found[inside] = _refine(derivatives, cp, low, high, good_low=good_low, good_high=good_high)
    infinite = found >= min(LOG_ALPHA_INFINITE, max_log_alpha)
    result[positive] = np.where(infinite, float(max_log_alpha), found)
    return result


@functools.lru_cache(maxsize=16)
def _grid(method, top):
    """The search grid up to ``top`` and the KL on it (read-only arrays: they are shared by every call)."""
    grid = np.arange(LOG_ALPHA_MIN, top + _GRID_STEP / 2, _GRID_STEP)
    kl = kl_value(grid, method)
    grid.flags.writeable = False
    kl.flags.writeable = False
    return grid, kl


def _refine(derivatives, coefficients, low, high, *, good_low, good_high, tol=_TOL, max_steps=_MAX_STEPS):
    r"""
    Where the derivative :math:`g` (``derivatives(t, coefficients)`` gives :math:`(g, g')`) of a function
    that rises then falls on each ``[low, high]`` changes sign, to about ``tol`` (elementwise); where
    :math:`g` keeps one sign on the bracket, the end it points to (as bisection would end), if
    ``good_low`` / ``good_high`` (masks) allow that end. Each step evaluates :math:`(g, g')` at the
    current point, keeps the half of the bracket where :math:`g` changes sign, and moves to the Newton
    point :math:`t - g/g'` when that lies inside the new bracket and is at most half the step before;
    otherwise to the middle (the safeguard of Numerical Recipes' ``rtsafe``). It stops where the Newton
    step is below ``tol`` (staying at the current point) or the bracket is: quadratic convergence near a
    root with :math:`g' < 0`, and bisection wherever the Newton steps stop halving. Where :math:`g` is at
    rounding level over much of the bracket (a flat objective, e.g. the profile's for q just above ½) the
    steps are bisections, down to ``tol``.
    """
    g_ends, _ = derivatives(np.concatenate([low, high]), np.concatenate([coefficients, coefficients]))
    g_low, g_high = np.split(g_ends, 2)
    to_high = good_high & (g_high >= 0)  # still rising at high: the maximum is there (or beyond)
    to_low = ~to_high & good_low & (g_low <= 0)
    t = np.where(to_high, high, np.where(to_low, low, 0.5 * (low + high)))
    done = to_high | to_low
    last_step = high - low
    for _ in range(max_steps):
        if done.all():
            break
        g, slope = derivatives(t, coefficients)
        rising = g > 0
        low = np.where(rising, t, low)
        high = np.where(rising, high, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton_step = np.where(slope < 0, -g / slope, np.inf)
        newton = t + newton_step
        usable = (newton >= low) & (newton <= high) & (np.abs(newton_step) <= 0.5 * last_step)
        converged = np.abs(newton_step) <= tol
        # a converged point stays (a rejected Newton step there would send it to the bracket's middle)
        step_to = np.where(converged, t, np.where(usable, newton, 0.5 * (low + high)))
        moving = ~done & (g != 0)
        last_step = np.where(moving, np.abs(step_to - t), last_step)
        t = np.where(moving, step_to, t)
        done |= (g == 0) | converged | (high - low <= tol)
    return t
