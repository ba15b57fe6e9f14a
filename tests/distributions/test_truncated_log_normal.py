import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
from torch.distributions import kl_divergence

from pyro_vd.distributions import TruncatedLogNormal, TruncatedLogUniform, log_diff_ndtr

# (μ, σ) from the interior to the extremes the guide's clipping allows (μ, log σ ∈ [−20, 5])
CASES = [
    (0.0, 1.0),
    (-3.0, 0.5),
    (-10.0, 4.0),
    (0.0, math.exp(-5)),
    (2.0, 0.1),
    (-25.0, 2.0),
    (-1.0, 30.0),
    (5.0, math.exp(-5)),
    (-20.0, math.exp(-20)),
]


def _quad_moments(mu, sigma, low=-20.0, high=0.0):
    """E θ, E θ², E log q(log θ) by quadrature over x = log θ, with the truncated normal's density."""
    alpha, beta = (low - mu) / sigma, (high - mu) / sigma
    log_z = float(
        log_diff_ndtr(torch.tensor(alpha, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64))
    )

    def density(x):
        z = (x - mu) / sigma
        return math.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - math.log(sigma) - log_z)

    # integrate where the mass is: μ ± 40σ clipped to [low, high]
    a, b = max(low, mu - 40 * sigma), min(high, mu + 40 * sigma)
    if a >= b:  # μ far outside: the mass sits at the nearer bound
        a, b = (high - 40 * sigma, high) if mu > high else (low, low + 40 * sigma)
        a, b = max(a, low), min(b, high)
    points = np.linspace(a, b, 9)[1:-1]
    quad = lambda f: integrate.quad(f, a, b, points=points, limit=500, epsabs=0, epsrel=1e-11)[0]  # noqa: E731
    mass = quad(density)
    m1 = quad(lambda x: density(x) * math.exp(x))
    m2 = quad(lambda x: density(x) * math.exp(2 * x))
    neg_entropy = quad(lambda x: density(x) * math.log(max(density(x), 1e-300)))
    return mass, m1, m2, neg_entropy


@pytest.mark.parametrize("mu,sigma", CASES[:7], ids=str)
def test_moments_and_kl_match_quadrature(mu, sigma):
    q = TruncatedLogNormal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    mass, m1, m2, neg_entropy = _quad_moments(mu, sigma)
    assert mass == pytest.approx(1.0, rel=1e-8)
    assert q.mean.item() == pytest.approx(m1, rel=1e-7)
    assert q.variance.item() == pytest.approx(m2 - m1 * m1, rel=1e-5, abs=1e-300)
    kl = kl_divergence(q, TruncatedLogUniform()).item()
    assert kl == pytest.approx(neg_entropy + math.log(20.0), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("mu,sigma", CASES[:-1], ids=str)
def test_moments_match_sampling(mu, sigma):
    torch.manual_seed(0)
    n = 400_000
    q = TruncatedLogNormal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    theta = q.rsample((n,))
    assert ((theta >= math.exp(-20)) & (theta <= 1.0)).all()
    mean, var = q.mean.item(), q.variance.item()
    sd = math.sqrt(var)
    # the sample mean is within 5 standard errors; the sample variance within 5 of its own (4th moment)
    assert abs(theta.mean().item() - mean) <= 5 * sd / math.sqrt(n) + 1e-12 * mean
    fourth = ((theta - mean) ** 4).mean().item()
    assert abs(theta.var().item() - var) <= 5 * math.sqrt(max(fourth - var * var, 0.0) / n) + 1e-9 * var


@pytest.mark.parametrize("mu,sigma", CASES, ids=str)
def test_everything_is_finite_in_float32_with_finite_gradients(mu, sigma):
    loc = torch.tensor(mu, requires_grad=True)
    scale = torch.tensor(sigma, requires_grad=True)
    q = TruncatedLogNormal(loc, scale)
    values = [q.mean, q.variance, q.snr, kl_divergence(q, TruncatedLogUniform()), q.rsample((1000,)).mean()]
    for value in values:
        assert torch.isfinite(value).all()
        loc.grad = scale.grad = None
        value.backward(retain_graph=True)
        assert torch.isfinite(loc.grad) and torch.isfinite(scale.grad)


def test_degenerate_noise_has_a_huge_snr_and_the_right_mean():
    # σ = e⁻²⁰ at the lower bound: θ = e⁻²⁰ to 9 digits; the variance's relative accuracy is lost
    # here (a second difference below float64 resolution) but the SNR is far above any threshold
    q = TruncatedLogNormal(
        torch.tensor(-20.0, dtype=torch.float64), torch.tensor(math.exp(-20), dtype=torch.float64)
    )
    assert q.mean.item() == pytest.approx(math.exp(-20), rel=1e-8)
    assert q.snr.item() > 1e6


def test_far_tail_mean_is_the_exponential_limit():
    # μ = 5, σ = e⁻⁵: all mass just below log θ = 0; log θ ≈ −σ E/|β| with E ~ Exp(1), |β| = 5/σ
    sigma = math.exp(-5)
    q = TruncatedLogNormal(torch.tensor(5.0, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    expected = 1.0 / (1.0 + sigma * sigma / 5.0)  # E e^{-cE} = 1/(1+c), c = σ²/5
    assert q.mean.item() == pytest.approx(expected, rel=1e-9)


def test_log_diff_ndtr_against_scipy_and_symmetry():
    a = torch.tensor([-3.0, -1.0, 0.5, -40.0, 10.0, -8.0], dtype=torch.float64)
    b = torch.tensor([-2.0, 2.0, 3.0, -39.0, 12.0, 8.0], dtype=torch.float64)
    got = log_diff_ndtr(a, b).numpy()
    for i in (0, 1, 2, 5):
        assert got[i] == pytest.approx(
            math.log(special.ndtr(b[i].item()) - special.ndtr(a[i].item())), rel=1e-12
        )
    # far in the tail Φ differences underflow: log Φ(b) + log(1 - e^{log Φ(a) - log Φ(b)})
    for i in (3,):
        la, lb = special.log_ndtr(a[i].item()), special.log_ndtr(b[i].item())
        assert got[i] == pytest.approx(lb + math.log1p(-math.exp(la - lb)), rel=1e-12)
    np.testing.assert_allclose(got, log_diff_ndtr(-b, -a).numpy(), rtol=1e-14)
    assert np.isfinite(got).all()


def test_cdf_of_samples_is_uniform():
    torch.manual_seed(1)
    q = TruncatedLogNormal(torch.tensor(-2.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64))
    u = q.cdf(q.sample((20_000,))).sort().values
    grid = (torch.arange(20_000, dtype=torch.float64) + 0.5) / 20_000
    # Kolmogorov–Smirnov statistic against U(0, 1); the 0.1 % critical value is 1.95 / √n
    assert (u - grid).abs().max().item() < 1.95 / math.sqrt(20_000)


def test_log_prob_integrates_to_one():
    q = TruncatedLogNormal(torch.tensor(-4.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    total = integrate.quad(
        lambda t: q.log_prob(torch.tensor(t, dtype=torch.float64)).exp().item(),
        math.exp(-20),
        1.0,
        points=[math.exp(-8), math.exp(-4), math.exp(-1)],
        limit=400,
    )[0]
    assert total == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("batch_shape", [(), (4,), (3, 2)], ids=str)
def test_shapes_and_expand(batch_shape):
    q = TruncatedLogNormal(torch.zeros(batch_shape), torch.ones(batch_shape))
    assert q.batch_shape == batch_shape
    assert q.rsample((5,)).shape == (5,) + batch_shape
    big = q.expand((7,) + batch_shape)
    assert big.batch_shape == (7,) + batch_shape and big.low == -20.0
    assert kl_divergence(big, TruncatedLogUniform().expand((7,) + batch_shape)).shape == (7,) + batch_shape


def test_kl_is_infinite_when_the_guide_leaves_the_prior_support():
    q = TruncatedLogNormal(torch.tensor(0.0), torch.tensor(1.0), low=-20.0, high=1.0)
    assert kl_divergence(q, TruncatedLogUniform(-20.0, 0.0)).item() == math.inf


def test_bad_bounds_and_scale():
    with pytest.raises(ValueError, match="low must be smaller than high"):
        TruncatedLogNormal(torch.tensor(0.0), torch.tensor(1.0), low=0.0, high=-1.0)
    with pytest.raises(ValueError, match="high must be a finite number"):
        TruncatedLogUniform(-20.0, math.inf)
    with pytest.raises(ValueError):
        TruncatedLogNormal(torch.tensor(0.0), torch.tensor(-1.0), validate_args=True)


def test_truncated_log_uniform_moments_and_density():
    torch.manual_seed(2)
    p = TruncatedLogUniform(-3.0, 1.0, batch_shape=(2,))
    x = p.sample((200_000,))
    assert x.shape == (200_000, 2)
    assert ((x >= math.exp(-3)) & (x <= math.exp(1))).all()
    mean, var = p.mean[0].item(), p.variance[0].item()
    assert mean == pytest.approx((math.e - math.exp(-3)) / 4, rel=1e-6)
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / 400_000)
    total = integrate.quad(lambda t: p.log_prob(torch.tensor(t))[0].exp().item(), math.exp(-3), math.e)[0]
    assert total == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError):
        TruncatedLogUniform(validate_args=True).log_prob(torch.tensor(2.0))


@pytest.mark.parametrize(
    "u", [torch.finfo(torch.float64).tiny, 0.5, 1 - torch.finfo(torch.float64).eps], ids=str
)
def test_inverse_cdf_has_finite_gradients_at_extreme_uniforms(u):
    # a uniform draw at the edge of (0, 1) once made the far-tail branch return ∞ and poisoned the
    # gradients of every other neuron (through torch.where) with NaN
    from pyro_vd.distributions.truncated_log_normal import _sample_standard

    alpha = torch.tensor([-1e9, -3.0, -1e10, 35.0], dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([-40.0, 2.0, 1e10, 1e9], dtype=torch.float64, requires_grad=True)
    z = _sample_standard(alpha, beta, torch.full((4,), u, dtype=torch.float64))
    assert torch.isfinite(z).all() and (z >= alpha).all() and (z <= beta).all()
    for grad in torch.autograd.grad(z.sum(), [alpha, beta]):
        assert torch.isfinite(grad).all()


def test_snr_is_finite_over_the_guides_parameter_box():
    grid = torch.linspace(-20, 5, 101)
    loc, log_scale = torch.meshgrid(grid, grid, indexing="ij")
    q = TruncatedLogNormal(loc.reshape(-1), log_scale.reshape(-1).exp())
    for value in (q.snr, q.mean, q.variance, kl_divergence(q, TruncatedLogUniform())):
        assert torch.isfinite(value).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_is_computed_wide_and_cast_back(dtype):
    loc, scale = torch.tensor([-1.0, -8.0, 2.0]), torch.tensor([0.5, 3.0, 0.25])
    q, reference = (
        TruncatedLogNormal(loc.to(dtype), scale.to(dtype)),
        TruncatedLogNormal(loc.double(), scale.double()),
    )
    value = torch.tensor([0.3, 1e-3, 0.9])
    tolerance = {"rtol": 2e-2, "atol": 2e-2}
    for name, got, expected in [
        ("log_normalizer", q.log_normalizer, reference.log_normalizer),
        ("log_prob", q.log_prob(value.to(dtype)), reference.log_prob(value.to(dtype).double())),
        ("cdf", q.cdf(value.to(dtype)), reference.cdf(value.to(dtype).double())),
        ("mean", q.mean, reference.mean),
        ("variance", q.variance, reference.variance),
        ("entropy", q.entropy(), reference.entropy()),
        ("kl", kl_divergence(q, TruncatedLogUniform()), kl_divergence(reference, TruncatedLogUniform())),
    ]:
        assert got.dtype == dtype, name
        assert torch.allclose(got.double(), expected, **tolerance), name
    sample = q.rsample((4,))
    assert sample.dtype == dtype and torch.isfinite(sample).all()


def test_truncated_log_uniform_moments_of_wide_bounds():
    # e^89 overflows float32, the mean e^89 / 109 does not
    p = TruncatedLogUniform(-20.0, 89.0)
    assert p.mean.dtype == torch.get_default_dtype() and torch.isfinite(p.mean)
    assert math.log(p.mean.item()) == pytest.approx(89.0 - math.log(109.0), abs=1e-6)
    assert p.log_moment(1) == pytest.approx(89.0 - math.log(109.0), abs=1e-12)
    with pytest.raises(
        ValueError, match=r"variance of TruncatedLogUniform\(low=-20.0, high=89.0\) is e\^172.6"
    ):
        _ = p.variance
    assert p.support.upper_bound == pytest.approx(math.exp(89.0))
    wide = TruncatedLogUniform(-20.0, 40.0)  # E θ² ≈ e^80 / 120: finite in float32, and Var with it
    second = (math.exp(80.0) - math.exp(-40.0)) / 120.0
    mean = (math.exp(40.0) - math.exp(-20.0)) / 60.0
    assert wide.variance.item() == pytest.approx(second - mean**2, rel=1e-6)
    huge = TruncatedLogUniform(-20.0, 800.0)
    assert math.isfinite(huge.log_moment(2)) and huge.support.upper_bound == math.inf
    with pytest.raises(ValueError, match=r"mean of TruncatedLogUniform.*overflows"):
        _ = huge.mean
    narrow = TruncatedLogUniform(-1e-4, 0.0)  # Var ≈ (b − a)² / 12: no cancellation of E θ² − (E θ)²
    assert narrow.variance.item() == pytest.approx(1e-8 / 12, rel=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_samples_have_the_wide_gradient(dtype):
    # at the guide's start (μ = 0, σ = e⁻⁵) the float16 sample's gradient in log σ was NaN: a finite loss
    # and NaN written into every noise parameter by the first step
    loc = torch.zeros(3, dtype=dtype, requires_grad=True)
    log_scale = torch.full((3,), -5.0, dtype=dtype, requires_grad=True)
    wide_loc = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    wide_log_scale = torch.full((3,), -5.0, dtype=torch.float64, requires_grad=True)
    u = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    TruncatedLogNormal(loc, log_scale.exp()).icdf(u).sum().backward()
    TruncatedLogNormal(wide_loc, wide_log_scale.exp()).icdf(u).sum().backward()
    for got, expected in ((loc.grad, wide_loc.grad), (log_scale.grad, wide_log_scale.grad)):
        assert got.dtype == dtype and torch.isfinite(got).all()
        assert torch.allclose(got.double(), expected, rtol=3e-2, atol=1e-4)


def test_integer_parameters_give_real_moments():
    # integer tensors kept their dtype: mean 0 and SNR 1 where they are 0.00763509 and 1.87638 (mpmath)
    noise = TruncatedLogNormal(torch.tensor(-5), torch.tensor(0.5))
    assert noise.loc.dtype == torch.get_default_dtype()
    assert float(noise.mean) == pytest.approx(0.00763509, rel=1e-4)
    assert float(noise.mean / noise.variance.sqrt()) == pytest.approx(1.87638, rel=1e-4)
    assert (
        TruncatedLogNormal(torch.tensor(-5), torch.tensor(0.5, dtype=torch.float64)).loc.dtype
        == torch.float64
    )
