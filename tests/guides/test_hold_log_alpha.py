"""``hold_log_alpha``: log α held at its start for the first K training steps, counted by
``trained_steps``, which the guide's state keeps."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vd import AutoVariationalDropout, LogUniform, VariationalDropoutELBO
from pyro_vd.inference import load_checkpoint, save_checkpoint
from pyro_vd.models import BayesianMLP, LinearRegression
from pyro_vd.poutine import local_reparameterization

X = torch.randn(64, 6)
Y = X[:, :2].sum(-1) + 0.1 * torch.randn(64)


def _svi(guide_kwargs=None, optim=None, num_particles=1):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = LinearRegression(6, num_data=64)
    guide = AutoVariationalDropout(model, **(guide_kwargs or {}))
    elbo = VariationalDropoutELBO(num_particles=num_particles)
    optim = optim or pyro.optim.Adam({"lr": 0.05})
    return model, guide, optim, pyro.infer.SVI(model, guide, optim, elbo)


def _log_alpha(guide):
    return guide.get_log_alpha("net.weight").clone()


def _steps(svi, n):
    with local_reparameterization():
        for _ in range(n):
            svi.step(X, Y)


@pytest.mark.parametrize("num_particles", [1, 2])
def test_log_alpha_is_held_for_k_steps_then_trains(num_particles):
    _, guide, optim, svi = _svi({"hold_log_alpha": 5}, num_particles=num_particles)
    _steps(svi, 1)
    start = _log_alpha(guide)
    theta = guide.get_theta("net.weight").clone()
    assert torch.allclose(start, torch.full_like(start, -8.0))  # the linear models' dense start
    _steps(svi, 4)
    assert guide.trained_steps == 5  # one count per step, however many particles
    assert torch.equal(_log_alpha(guide), start)  # held
    assert not torch.equal(guide.get_theta("net.weight"), theta)  # θ trains meanwhile
    # the optimizer saw only zeros for log α: no momentum to carry when the hold ends
    psi = pyro.get_param_store()._params["AutoVariationalDropout.log_alphas_x5.net.weight"]
    assert not optim.optim_objs[psi].state[psi]["exp_avg"].any()
    # evaluating the loss is not a step; a backward pass of one's own before the next step is that
    # step's (θ has not changed between them): counted once
    with local_reparameterization():
        svi.evaluate_loss(X, Y)
        assert guide.trained_steps == 5 and guide.log_alpha_held is False
        VariationalDropoutELBO().differentiable_loss(*_svi_parts(svi), X, Y).backward()
    _steps(svi, 1)
    assert not torch.equal(_log_alpha(guide), start)  # step K + 1 trains it
    assert guide.trained_steps == 6


def _svi_parts(svi):
    return svi.model, svi.guide


def test_no_hold_by_default_for_deep_nets_and_none_asked():
    pyro.clear_param_store()
    model = BayesianMLP([6, 4, 1], num_data=64)
    assert AutoVariationalDropout(model).hold_log_alpha == 0
    _, guide, _, svi = _svi({"hold_log_alpha": 0})
    _steps(svi, 1)
    start = _log_alpha(guide)
    _steps(svi, 1)
    assert not torch.equal(_log_alpha(guide), start)
    assert guide.trained_steps == 2  # counted all the same


def test_the_count_is_in_the_state_dict_and_a_checkpoint(tmp_path):
    _, guide, optim, svi = _svi({"hold_log_alpha": 8})
    _steps(svi, 3)
    state = guide.state_dict()
    assert int(state["_extra_state"]) == 3
    path = tmp_path / "run.pt"
    save_checkpoint(path, optim=optim, epoch=0, guide=guide)
    # a fresh guide resumes the count: 5 more held steps, not 8
    _, fresh, optim2, svi2 = _svi({"hold_log_alpha": 8})
    _steps(svi2, 1)
    load_checkpoint(path, optim=optim2, guide=fresh)
    assert fresh.trained_steps == 3
    start = _log_alpha(fresh)
    _steps(svi2, 5)
    assert fresh.trained_steps == 8 and torch.equal(_log_alpha(fresh), start)
    _steps(svi2, 1)
    assert not torch.equal(_log_alpha(fresh), start)


@pytest.mark.parametrize("count_saved", [True, False])
def test_a_checkpoint_restores_the_count_into_a_guide_not_yet_run(tmp_path, count_saved):
    """With Pyro's param store a guide that has not run takes its tensors from the store; its count
    still comes from the file (a file without one, saved before the count existed: past the hold)."""
    _, guide, optim, svi = _svi({"hold_log_alpha": 8})
    _steps(svi, 3)
    path = tmp_path / "run.pt"
    save_checkpoint(path, optim=optim, epoch=0, guide=guide)
    if not count_saved:
        saved = torch.load(path, weights_only=False)
        del saved["guide"]["_extra_state"]
        torch.save(saved, path)
    pyro.clear_param_store()
    model = LinearRegression(6, num_data=64)
    fresh = AutoVariationalDropout(model, hold_log_alpha=8)
    optim2 = pyro.optim.Adam({"lr": 0.05})
    load_checkpoint(path, optim=optim2, guide=fresh)
    assert fresh.trained_steps == (3 if count_saved else 8)


def test_a_state_saved_without_the_count_is_past_the_hold():
    _, guide, _, svi = _svi({"hold_log_alpha": 8})
    _steps(svi, 2)
    state = {k: v for k, v in guide.state_dict().items() if k != "_extra_state"}
    guide.load_state_dict(state)  # (as saved before the count existed)
    assert guide.trained_steps == 8
    start = _log_alpha(guide)
    _steps(svi, 1)
    assert not torch.equal(_log_alpha(guide), start)


def test_a_guide_set_up_from_a_loaded_param_store_is_past_the_hold(tmp_path):
    """Pyro's own way to resume (``get_param_store().save`` / ``.load``) keeps no step count: the new guide
    held the loaded log α for K more steps, and trained none of them in 300."""
    *_, svi = _svi({"hold_log_alpha": 8})
    _steps(svi, 10)
    pyro.get_param_store().save(tmp_path / "store.pt")
    _, fresh, _, svi = _svi({"hold_log_alpha": 8})  # (clears the store)
    pyro.get_param_store().load(tmp_path / "store.pt")
    _steps(svi, 1)  # sets the guide up from the store
    assert fresh.trained_steps >= 8 and not fresh.log_alpha_held
    start = _log_alpha(fresh)
    _steps(svi, 1)
    assert not torch.equal(_log_alpha(fresh), start)
    # a guide set up from an empty store holds as asked
    _, new, _, svi = _svi({"hold_log_alpha": 8})
    _steps(svi, 1)
    assert new.log_alpha_held
    # ... and so does a second guide of the same names in a session, over the untrained leftovers of the
    # first (the store cannot tell them from a load; their log α are still at the start)
    pyro.clear_param_store()
    first = AutoVariationalDropout(LinearRegression(6, num_data=64), hold_log_alpha=8)
    first(X, Y)
    model = LinearRegression(6, num_data=64)
    second = AutoVariationalDropout(model, hold_log_alpha=8)
    svi = pyro.infer.SVI(model, second, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    _steps(svi, 1)
    assert second.trained_steps == 1 and second.log_alpha_held


@pytest.mark.parametrize(
    "value, error",
    [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("10", TypeError)],
)
def test_bad_hold_is_refused(value, error):
    with pytest.raises(error, match="hold_log_alpha"):
        AutoVariationalDropout(LinearRegression(3), hold_log_alpha=value)


def test_the_hold_on_the_module_route():
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(0)
        model = LinearRegression(6, num_data=64)
        guide = AutoVariationalDropout(model, hold_log_alpha=3)
        loss_fn = VariationalDropoutELBO()(model, guide)
        with local_reparameterization():
            loss_fn(X, Y)
            optimizer = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
            start = _log_alpha(guide)
            for step in range(4):
                optimizer.zero_grad()
                loss_fn(X, Y).backward()
                optimizer.step()
                held = torch.equal(_log_alpha(guide), start)
                assert held == (step < 3), step  # (the first call had no backward pass: not a step)
    assert guide.trained_steps == 4


def test_log_alpha_drift_does_not_call_a_held_log_alpha_settled():
    from pyro_vd.inference import LogAlphaDrift

    _, guide, _, svi = _svi({"hold_log_alpha": 6})
    _steps(svi, 1)
    drift = LogAlphaDrift(guide)
    for _ in range(2):
        _steps(svi, 2)
        report = drift.update()
        assert report.held == 6 and not report.settled and "held" in str(report)
        assert guide.log_alpha_held
    _steps(svi, 4)  # the hold ends after step 6; log α trains from step 7
    assert not guide.log_alpha_held
    report = drift.update()
    assert report.held == 0 and report.to_dict()["held"] == 0


def _plain_model(x, y):
    w = pyro.sample("w", LogUniform(event_shape=(6,)))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    "elbo",
    [
        lambda: pyro.infer.Trace_ELBO(num_particles=3),
        lambda: pyro.infer.TraceMeanField_ELBO(num_particles=3),
        lambda: pyro.infer.JitTrace_ELBO(num_particles=2, ignore_jit_warnings=True),
    ],
    ids=["Trace_ELBO", "TraceMeanField_ELBO", "JitTrace_ELBO"],
)
def test_pyros_elbos_hold_for_k_steps(elbo):
    """Trace_ELBO runs one backward pass per particle (counted once a step); JitTrace_ELBO compiles the
    step at step 1, during the hold, and log α must still train after it."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = AutoVariationalDropout(_plain_model, parameterization="multiplicative", hold_log_alpha=3)
    svi = pyro.infer.SVI(_plain_model, guide, pyro.optim.Adam({"lr": 0.05}), elbo())
    values = []
    for _ in range(5):
        svi.step(X, Y)
        values.append(guide.get_log_alpha("w").clone())
    assert guide.trained_steps == 5
    assert all(torch.equal(v, values[0]) for v in values[:3])
    assert not torch.equal(values[3], values[2]) and not torch.equal(values[4], values[3])


@pytest.mark.parametrize(
    "optim",
    [lambda: pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.999}), lambda: pyro.optim.AdagradRMSProp({})],
    ids=["ClippedAdam", "AdagradRMSProp"],
)
def test_optimizers_that_write_through_data_end_the_hold(optim):
    """Pyro's ClippedAdam and AdagradRMSProp update ``p.data``, which leaves the version counter where
    it was: the count compares θ's values while a hold is pending."""
    _, guide, _, svi = _svi({"hold_log_alpha": 3}, optim=optim())
    _steps(svi, 3)
    start = _log_alpha(guide)
    assert guide.trained_steps == 3 and not guide.log_alpha_held
    _steps(svi, 1)
    assert guide.trained_steps == 4 and not torch.equal(_log_alpha(guide), start)


def test_a_guide_with_no_learned_log_alpha_holds_nothing_and_says_so():
    """An additive guide learns log σ² per weight: there is no log α to hold. Asked to hold, it refuses
    (before: it accepted, trained log σ² from step 1 and reported ``log_alpha_held`` True for K steps, which
    ``LogAlphaDrift`` reads); the linear models' recommended hold is dropped there, not refused."""
    model = LinearRegression(6, num_data=64)
    with pytest.raises(ValueError, match=r"hold_log_alpha=8 .*nothing would be held"):
        AutoVariationalDropout(model, parameterization="additive", hold_log_alpha=8)
    pyro.clear_param_store()
    guide = AutoVariationalDropout(model, parameterization="additive")
    assert guide.hold_log_alpha == 0 and not guide.log_alpha_held
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    _steps(svi, 1)
    assert not guide.log_alpha_held
