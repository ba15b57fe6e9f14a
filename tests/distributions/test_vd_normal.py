import math

import pytest
import torch
from pyro.distributions import Normal

from pyro_vd.distributions import VDNormal

BATCH_SHAPES = [(), (4,), (3, 2)]


def _make(batch_shape, **kwargs):
    theta = torch.randn(batch_shape)
    log_sigma2 = torch.randn(batch_shape) - 3.0
    return theta, log_sigma2, VDNormal(theta, log_sigma2, **kwargs)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_is_a_normal(batch_shape):
    theta, log_sigma2, q = _make(batch_shape)
    assert isinstance(q, Normal) and q.batch_shape == batch_shape and q.event_shape == ()
    reference = Normal(theta, log_sigma2.mul(0.5).exp())
    value = torch.randn(batch_shape)
    assert torch.allclose(q.log_prob(value), reference.log_prob(value))
    assert torch.allclose(q.entropy(), reference.entropy())
    assert torch.allclose(q.mean, theta) and torch.allclose(q.variance, log_sigma2.exp())
    assert q.rsample((7,)).shape == (7,) + batch_shape


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_log_alpha_additive(batch_shape):
    theta, log_sigma2, q = _make(batch_shape)
    assert torch.allclose(q.log_alpha, log_sigma2 - theta.square().log())
    assert torch.allclose(q.alpha, log_sigma2.exp() / theta.square())
    assert q.log_sigma2 is log_sigma2  # additive, unclipped: no round trip


def test_rsample_gradients_reach_parameters():
    theta = torch.tensor([0.5, -1.0], requires_grad=True)
    log_sigma2 = torch.tensor([-2.0, -1.0], requires_grad=True)
    VDNormal(theta, log_sigma2).rsample().sum().backward()
    assert torch.isfinite(theta.grad).all() and (theta.grad != 0).all()
    assert torch.isfinite(log_sigma2.grad).all() and (log_sigma2.grad != 0).all()


def test_log_alpha_finite_at_zero_theta():
    theta = torch.tensor([0.0, 1e-30, 1.0], requires_grad=True)
    q = VDNormal(theta, torch.tensor([-10.0, -10.0, -10.0]))
    assert torch.isfinite(q.log_alpha).all()
    assert q.log_alpha[0] > 60  # θ = 0 is "all noise": α is as large as the dtype allows
    q.log_alpha.sum().backward()
    assert torch.isfinite(theta.grad).all()


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_multiplicative(batch_shape):
    theta = torch.randn(batch_shape)
    log_alpha = torch.randn(batch_shape)
    q = VDNormal.from_log_alpha(theta, log_alpha)
    assert q.log_alpha is log_alpha
    assert torch.allclose(q.scale, theta.abs() * log_alpha.mul(0.5).exp())
    assert torch.allclose(q.log_sigma2, log_alpha + theta.square().log())


def test_multiplicative_shared_alpha_broadcasts():
    theta = torch.randn(3, 5)
    q = VDNormal.from_log_alpha(theta, torch.zeros(3, 1))  # one α per output neuron
    assert q.batch_shape == (3, 5) and q.log_alpha.shape == (3, 5)
    q = VDNormal.from_log_alpha(theta, torch.tensor(-1.0))  # one α for the layer
    assert torch.allclose(q.log_alpha, torch.full((3, 5), -1.0))


def test_multiplicative_zero_theta_has_positive_scale():
    q = VDNormal.from_log_alpha(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]), validate_args=True)
    assert (q.scale > 0).all() and torch.isfinite(q.log_prob(torch.tensor([0.0, 2.0]))).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda theta: VDNormal.from_log_alpha(theta, torch.full_like(theta, -8.0)),
        lambda theta: VDNormal(theta, torch.full_like(theta, -10.0), max_log_alpha=8.0),  # clipped
    ],
    ids=["multiplicative", "clipped"],
)
def test_log_prob_refuses_to_differentiate_the_point_mass_at_theta_zero(make):
    # where the scale is √α|θ|, θ = 0 is a point mass: the gradient of a sampled ELBO's
    # log q(w) − log p(w) is NaN there (measured: Pyro's Trace_ELBO NaN from the first step); the
    # value stays finite (TraceMeanField_ELBO computes it and takes the KL), its backward pass refuses
    theta = torch.tensor([0.0, 0.5, -1.0], requires_grad=True)
    q = make(theta)
    w = q.rsample()
    log_prob = q.log_prob(w)
    assert torch.isfinite(log_prob).all()
    with pytest.raises(ValueError, match=r"theta is 0 .* at 1 of 3 entries.*init_theta='near_zero'"):
        (log_prob + w.abs().log()).sum().backward()
    with pytest.raises(ValueError, match="theta is 0"):  # also through .to_event(), as Pyro calls it
        q.to_event(1).log_prob(q.rsample()).backward()
    # the subnormal θ that float32 cannot square is a point mass too, and so is a θ whose variance
    # αθ² underflows (NaN gradients, measured at θ = 1e-18 with log α = −8); a small θ is not
    for tiny in (1e-30, 1e-18) if q._multiplicative else (1e-30,):  # (clipped: log α = 8 there)
        small = torch.tensor([tiny, 0.5, -1.0], requires_grad=True)
        with pytest.raises(ValueError, match=r"theta is 0 .* at 1 of 3 entries"):
            make(small).log_prob(torch.zeros(3)).sum().backward()
    theta = torch.tensor([1e-3, 0.5, -1.0], requires_grad=True)
    q = make(theta)
    w = q.rsample()
    log_prob = q.log_prob(w)
    assert torch.allclose(log_prob, Normal(theta, q.scale).log_prob(w))
    (log_prob + w.abs().log()).sum().backward()  # log q(w) − log p(w) under the log-uniform prior
    assert torch.isfinite(theta.grad).all()
    with torch.no_grad():  # nothing to refuse where nothing is differentiated
        assert torch.isfinite(make(torch.zeros(3)).log_prob(torch.zeros(3))).all()


def test_log_prob_refuses_a_variance_that_underflows_in_half_precision():
    # float16 computes the variance αθ² in float16 (smallest normal 6e-5): θ = 0.01 at log α = −8 gave a
    # NaN gradient; bfloat16 has float32's range and is fine there
    for dtype, refused in ((torch.float16, True), (torch.bfloat16, False)):
        theta = torch.tensor([0.01, 0.5], dtype=dtype, requires_grad=True)
        q = VDNormal.from_log_alpha(theta, torch.full((2,), -8.0, dtype=dtype))
        backward = q.log_prob(torch.tensor([0.01, 0.5], dtype=dtype)).sum().backward
        if refused:
            with pytest.raises(ValueError, match=r"at 1 of 2 entries"):
                backward()
        else:
            backward()
            assert torch.isfinite(theta.grad).all()


def test_log_prob_of_the_additive_parameterization_is_finite_at_theta_zero():
    # with log σ² learned, θ = 0 still has its spread σ: nothing to refuse
    theta = torch.tensor([0.0, 1.0], requires_grad=True)
    q = VDNormal(theta, torch.tensor([-4.0, -4.0]))
    w = q.rsample()
    (q.log_prob(w) + w.abs().log()).sum().backward()
    assert torch.isfinite(theta.grad).all()


def test_clip_is_consistent_for_noise_and_kl():
    theta = torch.tensor([1.0, 2.0, -0.5, 0.1])
    log_sigma2 = torch.tensor([3.0, -20.0, -1.0, 1.0])
    q = VDNormal(theta, log_sigma2, min_log_alpha=-8.0, max_log_alpha=0.0)
    raw = log_sigma2 - theta.square().log()
    assert torch.allclose(q.log_alpha, raw.clamp(-8.0, 0.0))
    assert torch.allclose(q.scale.square(), q.alpha * theta.square())
    assert q.alpha.max() <= 1.0


def test_clip_keeps_gradients_inside_bounds_only():
    log_alpha = torch.tensor([-1.0, 1.0], requires_grad=True)
    q = VDNormal.from_log_alpha(torch.ones(2), log_alpha, max_log_alpha=0.0)
    q.log_alpha.sum().backward()
    assert log_alpha.grad.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize("multiplicative", [False, True])
def test_expand_keeps_everything(batch_shape, multiplicative):
    theta = torch.randn(batch_shape)
    other = torch.randn(batch_shape) - 2.0
    kwargs = {"max_log_alpha": 1.0, "kl_method": "exact"}

    def make():
        if multiplicative:
            return VDNormal.from_log_alpha(theta, other, **kwargs)
        return VDNormal(theta, other, **kwargs)

    q = make()
    _ = q.log_alpha  # a cached lazy value must be expanded too
    e = q.expand((5,) + batch_shape)
    assert type(e) is VDNormal
    assert e.batch_shape == (5,) + batch_shape
    assert e.kl_method == "exact" and e.max_log_alpha == 1.0
    assert torch.allclose(e.log_alpha, q.log_alpha.expand(e.batch_shape))
    assert torch.allclose(e.log_sigma2, q.log_sigma2.expand(e.batch_shape))
    assert torch.allclose(e.scale, q.scale.expand(e.batch_shape))
    e2 = make().expand((5,) + batch_shape)  # nothing cached before expanding
    assert torch.allclose(e2.log_alpha, e.log_alpha)
    assert e.rsample().shape == (5,) + batch_shape


def test_to_event():
    q = VDNormal(torch.zeros(3, 2) + 1.0, torch.zeros(3, 2)).to_event(1)
    assert q.batch_shape == (3,) and q.event_shape == (2,)
    assert q.log_prob(torch.ones(3, 2)).shape == (3,)


def test_bad_arguments():
    with pytest.raises(TypeError, match="exactly one of log_sigma2"):
        VDNormal(torch.ones(2))
    with pytest.raises(TypeError, match="exactly one of log_sigma2"):
        VDNormal(torch.ones(2), torch.ones(2), log_alpha=torch.ones(2))
    with pytest.raises(ValueError, match="kl method must be one of"):
        VDNormal(torch.ones(2), torch.ones(2), kl_method="sampled")
    with pytest.raises(ValueError, match="min_log_alpha"):
        VDNormal(torch.ones(2), torch.ones(2), min_log_alpha=1.0, max_log_alpha=0.0)
    with pytest.raises(TypeError, match="max_log_alpha"):
        VDNormal(torch.ones(2), torch.ones(2), max_log_alpha="0")
    with pytest.raises(ValueError, match="theta"):
        VDNormal(torch.tensor([1.0, math.nan]), torch.zeros(2), validate_args=True)
    with pytest.raises(ValueError, match="log_sigma2"):
        VDNormal(torch.ones(2), torch.tensor([0.0, math.nan]), validate_args=True)


def test_repr():
    assert "log_sigma2" in repr(VDNormal(torch.ones(2), torch.zeros(2)))
    assert "log_alpha in [None, 0.0]" in repr(VDNormal.from_log_alpha(1.0, 0.0, max_log_alpha=0.0))


@pytest.mark.parametrize(
    ("theta", "raw", "multiplicative", "name"),
    [
        (math.inf, 0.0, False, "theta"),
        (-math.inf, 0.0, False, "theta"),
        (1.0, math.inf, False, "log_sigma2"),
        (1.0, -math.inf, False, "log_sigma2"),
        (1.0, math.inf, True, "log_alpha"),
    ],
    ids=str,
)
def test_validation_rejects_infinite_parameters(theta, raw, multiplicative, name):
    theta, raw = torch.tensor([1.0, theta]), torch.tensor([0.0, raw])
    make = VDNormal.from_log_alpha if multiplicative else VDNormal
    with pytest.raises(
        ValueError, match=f"parameter {name} of VDNormal to be finite real numbers, but found inf"
    ):
        make(theta, raw, validate_args=True)
    make(theta, raw, validate_args=False)  # unvalidated: accepted as before


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_log_alpha_is_computed_in_float32(dtype):
    # θ² of these underflows float16's smallest normal (6.1e-5): flooring it there turned log α = 3.8
    # (pruned at 3) into -0.3 (kept)
    theta = torch.tensor([1e-3, -3e-3, 2e-2, 0.0, 0.5], dtype=dtype)
    log_sigma2 = torch.tensor([-10.0, -10.0, -4.0, -10.0, -3.0], dtype=dtype)
    reference = log_sigma2.double() - 2 * theta.double().abs().log()
    q = VDNormal(theta, log_sigma2)
    assert q.log_alpha.dtype == dtype
    finite = theta != 0
    assert torch.allclose(q.log_alpha[finite].double(), reference[finite], rtol=1e-2, atol=1e-2)
    assert ((q.log_alpha > 3.0) == (reference > 3.0)).all()
    assert q.log_alpha[3] > 70  # θ = 0: θ² floored at float32's tiny, not float16's
    assert torch.isfinite(q.kl_to_log_uniform()).all()


@pytest.mark.parametrize("multiplicative", [False, True])
def test_prune_above_zeroes_the_mean_of_pruned_weights_only(multiplicative):
    """Train-time pruning (the Sparse VD authors' ``train_clip``): the mean is θ where log α < 3 and 0
    elsewhere; the variance αθ² and the KL keep the unpruned θ, and the mask passes no gradient."""
    theta = torch.tensor([1.0, 0.5, 0.1, -0.2], requires_grad=True)
    log_alpha = torch.tensor([-2.0, 2.9, 3.0, 6.0])
    if multiplicative:
        q = VDNormal.from_log_alpha(theta, log_alpha, prune_above=3.0)
        plain = VDNormal.from_log_alpha(theta, log_alpha)
    else:
        log_sigma2 = log_alpha + theta.detach().square().log()
        q = VDNormal(theta, log_sigma2, prune_above=3.0)
        plain = VDNormal(theta, log_sigma2)
    assert torch.equal(q.loc.detach(), torch.tensor([1.0, 0.5, 0.0, 0.0]))
    assert torch.allclose(q.variance, plain.variance) and torch.allclose(q.log_alpha, plain.log_alpha)
    assert torch.allclose(q.kl_to_log_uniform(), plain.kl_to_log_uniform())
    q.loc.sum().backward()
    assert torch.equal(theta.grad, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    expanded = q.expand((3, 4))
    assert torch.equal(expanded.loc.detach()[1], q.loc.detach()) and expanded.prune_above == 3.0
    # the clip decides too: with log α clipped to ≤ 2.5 no weight reaches 3
    clipped = VDNormal.from_log_alpha(theta, log_alpha, max_log_alpha=2.5, prune_above=3.0)
    assert torch.equal(clipped.loc, theta)


def test_prune_log_alpha_decides_the_mask_instead_of_the_own_log_alpha():
    # e.g. the guide's iterate average of log α: steadier than the live iterate it replaces here
    theta = torch.tensor([1.0, 0.5, 0.1, -0.2])
    live = torch.tensor([-2.0, 4.0, 3.5, -1.0])
    average = torch.tensor([5.0, 1.0, 3.5, -1.0])
    q = VDNormal.from_log_alpha(theta, live, prune_above=3.0, prune_log_alpha=average)
    assert torch.equal(q.loc, torch.tensor([0.0, 0.5, 0.0, -0.2]))
    assert torch.equal(q.log_alpha, live)  # the noise and the KL keep the live log α
    shared = VDNormal.from_log_alpha(theta, live, prune_above=3.0, prune_log_alpha=torch.tensor(4.0))
    assert torch.equal(shared.loc, torch.zeros(4))
    with pytest.raises(ValueError, match="give prune_above too"):
        VDNormal.from_log_alpha(theta, live, prune_log_alpha=average)


def test_bad_prune_above_is_refused_by_name():
    with pytest.raises(ValueError, match="prune_above"):
        VDNormal(torch.ones(2), torch.zeros(2), prune_above=float("nan"))
