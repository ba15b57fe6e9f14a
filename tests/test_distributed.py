"""pyro_vd.distributed: the single-process behaviour in this process, and two-process gloo runs under
``python -m torch.distributed.run`` (one thread each): DDP's averaged gradient is the single-process
gradient on the global batch, a two-rank run resumes exactly, and the CLI resumes a two-rank run."""

import json
import os
import pathlib
import re
import shlex
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pyro
import pytest
import torch
from torch.utils.data import DistributedSampler

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, distributed
from pyro_vd.models import BayesianMLP

# ------------------------------------------------------------------------------- one process (here)


def test_a_single_process_is_rank_zero_of_one():
    session = distributed.current()
    assert (session.rank, session.world_size, session.is_main, session.distributed) == (0, 1, True, False)
    assert distributed.init_from_env() == session  # no WORLD_SIZE: nothing to join
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.gather_objects(3) == [3]
    assert distributed.mean_across_ranks(2.5) == 2.5
    assert distributed.rank_zero_only(lambda: "written")() == "written"


def test_the_device_is_resolved_and_checked():
    assert distributed.resolve_device() == torch.device("cpu")  # one process: the CPU by default
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert distributed.resolve_device("auto").type == expected
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    assert distributed.resolve_device("cpu:1") == torch.device("cpu")  # one CPU device
    with pytest.raises(ValueError, match="got 'tpu'"):
        distributed.resolve_device("tpu")
    with pytest.raises(ValueError, match="CPU or CUDA"):
        distributed.resolve_device("meta")
    with pytest.raises(ValueError, match="CUDA device"):
        distributed.resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(ValueError, match="CUDA device"):  # a bare index is a GPU, as torch reads it
        distributed.resolve_device(torch.cuda.device_count())


def test_the_global_batch_is_split_evenly():
    two = distributed.Session(rank=1, world_size=2)
    assert distributed.local_batch_size(100, two) == 50
    with pytest.raises(ValueError, match="cannot be split evenly over 3"):
        distributed.local_batch_size(100, distributed.Session(rank=0, world_size=3))


@pytest.mark.parametrize(
    "call",
    [
        lambda: distributed.local_batch_size(0),  # (was 0: nothing trained, ZeroDivisionError later)
        lambda: distributed.local_batch_size(-100),  # (was −100: 0 steps, an untrained network reported)
        lambda: distributed.local_batch_size("100"),
        lambda: distributed.shard_indices(-5, epoch=0),  # (was an empty shard)
        lambda: distributed.shard_indices(10, epoch=None),
        lambda: distributed.noise_seed(0.5, 1),  # (was seed 0)
        lambda: distributed.seed_noise(None, distributed.Session(rank=1, world_size=2)),
        lambda: distributed.seed_noise(None),  # (one process: accepted, where rank 1 failed)
        lambda: distributed.noise_seed(2**32, 1),  # (the seed of (0, 1, 1): 32-bit words)
        lambda: distributed.shard_indices(10, epoch=0, seed=None),  # (raw TypeError in torch's sampler)
        lambda: distributed.shard_indices(10, epoch=0, seed=1.5),  # (raw RuntimeError)
        lambda: distributed.loader(list(range(10)), 2, seed=-1),
        lambda: distributed.init_from_env("bogus"),  # (torch's AssertionError)
    ],
    ids=[
        "batch 0",
        "batch -100",
        "batch str",
        "n -5",
        "epoch None",
        "seed 0.5",
        "seed None",
        "seed None, 1",
        "seed 2**32",
        "shard seed None",
        "shard seed 1.5",
        "loader seed -1",
        "backend",
    ],
)
def test_bad_sizes_and_seeds_are_refused(call):
    with pytest.raises(ValueError, match="must be"):
        call()


def test_shuffle_is_a_bool_and_a_numpy_batch_splits():
    with pytest.raises(TypeError, match="shuffle must be True or False"):  # ("no" shuffled)
        distributed.shard_indices(10, epoch=0, shuffle="no")
    b = distributed.local_batch_size(np.int64(100))  # (np.int64 failed in .split(b))
    assert type(b) is int and len(torch.arange(300).split(b)) == 3


def test_shards_are_a_distributed_sampler_reshuffled_per_epoch():
    sessions = [distributed.Session(rank, 2) for rank in (0, 1)]
    shards = [distributed.shard_indices(11, epoch=1, seed=5, session=s) for s in sessions]
    for rank, shard in enumerate(shards):
        sampler = DistributedSampler(range(11), num_replicas=2, rank=rank, seed=5)
        sampler.set_epoch(1)
        assert shard.tolist() == list(sampler)
    assert len(shards[0]) == len(shards[1]) == 6  # padded to equal length
    assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(11))
    other_epoch = distributed.shard_indices(11, epoch=2, seed=5, session=distributed.Session(0, 2))
    assert other_epoch.tolist() != shards[0].tolist()


def test_ranks_draw_independent_noise_and_rank_zero_keeps_its_stream():
    seeds = {distributed.noise_seed(0, rank) for rank in range(1, 5)} | {distributed.noise_seed(1, 1)}
    assert len(seeds) == 5
    assert distributed.noise_seed(0, 1, epoch=3) != distributed.noise_seed(0, 1)
    pyro.set_rng_seed(0)
    expected = torch.randn(3)
    pyro.set_rng_seed(0)
    distributed.seed_noise(0, distributed.Session(rank=0, world_size=2))
    assert torch.equal(torch.randn(3), expected)
    pyro.set_rng_seed(0)
    distributed.seed_noise(0, distributed.Session(rank=1, world_size=2))
    assert not torch.equal(torch.randn(3), expected)


def _loss_fn(seed=0):
    pyro.set_rng_seed(seed)
    model = BayesianMLP([6, 5, 3], num_data=40)
    return VariationalDropoutELBO()(model, AutoVariationalDropout(model))


def test_data_parallel_alone_creates_the_parameters_and_draws_nothing():
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))
    with pyro.settings.context(module_local_params=True):
        loss_fn = _loss_fn()
        state = torch.get_rng_state()
        assert distributed.data_parallel(loss_fn, x, y) is loss_fn  # one process: not wrapped
        assert torch.equal(torch.get_rng_state(), state)
        names = [name for name, _ in loss_fn.named_parameters()]
        assert any(name.startswith("guide.thetas.") for name in names)
        loss_fn(x, y).backward()
        assert all(p.grad is not None for p in loss_fn.parameters())


def test_data_parallel_needs_module_local_params():
    with pytest.raises(RuntimeError, match="module_local_params=True"):
        distributed.data_parallel(_loss_fn(), torch.randn(2, 6), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("average_every", [0, -1, 1.5, True, "4", None])
def test_average_every_is_a_positive_integer(average_every):
    x, y = torch.randn(2, 6), torch.zeros(2, dtype=torch.long)
    with pyro.settings.context(module_local_params=True), pytest.raises(ValueError, match="average_every"):
        distributed.data_parallel(_loss_fn(), x, y, average_every=average_every)


def test_average_every_takes_effect_in_a_process_group_only():
    assert distributed.resolve_average_every(8) == 1  # one process: nothing to average
    assert distributed.resolve_average_every(8, distributed.Session(rank=1, world_size=2)) == 8
    with pytest.raises(ValueError, match="average_every"):
        distributed.resolve_average_every(0, distributed.Session(rank=1, world_size=2))


def test_local_sgd_alone_is_the_plain_module_and_needs_a_process_group():
    x, y = torch.randn(2, 6), torch.zeros(2, dtype=torch.long)
    with pyro.settings.context(module_local_params=True):
        loss_fn = _loss_fn()
        assert distributed.data_parallel(loss_fn, x, y, average_every=4) is loss_fn
        before = [p.detach().clone() for p in loss_fn.parameters()]
        distributed.average_parameters(loss_fn)  # one process: nothing to average
        assert all(torch.equal(a, p) for a, p in zip(before, loss_fn.parameters(), strict=True))
        with pytest.raises(RuntimeError, match="process group"):
            distributed.LocalSGD(loss_fn, 4)


# ----------------------------------------------------------------------------- two processes (gloo)
_WORKER = textwrap.dedent(
    """
    import json, pathlib, sys

    import pyro
    import torch

    from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, distributed
    from pyro_vd.datasets import MNIST
    from pyro_vd.experiments import run_sparse_vd_mnist
    from pyro_vd.models import BayesianMLP

    out = pathlib.Path(sys.argv[1])
    torch.set_num_threads(1)
    session = distributed.init_from_env()
    pyro.settings.set(module_local_params=True)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 20, generator=generator), torch.randint(0, 3, (8,), generator=generator)


    def build():
        pyro.set_rng_seed(0)
        model = BayesianMLP([20, 16, 3], num_data=64)
        guide = AutoVariationalDropout(model, init_log_sigma2=-2.0)
        return VariationalDropoutELBO()(model, guide)


    def gradients(loss_fn, x, y):
        # the noise held fixed: no local reparameterization, the same weight sample on every rank
        torch.manual_seed(123)
        loss_fn(x, y).backward()
        module = getattr(loss_fn, "module", loss_fn)  # DDP's wrapped module
        return {name: p.grad.clone() for name, p in module.named_parameters()}


    # one step of the 2-rank run: each rank its half of the global batch of 8, DDP averages
    loss_fn = build()
    ddp = distributed.data_parallel(loss_fn, x[:2], y[:2])
    local = slice(4 * session.rank, 4 * session.rank + 4)
    averaged = gradients(ddp, x[local], y[local])
    report = {"world_size": session.world_size}
    if session.is_main:  # the single-process gradient on the whole global batch
        single_fn = build()
        distributed.create_parameters(single_fn, x[:2], y[:2])
        single = gradients(single_fn, x, y)
        report["max_abs_diff"] = max(float((averaged[k] - single[k]).abs().max()) for k in single)
        report["max_abs_grad"] = max(float(g.abs().max()) for g in single.values())
        report["names"] = sorted(single)

    # a 2-rank Sparse VD run resumes exactly (each rank's noise stream is in the checkpoint)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(120, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (120,), generator=generator)
    data = MNIST(images[:100], labels[:100], images[100:], labels[100:])
    options = {"batch_size": 20, "log": lambda _: None}
    full, _, _, _ = run_sparse_vd_mnist(data, epochs=2, **options)
    run_sparse_vd_mnist(data, epochs=1, out=out, **options)
    resumed, _, _, _ = run_sparse_vd_mnist(data, epochs=2, out=out, resume=True, **options)
    if session.is_main:
        report["full"] = [h["test_error"] for h in full["history"]]
        report["resumed"] = [h["test_error"] for h in resumed["history"]]
        report["same_sparsity"] = full["sparsity"] == resumed["sparsity"]
        report["data_terms"] = [full["history"][1]["data_term"], resumed["history"][1]["data_term"]]
        report["result_world_size"] = resumed["world_size"]

    # local SGD: k steps on each rank's own rows, then the mean of the ranks' parameters
    k = 3
    loss_fn = build()
    train_fn = distributed.data_parallel(loss_fn, x[:2], y[:2], average_every=k)
    alone = build()  # the same rank trained without any averaging: the reference
    distributed.create_parameters(alone, x[:2], y[:2])
    report["local_sgd_starts_equal"] = all(
        torch.equal(a, b) for a, b in zip(loss_fn.parameters(), alone.parameters(), strict=True)
    )


    def ranks_equal(tensors):  # every rank holds the same values in each tensor
        return all(
            len({tuple(t.flatten().tolist()) for t in same}) == 1
            for same in zip(*distributed.gather_objects([t.detach() for t in tensors]), strict=True)
        )


    def local_steps(fn, params, steps):
        optimizer = torch.optim.Adam(params, lr=0.05)
        torch.manual_seed(100 + session.rank)  # each rank its own noise, the same for both runs
        for step in range(steps):
            rows = slice(4 * session.rank + step % 2, 4 * session.rank + step % 2 + 2)
            optimizer.zero_grad()
            fn(x[rows], y[rows]).backward()
            optimizer.step()


    local_steps(train_fn, list(loss_fn.parameters()), k)
    local_steps(alone, list(alone.parameters()), k)
    mine = [p.detach().clone() for p in loss_fn.parameters()]
    report["local_sgd_untouched_for_k_steps"] = all(
        torch.equal(a, b) for a, b in zip(mine, alone.parameters(), strict=True)
    )
    with torch.no_grad():  # an evaluation call neither counts nor averages
        train_fn(x[:2], y[:2])
    train_fn.eval()
    train_fn(x[:2], y[:2])
    train_fn.train()
    report["local_sgd_no_grad_counted"] = train_fn.steps_since_average
    ranks = distributed.gather_objects([p.detach() for p in alone.parameters()])
    mean = [sum(values) / len(values) for values in zip(*ranks, strict=True)]
    train_fn(x[:2], y[:2])  # step k + 1: averages first
    report["local_sgd_count_after_average"] = train_fn.steps_since_average
    report["local_sgd_mean_error"] = max(
        float((p - m).abs().max()) for p, m in zip(loss_fn.parameters(), mean, strict=True)
    )
    report["local_sgd_ranks_differed"] = max(
        float((a - b).abs().max()) for a, b in zip(*ranks, strict=True)
    )
    report["local_sgd_ranks_equal"] = ranks_equal(list(loss_fn.parameters()))

    try:  # the bare module, whose copies are never averaged: refused, not a silent no-op
        distributed.average_parameters(loss_fn)
        report["bare_average"] = "accepted"
    except TypeError as error:
        report["bare_average"] = str(error)

    # ranks with different modules are refused, on every rank
    pyro.set_rng_seed(0)
    sizes = [20, 16 + session.rank, 3]
    odd_model = BayesianMLP(sizes, num_data=64)
    odd = VariationalDropoutELBO()(odd_model, AutoVariationalDropout(odd_model))
    try:
        distributed.data_parallel(odd, x[:2], y[:2], average_every=2)
        report["local_sgd_mismatch"] = "accepted"
    except ValueError as error:
        report["local_sgd_mismatch"] = str(error)
    mismatches = []
    for ks in ([2, 3], [1, 2]):  # ... and ranks that would average after different numbers of steps
        try:
            distributed.data_parallel(build(), x[:2], y[:2], average_every=ks[session.rank])
            mismatches.append("accepted")
        except ValueError as error:
            mismatches.append(str(error))
    report["local_sgd_k_mismatch"] = mismatches

    # a 2-rank local-SGD Sparse VD run resumes exactly too (each rank's Adam moments are saved)
    options["average_every"] = 2
    lsgd_out = out / "local-sgd"
    full, _, _, _ = run_sparse_vd_mnist(data, epochs=2, **options)
    run_sparse_vd_mnist(data, epochs=1, out=lsgd_out, **options)
    resumed, _, _, _ = run_sparse_vd_mnist(data, epochs=2, out=lsgd_out, resume=True, **options)
    if session.is_main:
        saved = torch.load(lsgd_out / "checkpoint.pt", weights_only=False)["extra"]
        report["lsgd_saved"] = [saved["average_every"], len(saved["rank_optimizer"])]
    distributed.barrier()  # read before the next resume writes it again

    # the layer case by local SGD: every rank evaluates the same averaged networks
    from pyro_vd.experiments.layer_case import run_layer_case

    layer = run_layer_case(
        data,
        epochs=2,
        hidden=(8, 8, 8),
        batch_size=20,
        methods=["VD α free", "binary dropout"],
        average_every=2,
        log=lambda _: None,
    )
    errors = [layer["methods"][m]["test_error"] for m in ("VD α free", "binary dropout")]
    report["layer_case_errors"] = distributed.gather_objects(errors)
    report["layer_case_config"] = [layer["config"]["average_every"], layer["world_size"]]

    # resumed as DDP: every rank takes rank 0's Adam moments (its own would part the ranks for good)
    _, _, model, guide = run_sparse_vd_mnist(
        data, epochs=3, out=lsgd_out, resume=True, **{**options, "average_every": 1}
    )
    report["lsgd_to_ddp_ranks_equal"] = ranks_equal([*model.parameters(), *guide.parameters()])
    # local SGD with iterate averaging: the ranks' averages are averaged with their parameters (left per
    # rank they parted, and apply_average() gave every rank other parameters)
    pyro.set_rng_seed(0)
    avg_model = BayesianMLP([20, 16, 3], num_data=64)
    avg_guide = AutoVariationalDropout(avg_model, init_log_sigma2=-2.0, averaging=1.0)
    avg_elbo = VariationalDropoutELBO()(avg_model, avg_guide)
    avg_fn = distributed.data_parallel(avg_elbo, x[:2], y[:2], average_every=2)
    distributed.seed_noise(0)
    optimizer = torch.optim.Adam(avg_fn.parameters(), lr=0.05)
    for step in range(6):  # (the last iterate averaged, step 5's, differs between the ranks)
        rows = slice(4 * session.rank + step % 2, 4 * session.rank + step % 2 + 2)
        optimizer.zero_grad()
        avg_fn(x[rows], y[rows]).backward()
        optimizer.step()
    means = [m.clone() for _, m in avg_guide._iterate_average_means()]
    expected = [sum(v) / 2 for v in zip(*distributed.gather_objects(means), strict=True)]
    report["averages_differed"] = max(
        float((a - b).abs().max()) for a, b in zip(*distributed.gather_objects(means), strict=True)
    )
    distributed.average_parameters(avg_fn)
    report["averages_mean_error"] = max(
        float((m - e).abs().max())
        for (_, m), e in zip(avg_guide._iterate_average_means(), expected, strict=True)
    )
    avg_guide.apply_average()
    report["applied_ranks_equal"] = ranks_equal([*avg_model.parameters(), *avg_guide.parameters()])
    for step in range(2):  # then one rank restarts its averages alone: refused, not mixed up
        optimizer.zero_grad()
        avg_fn(x[:2], y[:2]).backward()
        optimizer.step()
    if session.rank == 1:
        avg_guide.reset_average()
    try:
        distributed.average_parameters(avg_fn)
        report["mismatched_averages"] = "accepted"
    except ValueError as error:
        report["mismatched_averages"] = str(error)

    # a user's resume: rank 0 saves, every rank loads; the ranks' noise stays their own
    from pyro_vd.inference import load_checkpoint, save_checkpoint

    adam = pyro.optim.Adam({"lr": 0.01})
    if session.is_main:
        save_checkpoint(out / "user.pt", optim=adam, epoch=1)
        report["rank0_after_save"] = torch.randn(3).tolist()
    distributed.barrier()
    load_checkpoint(out / "user.pt", optim=adam)
    report["resumed_draws"] = distributed.gather_objects(torch.randn(3).tolist())
    # ... and a rank that loads the file it saved itself goes on exactly
    save_checkpoint(out / f"own{session.rank}.pt", optim=adam, epoch=1)
    uninterrupted = torch.randn(3).tolist()
    load_checkpoint(out / f"own{session.rank}.pt", optim=adam)
    report["own_file_exact"] = distributed.gather_objects(torch.randn(3).tolist() == uninterrupted)

    if session.is_main:
        report["lsgd_full"] = [[h["test_error"], h["data_term"]] for h in full["history"]]
        report["lsgd_resumed"] = [[h["test_error"], h["data_term"]] for h in resumed["history"]]
        report["lsgd_same_sparsity"] = full["sparsity"] == resumed["sparsity"]
        report["lsgd_average_every"] = resumed["average_every"]
        (out / "report.json").write_text(json.dumps(report))
    distributed.close()
    """
)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args, cwd=None, timeout=180, check=True):
    """``python -m torch.distributed.run --nproc_per_node 2 ...`` on a free port, one thread a process
    (``check``: asserting that it succeeded)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    assert done.returncode == 0 or not check, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def two_rank_report(tmp_path_factory):
    """One 2-process launch of ``_WORKER``; its report."""
    folder = tmp_path_factory.mktemp("two-ranks")
    worker = folder / "worker.py"
    worker.write_text(_WORKER)
    _torchrun(str(worker), str(folder))
    return json.loads((folder / "report.json").read_text())


def test_two_ranks_average_to_the_global_batch_gradient_and_resume_exactly(two_rank_report):
    report = two_rank_report
    assert report["world_size"] == report["result_world_size"] == 2
    assert any(".thetas." in n for n in report["names"]) and any("bias" in n for n in report["names"])
    # the same gradient up to float32 summation order (KL counted once, N/B from the local batch)
    assert report["max_abs_diff"] <= 1e-6 * max(1.0, report["max_abs_grad"])
    assert report["resumed"] == report["full"] and report["same_sparsity"]
    assert report["data_terms"][0] == report["data_terms"][1]


def test_local_sgd_averages_the_guides_iterate_averages_too(two_rank_report):
    report = two_rank_report
    assert report["averages_differed"] > 1e-4  # each rank averaged its own iterates
    assert report["averages_mean_error"] <= 1e-6 and report["applied_ranks_equal"]
    assert "the ranks' iterate averages differ" in report["mismatched_averages"]


def test_a_checkpoint_loaded_on_every_rank_leaves_each_its_own_noise(two_rank_report):
    """Rank 0 saved, every rank loaded: rank 0 goes on with its saved stream, the others with their own
    (before: every rank drew rank 0's noise after the load)."""
    draws = two_rank_report["resumed_draws"]
    assert draws[0] == two_rank_report["rank0_after_save"]
    assert draws[1] != draws[0]
    assert two_rank_report["own_file_exact"] == [True, True]


def test_local_sgd_averages_the_ranks_parameters_every_k_steps_and_resumes_exactly(two_rank_report):
    report = two_rank_report
    # between averages each rank is exactly the rank trained alone
    assert report["local_sgd_starts_equal"] and report["local_sgd_untouched_for_k_steps"]
    assert report["local_sgd_no_grad_counted"] == 3
    assert report["local_sgd_ranks_differed"] > 1e-3  # their rows and noise differ: a real average
    # the (k + 1)-th training call: the mean of the ranks' parameters (float32 sum of 2), then counted
    assert report["local_sgd_mean_error"] <= 1e-6 and report["local_sgd_ranks_equal"]
    assert report["local_sgd_count_after_average"] == 1
    assert "differ in their parameters" in report["local_sgd_mismatch"]
    k_mismatch = report["local_sgd_k_mismatch"]  # (1 and 2: DDP beside LocalSGD, a raw gloo error)
    assert "different average_every ([2, 3], by rank)" in k_mismatch[0]
    assert "different average_every ([1, 2], by rank)" in k_mismatch[1]
    assert "needs the module data_parallel returned" in report["bare_average"]
    assert report["lsgd_to_ddp_ranks_equal"]
    ranks = report["layer_case_errors"]
    assert ranks[0] == ranks[1] and all(len(e) == 2 for e in ranks[0])  # averaged before evaluating
    assert report["layer_case_config"] == [2, 2]
    assert report["lsgd_resumed"] == report["lsgd_full"] and report["lsgd_same_sparsity"]
    assert report["lsgd_average_every"] == 2 and report["lsgd_saved"] == [2, 2]


@pytest.fixture
def tiny_mnist_dir(tmp_path):
    import numpy as np

    from pyro_vd.datasets import write_idx
    from pyro_vd.datasets.mnist import FILES

    folder = tmp_path / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("test", 50)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        write_idx(folder / (FILES[f"{split}_images"] + ".gz"), images)
        write_idx(folder / (FILES[f"{split}_labels"] + ".gz"), labels)
    return folder


def _cli_script(tmp_path, prelude):
    """A launcher of pyro_vd's CLI that runs ``prelude`` first (on every rank)."""
    script = tmp_path / "cli.py"
    script.write_text(
        "import os, sys, time\n"
        + textwrap.dedent(prelude)
        + "\nfrom pyro_vd.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    return str(script)


def _sparse_mnist_failing_on_rank_1(tmp_path, data_dir, target, error):
    """A one-epoch two-rank ``sparse-mnist`` run into ``tmp_path / "run"`` whose rank 1 raises ``error``
    (source text) from ``target`` ("module:attribute", replaced before the run): its result and folder."""
    module, attribute = target.split(":")
    script = _cli_script(
        tmp_path,
        f"""
        import {module} as patched
        if os.environ.get("RANK") == "1":
            def fail(*args, **kwargs):
                raise {error}
            patched.{attribute} = fail
        """,
    )
    out = tmp_path / "run"
    done = _torchrun(
        script, "sparse-mnist", "--quick", "--quiet", "--epochs", "1", "--data-dir", str(data_dir),
        "--out", str(out), timeout=120, check=False,
    )  # fmt: skip
    return done, out


def test_a_rank_that_fails_ends_the_run_with_its_error(tmp_path, tiny_mnist_dir):
    """Rank 1 raising at its first evaluation: it waited in close()'s barrier while rank 0 waited in the
    checkpoint's gather, both until gloo's 30-minute timeout, its traceback unprinted. Now it exits with
    its error and torchrun stops rank 0; the run folder --overwrite was replacing is put back."""
    done, out = _sparse_mnist_failing_on_rank_1(
        tmp_path, tiny_mnist_dir, "pyro_vd.experiments.sparse_vd_mnist:test_error",
        'RuntimeError("simulated failure on rank 1")',
    )  # fmt: skip
    assert done.returncode != 0 and "RuntimeError: simulated failure on rank 1" in done.stdout + done.stderr
    assert not (out / ".overwritten").exists() or not any((out / ".overwritten").iterdir())


def _readme_commands():
    """The torchrun commands of the README's "Scaling out" section."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_readme_two_rank_run_resumes(tmp_path, tiny_mnist_dir):
    """The README's commands, on tiny data for one epoch and then a second (--resume)."""
    out = tmp_path / "run"
    commands = _readme_commands()
    assert len(commands) == 2 and "--resume" in commands[1]
    for epochs, tokens in enumerate(commands, start=1):
        assert tokens[:5] == ["torchrun", "--nproc_per_node=2", "-m", "pyro_vd", "sparse-mnist"]
        args = tokens[2:]
        args[args.index("--epochs") + 1] = str(epochs)
        args[args.index("--out") + 1] = str(out)
        done = _torchrun(*args, "--quick", "--quiet", "--data-dir", str(tiny_mnist_dir))
        assert done.stdout.count("results in") == 1  # rank 0 alone prints
    result = json.loads((out / "results.json").read_text())
    assert result["world_size"] == 2
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert result["resumes"] == [{"at_epoch": 1, "epochs": 2, "was": 1}]
    assert not (out / "run.lock").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["options"]["epochs"] == 2 and len(record["resumes"]) == 1


def test_the_example_trains_two_ranks_by_local_sgd():
    pytest.importorskip("sklearn")
    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "distributed_training.py"
    done = _torchrun(str(example), "--average-every", "4")
    assert re.search(r"^2 processes: test accuracy 0\.\d+, [\d.]+× compression$", done.stdout, flags=re.M)


_EXIT_WORKER = textwrap.dedent(
    """
    import json, pathlib, sys, threading, time, weakref

    import torch
    import torch.distributed as dist

    from pyro_vd import distributed

    session = distributed.init_from_env()
    freed = []
    if session.rank == 0:  # an all-reduce still in flight when close() queues its barrier
        t = torch.ones(4)
        ref = weakref.ref(t, lambda _: freed.append(threading.current_thread().name))
        dist.all_reduce(t, async_op=True)
        del t
    else:
        time.sleep(1.0)  # (rank 0's all-reduce waits for this one)
        dist.all_reduce(torch.ones(4))
    distributed.close()
    time.sleep(0.5)  # time for any thread that would free the tensor to do so
    if session.rank == 0:
        report = {"freed_by": freed, "alive": ref() is not None}
        pathlib.Path(sys.argv[1], "report.json").write_text(json.dumps(report))
    """
)


def test_close_leaves_nothing_for_gloo_to_free_at_exit(tmp_path):
    """A gloo barrier holds the collectives in flight when it was queued; when a gloo thread dropped it
    last, it freed their tensors, Python objects, and a script ending right after ``close()`` died in
    interpreter shutdown (SIGABRT, ``terminate called without an active exception``: about one launch in
    ten of two ranks with a DDP module, 4 of 40 measured). close() keeps the barrier to the end, so those
    tensors are freed by the main thread at exit, never by a gloo thread."""
    script = tmp_path / "exit.py"
    script.write_text(_EXIT_WORKER)
    _torchrun(str(script), str(tmp_path), timeout=60)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == {"freed_by": [], "alive": True}


def test_a_rank_whose_data_do_not_load_ends_the_run_with_its_error(tmp_path, tiny_mnist_dir):
    """Rank 1 without the files (a node whose --data-dir is its own): it returned 1 quietly and waited in
    close()'s barrier while rank 0 waited in DDP's constructor, for gloo's 30 minutes, nothing printed."""
    done, out = _sparse_mnist_failing_on_rank_1(
        tmp_path,
        tiny_mnist_dir,
        "pyro_vd.datasets:load_mnist",
        'FileNotFoundError("no MNIST files on this node")',
    )
    assert done.returncode != 0
    assert "pyro-vd sparse-mnist (rank 1): no MNIST files on this node" in done.stderr
    assert not out.exists()  # rank 0, stopped by torchrun, cleared the new run's folder


def test_an_overwrite_whose_other_rank_fails_puts_the_old_run_back(tmp_path, tiny_mnist_dir):
    """torchrun stops rank 0 with SIGTERM when rank 1 fails: the default handler ended it without the run
    folder's clean-up, the replaced run left in .overwritten/ and the next run refused."""
    out = tmp_path / "run"
    args = ["sparse-mnist", "--quick", "--quiet", "--epochs", "1", "--data-dir", str(tiny_mnist_dir)]
    subprocess.run(
        [sys.executable, "-m", "pyro_vd", *args, "--out", str(out)],
        check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    script = _cli_script(
        tmp_path,
        """
        import pyro_vd.experiments.sparse_vd_mnist as run
        evaluate = run.test_error
        def fail(*args, **kwargs):
            if os.environ.get("RANK") == "1":
                raise RuntimeError("simulated failure on rank 1")
            time.sleep(20)  # rank 0 busy when rank 1 fails: stopped by torchrun's SIGTERM
            return evaluate(*args, **kwargs)
        run.test_error = fail
        """,
    )
    done = _torchrun(script, *args, "--out", str(out), "--overwrite", timeout=120, check=False)
    assert done.returncode != 0 and "simulated failure on rank 1" in done.stdout + done.stderr
    assert "exitcode  : 143" in done.stdout + done.stderr  # rank 0 stopped by SIGTERM, as SystemExit
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_usage_error_stops_the_other_ranks_quietly(tmp_path, tiny_mnist_dir):
    """Rank 0 refused --resume without a checkpoint and left; the others, stopped by its verdict, waited in
    close()'s barrier for it and printed gloo's "Connection reset by peer" traceback."""
    out = tmp_path / "run"
    out.mkdir()
    done = _torchrun(
        "-m", "pyro_vd", "sparse-mnist", "--quick", "--quiet", "--resume", "--data-dir",
        str(tiny_mnist_dir), "--out", str(out), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "there is no checkpoint.pt" in done.stderr
    assert "[rank1]" not in done.stdout + done.stderr


def test_a_command_rank_0_runs_alone_does_not_keep_the_others_in_a_barrier(tmp_path):
    """The other ranks of ard-minibatch (not distributed) waited in close()'s barrier while rank 0 worked:
    longer than gloo's timeout (30 minutes; 5 s here), the run was killed."""
    script = _cli_script(
        tmp_path,
        """
        import datetime, functools
        import torch.distributed as dist
        dist.init_process_group = functools.partial(
            dist.init_process_group, timeout=datetime.timedelta(seconds=5)
        )
        """,
    )
    done = _torchrun(
        script, "ard-minibatch", "--quick", "--quiet", "--out", str(tmp_path / "run"), timeout=120
    )
    assert "Timed out" not in done.stderr
