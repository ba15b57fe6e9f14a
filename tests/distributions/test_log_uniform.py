import pyro
import pytest
import torch
from pyro.distributions import Independent

from pyro_vd.distributions import LogUniform

BATCH_SHAPES = [(), (4,), (3, 2)]
EVENT_SHAPES = [(), (2,)]


@pytest.mark.parametrize("event_shape", EVENT_SHAPES, ids=str)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_shapes_and_log_prob(batch_shape, event_shape):
    d = LogUniform(batch_shape, event_shape)
    assert d.batch_shape == batch_shape and d.event_shape == event_shape
    value = torch.randn(batch_shape + event_shape)
    expected = -value.abs().log()
    if event_shape:
        expected = expected.sum(-1)
    log_prob = d.log_prob(value)
    assert log_prob.shape == batch_shape
    assert torch.allclose(log_prob, expected)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_log_prob_broadcasts_value_and_batch(batch_shape):
    d = LogUniform(batch_shape)
    value = torch.randn((5,) + batch_shape)
    assert d.log_prob(value).shape == (5,) + batch_shape
    # A scalar value against a batched prior gives the batch shape.
    assert d.log_prob(torch.tensor(2.0)).shape == batch_shape


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_expand_returns_log_uniform(batch_shape):
    d = LogUniform(event_shape=(2,))
    e = d.expand(batch_shape)
    assert type(e) is LogUniform
    assert e.batch_shape == batch_shape and e.event_shape == (2,)
    assert e.expand((5,) + batch_shape).batch_shape == (5,) + batch_shape


def test_to_event_sums_log_prob():
    d = LogUniform().expand([3, 2]).to_event(1)
    assert isinstance(d, Independent)
    value = torch.randn(3, 2)
    assert torch.allclose(d.log_prob(value), -value.abs().log().sum(-1))


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf"), -float("inf")], ids=str)
def test_validation_rejects_values_outside_support(bad):
    d = LogUniform((3,), validate_args=True)
    value = torch.tensor([1.0, bad, -2.0])
    with pytest.raises(ValueError, match="support"):
        d.log_prob(value)
    # Validation off: no error, and the value passes through the formula.
    assert not torch.isfinite(LogUniform((3,), validate_args=False).log_prob(value)[1])


def test_validation_survives_expand():
    d = LogUniform(validate_args=True).expand([2])
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([1.0, 0.0]))


def test_validation_rejects_wrong_event_shape():
    with pytest.raises(ValueError, match="event_shape"):
        LogUniform(event_shape=(3,), validate_args=True).log_prob(torch.ones(2))


def test_sample_raises_clear_error():
    d = LogUniform((2,))
    for call in (d.sample, d.rsample):
        with pytest.raises(NotImplementedError, match=r"improper.*VDNormal"):
            call()


def test_support():
    support = LogUniform().support
    assert support.check(torch.tensor([1.0, -3.0, 1e-30])).all()
    assert not support.check(torch.tensor([0.0, float("nan"), float("inf")])).any()


def test_inside_plate():
    def model():
        with pyro.plate("units", 5):
            return pyro.sample("w", LogUniform(), obs=torch.full((5,), 2.0))

    trace = pyro.poutine.trace(model).get_trace()
    site = trace.nodes["w"]
    assert type(site["fn"]) is LogUniform and site["fn"].batch_shape == (5,)
    trace.compute_log_prob()
    assert torch.allclose(site["log_prob_sum"], torch.tensor(-5 * torch.log(torch.tensor(2.0)).item()))
