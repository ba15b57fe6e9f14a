r"""The posterior of structured (neuron-level) dropout: a log-normal truncated to a bounded interval."""

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from .truncated_log_uniform import check_log_bounds

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
# Below this standardized upper bound the interval lies in the far lower tail of N(0, 1), where
# Φ underflows even in float64; the truncated normal is an exponential there (see _sample_standard).
_TAIL = -30.0
# Beyond ±38 standard deviations Φ is 0 or 1 to float64 precision: the normal is not truncated at all.
_UNTRUNCATED = 38.0


def _log_scaled_ndtr(x):
    """:math:`L(x) = \\log\\Phi(x) + x^2/2`; for x < 0 it is :math:`\\log(\\mathrm{erfcx}(-x/\\sqrt2)/2)`."""
    negative = x < 0
    x_neg = torch.where(negative, x, -1.0)  # each branch gets inputs where it is finite (no NaN gradient)
    x_pos = torch.where(negative, 1.0, x)
    return torch.where(
        negative,
        torch.log(0.5 * torch.special.erfcx(-x_neg * _SQRT_HALF)),
        torch.special.log_ndtr(x_pos) + 0.5 * x_pos * x_pos,
    )


def _log1mexp(delta):
    """:math:`\\log(1 - e^{\\delta})` for δ ≤ 0."""
    near = delta > -math.log(2)
    return torch.where(
        near,
        torch.log(-torch.expm1(torch.where(near, delta, -1.0))),
        torch.log1p(-torch.exp(torch.where(near, -1.0, delta))),
    )


def _mills_plus_x(x):
    """:math:`\\phi(x)/\\Phi(x) + x`, which tends to :math:`-1/x` as x → −∞ (asymptotic series there)."""
    far = x < -1e4
    x_far = torch.where(far, x, -1e4)
    x_near = torch.where(far, 0.0, x)
    x_ratio = x_near.clamp(max=30.0)  # φ/Φ = 0 to float64 precision beyond 30 (and erfcx overflows)
    series = -1 / x_far + 2 / x_far**3 - 10 / x_far**5
    return torch.where(far, series, _SQRT_2_OVER_PI / torch.special.erfcx(-x_ratio * _SQRT_HALF) + x_near)


def _normalizer(alpha, beta):
    r"""
    :math:`Z = \Phi(\beta) - \Phi(\alpha)` in a form that keeps its parts separate: the interval is
    mirrored to the lower half (``flip``: :math:`\Phi(\beta) - \Phi(\alpha) = \Phi(-\alpha) - \Phi(-\beta)`),
    with ends ``lo ≤ hi``, :math:`\delta = \log\Phi(\mathrm{lo}) - \log\Phi(\mathrm{hi})`, and
    :math:`\log Z = r - \mathrm{hi}^2/2`, ``r`` = :math:`L(\mathrm{hi}) +
    \log(1 - \Phi(\mathrm{lo})/\Phi(\mathrm{hi}))` of moderate size even where Z underflows.
    """
    flip = (alpha + beta) > 0
    lo = torch.where(flip, -beta, alpha)
    hi = torch.where(flip, -alpha, beta)
    l_hi = _log_scaled_ndtr(hi)
    delta = _log_scaled_ndtr(lo) - l_hi - 0.5 * (lo - hi) * (lo + hi)  # log Φ(lo) − log Φ(hi) ≤ 0
    delta = torch.clamp(delta, max=-1e-300)
    return lo, hi, l_hi + _log1mexp(delta), flip, delta


def log_diff_ndtr(alpha, beta):
    r"""
    :math:`\log(\Phi(\beta) - \Phi(\alpha))` for :math:`\alpha \le \beta`, accurate in both tails.

    Both ends are mapped to the lower tail (:math:`\Phi(\beta) - \Phi(\alpha) = \Phi(-\alpha) -
    \Phi(-\beta)`), where :math:`\log\Phi(x) = \log(\mathrm{erfcx}(-x/\sqrt2)/2) - x^2/2` uses the scaled
    complementary error function, and :math:`\log(1 - \Phi(\alpha)/\Phi(\beta))` is evaluated with
    ``log1p``/``expm1``.
    """
    _, hi, r, _, _ = _normalizer(alpha, beta)
    return r - 0.5 * hi * hi


def _log_pdf(x):
    return -0.5 * x * x - _HALF_LOG_2PI


def _wide(tensor):
    """float16/bfloat16 as float64 (torch has no erfcx for them, and their range would overflow the
    intermediate squares); other dtypes as they are."""
    return tensor.double() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


class TruncatedLogNormal(TorchDistribution):
    r"""
    A log-normal distribution truncated to :math:`[e^{a}, e^{b}]`: :math:`\log\theta \sim
    \mathcal{N}(\mu, \sigma^2)` restricted to :math:`[a, b]` (default :math:`[-20, 0]`). It is the
    variational posterior of a neuron's multiplicative noise in Structured Bayesian Pruning
    (Neklyudov et al. 2017), against the prior :class:`TruncatedLogUniform` on the same interval.

    With :math:`\alpha = (a - \mu)/\sigma`, :math:`\beta = (b - \mu)/\sigma` and
    :math:`Z = \Phi(\beta) - \Phi(\alpha)`:

    .. math::

        \mathbb{E}\,\theta = e^{\mu + \sigma^2/2}\,
            \frac{\Phi(\beta - \sigma) - \Phi(\alpha - \sigma)}{Z}, \qquad
        \mathbb{E}\,\theta^2 = e^{2\mu + 2\sigma^2}\,
            \frac{\Phi(\beta - 2\sigma) - \Phi(\alpha - 2\sigma)}{Z}.

    Every ratio of normal-CDF differences is computed in log space by :func:`log_diff_ndtr`, so the
    moments stay finite and accurate when :math:`\sigma` is tiny, when :math:`\mu` lies far outside
    :math:`[a, b]`, or when :math:`e^{\sigma^2/2}` alone would overflow.

    ``rsample`` is the inverse-CDF transform of a uniform draw (reparameterized in μ and σ); in the far
    tail, where :math:`\Phi` underflows, the truncated normal is sampled as its exponential limit.

    float16 / bfloat16 parameters are computed with in float64 internally (torch has no ``erfcx`` for
    them) and every result is cast back to their dtype.

    :param loc: :math:`\mu`.
    :param scale: :math:`\sigma > 0`.
    :param float low: :math:`a`.
    :param float high: :math:`b`.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(self, loc, scale, low=-20.0, high=0.0, *, validate_args=None):
        self.low, self.high = check_log_bounds(low, high)
        self.loc, self.scale = broadcast_all(loc, scale)
        if not (self.loc.is_floating_point() and self.scale.is_floating_point()):
            # integer (or bool) tensors: torch would keep their dtype, and mean, SNR, log_prob came out
            # truncated to integers (mean 0 for 0.0076) without a word
            dtype = torch.promote_types(self.loc.dtype, self.scale.dtype)
            dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
            self.loc, self.scale = self.loc.to(dtype), self.scale.to(dtype)
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(TruncatedLogNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.low, new.high = self.low, self.high
        super(TruncatedLogNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(math.exp(self.low), math.exp(self.high))

    # ----------------------------------------------------------------------- standardized bounds
    @property
    def alpha(self):
        """:math:`(a - \\mu)/\\sigma`."""
        return (self.low - self.loc) / self.scale

    @property
    def beta(self):
        """:math:`(b - \\mu)/\\sigma`."""
        return (self.high - self.loc) / self.scale

    def _standardized_bounds(self):
        """(α, β) in a dtype the special functions support (float16/bfloat16 widened)."""
        loc, scale = _wide(self.loc), _wide(self.scale)
        return (self.low - loc) / scale, (self.high - loc) / scale

    @property
    def log_normalizer(self):
        """:math:`\\log Z = \\log(\\Phi(\\beta) - \\Phi(\\alpha))`."""
        return log_diff_ndtr(*self._standardized_bounds()).to(self.loc.dtype)

    def _standardized64(self):
        """μ, σ, α, β in float64: every special-function expression below is evaluated in float64 (there
        is one value per neuron, so this costs nothing) and the results are cast back."""
        loc, scale = self.loc.double(), self.scale.double()
        return loc, scale, (self.low - loc) / scale, (self.high - loc) / scale

    def _log_moment64(self, k):
        r""":math:`\log \mathbb{E}\,\theta^k` in float64.

        :math:`k\mu + k^2\sigma^2/2 + \log Z_k - \log Z_0` with :math:`Z_k` the normalizer of the interval
        shifted by :math:`k\sigma`. The large quadratic parts cancel in closed form: with the
        representation of :func:`_normalizer` what remains of
        :math:`k\mu + k^2\sigma^2/2 - \mathrm{hi}_k^2/2 + \mathrm{hi}_0^2/2` is
        :math:`k b` or :math:`k a` (by the mirroring of the shifted interval), plus
        :math:`\pm(\beta^2 - \alpha^2)/2` when the two intervals are mirrored differently.
        """
        loc, scale, alpha, beta = self._standardized64()
        s = k * scale
        _, _, r_k, flip_k, _ = _normalizer(alpha - s, beta - s)
        _, _, r_0, flip_0, _ = _normalizer(alpha, beta)
        cross = (flip_k.double() - flip_0.double()) * 0.5 * (beta - alpha) * (beta + alpha)
        general = torch.where(flip_k, k * self.low, k * self.high) + cross + r_k - r_0
        untruncated = (alpha - 2 * scale < -_UNTRUNCATED) & (beta - 2 * scale > _UNTRUNCATED)
        return torch.where(untruncated, k * loc + 0.5 * s * s, general)

    def _log_ratio64(self):
        r""":math:`\log((\mathbb{E}\,\theta)^2 / \mathbb{E}\,\theta^2) < 0` in float64."""
        ratio = 2 * self._log_moment64(1) - self._log_moment64(2)
        # < 0 by Jensen (θ is not constant); the clamp only removes rounding, so that SNR stays finite
        return torch.clamp(ratio, max=-1e-30)  # SNR ≤ 1e15, finite in float32

    @property
    def mean(self):
        return self._log_moment64(1).exp().to(self.loc.dtype)

    @property
    def variance(self):
        # Var = E θ² - (E θ)² = E θ² (1 - (E θ)² / E θ²)
        variance = self._log_moment64(2).exp() * -torch.expm1(self._log_ratio64())
        return variance.to(self.loc.dtype)

    @property
    def snr(self):
        r"""The signal-to-noise ratio :math:`\mathbb{E}\,\theta / \sqrt{\mathrm{Var}\,\theta}` (SBP's pruning
        criterion)."""
        ratio = self._log_ratio64()
        # E θ / sqrt(E θ² (1 - r)) with r = (E θ)² / E θ²  =  sqrt(r / (1 - r))
        snr = torch.exp(0.5 * ratio - 0.5 * torch.log(-torch.expm1(ratio)))
        return snr.to(self.loc.dtype)

    def _entropy_parts64(self):
        loc, scale, alpha, beta = self._standardized64()
        lo, hi, r, flip, delta = _normalizer(alpha, beta)
        # e = Φ(lo)/Φ(hi) = e^δ; φ(hi)/Z + hi = (φ(hi)/Φ(hi) + hi − hi·e) / (1 − e), and φ(lo)/Z,
        # without forming Z
        e = delta.exp()
        z_hi = (_mills_plus_x(hi) - hi * e) / -torch.expm1(delta)
        pdf_lo = torch.exp(-_HALF_LOG_2PI - 0.5 * (lo - hi) * (lo + hi) - r)
        untruncated = (alpha < -_UNTRUNCATED) & (beta > _UNTRUNCATED)
        return loc, scale, lo, hi, r, flip, z_hi, pdf_lo, untruncated

    def entropy_log(self):
        r"""The entropy of :math:`\log\theta` (a truncated normal),
        :math:`\log(\sqrt{2\pi e}\,\sigma Z) + (\alpha\phi(\alpha) - \beta\phi(\beta)) / (2Z)`; in the
        mirrored frame :math:`\log Z - \mathrm{hi}\,\phi(\mathrm{hi})/(2Z)
        = r - \mathrm{hi}(\phi(\mathrm{hi})/Z + \mathrm{hi})/2`, whose last factor
        is computed without cancellation."""
        _, scale, lo, hi, r, _, z_hi, pdf_lo, untruncated = self._entropy_parts64()
        truncated = torch.where(untruncated, 0.0, r - 0.5 * hi * z_hi + 0.5 * lo * pdf_lo)
        return (torch.log(scale) + _HALF_LOG_2PI + 0.5 + truncated).to(self.loc.dtype)

    def mean_log(self):
        r""":math:`\mathbb{E}\log\theta = \mu + \sigma(\phi(\alpha) - \phi(\beta))/Z`."""
        loc, scale, _, _, _, flip, z_hi, pdf_lo, untruncated = self._entropy_parts64()
        # no flip: μ − σ φ(β)/Z + σ φ(α)/Z = b − σ(φ(hi)/Z + hi) + σ φ(lo)/Z; flip: the mirror image
        mean = torch.where(flip, self.low + scale * (z_hi - pdf_lo), self.high - scale * (z_hi - pdf_lo))
        mean = torch.where(untruncated, loc, mean)
        return mean.to(self.loc.dtype)

    def entropy(self):
        """The entropy of θ: that of log θ plus :math:`\\mathbb{E}\\log\\theta`."""
        return self.entropy_log() + self.mean_log()

    # ------------------------------------------------------------------------------- sampling
    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        # float64 uniforms: a float32 draw is exactly 0 once in 2²⁴, and 1 − u must not round to 1
        u = torch.rand(shape, dtype=torch.float64, device=self.loc.device)
        return self.icdf(u.clamp(torch.finfo(u.dtype).tiny, 1 - torch.finfo(u.dtype).eps))

    def icdf(self, value):
        """The inverse CDF at ``value`` ∈ (0, 1) (broadcast against the batch shape); differentiable in
        μ and σ, which is what makes ``rsample`` reparameterized."""
        value = torch.as_tensor(value, dtype=torch.float64, device=self.loc.device)
        shape = torch.broadcast_shapes(value.shape, self.batch_shape)
        # float16/bfloat16 widened: the gradient of α = (a − μ)/σ in σ, −α/σ, is about 6e4 at the guide's
        # start σ = e⁻⁵, μ = 0 (a = −20), past float16's range: the sample's gradient was NaN
        loc, scale = _wide(self.loc), _wide(self.scale)
        alpha, beta = (self.low - loc) / scale, (self.high - loc) / scale
        z = _sample_standard(alpha.expand(shape), beta.expand(shape), value.expand(shape))
        log_theta = (loc + scale * z).clamp(self.low, self.high)
        return log_theta.exp().to(self.loc.dtype)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        dtype = torch.promote_types(torch.as_tensor(value).dtype, self.loc.dtype)
        loc, scale = _wide(self.loc), _wide(self.scale)
        log_theta = torch.log(_wide(torch.as_tensor(value)))
        z = (log_theta - loc) / scale
        log_z = log_diff_ndtr(*self._standardized_bounds())
        return (_log_pdf(z) - torch.log(scale) - log_z - log_theta).to(dtype)

    def cdf(self, value):
        dtype = torch.promote_types(torch.as_tensor(value).dtype, self.loc.dtype)
        alpha, beta = self._standardized_bounds()
        z = (torch.log(_wide(torch.as_tensor(value))) - _wide(self.loc)) / _wide(self.scale)
        z = torch.maximum(torch.minimum(z, beta), alpha)
        return torch.exp(log_diff_ndtr(alpha, z) - log_diff_ndtr(alpha, beta)).to(dtype)


def _sample_standard(alpha, beta, u):
    r"""
    :math:`z = F^{-1}(u)` for :math:`\mathcal{N}(0, 1)` truncated to :math:`[\alpha, \beta]`.

    Intervals in the upper half are mirrored to the lower one. There
    :math:`\Phi(z) = \Phi(\alpha) + u Z`, solved in log space
    (:math:`\log\Phi(z) = \mathrm{logaddexp}(\log u + \log\Phi(\beta), \log(1-u) + \log\Phi(\alpha))`)
    in float64. When :math:`\beta < -30` the density on the interval is proportional to
    :math:`e^{-|\beta|(\beta - z)}` up to a factor :math:`1 + O(\beta^{-2})`, so
    :math:`z = \beta - E/|\beta|` with E a unit exponential truncated to :math:`|\beta|(\beta - \alpha)`.
    """
    dtype = alpha.dtype
    alpha, beta, u = alpha.double(), beta.double(), u.double()
    flip = (alpha + beta) > 0
    lo = torch.where(flip, -beta, alpha)
    hi = torch.where(flip, -alpha, beta)
    u = torch.where(flip, 1 - u, u)
    # log Φ via L(x) − x²/2: torch's log_ndtr has NaN gradients far in the tail
    log_lo = _log_scaled_ndtr(lo) - 0.5 * lo * lo
    log_hi = _log_scaled_ndtr(hi) - 0.5 * hi * hi
    log_p = torch.logaddexp(torch.log(u) + log_hi, torch.log1p(-u) + log_lo)
    tail = hi < _TAIL
    # (the unused branch of each torch.where gets harmless inputs, so that no NaN gradient leaks)
    z = torch.special.ndtri(torch.where(tail, 0.5, log_p.exp()))
    # the exponential limit of the far tail; E decreases as u grows, so z = F⁻¹(u) stays monotone
    rate = -hi.clamp(max=_TAIL)
    width = rate * (hi - lo)
    e = -torch.log(u + (1 - u) * torch.exp(-width))  # = −log(1 − (1 − u)(1 − e^{−width})), never ∞
    z = torch.where(tail, hi - e / rate, z)
    z = torch.maximum(torch.minimum(z, hi), lo)
    z = torch.where(flip, -z, z)
    return z.to(dtype)
