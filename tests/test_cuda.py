"""The library on a CUDA device: every test here is skipped where torch sees no GPU (CI has none); run on a
GPU machine with ``python -m pytest tests/test_cuda.py``. Each compares the device's numbers with the
CPU's or checks that what trains stays on the device."""

import json

import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO
from pyro_vd.distributions import TruncatedLogNormal
from pyro_vd.inference import FusedAdam, deterministic, prune_neurons, sparsity
from pyro_vd.models import LeNet5, LeNet300100, LeNet500300
from pyro_vd.poutine import local_reparameterization
from tests.experiments.test_sparse_vd_mnist import _tiny_mnist

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _batch(n=32, device=CUDA):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return x.to(device), y.to(device)


def _params_on(device):
    store = pyro.get_param_store()
    return {name: store[name].device.type for name in store.keys()}, device.type


@pytest.mark.parametrize("net", [LeNet300100, LeNet5])
@pytest.mark.parametrize("kl_method", ["molchanov", "exact"])
def test_svi_trains_on_the_gpu_and_matches_the_cpu_loss(net, kl_method):
    losses = {}
    for device in (torch.device("cpu"), CUDA):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = net(num_data=1000).to(device)
        guide = AutoVariationalDropout(model, kl_method=kl_method, init_seed=0)
        elbo = VariationalDropoutELBO()
        x, y = _batch(device=device)
        with torch.no_grad():  # the same function on both devices: the data term at θ, and the KL
            guide(x, y)
            data = VariationalDropoutELBO(kl_weight=0.0).loss(model, _at_theta(guide), x, y)
            elbo.loss(model, guide, x, y)
            losses[device.type] = (data, elbo.last_terms["kl"])
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
        with local_reparameterization():
            for _ in range(3):
                loss = svi.step(x, y)
        assert torch.isfinite(torch.tensor(loss))
        placed, expected = _params_on(device)
        assert set(placed.values()) == {expected}, placed
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-4)


def _at_theta(guide):
    """The guide with every weight at its mean θ (a point mass): no noise, so devices can be compared."""

    def at_theta(*args, **kwargs):
        for name in guide.site_names:
            theta = guide.get_theta(name)
            pyro.sample(name, pyro.distributions.Delta(theta).to_event(theta.dim()))

    return at_theta


def test_the_module_route_trains_on_the_gpu_and_prunes():
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(0)
        model = LeNet300100(num_data=1000).to(CUDA)
        guide = AutoVariationalDropout(model)
        loss_fn = VariationalDropoutELBO()(model, guide)
        x, y = _batch()
        with local_reparameterization():
            loss_fn(x, y)
            optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)
            for _ in range(3):
                optimizer.zero_grad()
                loss_fn(x, y).backward()
                optimizer.step()
        assert {p.device.type for p in loss_fn.parameters()} == {"cuda"}
        net = deterministic(model, guide, 3.0)
        assert net(x).device.type == "cuda" and net(x).shape == (32, 10)
        report = sparsity(guide, 3.0)
        assert report.compression >= 1.0


def test_predictive_draws_on_the_gpu():
    pyro.clear_param_store()
    model = LeNet300100(num_data=1000).to(CUDA)
    guide = AutoVariationalDropout(model)
    x, y = _batch()
    guide(x, y)
    with local_reparameterization():
        draws = Predictive(model, guide=guide, num_samples=4, return_sites=["obs"])(x)
    assert draws["obs"].shape == (4, 32) and draws["obs"].device.type == "cuda"


def test_neuron_noise_trains_and_shrinks_on_the_gpu():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = LeNet500300(num_data=1000, neuron_noise=True).to(CUDA)
    guide = AutoVariationalDropout(model)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), VariationalDropoutELBO())
    x, y = _batch()
    with local_reparameterization():
        for _ in range(3):
            svi.step(x, y)
    small = prune_neurons(model, guide)
    assert small(x).shape == (32, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_truncated_log_normal_matches_the_cpu(dtype):
    loc = torch.linspace(-3.0, 1.0, 7, dtype=dtype)
    scale = torch.linspace(0.2, 2.0, 7, dtype=dtype)
    value = torch.linspace(1e-4, 0.9, 7, dtype=dtype)
    cpu = TruncatedLogNormal(loc, scale, -20.0, 0.0)
    gpu = TruncatedLogNormal(loc.cuda(), scale.cuda(), -20.0, 0.0)
    for name in ("mean", "variance", "entropy"):
        on_cpu = getattr(cpu, name)
        on_gpu = getattr(gpu, name)
        on_cpu, on_gpu = (
            (on_cpu() if callable(on_cpu) else on_cpu),
            (on_gpu() if callable(on_gpu) else on_gpu),
        )
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == dtype, name
        assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=1e-5, atol=1e-7), name
    assert torch.allclose(gpu.log_prob(value.cuda()).cpu(), cpu.log_prob(value), rtol=1e-5, atol=1e-6)
    draws = gpu.rsample((1000,))
    assert draws.device.type == "cuda" and draws.dtype == dtype
    assert bool(((draws > 0) & (draws <= 1)).all())


def _value(attribute):
    return attribute() if callable(attribute) else attribute


def test_sparse_mnist_runs_on_the_gpu_and_resumes_on_the_cpu(tmp_path):
    from pyro_vd.experiments import run_sparse_vd_mnist

    data = _tiny_mnist(200, 100)
    quiet = lambda _: None  # noqa: E731
    result, _, _, guide = run_sparse_vd_mnist(
        data, arch="lenet5", epochs=2, pretrain_epochs=1, device="cuda", out=tmp_path, log=quiet
    )
    assert result["device"].startswith("cuda")
    assert guide.get_theta("net.fc1.weight").device.type == "cuda"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["pretrained_test_error"] is not None
    resumed, _, _, guide = run_sparse_vd_mnist(
        data, arch="lenet5", epochs=3, pretrain_epochs=1, device="cpu", out=tmp_path, resume=True, log=quiet
    )
    assert len(resumed["history"]) == 3 and resumed["device"] == "cpu"
    assert guide.get_theta("net.fc1.weight").device.type == "cpu"


def test_the_layer_case_runs_on_the_gpu():
    from pyro_vd.experiments.layer_case import run_layer_case

    data = _tiny_mnist(100, 20)
    result = run_layer_case(data, epochs=1, hidden=(16, 16), device="cuda", log=lambda _: None)
    assert result["device"].startswith("cuda")
    assert all(len(r["test_error"]) == 1 for r in result["methods"].values())


@pytest.mark.parametrize("route", ["module", "svi"])
def test_a_training_step_waits_for_the_gpu_once(route):
    """One host synchronization per step (Pyro's argument validation off): the ELBO's check that the loss
    is finite, which also reads the divergence monitor's value and the float SVI.step returns."""
    import warnings

    pyro.clear_param_store()
    validation = pyro.util.is_validation_enabled()
    pyro.enable_validation(False)
    try:
        with pyro.settings.context(module_local_params=route == "module"):
            model = LeNet300100(num_data=1000).to(CUDA)
            guide = AutoVariationalDropout(model)
            elbo = VariationalDropoutELBO()
            if route == "svi":
                svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), elbo)
                step = svi.step
            else:
                loss_fn = elbo(model, guide)
                x, y = _batch()
                loss_fn(x, y)
                optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)

                def step(x, y):
                    optimizer.zero_grad()
                    loss_fn(x, y).backward()
                    optimizer.step()

            x, y = _batch()
            with local_reparameterization():
                step(x, y)
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        for _ in range(4):
                            step(x, y)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
    finally:
        pyro.enable_validation(validation)
    syncs = [w for w in caught if "synchroniz" in str(w.message) and "prototype" not in str(w.message)]
    assert len(syncs) <= 4, [f"{w.filename}:{w.lineno}" for w in syncs]


def test_fused_adam_takes_pyro_optim_adams_steps_on_the_gpu():
    def train(optim):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = LeNet300100(num_data=1000).to(CUDA)
        guide = AutoVariationalDropout(model)
        svi = SVI(model, guide, optim, VariationalDropoutELBO())
        x, y = _batch()
        with local_reparameterization():
            for _ in range(5):
                svi.step(x, y)
        store = pyro.get_param_store()
        return {name: store[name].detach().clone() for name in store.keys()}

    optim = FusedAdam({"lr": 1e-3})
    ours = train(optim)
    (torch_adam,) = optim._optimizers.values()
    assert torch_adam.param_groups[0]["fused"] is True
    theirs = train(pyro.optim.Adam({"lr": 1e-3, "fused": True}))
    for name, value in ours.items():
        assert value.device.type == "cuda", name
        assert torch.allclose(value, theirs[name], rtol=1e-5, atol=1e-6), name
