import math
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroSample

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO
from pyro_vd.distributions import LogUniform
from pyro_vd.inference import checkpoint, linear_warmup, load_checkpoint, save_checkpoint
from pyro_vd.models import BayesianMLP
from pyro_vd.poutine import local_reparameterization

X, Y = torch.randn(40, 6), torch.randint(0, 3, (40,))


def _fresh(averaging=False):
    model = BayesianMLP([6, 5, 3], num_data=40)
    guide = AutoVariationalDropout(model, averaging=averaging)
    optim = pyro.optim.Adam({"lr": 0.01})
    elbo = VariationalDropoutELBO()
    return model, guide, optim, elbo, pyro.infer.SVI(model, guide, optim, elbo)


def _epoch(svi, elbo, epoch):
    elbo.kl_weight = linear_warmup(epoch, 0, 2)
    order = torch.randperm(len(X))  # data order from the global RNG, as a training loop would
    with local_reparameterization():
        for i in range(0, len(X), 10):
            svi.step(X[order[i : i + 10]], Y[order[i : i + 10]])


def _params():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def test_resume_follows_the_same_trajectory(tmp_path):
    pyro.set_rng_seed(0)
    _, _, _, elbo, svi = _fresh()
    for epoch in range(4):
        _epoch(svi, elbo, epoch)
    uninterrupted = _params()

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide, optim, elbo, svi = _fresh()
    for epoch in range(2):
        _epoch(svi, elbo, epoch)
    save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=2, model=model, guide=guide, elbo=elbo)

    pyro.clear_param_store()
    pyro.set_rng_seed(123)  # a different process state: everything must come from the checkpoint
    model, guide, optim, elbo, svi = _fresh()
    state = load_checkpoint(tmp_path / "ckpt.pt", optim=optim, model=model, guide=guide, elbo=elbo)
    assert state["epoch"] == 2
    for epoch in range(state["epoch"], 4):
        _epoch(svi, elbo, epoch)
    resumed = _params()
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_save_never_destroys_the_previous_checkpoint(tmp_path, monkeypatch):
    _, _, optim, _, _ = _fresh()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, optim=optim, epoch=1, extra="first")
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, optim=optim, epoch=2)
    monkeypatch.undo()
    assert load_checkpoint(path, optim=optim)["extra"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_bad_paths(tmp_path):
    _, _, optim, _, _ = _fresh()
    with pytest.raises(ValueError, match="is a directory"):
        save_checkpoint(tmp_path, optim=optim, epoch=0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt", optim=optim)
    other = tmp_path / "other.pt"
    torch.save({"a": 1}, other)
    with pytest.raises(ValueError, match="not a pyro_vd checkpoint"):
        load_checkpoint(other, optim=optim)
    with pytest.raises(TypeError, match="PyroOptim"):
        save_checkpoint(
            tmp_path / "x.pt", optim=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1), epoch=0
        )


# ------------------------------------------------------------------------------------ refused loads
def _session(hidden=5, run=True, **guide_kwargs):
    """A live session (model, guide, optim, elbo, svi) that has trained one step when ``run``."""
    model = BayesianMLP([6, hidden, 3], num_data=40)
    guide = AutoVariationalDropout(model, **guide_kwargs)
    optim = pyro.optim.Adam({"lr": 0.01})
    elbo = VariationalDropoutELBO()
    svi = pyro.infer.SVI(model, guide, optim, elbo)
    if run:
        svi.step(X[:10], Y[:10])
    return model, guide, optim, elbo, svi


def _file_from(tmp_path, **session):
    """A checkpoint of another session, written with the param store cleared before and after."""
    pyro.clear_param_store()
    model, guide, optim, elbo, _ = _session(**session)
    path = save_checkpoint(tmp_path / "other.pt", optim=optim, epoch=3, model=model, guide=guide, elbo=elbo)
    pyro.clear_param_store()
    return path


def _without_rng(tmp_path):
    path = _file_from(tmp_path)
    state = torch.load(path, weights_only=True)
    del state["rng"]
    torch.save(state, path)
    return path


def _truncated(tmp_path):
    path = _file_from(tmp_path)
    path.write_bytes(path.read_bytes()[:-300])
    return path


REFUSED = [
    # (case, how the file is made, what the live guide is, the error)
    (
        "another model",
        lambda p: _file_from(p, hidden=4),
        {},
        r"param '.*fc1.*' has shape \(5(, 6)?,?\) here but \(4",
    ),
    (
        "granularity",
        lambda p: _file_from(p, granularity="layer"),
        {},
        "granularity 'layer', this guide 'weight'",
    ),
    (
        "parameterization",
        lambda p: _file_from(p, parameterization="multiplicative"),
        {},
        "parameterization 'multiplicative', this guide 'additive'",
    ),
    (
        "per-site granularity",
        lambda p: _file_from(p, granularity={"net.fc2.weight": "output"}),
        {},
        "granularity 'output' at site 'net.fc2.weight', this guide 'weight'",
    ),
    (
        "KL method",
        lambda p: _file_from(p, kl_method="exact"),
        {},
        "trained with kl_method='exact', this guide has kl_method='molchanov'",
    ),
    (
        "clip of log α",
        lambda p: _file_from(p, max_log_alpha=8.0, min_log_alpha=-8.0),
        {},
        "trained with min_log_alpha=-8.0, this guide has min_log_alpha=None",
    ),
    ("missing key", _without_rng, {}, "is incomplete: it lacks 'rng'"),
    ("truncated", _truncated, {}, "is truncated or corrupt"),
]


@pytest.mark.parametrize("run", [True, False], ids=["live guide run", "live guide fresh"])
@pytest.mark.parametrize("case, make_file, live, match", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_load_leaves_the_session_training(tmp_path, case, make_file, live, match, run):
    path = make_file(tmp_path)
    model, guide, optim, elbo, svi = _session(run=run, **live)
    store = pyro.get_param_store()
    before = dict(store.named_parameters())
    values = {k: v.detach().clone() for k, v in before.items()}
    optim_before = {k: dict(getattr(optim, k)) for k in ("optim_objs", "_state_waiting_to_be_consumed")}
    rng = torch.get_rng_state()
    if case == "another model" and not run:  # nothing live to compare with but the model's biases
        match = r"'net.fc1.bias(_unconstrained)?' has shape \(5,\) here but \(4,\)"
    with pytest.raises(ValueError, match=match) as info:
        load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)
    assert "other.pt" in str(info.value)
    after = dict(store.named_parameters())
    assert after.keys() == before.keys()
    for name, value in after.items():
        assert value is before[name] and torch.equal(value, values[name]), name
    assert {k: dict(getattr(optim, k)) for k in optim_before} == optim_before
    assert torch.equal(torch.get_rng_state(), rng)

    loss = svi.step(X[:10], Y[:10])
    assert math.isfinite(loss)
    changed = dict(store.named_parameters())
    assert any(name not in values or not torch.equal(v, values[name]) for name, v in changed.items())


def _fail_the_restore_once(monkeypatch):
    """The next load_checkpoint fails in its restore (its RNG step) and rolls back (whose RNG step works)."""
    real, calls = checkpoint._set_rng_state, []

    def fail_once(state):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        real(state)

    monkeypatch.setattr(checkpoint, "_set_rng_state", fail_once)


def test_restore_is_all_or_nothing(tmp_path, monkeypatch):
    path = _file_from(tmp_path)
    model, guide, optim, elbo, svi = _session()
    elbo.kl_weight = 0.25
    store = pyro.get_param_store()
    before = dict(store.named_parameters())
    values = {k: v.detach().clone() for k, v in before.items()}
    modules = {m: {k: v.clone() for k, v in m.state_dict().items()} for m in (model, guide)}
    optim_before = {
        k: dict(getattr(optim, k)) for k in ("optim_objs", "grad_clip", "_state_waiting_to_be_consumed")
    }
    rng = torch.get_rng_state()
    _fail_the_restore_once(monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)
    monkeypatch.undo()

    after = dict(store.named_parameters())
    assert after.keys() == before.keys()
    for name, value in after.items():
        assert value is before[name] and torch.equal(value, values[name]), name
    for module, state in modules.items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert {k: dict(getattr(optim, k)) for k in optim_before} == optim_before
    assert elbo.kl_weight == 0.25
    assert torch.equal(torch.get_rng_state(), rng)
    assert math.isfinite(svi.step(X[:10], Y[:10]))


# ------------------------------------------------------------------------------------ what resumes
def test_resume_into_a_session_that_already_trained(tmp_path):
    """The live optimizers (keyed by tensor) must give way to the checkpoint's states."""
    pyro.set_rng_seed(0)
    model, guide, optim, elbo, svi = _fresh()
    _epoch(svi, elbo, 0)
    save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=1, model=model, guide=guide, elbo=elbo)
    _epoch(svi, elbo, 1)
    uninterrupted = _params()

    pyro.clear_param_store()
    pyro.set_rng_seed(7)
    model, guide, optim, elbo, svi = _fresh()
    for epoch in range(3):  # a session with its own optimizer state and moments
        _epoch(svi, elbo, epoch)
    load_checkpoint(tmp_path / "ckpt.pt", optim=optim, model=model, guide=guide, elbo=elbo)
    _epoch(svi, elbo, 1)
    resumed = _params()
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


class _PlainBias(PyroModule):
    """A user's model whose bias is an ordinary nn.Parameter (tracked by Pyro by object)."""

    def __init__(self):
        super().__init__()
        self.weight = PyroSample(LogUniform(event_shape=(3, 6)))
        self.bias = torch.nn.Parameter(torch.zeros(3))

    def forward(self, x, y=None):
        logits = x @ self.weight.T + self.bias
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)


@pytest.mark.parametrize("trained", [False, True], ids=["into a fresh session", "into a trained session"])
@pytest.mark.parametrize("save_model", [True, False], ids=["model saved", "model not saved"])
def test_resume_with_plain_nn_parameters(tmp_path, save_model, trained):
    def fresh():
        model = _PlainBias()
        guide = AutoVariationalDropout(model)
        optim, elbo = pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO()
        return model, guide, optim, elbo, pyro.infer.SVI(model, guide, optim, elbo)

    def steps(svi, n):
        for _ in range(n):
            svi.step(X, Y)

    pyro.set_rng_seed(0)
    model, guide, optim, _, svi = fresh()
    steps(svi, 3)
    save_checkpoint(tmp_path / "c.pt", optim=optim, epoch=3, model=model if save_model else None, guide=guide)
    steps(svi, 3)
    uninterrupted = _params()
    assert not torch.equal(uninterrupted["bias"], torch.zeros(3))

    pyro.clear_param_store()
    model, guide, optim, _, svi = fresh()
    if trained:  # the live optimizer of the bias is keyed by the module's tensor, which stays
        steps(svi, 2)
    load_checkpoint(tmp_path / "c.pt", optim=optim, model=model, guide=guide)
    steps(svi, 3)
    assert torch.equal(model.bias.detach(), uninterrupted["bias"])  # the module's own tensor was trained
    resumed = _params()
    for name in uninterrupted:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_save_right_after_load_keeps_the_optimizer_state(tmp_path):
    model, guide, optim, _, _ = _session()
    save_checkpoint(tmp_path / "a.pt", optim=optim, epoch=1, model=model, guide=guide)
    saved = optim.get_state()
    pyro.clear_param_store()
    model, guide, optim, _, _ = _session(run=False)
    load_checkpoint(tmp_path / "a.pt", optim=optim, model=model, guide=guide)
    save_checkpoint(tmp_path / "b.pt", optim=optim, epoch=1, model=model, guide=guide)  # no step between
    again = torch.load(tmp_path / "b.pt", weights_only=True)["optim"]
    assert again.keys() == saved.keys()
    for name in saved:
        assert torch.equal(again[name]["state"][0]["exp_avg"], saved[name]["state"][0]["exp_avg"]), name


# ------------------------------------------------------------------------------------ extra, pickles
def test_extra_holds_plain_data(tmp_path):
    _, _, optim, _, _ = _fresh()
    extra = {
        "history": [{"epoch": 1, "test_error": 0.25, "neurons": {"fc1": 3}}, {"epoch": 2, "kl": None}],
        "seconds": np.float64(1.5),
        "tags": ("a", "b"),
        "curve": torch.arange(3.0),
    }
    save_checkpoint(tmp_path / "c.pt", optim=optim, epoch=2, extra=extra)
    back = load_checkpoint(tmp_path / "c.pt", optim=optim)["extra"]
    assert back["history"] == extra["history"] and back["tags"] == ("a", "b")
    assert type(back["seconds"]) is float and back["seconds"] == 1.5
    assert torch.equal(back["curve"], extra["curve"])


@pytest.mark.parametrize(
    "extra, where",
    [
        (np.zeros(3), r"extra is a numpy.ndarray"),
        ({"h": [1, object()]}, r"extra\['h'\]\[1\] is a builtins.object"),
    ],
    ids=["numpy array", "object"],
)
def test_extra_that_is_not_plain_data_is_refused_before_writing(tmp_path, extra, where):
    _, _, optim, _, _ = _fresh()
    with pytest.raises(TypeError, match=where):
        save_checkpoint(tmp_path / "c.pt", optim=optim, epoch=0, extra=extra)
    assert list(tmp_path.iterdir()) == []


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    _, _, optim, _, _ = _fresh()
    path = save_checkpoint(tmp_path / "c.pt", optim=optim, epoch=0)
    state = torch.load(path, weights_only=True)
    marker = tmp_path / "executed"
    state["extra"] = _RunsCode(marker)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"c\.pt'.*could run code"):
        load_checkpoint(path, optim=optim)
    assert not marker.exists()


# ------------------------------------------------------------------------------------ corrupt files
def _good(tmp_path):
    _, _, optim, _, _ = _session()
    return save_checkpoint(tmp_path / "good.pt", optim=optim, epoch=1).read_bytes()


CORRUPT = [
    ("empty", lambda data: b""),
    ("1 byte", lambda data: data[:1]),
    ("10 bytes", lambda data: data[:10]),
    ("100 bytes", lambda data: data[:100]),
    ("half", lambda data: data[: len(data) // 2]),
    ("all but 100 bytes", lambda data: data[:-100]),
    ("all but 1 byte", lambda data: data[:-1]),
    ("random bytes", lambda data: np.random.default_rng(0).bytes(5000)),
    ("random after a zip signature", lambda data: b"PK\x03\x04" + np.random.default_rng(1).bytes(5000)),
    ("bytes overwritten", lambda data: data[:100] + bytes(200) + data[300:]),
]


@pytest.mark.parametrize("case, corrupt", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_truncated_or_corrupt_files_name_the_file(tmp_path, case, corrupt):
    path = tmp_path / "broken.pt"
    path.write_bytes(corrupt(_good(tmp_path)))
    _, _, optim, _, _ = _fresh()
    with pytest.raises(ValueError, match=r"checkpoint '.*broken\.pt' is truncated or corrupt: \w+"):
        load_checkpoint(path, optim=optim)


@pytest.mark.parametrize(
    "content",
    [torch.zeros(3), {"format": "something else"}, [1, 2]],
    ids=["a tensor", "a dict of another format", "a list"],
)
def test_a_torch_file_that_is_no_checkpoint(tmp_path, content):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    _, _, optim, _, _ = _fresh()
    with pytest.raises(ValueError, match=r"'.*other\.pt' is not a pyro_vd checkpoint"):
        load_checkpoint(path, optim=optim)


# ------------------------------------------------------------------------------------ temporary files
def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = checkpoint._writer_tag()
    files = {
        "dead writer": f"ckpt.pt.{tag}.{dead.pid}.abcd1234.tmp",
        "live writer": f"ckpt.pt.{tag}.{os.getpid()}.abcd1234.tmp",
        "other machine": f"ckpt.pt.{'0' * 8 if tag != '0' * 8 else '1' * 8}.{dead.pid}.abcd1234.tmp",
        "other checkpoint": f"other.pt.{tag}.{dead.pid}.abcd1234.tmp",
        "old version, old": "ckpt.pt.abcd1234.tmp",
        "old version, recent": "ckpt.pt.efgh5678.tmp",
        "user file": "ckpt.pt.notes.tmp",
    }
    for name in files.values():
        (tmp_path / name).write_bytes(b"x" * 10)
    old = time.time() - 2 * 3600
    os.utime(tmp_path / files["old version, old"], (old, old))
    _, _, optim, _, _ = _fresh()
    save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=0)
    left = {p.name for p in tmp_path.iterdir()}
    removed = {case for case, name in files.items() if name not in left}
    assert removed == {"dead writer", "old version, old"}
    assert "ckpt.pt" in left and len(left) == len(files) - 2 + 1  # no temporary of this save left


def test_a_checkpoint_of_the_older_format_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "v1.pt"
    state = {"format": "pyro_vd.checkpoint/1", "rng": {"numpy": np.random.get_state()}}  # noqa: NPY002
    torch.save(state, path)
    _, _, optim, _, _ = _fresh()
    with pytest.raises(ValueError, match=r"v1\.pt' was written by an older pyro_vd"):
        load_checkpoint(path, optim=optim)


def test_save_flushes_the_file_and_the_folder_to_disk(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(pathlib.Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real(fd)

    if not pathlib.Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name file descriptors")
    monkeypatch.setattr(os, "fsync", fsync)
    _, _, optim, _, _ = _fresh()
    save_checkpoint(tmp_path / "c.pt", optim=optim, epoch=0)
    assert len(synced) == 2
    assert synced[0].startswith("c.pt.") and synced[0].endswith(".tmp")  # the data, before the rename
    assert synced[1] == tmp_path.name  # the folder, after it


def test_a_pyro_optim_under_module_local_params_is_refused_not_dropped(tmp_path):
    # its states are keyed by param-store names, which module-local parameters do not have

    with pyro.settings.context(module_local_params=True):
        model = BayesianMLP([4, 3, 2], num_data=10)
        guide = AutoVariationalDropout(model)
        optim = pyro.optim.Adam({"lr": 0.01})
        svi = pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO())
        svi.step(torch.randn(10, 4), torch.zeros(10, dtype=torch.long))
        with pytest.raises(ValueError, match=r"module_local_params=True.*cannot be saved by name"):
            save_checkpoint(tmp_path / "c.pt", optim=optim, epoch=1, model=model, guide=guide)
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize("with_model", [False, True])
def test_a_checkpoint_saved_with_a_guide_loads_without_one(tmp_path, with_model):
    # the guide state in the file is for a caller who passes guide=; without one it is not restored
    # (it was an AttributeError on None)
    pyro.set_rng_seed(0)
    model, guide, optim, elbo, svi = _fresh()
    _epoch(svi, elbo, 0)
    path = save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=1, model=model, guide=guide, elbo=elbo)
    saved = _params()
    _epoch(svi, elbo, 1)
    state = load_checkpoint(path, optim=optim, **({"model": model} if with_model else {}))
    assert state["epoch"] == 1
    for name, value in _params().items():
        assert torch.equal(value, saved[name]), name


def _one_averaged_epoch_saved(tmp_path):
    """A session averaging with η = 3 after one epoch (4 steps), saved to ``tmp_path / "ckpt.pt"``."""
    pyro.set_rng_seed(0)
    model, guide, optim, elbo, svi = _fresh(averaging=3.0)
    _epoch(svi, elbo, 0)
    path = save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=1, model=model, guide=guide, elbo=elbo)
    return model, guide, optim, elbo, svi, path


@pytest.mark.parametrize("run_before_loading", [False, True])
def test_resume_continues_the_iterate_averages(tmp_path, run_before_loading):
    pyro.set_rng_seed(0)
    _, guide, _, elbo, svi = _fresh(averaging=3.0)
    for epoch in range(4):
        _epoch(svi, elbo, epoch)
    assert guide.apply_average() == 16
    uninterrupted = _params()

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, guide, optim, elbo, svi = _fresh(averaging=3.0)
    for epoch in range(2):
        _epoch(svi, elbo, epoch)
    save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=2, model=model, guide=guide, elbo=elbo)

    pyro.clear_param_store()
    model, guide, optim, elbo, svi = _fresh(averaging=3.0)
    if run_before_loading:  # the experiments run the guide once so that the shapes are checked
        guide(X[:2], Y[:2])
    load_checkpoint(tmp_path / "ckpt.pt", optim=optim, model=model, guide=guide, elbo=elbo)
    assert guide.average_count() == (8 if run_before_loading else 0)  # (taken at set-up otherwise)
    for epoch in range(2, 4):
        _epoch(svi, elbo, epoch)
    assert guide.apply_average() == 16  # (the averages restarted at the resume: 8)
    resumed = _params()
    for name in resumed:
        assert torch.allclose(resumed[name], uninterrupted[name], atol=1e-7), name


def test_averages_saved_with_another_eta_start_afresh(tmp_path):
    path = _one_averaged_epoch_saved(tmp_path)[-1]
    pyro.clear_param_store()
    model, guide, optim, elbo, svi = _fresh(averaging=0.0)
    guide(X[:2], Y[:2])
    with pytest.warns(UserWarning, match="taken with η = 3, and this guide averages with η = 0"):
        load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)
    assert guide.average_count() == 0  # an average taken with η = 3 cannot go on with η = 0
    _epoch(svi, elbo, 1)
    assert guide.average_count() == 4


def test_malformed_iterate_averages_are_refused_by_name(tmp_path):
    model, guide, optim, elbo, _, path = _one_averaged_epoch_saved(tmp_path)
    state = torch.load(path, weights_only=True)
    name = next(iter(state["averages"][""]["averages"]))
    state["averages"][""]["averages"][name]["count"] = 0
    torch.save(state, path)
    before = _params()
    with pytest.raises(ValueError, match="iterate averages"):
        load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)
    for key, value in _params().items():
        assert torch.equal(value, before[key]), key


def test_averages_waiting_for_an_unrun_guide_are_saved_again_and_never_go_to_other_tensors(tmp_path):
    model, guide, optim, elbo, svi, path = _one_averaged_epoch_saved(tmp_path)
    saved = torch.load(path, weights_only=True)["averages"][""]["averages"]

    pyro.clear_param_store()
    model, guide, optim, elbo, svi = _fresh(averaging=3.0)
    load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)  # the guide has not run
    again = save_checkpoint(tmp_path / "again.pt", optim=optim, epoch=1, model=model, guide=guide, elbo=elbo)
    resaved = torch.load(again, weights_only=True)["averages"][""]["averages"]
    assert resaved.keys() == saved.keys()  # (it saved none: they were waiting for the guide to run)
    assert all(resaved[k]["count"] == saved[k]["count"] == 4 for k in saved)

    pyro.clear_param_store()  # the restored tensors are gone: the waiting averages are not theirs
    _epoch(svi, elbo, 1)
    assert guide.average_count() == 4  # the 4 new steps only (it was 8)


def test_a_failed_load_puts_the_averages_back(tmp_path, monkeypatch):
    model, guide, optim, elbo, svi, path = _one_averaged_epoch_saved(tmp_path)
    _epoch(svi, elbo, 1)
    assert guide.average_count() == 8
    calls = []

    def fail_first(state):
        calls.append(state)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return original(state)

    original = checkpoint._set_rng_state
    monkeypatch.setattr(checkpoint, "_set_rng_state", fail_first)
    with pytest.raises(KeyboardInterrupt):
        load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)
    assert guide.average_count() == 8  # (it was 0: loading the guide's state had restarted them)
    _epoch(svi, elbo, 2)
    assert guide.average_count() == 12


def test_a_checkpoint_without_averages_warns_that_they_start_again(tmp_path):
    # a file written before checkpoints kept the averages (or by a guide without averaging)
    model, guide, optim, elbo, svi, path = _one_averaged_epoch_saved(tmp_path)
    state = torch.load(path, weights_only=True)
    del state["averages"]
    torch.save(state, path)
    with pytest.warns(UserWarning, match="holds no iterate averages for this guide"):
        load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)
    assert guide.average_count() == 0
    _epoch(svi, elbo, 1)
    assert guide.average_count() == 4


@pytest.mark.parametrize("epoch", [-1, 2.9, True, "3"])
def test_an_epoch_load_checkpoint_would_refuse_never_replaces_a_checkpoint(tmp_path, epoch):
    _, _, optim, _, _ = _fresh()
    path = save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=np.int64(4))
    good = path.read_bytes()
    with pytest.raises(ValueError, match="epoch must be a non-negative int"):
        save_checkpoint(path, optim=optim, epoch=epoch)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_checkpoint_gets_the_mode_of_an_ordinary_new_file(tmp_path):
    _, _, optim, _, _ = _fresh()
    mask = os.umask(0o027)
    try:
        path = save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=0)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's private 0o600


def test_only_the_temporary_files_of_a_save_are_named_so():
    assert checkpoint.is_checkpoint_temporary("ckpt.pt.0123abcd.77.x_9Yz.tmp", "ckpt.pt")
    for name in ("ckpt.pt.bak", "ckpt.pt.1", "ckpt.pt.notes.tmp", "other.pt.0123abcd.77.xyz.tmp"):
        assert not checkpoint.is_checkpoint_temporary(name, "ckpt.pt"), name


def test_a_clip_given_as_a_numpy_number_leaves_the_checkpoint_loadable(tmp_path):
    path = _file_from(tmp_path, max_log_alpha=np.float64(8.0), min_log_alpha=np.float32(-8.0))
    model, guide, optim, elbo, _ = _session(max_log_alpha=8.0, min_log_alpha=-8.0)
    assert load_checkpoint(path, optim=optim, model=model, guide=guide, elbo=elbo)["epoch"] == 3


def _sparse_regression_with_noise_scale(X, y=None):
    """Sparse weights w and a noise scale σ: an AutoGuideList's model (VD for w, another guide for σ)."""
    w = pyro.sample("w", LogUniform(event_shape=(3,)))
    sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with pyro.plate("data", len(X)):
        pyro.sample("y", dist.Normal(X @ w, sigma), obs=y)


def test_a_guide_list_with_an_autoguide_not_yet_run_is_refused(tmp_path):
    # AutoNormal's set-up at the first step drew its start from the RNG the load had restored: the
    # resumed run left the uninterrupted one's path (θ 0.045 apart after 15 steps), without a word
    from pyro import poutine
    from pyro.infer.autoguide import AutoGuideList, AutoNormal

    X, y = torch.randn(50, 3), torch.randn(50)
    model = _sparse_regression_with_noise_scale

    def session():
        pyro.clear_param_store()
        guide = AutoGuideList(model)
        guide.append(AutoVariationalDropout(poutine.block(model, expose=["w"])))
        guide.append(AutoNormal(poutine.block(model, hide=["w"])))
        return guide, pyro.optim.Adam({"lr": 0.01})

    guide, optim = session()
    pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO()).step(X, y)
    save_checkpoint(tmp_path / "ck.pt", optim=optim, epoch=1, guide=guide)
    guide, optim = session()
    with pytest.raises(ValueError, match=r"parts \['AutoNormal'\] have not been run"):
        load_checkpoint(tmp_path / "ck.pt", optim=optim, guide=guide)
    guide(X, y)  # set up: now it loads
    assert load_checkpoint(tmp_path / "ck.pt", optim=optim, guide=guide)["epoch"] == 1


def test_a_guide_list_with_a_hand_written_guide_function_saves_and_loads(tmp_path):
    # a review's regression: AutoCallable (a guide function appended to an AutoGuideList) never has a
    # prototype trace, and was taken for an autoguide not yet run, on save and on load
    from pyro import poutine
    from pyro.infer.autoguide import AutoGuideList

    X, y = torch.randn(50, 3), torch.randn(50)
    model = _sparse_regression_with_noise_scale

    def sigma_guide(X, y=None):
        pyro.sample("sigma", dist.LogNormal(pyro.param("sigma_loc", torch.tensor(0.0)), 0.1))

    pyro.clear_param_store()
    guide = AutoGuideList(model)
    guide.append(AutoVariationalDropout(poutine.block(model, expose=["w"])))
    guide.append(sigma_guide)
    optim = pyro.optim.Adam({"lr": 0.01})
    pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO()).step(X, y)
    save_checkpoint(tmp_path / "ck.pt", optim=optim, epoch=1, guide=guide)
    assert load_checkpoint(tmp_path / "ck.pt", optim=optim, guide=guide)["epoch"] == 1


def test_a_loaded_checkpoint_reads_and_averages_the_tensors_it_computes_with(tmp_path):
    # load_checkpoint gave the store new tensors and wrote into the modules' old ones; apply_average()
    # then wrote into the store's: the guide's readers gave un-averaged values (0.058 off) and
    # deterministic() mixed the two, for a finished run loaded to be read
    from pyro_vd.inference import deterministic
    from pyro_vd.models import LinearRegression

    torch.manual_seed(0)
    X = torch.randn(300, 6)
    y = 2 * X[:, 0] + 0.3 * torch.randn(300)

    def trained(steps):
        pyro.clear_param_store()
        model = LinearRegression(6, num_data=300)
        guide = AutoVariationalDropout(model)
        optim = pyro.optim.Adam({"lr": 1e-2})
        svi = pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO())
        for _ in range(steps):
            svi.step(X[:50], y[:50])
        return model, guide, optim

    model, guide, optim = trained(30)
    save_checkpoint(tmp_path / "run.pt", optim=optim, epoch=1, model=model, guide=guide)
    guide.apply_average()
    expected = guide.get_theta("net.weight")
    model, guide, optim = trained(1)
    load_checkpoint(tmp_path / "run.pt", optim=optim, model=model, guide=guide)
    assert guide.apply_average() == 30
    assert torch.equal(guide.get_theta("net.weight"), expected)  # (warnings are errors here)
    assert torch.equal(deterministic(model, guide, threshold=math.inf).weight, expected)


def test_a_failed_load_leaves_modules_that_disagreed_with_the_store_as_they_were(tmp_path, monkeypatch):
    # the restore makes the modules hold the store's tensors; rolled back, a failed load wrote the
    # modules' old values into the store's tensors (0.01 off: after param_store.load, or another run's
    # live parameters) and left the modules holding the store's tensors
    X, Y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    pyro.clear_param_store()
    model = BayesianMLP([6, 5, 3], num_data=40)
    guide = AutoVariationalDropout(model)
    optim = pyro.optim.Adam({"lr": 0.01})
    svi = pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO())
    svi.step(X, Y)
    save_checkpoint(tmp_path / "run.pt", optim=optim, epoch=1, model=model, guide=guide)
    pyro.get_param_store().save(tmp_path / "store.pt")
    svi.step(X, Y)
    pyro.get_param_store().load(tmp_path / "store.pt")  # the store: step 1; the modules: step 2
    store = pyro.get_param_store()
    stored = {name: (tensor, tensor.detach().clone()) for name, tensor in store._params.items()}
    own = model.net.fc1._parameters["bias_unconstrained"]
    own_value = own.detach().clone()
    _fail_the_restore_once(monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        load_checkpoint(tmp_path / "run.pt", optim=optim, model=model, guide=guide)
    for name, (tensor, value) in stored.items():
        assert store._params[name] is tensor and torch.equal(tensor, value), name
    assert model.net.fc1._parameters["bias_unconstrained"] is own and torch.equal(own, own_value)


def test_a_checkpoint_of_other_noise_bounds_is_refused(tmp_path):
    """The neuron noise's q is truncated where the model's prior is: a checkpoint of a model built with
    noise_bounds (-20, 0) loaded into one with (-10, 0) gave another posterior and KL without a word."""

    def session(bounds):
        pyro.clear_param_store()
        model = BayesianMLP([6, 5, 3], num_data=40, neuron_noise=True, noise_bounds=bounds)
        guide = AutoVariationalDropout(model)
        optim, elbo = pyro.optim.Adam({"lr": 0.01}), VariationalDropoutELBO()
        pyro.infer.SVI(model, guide, optim, elbo).step(X[:10], Y[:10])
        return {"optim": optim, "model": model, "guide": guide, "elbo": elbo}

    path = save_checkpoint(tmp_path / "noise.pt", epoch=1, **session((-20.0, 0.0)))
    assert session((-20.0, 0.0))["guide"].noise_bounds("net.fc1.input_noise") == (-20.0, 0.0)
    with pytest.raises(ValueError, match=r"to \(-10.0, 0.0\): .*noise_bounds=\(-20.0, 0.0\)"):
        load_checkpoint(path, **session((-10.0, 0.0)))
    assert load_checkpoint(path, **session((-20, 0)))["epoch"] == 1  # the same bounds, as integers
    state = torch.load(path, weights_only=False)  # a file of an earlier version: nothing to compare
    for part in state["guide_config"]["parts"].values():
        del part["noise_bounds"]
    torch.save(state, path)
    assert load_checkpoint(path, **session((-10.0, 0.0)))["epoch"] == 1
