import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO
from pyro_vd.inference import FusedAdam, load_checkpoint, save_checkpoint
from pyro_vd.models import BayesianMLP
from pyro_vd.poutine import local_reparameterization

X, Y = torch.randn(40, 6), torch.randint(0, 3, (40,))


def _session(optim):
    model = BayesianMLP([6, 5, 3], num_data=40)
    guide = AutoVariationalDropout(model)
    elbo = VariationalDropoutELBO()
    return model, guide, elbo, pyro.infer.SVI(model, guide, optim, elbo)


def _steps(svi, first, last):
    with local_reparameterization():
        for i in range(first, last):
            rows = slice(10 * (i % 4), 10 * (i % 4) + 10)
            svi.step(X[rows], Y[rows])


def _store():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def _train(optim, steps=12):
    """SVI on a small VD network from a fixed seed; returns the param store's values."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    *_, svi = _session(optim)
    _steps(svi, 0, steps)
    return _store()


def _assert_same(a, b, exact):
    assert a.keys() == b.keys()
    for name in a:
        if exact:
            assert torch.equal(a[name], b[name]), name
        else:  # the fused kernel and torch's loop round differently: 1.6e-5 apart after 12 steps
            assert torch.allclose(a[name], b[name], rtol=0, atol=1e-4), name


def test_the_steps_are_pyro_optim_adams():
    options = {"lr": 0.05, "betas": (0.9, 0.99)}
    ours = _train(FusedAdam(dict(options)))
    _assert_same(ours, _train(pyro.optim.Adam({**options, "fused": True})), exact=True)
    _assert_same(ours, _train(pyro.optim.Adam(dict(options))), exact=False)


def test_one_torch_step_for_all_parameters_and_the_gradients_are_released():
    optim = FusedAdam({"lr": 0.01})
    _train(optim, steps=2)
    assert len(optim._optimizers) == 1
    (torch_adam,) = optim._optimizers.values()
    assert torch_adam.param_groups[0]["fused"] is True  # CPU floating point: torch's fused kernel
    assert len(optim.optim_objs) == len(pyro.get_param_store().keys())
    assert all(p.grad is None for _, p in pyro.get_param_store().named_parameters())


def test_a_parameter_that_joins_later_counts_its_own_steps():
    """Two SVI runs share the optimizer, the second joining after the first has trained and then
    alternating with it: each step moves only its own run's parameters, and each parameter keeps its
    own step count (bias correction), as with one torch Adam per parameter."""

    def model_a():
        pyro.sample("a", dist.Normal(0.0, 1.0))

    def model_b():
        pyro.sample("b", dist.Normal(1.0, 2.0))

    def run(optim):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        svi_a = pyro.infer.SVI(model_a, AutoNormal(model_a), optim, pyro.infer.Trace_ELBO())
        for _ in range(3):
            svi_a.step()
        svi_b = pyro.infer.SVI(model_b, AutoNormal(model_b), optim, pyro.infer.Trace_ELBO())
        for _ in range(4):
            svi_b.step()
            svi_a.step()
        svi_b.step()
        return _store()

    ours = run(FusedAdam({"lr": 0.1}))
    assert {"AutoNormal.locs.a", "AutoNormal.locs.b"} <= ours.keys()
    _assert_same(ours, run(pyro.optim.Adam({"lr": 0.1, "fused": True})), exact=True)


def test_only_the_given_parameters_move_and_other_gradients_are_kept():
    a = pyro.param("a", torch.ones(3))
    b = pyro.param("b", torch.ones(3))
    a_raw, b_raw = a.unconstrained(), b.unconstrained()
    (a_raw.sum() + 2 * b_raw.sum()).backward()
    optim = FusedAdam({"lr": 0.1})
    optim([b_raw])
    assert torch.equal(a_raw.detach(), torch.ones(3)) and torch.equal(a_raw.grad, torch.ones(3))
    assert torch.allclose(b_raw.detach(), torch.full((3,), 0.9)) and b_raw.grad is None
    optim([a_raw])  # a's first step: its own step count starts at 1
    assert torch.allclose(a_raw.detach(), torch.full((3,), 0.9))
    assert optim.get_state()["a"]["state"][0]["step"].item() == 1.0


@pytest.mark.parametrize("first", ["pyro.optim.Adam", "FusedAdam"])
def test_a_state_saved_by_one_resumes_in_the_other(tmp_path, first):
    """Checkpoints hold pyro.optim's per-parameter format: moments and step counts carry over both ways
    (pyro.optim.Adam with fused=True, so that the two take bit-identical steps)."""
    make = {
        "pyro.optim.Adam": lambda: pyro.optim.Adam({"lr": 0.05, "fused": True}),
        "FusedAdam": lambda: FusedAdam({"lr": 0.05}),
    }
    second = next(name for name in make if name != first)
    model, guide, elbo, svi = _session(make[first]())
    _steps(svi, 0, 6)
    save_checkpoint(tmp_path / "c.pt", optim=svi.optim, epoch=1, model=model, guide=guide, elbo=elbo)
    _steps(svi, 6, 10)
    uninterrupted = _store()

    pyro.clear_param_store()
    pyro.set_rng_seed(5)
    model, guide, elbo, svi = _session(make[second]())
    load_checkpoint(tmp_path / "c.pt", optim=svi.optim, model=model, guide=guide, elbo=elbo)
    _steps(svi, 6, 10)
    # pyro.optim.Adam takes the saved groups, where FusedAdam's own choice of the fused kernel is written
    # as torch's default (None): there it resumes with torch's loop, which rounds differently
    _assert_same(_store(), uninterrupted, exact=second == "FusedAdam")
    for name, saved in svi.optim.get_state().items():
        assert saved["state"][0]["step"].item() == 10.0, name


def test_checkpoint_resume_follows_the_same_trajectory(tmp_path):
    model, guide, elbo, svi = _session(FusedAdam({"lr": 0.01}))
    _steps(svi, 0, 8)
    uninterrupted = _store()

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide, elbo, svi = _session(FusedAdam({"lr": 0.01}))
    _steps(svi, 0, 4)
    save_checkpoint(tmp_path / "c.pt", optim=svi.optim, epoch=1, model=model, guide=guide, elbo=elbo)
    _steps(svi, 4, 6)  # a session that trained on: its live states must give way to the file's
    load_checkpoint(tmp_path / "c.pt", optim=svi.optim, model=model, guide=guide, elbo=elbo)
    _steps(svi, 4, 8)
    _assert_same(_store(), uninterrupted, exact=True)
    # the replaced tensors' moments are not kept alive
    (torch_adam,) = svi.optim._optimizers.values()
    assert set(map(id, torch_adam.state)) == set(map(id, svi.optim.optim_objs))


def test_per_parameter_arguments_and_clipping_match_pyro_optim():
    def options(name):
        return {"lr": 0.1 if "log_sigma2" in name or "log_alpha" in name else 0.01}

    clip = {"clip_norm": 0.5}
    ours = FusedAdam(options, clip_args=clip)
    trained = _train(ours)
    assert len(ours._optimizers) == 2  # one torch step per distinct set of arguments
    _assert_same(trained, _train(pyro.optim.Adam(options, clip_args=clip)), exact=False)


def test_bad_arguments_are_refused_with_their_name(tmp_path):
    with pytest.raises(TypeError, match="optim_args"):
        FusedAdam(0.01)
    with pytest.raises(ValueError, match="params"):
        FusedAdam({"lr": 0.01, "params": []})
    with pytest.raises(ValueError, match="optim_args: Invalid learning rate"):
        FusedAdam({"lr": -1.0})
    with pytest.raises(TypeError, match=r"optim_args.*lrr"):
        FusedAdam({"lrr": 0.1})
    with pytest.raises(TypeError, match="clip_args"):
        FusedAdam({"lr": 0.01}, clip_args=5)
    with pytest.raises(ValueError, match="clip_args takes clip_norm and clip_value; got max_norm"):
        FusedAdam({"lr": 0.01}, clip_args={"max_norm": 1.0})
    optim = FusedAdam(lambda name: [0.01])
    p = pyro.param("p", torch.zeros(2)).unconstrained()
    p.sum().backward()
    with pytest.raises(TypeError, match=r"optim_args.*'p'"):
        optim([p])
    with pytest.raises(TypeError, match=r"clip_args' callable.*'p'"):
        FusedAdam({"lr": 0.01}, clip_args=lambda module, name: [1.0])([p])

    def own_check(name):
        raise AssertionError("the user's own check")

    with pytest.raises(AssertionError, match="the user's own check"):  # not taken for pyro.optim's
        FusedAdam(own_check)([p])


def _two_heads_model(head, y):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(z, 1.0), obs=y)


def _two_heads_guide(head, y):
    """Both heads are traced at every step; only one enters the loss."""
    locs = pyro.param("loc_a", torch.tensor(0.0)), pyro.param("loc_b", torch.tensor(0.0))
    pyro.sample("z", dist.Normal(locs[head], 0.1))


def _two_heads(optim, heads):
    svi = pyro.infer.SVI(_two_heads_model, _two_heads_guide, optim, pyro.infer.Trace_ELBO())
    for head in heads:
        svi.step(head, torch.tensor(2.0))


def test_a_traced_parameter_without_a_gradient_moves_as_with_pyro_optim():
    """pyro.optim.Adam steps a parameter with the zeros SVI.step's zero_grads left in its gradient
    (its moments keep moving it, its step count grows); so must FusedAdam."""

    def run(optim):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        _two_heads(optim, [0, 1, 0, 1, 0, 0])
        steps = {k: v["state"][0]["step"].item() for k, v in optim.get_state().items()}
        return _store(), steps

    ours, our_steps = run(FusedAdam({"lr": 0.1}))
    theirs, their_steps = run(pyro.optim.Adam({"lr": 0.1, "fused": True}))
    _assert_same(ours, theirs, exact=True)
    assert our_steps == their_steps == {"loc_a": 6.0, "loc_b": 5.0}


def test_a_new_optimizer_on_trained_parameters_keeps_pyros_zero_steps():
    """Under pyro.optim a tensor's gradient holds zeros for good once it had one: a second phase with a
    new optimizer steps it with them, and so must a new FusedAdam."""

    def run(make):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        _two_heads(make(), [0, 1])
        optim = make()
        _two_heads(optim, [0, 0, 0])  # loc_b: traced, no gradient
        return _store(), {k: v["state"][0]["step"].item() for k, v in optim.get_state().items()}

    ours, our_steps = run(lambda: FusedAdam({"lr": 0.05}))
    theirs, their_steps = run(lambda: pyro.optim.Adam({"lr": 0.05, "fused": True}))
    _assert_same(ours, theirs, exact=True)
    assert our_steps == their_steps == {"loc_a": 3.0, "loc_b": 3.0}


class _Shifts(PyroModule):
    """A model whose own nn.Parameters are both traced at every step; one enters the loss."""

    def __init__(self):
        super().__init__()
        self.shift0 = torch.nn.Parameter(torch.tensor(0.3))
        self.shift1 = torch.nn.Parameter(torch.tensor(-0.2))

    def forward(self, head, data):
        shifts = self.shift0, self.shift1
        loc = pyro.sample("loc", dist.Normal(0.0, 3.0))
        with pyro.plate("data", len(data)):
            pyro.sample("x", dist.Normal(loc + shifts[head], 1.0), obs=data)


def _shifts_guide(head, data):
    pyro.sample("loc", dist.Normal(pyro.param("m", torch.tensor(0.0)), 0.5))


def test_a_model_parameter_restored_in_place_keeps_pyros_zero_steps(tmp_path):
    """load_checkpoint(model=...) keeps the module's own tensor, whose gradient under pyro.optim still
    holds zeros: the steps after the restore must match."""
    data = torch.randn(10) + 1.0

    def run(optim):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = _Shifts()
        svi = pyro.infer.SVI(model, _shifts_guide, optim, pyro.infer.Trace_ELBO())
        for head in (0, 1, 0, 1):
            svi.step(head, data)
        save_checkpoint(tmp_path / "c.pt", optim=optim, epoch=1, model=model)
        load_checkpoint(tmp_path / "c.pt", optim=optim, model=model)
        for _ in range(3):
            svi.step(0, data)  # shift1: traced, no gradient
        return _store(), {k: v["state"][0]["step"].item() for k, v in optim.get_state().items()}

    ours, our_steps = run(FusedAdam({"lr": 0.05}))
    theirs, their_steps = run(pyro.optim.Adam({"lr": 0.05, "fused": True}))
    _assert_same(ours, theirs, exact=True)
    assert our_steps == their_steps and our_steps["shift1"] == 6.0


def test_a_restored_state_is_taken_when_its_parameter_first_appears(tmp_path):
    """Also without a gradient: a save right after keeps it (as pyro.optim.Adam does)."""
    for make in (lambda: FusedAdam({"lr": 0.1}), lambda: pyro.optim.Adam({"lr": 0.1})):
        pyro.clear_param_store()
        optim = make()
        _two_heads(optim, [0, 1])
        optim.save(tmp_path / "o.pt")
        pyro.clear_param_store()
        optim = make()
        optim.load(tmp_path / "o.pt")
        _two_heads(optim, [0, 0])  # loc_b is traced, never differentiated
        assert sorted(optim.get_state()) == ["loc_a", "loc_b"]
        assert optim.get_state()["loc_b"]["state"][0]["step"].item() == 1.0


def test_tensor_arguments_that_differ_are_not_shared():
    lrs = {"a": torch.tensor(0.01), "b": torch.tensor(0.01004)}  # equal in a tensor's repr
    optim = FusedAdam(lambda name: {"lr": lrs[name]})
    params = [pyro.param(name, torch.zeros(2)).unconstrained() for name in lrs]
    sum(p.sum() for p in params).backward()
    optim(params)
    assert len(optim._optimizers) == 2
    assert [round(-p[0].item(), 5) for p in params] == [0.01, 0.01004]


def test_amsgrad_resumes_from_a_state_saved_without_it():
    p = pyro.param("w", torch.zeros(3)).unconstrained()
    plain = FusedAdam({"lr": 0.1})
    p.sum().backward()
    plain([p])
    optim = FusedAdam({"lr": 0.1, "amsgrad": True})
    optim.set_state(plain.get_state())
    p.sum().backward()
    optim([p])
    assert torch.allclose(p.detach(), torch.full((3,), -0.2))


def test_a_failed_registration_changes_nothing():
    calls = []

    def clip(module_name, param_name):
        calls.append(param_name)
        if len(calls) == 1:
            raise RuntimeError("transient")
        return {"clip_norm": 10.0}

    p = pyro.param("w", torch.zeros(3)).unconstrained()
    optim = FusedAdam({"lr": 0.1}, clip_args=clip)
    optim.set_state({"w": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}})
    p.sum().backward()
    with pytest.raises(RuntimeError, match="transient"):
        optim([p])
    assert not optim.optim_objs and not optim.grad_clip and "w" in optim._state_waiting_to_be_consumed
    optim([p])
    assert torch.allclose(p.detach(), torch.full((3,), -0.1))


def test_saved_groups_say_fused_only_where_the_user_did():
    p = pyro.param("w", torch.zeros(3)).unconstrained()
    for options, fused in (({"lr": 0.1}, None), ({"lr": 0.1, "fused": True}, True)):
        optim = FusedAdam(options)
        p.sum().backward()
        optim([p])
        assert optim.get_state()["w"]["param_groups"][0]["fused"] is fused


def test_a_saved_state_of_the_wrong_shape_is_refused_and_kept():
    p = pyro.param("w", torch.zeros(3)).unconstrained()
    optim = FusedAdam({"lr": 0.1})
    wrong = {
        "state": {0: {"step": torch.tensor(4.0), "exp_avg": torch.ones(2), "exp_avg_sq": torch.ones(2)}},
        "param_groups": [{"lr": 0.1, "params": [0]}],
    }
    optim.set_state({"w": wrong})
    p.sum().backward()
    with pytest.raises(ValueError, match=r"'w'.*shape \(2,\).*shape \(3,\)"):
        optim([p])
    assert torch.equal(p.detach(), torch.zeros(3))
    assert "w" in optim._state_waiting_to_be_consumed and p not in optim.optim_objs


def test_svi_accepts_it():
    assert isinstance(FusedAdam({"lr": 0.01}), pyro.optim.PyroOptim)


def test_the_guide_counts_its_steps_and_averages_as_under_pyro_optim_adam():
    # the fused kernel left the version counters: trained_steps stopped one step after the hold (11 of
    # 50) and the held log α dropped out of the averages (averaged log α up to 1.6 apart)
    from pyro_vd.models import LinearRegression

    X = torch.randn(200, 4)
    y = X[:, 0] + 0.3 * torch.randn(200)
    results = []
    for optim in (pyro.optim.Adam({"lr": 1e-2}), FusedAdam({"lr": 1e-2})):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = LinearRegression(4, num_data=200)
        guide = AutoVariationalDropout(model, hold_log_alpha=10)
        svi = pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO())
        for _ in range(50):
            svi.step(X[:20], y[:20])
        results.append((guide.trained_steps, sorted({a.count for a in guide._averages.values()})))
    assert results[0] == results[1] == (50, [50])
