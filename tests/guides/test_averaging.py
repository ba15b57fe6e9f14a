"""Iterate averaging in AutoVariationalDropout (``averaging=η``): the guide keeps the polynomial-decay
average of every parameter the ELBO trains with it (its own and its model's), and ``apply_average()``
sets the parameters to it."""

import pickle

import pyro
import pytest
import torch

from pyro_vd import VariationalDropoutELBO
from pyro_vd.guides import AutoVariationalDropout
from pyro_vd.models import BayesianMLP, LinearRegression, LogisticRegression
from pyro_vd.poutine import local_reparameterization

X, Y = torch.randn(32, 6), torch.randint(0, 3, (32,))


def _train(guide, model, steps, elbo=None, record=None, optim=None):
    svi = pyro.infer.SVI(
        model, guide, optim or pyro.optim.Adam({"lr": 0.05}), elbo or VariationalDropoutELBO()
    )
    for _ in range(steps):
        if record is not None:  # the iterate the step's gradient is taken at
            guide(X, Y)
            record.append(
                {
                    "theta": guide.thetas.net.fc1.weight.detach().clone(),
                    "log_sigma2": guide.log_sigma2s.net.fc1.weight.detach().clone(),
                    "bias": pyro.param("net.fc1.bias").detach().clone(),
                }
            )
        svi.step(X, Y)


def _polynomial_average(values, eta):
    mean = values[0].clone()
    for k, value in enumerate(values[1:], start=2):
        mean += (value - mean) * (eta + 1) / (k + eta)
    return mean


@pytest.mark.parametrize("eta", [0.0, 3.0])
def test_apply_average_sets_guide_and_model_parameters_to_their_polynomial_average(eta):
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=eta)
    record = []
    _train(guide, model, 20, record=record)
    assert guide.average_count() == 20
    live = guide.get_theta("net.fc1.weight")
    expected = {key: _polynomial_average([r[key] for r in record], eta) for key in record[0]}
    assert not torch.allclose(live, expected["theta"], atol=1e-4)  # the average is not the last iterate
    assert guide.apply_average() == 20
    assert torch.allclose(guide.get_theta("net.fc1.weight"), expected["theta"], atol=1e-6)
    q = guide.posterior("net.fc1.weight")
    assert torch.allclose(q.log_sigma2.detach(), expected["log_sigma2"], atol=1e-6)
    # the model's point estimates come from the same average: θ and the bias stay consistent
    assert torch.allclose(pyro.param("net.fc1.bias").detach(), expected["bias"], atol=1e-6)
    assert guide.average_count() == 0  # and the averages start again
    _train(guide, model, 3)
    assert guide.average_count() == 3


def test_without_averaging_nothing_is_tracked():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model)
    _train(guide, model, 5)
    before = guide.get_theta("net.fc1.weight")
    assert guide.averaging is None and guide.average_count() == 0
    assert guide.apply_average() == 0
    assert torch.equal(guide.get_theta("net.fc1.weight"), before)


def test_several_particles_count_a_step_once():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=0.0)
    elbo = pyro.infer.TraceMeanField_ELBO(num_particles=4)
    _train(guide, model, 10, elbo=elbo)
    assert guide.average_count() == 10


def test_the_average_starts_again_when_the_parameters_are_replaced_or_loaded():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=3.0)
    _train(guide, model, 5)
    assert guide.average_count() == 5
    # the param store set anew from a saved state (as param_store.load does): its tensors are new
    store = pyro.get_param_store()
    store.set_state(pickle.loads(pickle.dumps(store.get_state())))
    _train(guide, model, 3)
    assert guide.average_count() == 3
    # the guide's state loaded, by itself or through a parent module (values copied in place)
    guide.load_state_dict(guide.state_dict())
    assert guide.average_count() == 0
    _train(guide, model, 2)
    parent = torch.nn.ModuleList([guide])
    parent.load_state_dict(parent.state_dict())
    assert guide.average_count() == 0
    _train(guide, model, 2)
    guide.reset_average()
    assert guide.average_count() == 0
    _train(guide, model, 2)
    assert guide.average_count() == 2


def test_a_converted_guide_averages_in_its_new_dtype():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=0.0)
    _train(guide, model, 3)
    guide.double()
    model.double()
    global X
    saved, X = X, X.double()
    try:
        _train(guide, model, 2)
    finally:
        X = saved
    assert guide.average_count() == 2
    guide.apply_average()
    assert guide.get_theta("net.fc1.weight").dtype == torch.float64


def test_a_pickled_guide_has_no_average_and_averages_again_when_trained():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=3.0)
    _train(guide, model, 4)
    copy = pickle.loads(pickle.dumps(guide))
    assert copy.average_count() == 0 and copy.averaging == 3.0
    _train(copy, model, 2)
    assert copy.average_count() == 2


# torch 2.13 deprecates torch.jit.trace, which Pyro's Jit ELBOs use; they still work.
@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
def test_jit_elbo_and_the_module_route_count_their_steps_also_after_a_reset():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=0.0)
    elbo = pyro.infer.JitTrace_ELBO(ignore_jit_warnings=True)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), elbo)
    for _ in range(6):
        svi.step(X, Y)
    assert guide.average_count() == 6
    guide.reset_average()  # the compiled step does not run the guide's Python code again
    for _ in range(4):
        svi.step(X, Y)
    assert guide.average_count() == 4
    pyro.clear_param_store()
    with pyro.settings.context(module_local_params=True):
        model = BayesianMLP([6, 5, 3], num_data=32)
        guide = AutoVariationalDropout(model, averaging=0.0)
        guide(X, Y)
        elbo = VariationalDropoutELBO()(model, guide)
        optim = torch.optim.Adam(elbo.parameters(), lr=0.05)
        thetas = []
        for _ in range(4):
            thetas.append(guide.thetas.net.fc1.weight.detach().clone())
            optim.zero_grad()
            elbo(X, Y).backward()
            optim.step()
        assert guide.average_count() == 4
        guide.apply_average()
        assert torch.allclose(guide.get_theta("net.fc1.weight"), torch.stack(thetas).mean(0), atol=1e-6)


def test_linear_models_recommend_averaging_also_through_poutine_block():
    for model in (LinearRegression(6, num_data=100), LogisticRegression(6, num_data=100)):
        assert AutoVariationalDropout(model).averaging == 3.0
        assert AutoVariationalDropout(model, averaging=False).averaging is None
        assert AutoVariationalDropout(model, averaging=0).averaging == 0.0
        blocked = pyro.poutine.block(model, expose=["net.weight"])
        assert AutoVariationalDropout(blocked).averaging == 3.0
    assert AutoVariationalDropout(BayesianMLP([6, 5, 3], num_data=32)).averaging is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "polyak"])
def test_bad_averaging_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="averaging must be None, False or a finite number"):
        AutoVariationalDropout(BayesianMLP([6, 5, 3], num_data=32), averaging=bad)


def test_averaging_reaches_the_linear_optimum_where_the_last_iterate_jitters():
    """Small minibatches (8 of 4000 rows): Adam's last iterate is several posterior standard deviations
    from the exact θ, the average about half as far (measured over data seeds 0–2: last iterate 4.5 /
    9.5 / 6.4 sd, averaged 2.3 / 4.1 / 2.4 sd)."""
    from pyro_vd.linear import VDRegression

    g = torch.Generator().manual_seed(0)
    n, d = 4000, 5
    x = torch.randn(n, d, generator=g)
    w = torch.tensor([1.0, -0.5, 0.0, 0.0, 0.25])
    y = x @ w + 0.3 * torch.randn(n, generator=g)
    exact = VDRegression().fit(x.numpy(), y.numpy())
    errors = {}
    for averaging in (False, 3.0):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = LinearRegression(d, num_data=n)
        guide = AutoVariationalDropout(model, averaging=averaging)
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), VariationalDropoutELBO())
        batches = torch.Generator().manual_seed(0)
        with local_reparameterization():
            for _ in range(1500):
                index = torch.randint(0, n, (8,), generator=batches)
                svi.step(x[index], y[index])
        guide.apply_average()
        theta = guide.get_theta("net.weight")[0].numpy()
        errors[averaging] = abs(theta[[0, 1, 4]] - exact.coef_[[0, 1, 4]]).max()
    posterior_sd = 0.3 / n**0.5
    assert errors[3.0] < 0.7 * errors[False] and errors[3.0] < 5 * posterior_sd


@pytest.mark.parametrize(
    "make_optim",
    [
        lambda: pyro.optim.Adam({"lr": 0.05, "fused": True}),
        lambda: __import__("pyro_vd").FusedAdam({"lr": 0.05}),
        lambda: pyro.optim.ClippedAdam({"lr": 0.05}),
        lambda: pyro.optim.Adam({"lr": 0.05}),
    ],
    ids=["fused", "FusedAdam", "ClippedAdam", "Adam"],
)
def test_every_step_is_averaged_also_where_the_optimizer_leaves_the_version_counter(make_optim):
    # torch's fused Adam kernel and ClippedAdam (which writes through .data) change a parameter without
    # moving its version counter: a version check alone counted the first step only, and apply_average
    # silently set every parameter back to its first iterate (θ = 0 for the linear models' zero start)
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=3.0)
    record = []
    _train(guide, model, 20, record=record, optim=make_optim())
    assert guide.average_count() == 20
    expected = _polynomial_average([r["theta"] for r in record], 3.0)
    assert guide.apply_average() == 20
    assert torch.allclose(guide.get_theta("net.fc1.weight"), expected, atol=1e-6)


def test_several_particles_count_a_step_once_with_a_fused_optimizer():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=0.0)
    elbo = pyro.infer.Trace_ELBO(num_particles=3)  # one backward pass per particle
    _train(guide, model, 10, elbo=elbo, optim=pyro.optim.Adam({"lr": 0.05, "fused": True}))
    assert guide.average_count() == 10


def test_a_parameter_that_never_has_a_gradient_does_not_stop_the_others_being_averaged():
    # an unused head: its parameters are trained by the ELBO but never get a gradient
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.aux = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)

        def forward(self, x):
            return self.fc1(x)

    from pyro_vd.models import VDModel

    model = VDModel(TwoHeads(), num_data=32, likelihood="categorical", exclude=["aux"])
    guide = AutoVariationalDropout(model, averaging=0.0)
    record = []
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    for _ in range(10):
        guide(X, Y)
        record.append(guide.get_theta("net.fc1.weight"))
        svi.step(X, Y)
    aux = model.net.aux.weight.detach().clone()
    assert guide.average_count() == 10  # (it was 0: the unused head's count)
    assert guide.apply_average() == 10
    assert torch.allclose(guide.get_theta("net.fc1.weight"), _polynomial_average(record, 0.0), atol=1e-6)
    assert torch.equal(model.net.aux.weight.detach(), aux)  # never trained: kept


def test_after_the_param_store_is_loaded_apply_average_keeps_the_loaded_values(tmp_path):
    model = LinearRegression(6, num_data=32)
    guide = AutoVariationalDropout(model)  # averaging η = 3 (the linear models' recommendation)
    x, y = torch.randn(32, 6), torch.randn(32)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    with local_reparameterization():
        for _ in range(20):
            svi.step(x, y)
        pyro.get_param_store().save(tmp_path / "params.pt")
        saved = guide.get_theta("net.weight")
        for _ in range(20):
            svi.step(x, y)
    assert not torch.allclose(guide.get_theta("net.weight"), saved)
    pyro.get_param_store().load(tmp_path / "params.pt")
    # the averages were of the replaced values: dropped, nothing applied (it wrote the old average into
    # the guide's modules, which the next guide call then replaced by the store's tensors)
    assert guide.apply_average() == 0
    with local_reparameterization():
        guide(x, y)  # the readers follow the store from the guide's next call on
    assert torch.equal(guide.get_theta("net.weight"), saved)


def test_setting_averaging_validates_restarts_and_turns_it_off():
    model = BayesianMLP([6, 5, 3], num_data=32)
    guide = AutoVariationalDropout(model, averaging=3.0)
    _train(guide, model, 5)
    assert guide.average_count() == 5
    guide.averaging = 3  # the same η: the average goes on
    _train(guide, model, 2)
    assert guide.average_count() == 7
    guide.averaging = 0.0  # another η: an average taken with η = 3 cannot go on with η = 0
    assert guide.average_count() == 0
    _train(guide, model, 3)
    assert guide.average_count() == 3
    guide.averaging = False  # off: as the constructor reads it (it kept averaging with η = 0)
    assert guide.averaging is None and guide.average_count() == 0
    _train(guide, model, 3)  # (None was a TypeError inside the backward pass)
    assert guide.average_count() == 0 and guide.apply_average() == 0
    with pytest.raises(ValueError, match="averaging"):
        guide.averaging = -1.0
    assert guide.averaging is None
