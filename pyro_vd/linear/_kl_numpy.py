r"""
:math:`\mathrm{KL}(t)`, :math:`\mathrm{KL}'(t)` and :math:`\mathrm{KL}''(t)` in :math:`t = \log\alpha`, as
numpy float64 functions, for the linear solvers' one-dimensional α updates.

The values are those of :func:`pyro_vd.distributions.kl_log_uniform` and
:func:`~pyro_vd.distributions.kl_log_uniform_grad` (the exact KL from the same float64 Hermite tables, the
approximations from the same formulas); they are written in numpy because the updates work on vectors of
a few hundred entries, where each torch call costs more than its arithmetic. The second derivative is
what a Newton step needs:

- exact: the derivative of the cubic Hermite interpolant of :math:`-xF(x)` (its table holds the exact
  :math:`d(-xF)/dt` at the grid points); beyond :math:`t = 40` the series
  :math:`x^2 - \tfrac43x^4 + \tfrac45x^6`, :math:`x^2 = e^{-t}/2`; below :math:`t = -40`, 0;
- Molchanov: :math:`k_1k_3^2\,s(1-s)(1-2s) + \tfrac12\sigma(t)\sigma(-t)`, :math:`s = \sigma(-k_2 - k_3t)`;
- Kingma: :math:`-\alpha(c_1 + 4c_2\alpha + 9c_3\alpha^2)`.
"""

import numpy as np
from scipy.special import expit

from ..distributions.exact_kl import (
    NUM_INTERVALS,
    STEPS_PER_UNIT,
    T_MAX,
    T_MIN,
    _tables_float64,
    series_slope,
    series_value,
)
from ..distributions.kl_log_uniform import (
    KINGMA_C1,
    KINGMA_C2,
    KINGMA_C3,
    KINGMA_CONST,
    MOLCHANOV_K1,
    MOLCHANOV_K2,
    MOLCHANOV_K3,
    check_kl_method,
)


def _locate(t):
    """Each t's grid interval and its position s in it (as ``exact_kl._locate``, in numpy)."""
    scaled = np.clip(t, T_MIN, T_MAX) * STEPS_PER_UNIT
    k = np.minimum(np.floor(scaled - T_MIN * STEPS_PER_UNIT), NUM_INTERVALS - 1)
    # fmax/fmin take a NaN to the table's first interval (the value stays NaN through s) in two cheap
    # passes: these run on a few hundred entries per call, where each numpy call's overhead dominates
    index = np.fmin(np.fmax(k, 0.0), NUM_INTERVALS - 1).astype(np.intp)
    return index, scaled - (k + T_MIN * STEPS_PER_UNIT)


def _interval(t, table):
    """The Hermite coefficients (c0..c3) of the interval of each t in ``table`` (0: KL, 1: KL'), and s."""
    index, s = _locate(t)
    return _tables_float64()[table][index], s


def _horner(c, s):
    return c[..., 0] + s * (c[..., 1] + s * (c[..., 2] + s * c[..., 3]))


def _x2(t):
    """x² = e^{−t}/2 beyond the table (t > 40), a harmless placeholder elsewhere, and that mask."""
    beyond = t > T_MAX
    return 0.5 * np.exp(-np.maximum(t, T_MAX)), beyond


def kl_value(t, method):
    """KL(t), elementwise (float64)."""
    check_kl_method(method)
    t = np.asarray(t, dtype=np.float64)
    if method == "exact":
        kl = _horner(*_interval(t, 0)) + 0.5 * np.maximum(T_MIN - t, 0.0)
        x2, beyond = _x2(t)
        return np.where(beyond, series_value(x2), kl)
    if method == "molchanov":
        return MOLCHANOV_K1 * expit(-MOLCHANOV_K2 - MOLCHANOV_K3 * t) + 0.5 * np.logaddexp(0.0, -t)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond log α ≈ 236 the cubic is ∓inf, as torch's
        alpha = np.exp(t)
        return KINGMA_CONST - 0.5 * t - alpha * (KINGMA_C1 + alpha * (KINGMA_C2 + alpha * KINGMA_C3))


def kl_slope_and_curvature(t, method):
    """(KL'(t), KL''(t)), elementwise (float64)."""
    check_kl_method(method)
    t = np.asarray(t, dtype=np.float64)
    if method == "exact":
        c, s = _interval(t, 1)
        slope = _horner(c, s)
        curvature = (c[..., 1] + s * (2.0 * c[..., 2] + 3.0 * s * c[..., 3])) * STEPS_PER_UNIT
        curvature = np.where(t < T_MIN, 0.0, curvature)  # KL is linear there
        x2, beyond = _x2(t)
        slope = np.where(beyond, series_slope(x2), slope)
        curvature = np.where(beyond, x2 * (1.0 - 4.0 / 3.0 * x2 * (1.0 - 0.6 * x2)), curvature)
        return slope, curvature
    if method == "molchanov":
        s = expit(-MOLCHANOV_K2 - MOLCHANOV_K3 * t)
        ds = s * (1.0 - s)
        prior = expit(-t)
        slope = -MOLCHANOV_K1 * MOLCHANOV_K3 * ds - 0.5 * prior
        curvature = MOLCHANOV_K1 * MOLCHANOV_K3**2 * ds * (1.0 - 2.0 * s) + 0.5 * prior * (1.0 - prior)
        return slope, curvature
    with np.errstate(over="ignore", invalid="ignore"):
        alpha = np.exp(t)
        slope = -0.5 - alpha * (KINGMA_C1 + alpha * (2.0 * KINGMA_C2 + alpha * (3.0 * KINGMA_C3)))
        curvature = -alpha * (KINGMA_C1 + alpha * (4.0 * KINGMA_C2 + alpha * (9.0 * KINGMA_C3)))
    return slope, curvature
