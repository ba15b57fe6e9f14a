r"""
The exact KL divergence from :math:`\mathcal{N}(\theta, \alpha\theta^2)` to the log-uniform prior.

With :math:`F(x) = e^{-x^2}\int_0^x e^{s^2} ds` Dawson's integral and :math:`x = 1/\sqrt{2\alpha}`,

.. math::

    \mathrm{KL}(\alpha) = 2\int_0^x F(s)\,ds, \qquad
    \frac{d\,\mathrm{KL}}{d\log\alpha} = -x F(x)

(normalized so that :math:`\mathrm{KL} \to 0` as :math:`\alpha \to \infty`; derivation in
``DESIGN.md`` §1). As a function of :math:`t = \log\alpha` it is smooth, tends to
:math:`-t/2 + (\gamma + \ln 2)/2` as :math:`t \to -\infty` and to :math:`e^{-t}/2` as
:math:`t \to +\infty`.

**How it is evaluated.** Once per dtype and device, the values :math:`\mathrm{KL}(t_k)` and
:math:`D(t_k) = -x_k F(x_k)` and their exact derivatives are tabulated on a uniform grid
:math:`t_k \in [-40, 40]`, step :math:`h = 1/32`, in float64: :math:`F` from
:func:`scipy.special.dawsn`, :math:`\mathrm{KL}(t_k)` by integrating :math:`D` with 16-point
Gauss–Legendre on each grid step down from :math:`t = 40` (where the series
:math:`x^2 - x^4/3 + 4x^6/45` is exact). A call then costs one table look-up and a cubic Hermite
polynomial per element in the forward pass (values + first derivatives; error
:math:`\le h^4 \max|\mathrm{KL}^{(4)}|/384 < 10^{-9}`) and another in the backward pass, which
interpolates the analytic gradient :math:`-xF(x)` from its own table (values + second derivatives)
rather than differentiating the interpolant. Outside the grid the asymptotes are exact to
:math:`e^{-40}`: below it the KL is linear with slope −½; above it the series
:math:`\mathrm{KL} = x^2 - x^4/3 + 4x^6/45`, :math:`-xF(x) = -(x^2 - 2x^4/3 + 4x^6/15)`,
:math:`x^2 = e^{-t}/2`, so both tend to 0 as they should (a fused caller's
:math:`\partial/\partial\theta = -2\,\mathrm{KL}'/\theta = (\theta/\sigma^2)(1 + O(\alpha^{-1}))`
tends to 0 too, instead of growing like :math:`1/\theta` off a frozen table end). The same code
runs on CPU and CUDA tensors; float16/bfloat16 are computed in float32.
"""

import functools
import math

import numpy as np
import torch

T_MIN = -40.0
T_MAX = 40.0
STEPS_PER_UNIT = 32  # h = 1/32: a power of two, so the grid is exact in binary floating point
NUM_INTERVALS = int((T_MAX - T_MIN) * STEPS_PER_UNIT)
_GAUSS_LEGENDRE_POINTS = 16
_ASYMPTOTIC_FROM_X = 8.0


def _d_slope(x, dawson):
    r"""
    :math:`dD/dt` for :math:`D = -xF(x)`, :math:`x = e^{-t/2}/\sqrt2`:
    :math:`\tfrac{x}{2}(F + x - 2x^2F)`. For large :math:`x` the bracket cancels to
    :math:`\sum_{n\ge1} -2n(2n-1)!!/2^{n+1}\,x^{-(2n+1)}` (from the asymptotic series of :math:`F`),
    which is used there instead.
    """
    direct = 0.5 * x * (dawson + x - 2.0 * x * x * dawson)
    large = x >= _ASYMPTOTIC_FROM_X
    xl = x[large]
    series = np.zeros_like(xl)
    double_factorial = 1.0  # (2n-1)!!
    for n in range(1, 16):
        double_factorial *= 2 * n - 1
        series -= 2 * n * double_factorial / 2.0 ** (n + 1) * xl ** (-(2 * n + 1))
    direct[large] = 0.5 * xl * series
    return direct


def _hermite_coefficients(y, slope, h):
    """Per-interval coefficients (c0..c3) of the cubic Hermite p(s), s ∈ [0, 1]."""
    y0, y1 = y[:-1], y[1:]
    m0, m1 = h * slope[:-1], h * slope[1:]
    return np.stack([y0, m0, 3.0 * (y1 - y0) - 2.0 * m0 - m1, 2.0 * (y0 - y1) + m0 + m1], axis=-1)


@functools.lru_cache(maxsize=1)
def _tables_float64():
    """(kl_coefficients, grad_coefficients), each of shape (NUM_INTERVALS, 4), as numpy float64."""
    from scipy.special import dawsn

    h = 1.0 / STEPS_PER_UNIT
    t = T_MIN + h * np.arange(NUM_INTERVALS + 1)
    x = np.exp(-0.5 * t) / math.sqrt(2.0)
    dawson = dawsn(x)
    grad = -x * dawson  # D(t) = dKL/dt
    grad_slope = _d_slope(x, dawson)

    # KL(t_k) = KL(t_{k+1}) - ∫_{t_k}^{t_{k+1}} D(τ) dτ, starting from the small-x series at T_MAX.
    nodes, weights = np.polynomial.legendre.leggauss(_GAUSS_LEGENDRE_POINTS)
    tau = t[:-1, None] + 0.5 * h * (nodes[None, :] + 1.0)
    x_tau = np.exp(-0.5 * tau) / math.sqrt(2.0)
    step_integrals = 0.5 * h * (-(x_tau * dawsn(x_tau)) @ weights)
    x_end = x[-1]
    kl = np.empty_like(t)
    kl[-1] = x_end**2 - x_end**4 / 3.0 + 4.0 * x_end**6 / 45.0
    kl[:-1] = kl[-1] - np.cumsum(step_integrals[::-1])[::-1]
    return _hermite_coefficients(kl, grad, h), _hermite_coefficients(grad, grad_slope, h)


_TABLE_CACHE = {}


def _tables(dtype, device):
    key = (dtype, device)
    if key not in _TABLE_CACHE:
        kl_coef, grad_coef = _tables_float64()
        # Four 1-D tables per function (c0..c3): one gather each gives contiguous operands, which
        # measured faster than gathering rows of a (N, 4) or columns of a (4, N) table.
        _TABLE_CACHE[key] = tuple(
            tuple(torch.as_tensor(c, dtype=dtype, device=device).contiguous() for c in coef.T)
            for coef in (kl_coef, grad_coef)
        )
    return _TABLE_CACHE[key]


def _locate(log_alpha):
    """
    Grid interval (index) and position s in it. ``32 t`` and the integer grid point ``k - 1280`` are
    exact in binary floating point, so ``s = 32 t - (k - 1280)`` carries no rounding beyond the
    input's own (a float32 ``(t + 40) * 32`` would lose ~4e-6 of t); a floor that rounding moved
    by one interval only leaves ``s`` a hair outside [0, 1], where the cubic is as accurate. NaN
    stays NaN in ``s``.
    """
    scaled = log_alpha.clamp(T_MIN, T_MAX).mul_(STEPS_PER_UNIT)
    k = (scaled - T_MIN * STEPS_PER_UNIT).floor_().clamp_(max=NUM_INTERVALS - 1)
    index = k.to(torch.int32).clamp_(0, NUM_INTERVALS - 1)  # clamp: NaN casts to an arbitrary integer
    s = scaled.sub_(k.add_(T_MIN * STEPS_PER_UNIT))
    return index, s


def _horner(coefficients, index, s):
    """c0 + s (c1 + s (c2 + s c3)) with the coefficients of each element's interval."""
    flat = index.reshape(-1)
    c0, c1, c2, c3 = (c.index_select(0, flat).view(index.shape) for c in coefficients)
    return torch.addcmul(c0, s, torch.addcmul(c1, s, torch.addcmul(c2, s, c3)))


def _x2_beyond(log_alpha):
    """x² = e^{−t}/2 for t > T_MAX (elsewhere a harmless placeholder), and the mask t > T_MAX."""
    beyond = log_alpha > T_MAX
    return log_alpha.clamp(min=T_MAX).neg_().exp_().mul_(0.5), beyond


def series_value(x2):
    """KL beyond T_MAX: x² − x⁴/3 + 4x⁶/45 (the first omitted term is below x⁸ < e^{−160}); torch or numpy."""
    return x2 * (1.0 - x2 / 3.0 * (1.0 - 4.0 / 15.0 * x2))


def series_slope(x2):
    """dKL/d log α beyond T_MAX: −(x² − 2x⁴/3 + 4x⁶/15); torch or numpy."""
    return -x2 * (1.0 - 2.0 / 3.0 * x2 * (1.0 - 0.4 * x2))


def _value(log_alpha):
    """KL(log α) without autograd, and the grid position (index, s) that the slope reuses."""
    kl_coef, _ = _tables(log_alpha.dtype, log_alpha.device)
    index, s = _locate(log_alpha)
    kl = _horner(kl_coef, index, s)
    # Beyond T_MIN the KL is linear in log α with slope -1/2 (exact to e^{T_MIN}).
    kl = kl.add_((T_MIN - log_alpha).clamp_(min=0.0), alpha=0.5)
    # Beyond T_MAX: x² − x⁴/3 + 4x⁶/45 (the first omitted term is below x⁸ < e^{−160}).
    x2, beyond = _x2_beyond(log_alpha)
    return torch.where(beyond, series_value(x2), kl), index, s


def _slope_at(log_alpha, grad_coef, index, s):
    """dKL/d log α from the table, and −(x² − 2x⁴/3 + 4x⁶/15) beyond T_MAX."""
    slope = _horner(grad_coef, index, s)
    x2, beyond = _x2_beyond(log_alpha)
    return torch.where(beyond, series_slope(x2), slope)


class _ExactKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log_alpha):
        kl, index, s = _value(log_alpha)
        ctx.save_for_backward(log_alpha, index, s)
        ctx.grad_coef = _tables(log_alpha.dtype, log_alpha.device)[1]
        return kl

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        log_alpha, index, s = ctx.saved_tensors
        return grad_output * _slope_at(log_alpha, ctx.grad_coef, index, s)


def exact_kl_value(log_alpha):
    """KL(log α) without autograd (for fused callers)."""
    return _value(log_alpha)[0]


def exact_kl_slope(log_alpha):
    """dKL/d log α = −x F(x), without autograd."""
    _, grad_coef = _tables(log_alpha.dtype, log_alpha.device)
    return _slope_at(log_alpha, grad_coef, *_locate(log_alpha))


def exact_kl(log_alpha):
    r"""
    Exact :math:`\mathrm{KL}(\mathcal{N}(\theta, \alpha\theta^2)\,\|\,\text{LogUniform})` per element,
    :math:`2\int_0^{1/\sqrt{2\alpha}} F(s)\,ds`, with the analytic gradient :math:`-xF(x)`.

    :param torch.Tensor log_alpha: :math:`\log\alpha`, any shape, floating point.
    :returns: a tensor of the same shape and dtype.
    """
    if log_alpha.dtype in (torch.float16, torch.bfloat16):
        return _ExactKL.apply(log_alpha.float()).to(log_alpha.dtype)
    return _ExactKL.apply(log_alpha)
