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


@pytest.mark.parametrize("sample_shape", [(), (1000,)], ids=str)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_sample_draws_from_the_truncated_stand_in(batch_shape, sample_shape):
    # Pyro's Predictive and every autoguide's set-up run the prior once: sample() must give a value in
    # the support, from log|w| ~ U(a, b) with a random sign.
    torch.manual_seed(0)
    d = LogUniform(batch_shape, (2,), sample_log_bounds=(-3.0, 1.0))
    value = d.sample(sample_shape)
    assert value.shape == sample_shape + batch_shape + (2,)
    assert d.support.check(value).all()
    log_abs = value.abs().log()
    assert (log_abs >= -3.0).all() and (log_abs <= 1.0).all()
    assert d.expand((5,) + batch_shape).sample_log_bounds == (-3.0, 1.0)
    with pytest.raises(NotImplementedError):
        d.rsample()


def test_sample_moments():
    # 200 000 draws: log|w| ~ U(-6, 0) has mean -3 (sd of the mean 0.004) and the sign is fair (0.0011).
    torch.manual_seed(0)
    value = LogUniform().sample((200_000,))
    assert abs(value.abs().log().mean().item() + 3.0) < 0.02
    assert abs((value > 0).float().mean().item() - 0.5) < 0.006


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_shape": 3}, TypeError, "sequence of non-negative ints"),
        ({"event_shape": "ab"}, TypeError, "sequence of non-negative ints"),
        ({"event_shape": (2.5,)}, TypeError, "non-negative ints"),
        ({"sample_log_bounds": (1.0, 0.0)}, ValueError, "low < high"),
        ({"sample_log_bounds": (0.0, float("inf"))}, ValueError, "finite"),
        ({"sample_log_bounds": 3.0}, TypeError, "pair"),
    ],
    ids=str,
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        LogUniform(**kwargs)


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


def test_sample_dtype_and_device():
    d = LogUniform(event_shape=(3,), dtype=torch.float64, device="cpu").expand([2])
    assert d.sample().dtype == torch.float64 and d.sample().device.type == "cpu"
    assert LogUniform().sample().dtype == torch.get_default_dtype()
