import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyro_vd.distributions import KL_METHODS, LogUniform, VDNormal, kl_log_uniform

BATCH_SHAPES = [(), (4,), (3, 2)]


@pytest.mark.parametrize("method", KL_METHODS)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_vdnormal_loguniform_uses_method(batch_shape, method):
    q = VDNormal(torch.randn(batch_shape), torch.randn(batch_shape) - 4.0, kl_method=method)
    kl = kl_divergence(q, LogUniform(batch_shape))
    assert kl.shape == batch_shape
    assert torch.allclose(kl, kl_log_uniform(q.log_alpha, method))


def test_kl_does_not_depend_on_theta_given_alpha():
    log_alpha = torch.tensor([-2.0, -2.0, -2.0])
    q = VDNormal.from_log_alpha(torch.tensor([0.01, 1.0, -50.0]), log_alpha)
    kl = kl_divergence(q, LogUniform())
    assert torch.allclose(kl, kl[:1].expand(3))


def test_kl_broadcasts_with_prior_batch_shape():
    q = VDNormal(torch.randn(2), torch.zeros(2))
    assert kl_divergence(q, LogUniform((3, 2))).shape == (3, 2)


def test_plain_normal_is_in_the_family():
    loc, scale = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.1])
    kl = kl_divergence(dist.Normal(loc, scale), LogUniform((2,)))
    assert torch.allclose(kl, kl_log_uniform(2 * scale.log() - loc.square().log()))


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_independent_against_event_shaped_prior(batch_shape):
    q = VDNormal(torch.randn(batch_shape + (5,)), torch.randn(batch_shape + (5,)) - 2.0)
    expected = kl_log_uniform(q.log_alpha).sum(-1)
    kl = kl_divergence(q.to_event(1), LogUniform(batch_shape, (5,)))
    assert kl.shape == batch_shape and torch.allclose(kl, expected)
    kl = kl_divergence(q.to_event(1), LogUniform((), (5,)).expand(batch_shape))
    assert torch.allclose(kl, expected)


def test_independent_against_independent_prior():
    q = VDNormal(torch.randn(3, 5), torch.randn(3, 5) - 2.0)
    kl = kl_divergence(q.to_event(2), LogUniform().expand([3, 5]).to_event(2))
    assert kl.shape == () and torch.allclose(kl, kl_log_uniform(q.log_alpha).sum())


def test_nested_independent():
    q = VDNormal(torch.randn(2, 3, 5), torch.randn(2, 3, 5) - 2.0)
    kl = kl_divergence(q.to_event(1).to_event(1), LogUniform((2,), (3, 5)))
    assert kl.shape == (2,) and torch.allclose(kl, kl_log_uniform(q.log_alpha).sum((-2, -1)))


def test_event_shape_mismatch_is_a_clear_error():
    q = VDNormal(torch.randn(5), torch.zeros(5))
    with pytest.raises(ValueError, match=r"to_event\(1\)"):
        kl_divergence(q, LogUniform(event_shape=(5,)))
    with pytest.raises(ValueError, match="event shapes differ"):
        kl_divergence(q.to_event(1), LogUniform(event_shape=(4,)))


@pytest.mark.parametrize("method", KL_METHODS)
@pytest.mark.parametrize("style", ["event_shape", "to_event", "plate"])
def test_trace_mean_field_elbo_uses_the_analytic_kl(style, method):
    """With no observations the ELBO is -KL: deterministic, and equal to our KL, if it is analytic."""
    theta = torch.tensor([0.3, -1.2, 2.0])
    log_sigma2 = torch.tensor([-3.0, 0.5, -8.0])

    def model():
        if style == "event_shape":
            pyro.sample("w", LogUniform(event_shape=(3,)))
        elif style == "to_event":
            pyro.sample("w", LogUniform().expand([3]).to_event(1))
        else:
            with pyro.plate("d", 3):
                pyro.sample("w", LogUniform())

    def guide():
        q = VDNormal(theta, log_sigma2, kl_method=method)
        if style == "plate":
            with pyro.plate("d", 3):
                pyro.sample("w", q)
        else:
            pyro.sample("w", q.to_event(1))

    expected = kl_log_uniform(VDNormal(theta, log_sigma2).log_alpha, method).sum().item()
    elbo = TraceMeanField_ELBO()
    losses = [elbo.loss(model, guide) for _ in range(3)]
    assert losses == pytest.approx([expected] * 3, rel=1e-6)
