import pyro
import pytest
import torch

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO
from pyro_vd.inference import linear_warmup, load_checkpoint, save_checkpoint
from pyro_vd.models import BayesianMLP
from pyro_vd.poutine import local_reparameterization

X, Y = torch.randn(40, 6), torch.randint(0, 3, (40,))


def _fresh():
    model = BayesianMLP([6, 5, 3], num_data=40)
    guide = AutoVariationalDropout(model)
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
