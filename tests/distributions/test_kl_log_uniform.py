import math
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import dawsn

from pyro_vd.distributions import KL_METHODS, exact_kl, kl_log_uniform

EULER_GAMMA = 0.5772156649015329
LIMIT_CONST = 0.5 * (EULER_GAMMA + math.log(2.0))  # KL(α) + ½ log α → this as α → 0


def reference_kl(log_alpha):
    """2 ∫_0^x F(s) ds, x = 1/√(2α): adaptive quadrature of scipy's Dawson function (log-space past 4)."""
    x = math.exp(-0.5 * log_alpha) / math.sqrt(2.0)
    pieces = [(lambda s: dawsn(s), 0.0, min(x, 4.0))]
    if x > 4.0:
        pieces.append((lambda v: dawsn(math.exp(v)) * math.exp(v), math.log(4.0), math.log(x)))
    total = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)  # roundoff notices at 1e-13
        for f, a, b in pieces:
            value, abserr = integrate.quad(f, a, b, epsabs=1e-13, epsrel=1e-13, limit=400)
            assert abserr < 1e-9
            total += value
    return 2.0 * total


@pytest.fixture(scope="module")
def reference_grid():
    grid = np.linspace(-20.0, 20.0, 401)
    return grid, np.array([reference_kl(t) for t in grid])


def test_exact_float64_within_1e6(reference_grid):
    grid, reference = reference_grid
    exact = exact_kl(torch.tensor(grid, dtype=torch.float64)).numpy()
    # Measured: 1.5e-9 (Hermite interpolation on a 1/32 grid); the bound is 1e-6.
    assert np.abs(exact - reference).max() <= 1e-6


def test_exact_float32_to_float32_precision(reference_grid):
    grid, _ = reference_grid
    t32 = torch.tensor(grid, dtype=torch.float32)
    reference = np.array([reference_kl(t) for t in t32.double().tolist()])  # at the float32 inputs
    exact = exact_kl(t32).double().numpy()
    ulp = np.spacing(np.abs(reference).astype(np.float32)).astype(np.float64)
    # Measured: at most 1.4 ulp over 200 001 points on [-20, 20] (benchmarks/kl.py --accuracy).
    assert (np.abs(exact - reference) / ulp).max() <= 2.0


@pytest.mark.parametrize(
    ("method", "low", "high", "bound"),
    [
        ("molchanov", -10.0, 10.0, 0.0095),  # measured max 0.0094 at log α ≈ -3.5
        ("kingma", -10.0, 0.0, 0.045),  # measured max 0.040 at log α ≈ -2.1
    ],
)
def test_approximation_error(reference_grid, method, low, high, bound):
    grid, reference = reference_grid
    inside = (grid >= low) & (grid <= high)
    approx = kl_log_uniform(torch.tensor(grid[inside]), method).numpy()
    assert np.abs(approx - reference[inside]).max() <= bound


@pytest.mark.parametrize("log_alpha", [-3.5, 0.0, 2.0])
def test_exact_against_monte_carlo(log_alpha):
    # An independent route: KL = (γ + ln 2)/2 + E log|u + z|, u = 1/√α, z ~ N(0, 1) (DESIGN.md §1).
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(4_000_000, dtype=torch.float64, generator=generator)
    samples = (math.exp(-0.5 * log_alpha) + z).abs().log()
    estimate = LIMIT_CONST + samples.mean().item()
    standard_error = samples.std().item() / math.sqrt(samples.numel())
    exact = kl_log_uniform(torch.tensor(log_alpha, dtype=torch.float64), "exact").item()
    assert abs(exact - estimate) < 5 * standard_error  # se ≈ 2.5e-4 .. 6e-4 here


def test_exact_asymptotes():
    t = torch.tensor([-60.0, -45.0, -30.0], dtype=torch.float64)
    assert torch.allclose(exact_kl(t) + 0.5 * t, torch.full_like(t, LIMIT_CONST), atol=1e-12, rtol=0)
    t = torch.tensor([25.0, 30.0, 35.0], dtype=torch.float64)
    assert torch.allclose(exact_kl(t), 0.5 * torch.exp(-t), rtol=1e-6, atol=0)
    assert exact_kl(torch.tensor(80.0, dtype=torch.float64)).item() < 1e-17


def test_exact_is_decreasing_and_positive():
    t = torch.linspace(-45, 45, 20001, dtype=torch.float64)
    kl = exact_kl(t)
    assert (kl > 0).all()
    assert (kl[1:] <= kl[:-1]).all()


def test_exact_gradient_is_minus_x_dawson():
    t = torch.linspace(-30, 30, 3001, dtype=torch.float64, requires_grad=True)
    exact_kl(t).sum().backward()
    x = np.exp(-0.5 * t.detach().numpy()) / math.sqrt(2.0)
    assert np.abs(t.grad.numpy() - (-x * dawsn(x))).max() < 1e-8  # measured 3.5e-9


def test_exact_gradcheck():
    t = torch.linspace(-45, 45, 181, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(exact_kl, (t,))


def test_exact_is_once_differentiable():
    t = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(exact_kl(t).sum(), t, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


@pytest.mark.parametrize("method", KL_METHODS)
def test_special_values(method):
    t = torch.tensor([math.nan, math.inf, -math.inf])
    kl = kl_log_uniform(t, method)
    assert math.isnan(kl[0])
    assert kl[2] == math.inf
    if method != "kingma":  # Kingma's polynomial is meaningless for α > 1 and diverges there
        assert 0.0 <= kl[1].item() < 1e-15


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("method", KL_METHODS)
def test_dtype_and_shape_preserved(method, dtype):
    for shape in [(), (0,), (4,), (3, 2)]:
        t = torch.zeros(shape, dtype=dtype)
        kl = kl_log_uniform(t, method)
        assert kl.dtype == dtype and kl.shape == shape
    reference = kl_log_uniform(torch.tensor(0.0, dtype=torch.float64), method).item()
    assert kl_log_uniform(torch.tensor(0.0, dtype=dtype), method).item() == pytest.approx(reference, abs=0.01)


def test_non_contiguous_input():
    t = torch.linspace(-5, 5, 12, dtype=torch.float64).reshape(3, 4).t()
    assert torch.equal(exact_kl(t), exact_kl(t.contiguous()))


def test_number_input():
    assert kl_log_uniform(0.0, "exact").item() == pytest.approx(reference_kl(0.0), abs=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="kl method must be one of 'molchanov', 'kingma', 'exact'"):
        kl_log_uniform(torch.zeros(2), method="mc")
    with pytest.raises(TypeError, match="floating-point"):
        kl_log_uniform(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"log_alpha must be a torch\.Tensor"):
        kl_log_uniform([0.0, 1.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_exact_on_cuda_matches_cpu(dtype):
    t = torch.linspace(-45, 45, 10001, dtype=dtype)
    cuda = t.cuda().requires_grad_()
    cpu = t.clone().requires_grad_()
    exact_kl(cuda).sum().backward()
    exact_kl(cpu).sum().backward()
    assert torch.allclose(exact_kl(t.cuda()).cpu(), exact_kl(t), rtol=1e-6, atol=1e-7)
    assert torch.allclose(cuda.grad.cpu(), cpu.grad, rtol=1e-6, atol=1e-7)


def _series_kl(log_alpha):
    """x² − x⁴/3 + 4x⁶/45, x² = e^{−t}/2: the exact KL to 1e-36 for t ≥ 20 (differentiable reference)."""
    x2 = 0.5 * torch.exp(-log_alpha)
    return x2 - x2**2 / 3 + 4 * x2**3 / 45


@pytest.mark.parametrize("log_alpha", [-8.0, 0.0, 10.0, 30.0, 39.0, 41.0, 45.0, 60.0, 100.0, 300.0], ids=str)
def test_additive_exact_theta_gradient_matches_float64_autograd(log_alpha):
    """dKL/dθ = −(2/θ) dKL/dlog α with log α = log σ² − log θ²: tends to θ/σ² → 0 as α → ∞ (it once grew
    like 1/θ past the end of the table at log α = 40)."""
    from pyro_vd.distributions import kl_log_uniform_additive

    log_sigma2 = torch.tensor(-2.0, dtype=torch.float64)
    theta_value = math.exp(0.5 * (-2.0 - log_alpha))
    theta = torch.tensor(theta_value, dtype=torch.float64, requires_grad=True)
    kl = kl_log_uniform_additive(theta, log_sigma2, "exact")
    (fused,) = torch.autograd.grad(kl, theta)
    reference_theta = torch.tensor(theta_value, dtype=torch.float64, requires_grad=True)
    log_alpha_ref = log_sigma2 - reference_theta.square().log()
    reference_kl = _series_kl(log_alpha_ref) if log_alpha >= 20 else exact_kl(log_alpha_ref)
    (reference,) = torch.autograd.grad(reference_kl, reference_theta)
    assert fused.item() == pytest.approx(reference.item(), rel=1e-6, abs=1e-300)
    assert kl.item() == pytest.approx(reference_kl.item(), rel=1e-6, abs=1e-12)
    if log_alpha > 20:  # θ/σ², the large-α limit
        assert fused.item() == pytest.approx(theta_value / math.exp(-2.0), rel=1e-6)


def test_exact_beyond_the_table_follows_the_series_to_zero():
    t = torch.tensor([39.99, 40.0, 40.01, 41.0, 60.0, 200.0, 700.0, 800.0], dtype=torch.float64)
    x = t.clone().requires_grad_()
    kl = exact_kl(x)
    (slope,) = torch.autograd.grad(kl.sum(), x)
    kl = kl.detach()
    reference = t.clone().requires_grad_()
    (reference_slope,) = torch.autograd.grad(_series_kl(reference).sum(), reference)
    assert torch.allclose(kl, _series_kl(t), rtol=1e-7, atol=0)
    assert torch.allclose(slope, reference_slope, rtol=1e-6, atol=0)
    assert (kl[1:] <= kl[:-1]).all() and (slope[1:] >= slope[:-1]).all() and kl[-1] == 0 and slope[-1] == 0
    for dtype in (torch.float32, torch.float16):
        low = exact_kl(t.to(dtype))
        assert torch.isfinite(low).all() and (low >= 0).all() and low[-1] == 0


@pytest.mark.parametrize("method", ["molchanov", "kingma", "exact"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_additive_sum_equals_the_summed_elementwise_kl_and_its_gradients(method, dtype):
    """The ELBO's fused total: value and both gradients equal those of Σ kl_log_uniform_additive, with
    θ = 0 (floored θ², zero θ-gradient), broadcast log σ² and a retained graph run twice."""
    from pyro_vd.distributions import kl_log_uniform_additive, kl_log_uniform_additive_sum

    generator = torch.Generator().manual_seed(0)
    theta = (0.3 * torch.randn(40, 7, generator=generator, dtype=torch.float64)).to(dtype)
    log_sigma2 = torch.empty(1, 7, dtype=torch.float64).uniform_(-12, 0, generator=generator).to(dtype)
    if method == "kingma":  # valid for α ≤ 1 only: no θ = 0 there
        theta, log_sigma2 = theta.abs() + 0.5, log_sigma2 - 3.0
    else:
        theta[0, :3] = 0.0
        theta[1, 0] = 1e-25 if dtype == torch.float64 else 0.0  # below √tiny of float32: θ² floored
        if dtype == torch.float64:
            theta[1, 1] = 1e-160  # θ² floored in float64
    grads = []
    for fn in (lambda t, s: kl_log_uniform_additive(t, s, method).sum(), kl_log_uniform_additive_sum):
        t, s = theta.clone().requires_grad_(), log_sigma2.clone().requires_grad_()
        total = fn(t, s) if fn is not kl_log_uniform_additive_sum else fn(t, s, method)
        assert total.shape == () and total.dtype == dtype
        first = torch.autograd.grad(total, (t, s), retain_graph=True)
        second = torch.autograd.grad(total, (t, s))  # the saved tensors are left as they were
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
        grads.append((total.detach(), *first))
    (kl_a, gt_a, gs_a), (kl_b, gt_b, gs_b) = grads
    rtol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2}[dtype]
    assert torch.allclose(kl_b.double(), kl_a.double(), rtol=rtol)
    assert torch.allclose(gt_b.double(), gt_a.double(), rtol=rtol, atol=rtol * gt_a.abs().max().item())
    assert torch.allclose(gs_b.double(), gs_a.double(), rtol=rtol, atol=rtol * gs_a.abs().max().item())
    assert torch.isfinite(gt_b).all() and (method == "kingma" or (gt_b[0, :3] == 0).all())
    if method != "kingma" and dtype == torch.float64:
        assert gt_b[1, 1] == 0 and gt_a[1, 1] == 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("smallest", [0.05, 1e-25])
def test_additive_sum_with_and_without_floored_elements(dtype, smallest):
    """On the CPU the fused total skips the backward pass's mask when no θ² is floored: its gradients
    then equal the elementwise node's (which always masks); one θ of 1e-25 (θ² floored in float32 only)
    is still found, and its θ-gradient is 0 there."""
    from pyro_vd.distributions import kl_log_uniform_additive, kl_log_uniform_additive_sum

    generator = torch.Generator().manual_seed(1)
    theta = torch.randn(30, 9, generator=generator, dtype=torch.float64)
    theta = (theta.sign() * (theta.abs() + 0.05)).to(dtype)
    theta[2, 3] = smallest
    log_sigma2 = torch.empty(30, 9, dtype=dtype).uniform_(-12, 4, generator=generator)
    results = []
    for fn in (lambda t, s: kl_log_uniform_additive(t, s).sum(), kl_log_uniform_additive_sum):
        t, s = theta.clone().requires_grad_(), log_sigma2.clone().requires_grad_()
        total = fn(t, s)
        results.append((total.detach(), *torch.autograd.grad(total, (t, s))))
    (kl_a, gt_a, gs_a), (kl_b, gt_b, gs_b) = results
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    assert torch.allclose(kl_b, kl_a, rtol=rtol)
    assert torch.allclose(gt_b, gt_a, rtol=rtol, atol=rtol * gt_a.abs().max().item())
    assert torch.allclose(gs_b, gs_a, rtol=rtol, atol=rtol * gs_a.abs().max().item())
    floored = smallest**2 <= torch.finfo(dtype).tiny
    assert (gt_b[2, 3] == 0) == floored and torch.isfinite(gt_b).all()
