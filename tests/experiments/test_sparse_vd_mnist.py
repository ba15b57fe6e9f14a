import json

import pytest
import torch

from pyro_vd.datasets import MNIST
from pyro_vd.experiments import run_sparse_vd_mnist
from pyro_vd.experiments.run_dir import RunDirError


def _tiny_mnist(n_train=200, n_test=100):
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.rand(10, 1, 28, 28, generator=generator)

    def make(n):
        labels = torch.randint(0, 10, (n,), generator=generator)
        images = (prototypes[labels] + 0.3 * torch.rand(n, 1, 28, 28, generator=generator)).clamp(0, 1)
        return images, labels

    return MNIST(*make(n_train), *make(n_test))


def test_runs_prunes_and_writes_results(tmp_path):
    result, report, _, _ = run_sparse_vd_mnist(_tiny_mnist(), epochs=3, out=tmp_path, log=lambda _: None)
    assert len(result["history"]) == 3 and 0 <= result["test_error"] <= 1
    assert result["history"][0]["kl_weight"] == 0.0
    drift = result["history"][-1]["log_alpha_drift"]  # how many weights crossed log α = 3 that epoch
    assert set(drift) == {
        "crossed",
        "newly_pruned",
        "near_threshold",
        "median_move",
        "heading",
        "held",
        "settled",
    }
    assert all(k in result["history"][-1] for k in ("data_term", "kl", "compression"))
    assert result["world_size"] == 1  # no process group: one process
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["sparsity"]["compression"] == pytest.approx(report.compression)
    assert (tmp_path / "checkpoint.pt").is_file()


def test_resume_continues_where_it_stopped(tmp_path):
    data = _tiny_mnist()
    full, _, _, _ = run_sparse_vd_mnist(data, epochs=5, log=lambda _: None)
    # Interrupt a run at its second epoch's log line (the checkpoint then holds epoch 1), then resume.
    partial_dir = tmp_path / "partial"
    partial_dir.mkdir()
    stopped = []

    def stop_after_two(message):
        stopped.append(message)
        if len(stopped) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sparse_vd_mnist(data, epochs=5, out=partial_dir, log=stop_after_two)
    resumed, _, _, _ = run_sparse_vd_mnist(data, epochs=5, out=partial_dir, resume=True, log=lambda _: None)
    assert [h["test_error"] for h in resumed["history"]] == [h["test_error"] for h in full["history"]]
    assert resumed["sparsity"] == full["sparsity"]
    # the log α drift report too: its trends were started again at the resume ("heading" differed)
    drift = [h["log_alpha_drift"] for h in full["history"]]
    assert [h["log_alpha_drift"] for h in resumed["history"]] == drift


def test_bad_arguments():
    with pytest.raises(ValueError, match="arch"):
        run_sparse_vd_mnist(_tiny_mnist(), arch="vgg")
    with pytest.raises(ValueError, match="epochs"):
        run_sparse_vd_mnist(_tiny_mnist(), epochs=0)
    with pytest.raises(ValueError, match="pretrain_epochs"):
        run_sparse_vd_mnist(_tiny_mnist(), pretrain_epochs=-1)
    with pytest.raises(ValueError, match="device"):
        run_sparse_vd_mnist(_tiny_mnist(), device="tpu")


def _quiet(_):
    pass


def test_resume_with_more_epochs_follows_the_new_schedule(tmp_path):
    data = _tiny_mnist()
    first, _, _, _ = run_sparse_vd_mnist(data, epochs=2, out=tmp_path, log=_quiet)
    assert [h["lr"] for h in first["history"]] == [1e-3, 1e-3]  # the schedule then decays to 0 at 2
    resumed, _, _, _ = run_sparse_vd_mnist(data, epochs=4, out=tmp_path, resume=True, log=_quiet)
    lrs = [h["lr"] for h in resumed["history"]]
    # epoch 3 of 4 is still before the decay (it starts at epoch 2 of 4), epoch 4 halfway through it
    assert lrs[2:] == [pytest.approx(1e-3), pytest.approx(5e-4)]
    assert resumed["resumes"] == [{"at_epoch": 2, "epochs": 4, "was": 2}]
    assert json.loads((tmp_path / "results.json").read_text())["resumes"] == resumed["resumes"]
    kl = [h["kl_weight"] for h in resumed["history"]]
    assert kl == sorted(kl)  # the warm-up of the longer schedule does not undo the weight reached


def test_resume_refuses_what_would_change_the_trajectory(tmp_path):
    data = _tiny_mnist()
    run_sparse_vd_mnist(data, epochs=2, out=tmp_path, log=_quiet)
    for change, name in (
        ({"arch": "lenet5"}, "weight sites"),  # the checkpoint's own check comes first
        ({"kl_method": "exact"}, "kl_method"),
        ({"seed": 1}, "seed"),
        ({"epochs": 1}, "already holds 2 epochs"),
        ({"pretrain_epochs": 1}, "pretrain_epochs"),
    ):
        options = {"epochs": 2, **change}
        with pytest.raises(ValueError, match=name):
            run_sparse_vd_mnist(data, out=tmp_path, resume=True, log=_quiet, **options)
    with pytest.raises(RunDirError, match="no checkpoint"):
        run_sparse_vd_mnist(data, epochs=2, out=tmp_path / "empty", resume=True, log=_quiet)
    with pytest.raises(ValueError, match="noise_lr"):
        run_sparse_vd_mnist(data, epochs=2, noise_lr=float("nan"))


def test_resume_refuses_other_training_data(tmp_path):
    """A resume read its data from --data-dir, which may change (data moved): a folder that now held
    other data of the same size went on training on them without a word."""
    data = _tiny_mnist()
    run_sparse_vd_mnist(data, epochs=1, out=tmp_path, log=_quiet)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    other = data._replace(train_images=data.train_images.flip(0))  # the same images, another order
    with pytest.raises(RunDirError, match="other training data"):
        run_sparse_vd_mnist(other, epochs=2, out=tmp_path, resume=True, log=_quiet)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    # other test data would mix two test sets in one history (epoch 1 on one, epoch 2 on another)
    swapped = data._replace(test_images=data.test_images.flip(0))
    with pytest.raises(RunDirError, match="other test data"):
        run_sparse_vd_mnist(swapped, epochs=2, out=tmp_path, resume=True, log=_quiet)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    moved = data._replace(test_images=data.test_images.clone())  # the same test data, moved: taken
    run_sparse_vd_mnist(moved, epochs=2, out=tmp_path, resume=True, log=_quiet)


def test_the_fingerprint_tells_data_apart():
    from pyro_vd.datasets import fingerprint

    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert fingerprint(x) == fingerprint(x.clone()) == fingerprint(x.t().contiguous().t())
    assert (
        len({fingerprint(x), fingerprint(x.double()), fingerprint(x.reshape(4, 3)), fingerprint(x + 1)}) == 4
    )
    assert fingerprint(x, x[:1]) != fingerprint(x[:1], x)
    assert fingerprint(x.bfloat16()) != fingerprint(x.half())  # (numpy has no bfloat16)
    assert fingerprint(torch.tensor(1.0)) != fingerprint(torch.tensor([1.0]))
    with pytest.raises(TypeError, match="torch tensors"):
        fingerprint(x.numpy())


def test_a_checkpoint_without_the_torch_optimizer_state_is_refused(tmp_path):
    """Checkpoints of the earlier SVI trainer kept the optimizer's state in Pyro's parameter store."""
    data = _tiny_mnist()
    run_sparse_vd_mnist(data, epochs=1, out=tmp_path, log=_quiet)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["extra"]["optimizer"]
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(RunDirError, match="earlier pyro_vd"):
        run_sparse_vd_mnist(data, epochs=2, out=tmp_path, resume=True, log=_quiet)


@pytest.mark.parametrize("sparse_weights", [True, False])
def test_pretraining_starts_sparse_vd_from_the_trained_network(monkeypatch, sparse_weights):
    """θ and the biases start at the pretrained network's weights (the paper's LeNet-5 start), and the
    pretrained network's test error is recorded; point-estimated weights start there too."""
    from pyro_vd.experiments import sparse_vd_mnist

    data = _tiny_mnist()
    pretrained = {}
    pretrain = sparse_vd_mnist._pretrain

    def keep(*args, **kwargs):
        state, error = pretrain(*args, **kwargs)
        pretrained.update(state=state, error=error)
        return state, error

    monkeypatch.setattr(sparse_vd_mnist, "_pretrain", keep)
    started = {}

    def first_epoch(message):  # the guide and model as the first epoch found them are gone by now:
        started.setdefault("message", message)  # the start is checked below through a zero-lr run

    result, _, model, guide = run_sparse_vd_mnist(
        data,
        epochs=1,
        pretrain_epochs=2,
        lr=1e-12,
        noise_lr=1e-12,
        sparse_weights=sparse_weights,
        neuron_noise=not sparse_weights,  # point-estimated weights need another source of noise
        log=first_epoch,
    )
    state = pretrained["state"]
    assert started["message"].startswith("pretrained lenet300100 for 2 epochs")
    assert result["pretrain_epochs"] == 2 and result["pretrained_test_error"] == pretrained["error"]
    assert pretrained["error"] < 0.5  # the tiny data's prototypes are learnable: 10 classes, chance 0.9
    for layer in ("fc1", "fc2", "fc3"):
        if sparse_weights:
            weight = guide.get_theta(f"net.{layer}.weight")
        else:
            weight = getattr(model.net, layer).weight
        assert torch.allclose(weight, state[f"{layer}.weight"], atol=1e-6)
        bias = getattr(model.net, layer).bias
        assert torch.allclose(bias, state[f"{layer}.bias"], atol=1e-6)
    # and the deterministic network it starts from has the pretrained network's test error
    assert result["test_error"] == pytest.approx(pretrained["error"], abs=0.02)


def test_a_run_interrupted_after_pretraining_resumes_without_pretraining_again(tmp_path, monkeypatch):
    from pyro_vd.experiments import sparse_vd_mnist

    data = _tiny_mnist()
    full, _, _, _ = run_sparse_vd_mnist(data, epochs=2, pretrain_epochs=1, log=_quiet)

    def interrupt(message):  # the first Sparse VD epoch's line: nothing of Sparse VD was saved yet
        if message.startswith("epoch"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sparse_vd_mnist(data, epochs=2, pretrain_epochs=1, out=tmp_path, log=interrupt)
    monkeypatch.setattr(sparse_vd_mnist, "_pretrain", None)  # a resume must not pretrain again
    resumed, _, _, _ = run_sparse_vd_mnist(
        data, epochs=2, pretrain_epochs=1, out=tmp_path, resume=True, log=_quiet
    )
    assert [h["test_error"] for h in resumed["history"]] == [h["test_error"] for h in full["history"]]
    assert [h["kl_weight"] for h in resumed["history"]] == [h["kl_weight"] for h in full["history"]]
    assert resumed["pretrained_test_error"] == full["pretrained_test_error"]
