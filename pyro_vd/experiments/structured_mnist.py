"""
Structured Bayesian Pruning on MNIST (Neklyudov et al. 2017): LeNet-500-300 with multiplicative
log-normal noise on the input neurons of every layer (optionally on top of Sparse VD), pruned by the
noise's signal-to-noise ratio into a physically smaller network.

Published anchor: 245-160-55 input neurons kept (of 784-500-300) at 1.55 % test error.
"""

import pathlib
import statistics
import time

import torch

from .. import distributed
from ..inference import count_neurons, prune_neurons
from .run_dir import results_json, write_atomically
from .sparse_vd_mnist import run_sparse_vd_mnist, test_error


@torch.no_grad()
def speedup(dense, small, images, repeats=30, batch_size=1000):
    """``(dense seconds, small seconds)``: medians of interleaved timings in the same run."""
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer; got {repeats!r}")
    batch = images[:batch_size]
    dense(batch), small(batch)
    dense_times, small_times = [], []
    for _ in range(repeats):
        for net, times in ((dense, dense_times), (small, small_times)):
            tick = time.perf_counter()
            net(batch)
            times.append(time.perf_counter() - tick)
    return statistics.median(dense_times), statistics.median(small_times)


def run_structured_mnist(
    data,
    *,
    epochs=200,
    sparse_weights=False,
    noise_lr=1e-2,
    seed=0,
    out=None,
    resume=False,
    repeats=30,
    device=None,
    average_every=1,
    progress=False,
    log=print,
):
    """
    Train LeNet-500-300 with neuron noise (and Sparse VD when ``sparse_weights``) by the Sparse VD
    recipe (:func:`~pyro_vd.experiments.run_sparse_vd_mnist`; the noise parameters learn at
    ``noise_lr``, 1e-2, since μ must travel from 0 to about −20 to switch a neuron off), shrink it with
    :func:`~pyro_vd.inference.prune_neurons` and time it against the full-size deterministic network.

    :returns: a dict: test error of the small network (and of the full-size pruned one, which must
        agree), input neurons kept per layer, weights of each network, the batch-1000 CPU inference
        times and their ratio, and the resumes of the training run (see
        :func:`~pyro_vd.experiments.run_sparse_vd_mnist`), and the number of processes that trained
        (``world_size``). Trained data-parallel in a process group (see
        :func:`~pyro_vd.experiments.run_sparse_vd_mnist`), the pruning and timing run on rank 0 alone
        (timings of several ranks would compete for the cores); the other ranks return ``(None, None)``.
        ``average_every`` is :func:`~pyro_vd.experiments.run_sparse_vd_mnist`'s (local SGD).
    """
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer; got {repeats!r}")
    result, _, model, guide = run_sparse_vd_mnist(
        data,
        arch="lenet500300",
        epochs=epochs,
        seed=seed,
        out=out,
        resume=resume,
        neuron_noise=True,
        sparse_weights=sparse_weights,
        noise_lr=noise_lr,
        device=device,
        average_every=average_every,
        progress=progress,
        log=log,
    )
    if not distributed.is_main_process():
        return None, None
    # timed on the CPU (the structured speedup of the seed's peers), wherever it trained
    dense = prune_neurons(model, guide, shrink_network=False).cpu()
    small = prune_neurons(model, guide).cpu()
    dense_seconds, small_seconds = speedup(dense, small, data.test_images, repeats=repeats)
    neurons = count_neurons(small)
    summary = {
        "epochs": epochs,
        "sparse_weights": sparse_weights,
        "noise_lr": noise_lr,
        "seed": seed,
        "world_size": result["world_size"],
        "average_every": result["average_every"],
        "device": result["device"],
        "test_error": test_error(small, data.test_images, data.test_labels),
        "test_error_full_size": test_error(dense, data.test_images, data.test_labels),
        "neurons_kept": neurons,
        "neurons_total": count_neurons(dense),
        "architecture_kept": "-".join(str(v) for v in neurons.values()),
        "weights_small": sum(m.weight.numel() for m in small.modules() if hasattr(m, "weight")),
        "weights_nonzero_small": sum(
            int((m.weight != 0).sum()) for m in small.modules() if hasattr(m, "weight")
        ),
        "weights_dense": sum(m.weight.numel() for m in dense.modules() if hasattr(m, "weight")),
        "dense_seconds": dense_seconds,
        "small_seconds": small_seconds,
        "speedup": dense_seconds / small_seconds,
        "train_seconds": result["train_seconds"],
        "resumes": result["resumes"],
        "history": result["history"],
    }
    if out is not None:
        path = pathlib.Path(out) / "results.json"
        write_atomically(path, results_json(summary))
    return summary, small
