"""
Sparse variational dropout on MNIST (Molchanov et al. 2017): LeNet-300-100 or LeNet-5 trained with
pyro_vd's guide, ELBO and local reparameterization, pruned at log α > 3.

The recipe (``DESIGN.md`` §2) for ``epochs = 200``: weights θ ~ N(0, 0.01²), log σ² = −10, Adam with
learning rate 1e-3 decayed linearly to 0 over the second half, batch 100, KL weight 0 for the first 5
epochs then linear to 1 at epoch 20. A shorter run scales the schedule's epochs by ``epochs / 200``.

Resuming with another ``epochs`` (e.g. more) continues on the schedule of the new total from the epoch
the checkpoint holds: the learning rate at epoch ``e`` is ``lr × factor(e; epochs)`` whatever the saved
optimizer held (a schedule over the old total may have decayed to 0), and the KL weight follows the new
warm-up but never drops below the weight already reached. Every resume is recorded in
``result["resumes"]``; the options that define the trajectory (architecture, KL method, seed, learning
rates, batch size, noise, number of training images) must not change (:class:`RunDirError`).
"""

import json
import math
import pathlib
import time

import pyro
import torch
from tqdm.auto import tqdm

from ..guides import AutoVariationalDropout
from ..inference import (
    VariationalDropoutELBO,
    deterministic,
    linear_warmup,
    load_checkpoint,
    neuron_sparsity,
    save_checkpoint,
    sparsity,
)
from ..models import LeNet5, LeNet300100, LeNet500300
from ..poutine import local_reparameterization
from .run_dir import RunDirError

ARCHITECTURES = {"lenet300100": LeNet300100, "lenet500300": LeNet500300, "lenet5": LeNet5}
RECIPE_EPOCHS = 200
#: The options a resume must keep: they define the trajectory the checkpoint is part of.
FIXED_ON_RESUME = (
    "arch",
    "kl_method",
    "seed",
    "batch_size",
    "lr",
    "noise_lr",
    "neuron_noise",
    "sparse_weights",
    "n_train",
)


class _EpochLambdaLR(pyro.optim.PyroLRScheduler):
    """
    ``pyro.optim.LambdaLR`` stepped once per epoch, whose restored state takes its learning rate from
    this run's ``lr_factor`` at the restored epoch rather than from the saved optimizer: the saved one
    followed a schedule over the saved number of epochs, which may have decayed to 0.
    """

    def __init__(self, optim_args, lr_factor):
        args = {"optimizer": torch.optim.Adam, "optim_args": optim_args, "lr_lambda": lr_factor}
        super().__init__(torch.optim.lr_scheduler.LambdaLR, args)
        self.lr_factor = lr_factor

    def set_state(self, state_dict):
        rescheduled = {}
        for name, state in state_dict.items():
            scheduler, optimizer = dict(state["scheduler"]), dict(state["optimizer"])
            factor = self.lr_factor(scheduler["last_epoch"])
            lrs = [base * factor for base in scheduler["base_lrs"]]
            scheduler["_last_lr"] = lrs
            optimizer["param_groups"] = [
                {**group, "lr": lr} for group, lr in zip(optimizer["param_groups"], lrs, strict=True)
            ]
            rescheduled[name] = {"scheduler": scheduler, "optimizer": optimizer}
        super().set_state(rescheduled)

    def lr_factor_used(self):
        """The factor of the learning rates the optimizers step with now (``None`` before any step)."""
        groups = [g for s in self.optim_objs.values() for g in s.optimizer.param_groups]
        return max(g["lr"] / g["initial_lr"] for g in groups) if groups else None


@torch.no_grad()
def test_error(net, images, labels, batch_size=1000):
    """Error rate (in [0, 1]) of a deterministic network on a labelled set."""
    wrong = 0
    for start in range(0, len(images), batch_size):
        logits = net(images[start : start + batch_size])
        wrong += int((logits.argmax(-1) != labels[start : start + batch_size]).sum())
    return wrong / len(images)


def run_sparse_vd_mnist(
    data,
    *,
    arch="lenet300100",
    epochs=RECIPE_EPOCHS,
    batch_size=100,
    lr=1e-3,
    kl_method="molchanov",
    threshold=3.0,
    seed=0,
    out=None,
    resume=False,
    neuron_noise=False,
    sparse_weights=True,
    noise_lr=None,
    progress=False,
    log=print,
):
    """
    Train, prune and evaluate. ``data`` is a :class:`~pyro_vd.datasets.MNIST`. With ``out`` a folder,
    a checkpoint is written after every epoch (``resume=True`` continues from it) and ``results.json``
    at the end. ``neuron_noise=True`` adds structured dropout on every layer's input neurons (see
    :mod:`pyro_vd.experiments.structured_mnist`); ``sparse_weights=False`` keeps the weights
    point-estimated. ``noise_lr`` is the learning rate of the noise parameters (default: ``lr``).
    ``progress=True`` shows a tqdm bar over the epochs (the log lines go through ``tqdm.write``).

    :returns: a dict with the test error of the pruned deterministic network, the sparsity report, the
        per-epoch history and the seconds spent.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {tuple(ARCHITECTURES)}; got {arch!r}")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}")
    noise_lr = lr if noise_lr is None else noise_lr
    for name, value in (("lr", lr), ("noise_lr", noise_lr)):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    if resume and out is None:
        raise ValueError("resume=True needs the folder of the run to resume (out)")
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    n_train = len(data.train_images)
    model = ARCHITECTURES[arch](num_data=n_train, neuron_noise=neuron_noise, sparse_weights=sparse_weights)
    generator = torch.Generator().manual_seed(seed)
    guide = AutoVariationalDropout(
        model,
        kl_method=kl_method,
        init_theta=lambda site: 0.01 * torch.randn(site["fn"].shape(), generator=generator),
        init_log_sigma2=-10.0,
    )
    scale = epochs / RECIPE_EPOCHS
    decay_start = epochs / 2

    def lr_factor(epoch):
        return 1.0 if epoch < decay_start else max(0.0, (epochs - epoch) / (epochs - decay_start))

    # the neuron noise's μ must travel from 0 to about −20 to switch a neuron off
    optim = _EpochLambdaLR(lambda name: {"lr": noise_lr if "noise_" in name else lr}, lr_factor)
    elbo = VariationalDropoutELBO()
    svi = pyro.infer.SVI(model, guide, optim, elbo)
    config = {
        "arch": arch,
        "kl_method": kl_method,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "noise_lr": noise_lr,
        "neuron_noise": neuron_noise,
        "sparse_weights": sparse_weights,
        "n_train": n_train,
        "epochs": epochs,
    }
    start_epoch, history, seconds, resumes, kl_floor = 0, [], 0.0, [], 0.0
    checkpoint = pathlib.Path(out) / "checkpoint.pt" if out is not None else None
    if resume:
        if not checkpoint.is_file():
            raise RunDirError(f"resume=True but there is no checkpoint at {str(checkpoint)!r}")
        guide(data.train_images[:batch_size], data.train_labels[:batch_size])  # create the parameters
        try:
            state = load_checkpoint(checkpoint, optim=optim, model=model, guide=guide, elbo=elbo)
        except ValueError as error:  # corrupt, or saved by another configuration
            raise RunDirError(f"cannot resume: {error}") from error
        start_epoch, extra = state["epoch"], state["extra"]
        previous = (extra.get("config") or {}).get("epochs")
        _check_resume(checkpoint, extra.get("config"), config, start_epoch)
        history, seconds = extra["history"], extra["seconds"]
        resumes = [*extra.get("resumes", []), {"at_epoch": start_epoch, "epochs": epochs, "was": previous}]
        kl_floor = elbo.kl_weight or 0.0
        log(
            f"resumed from {checkpoint} after epoch {start_epoch}"
            + (f" (now {epochs} epochs instead of {previous})" if previous not in (None, epochs) else "")
        )
    steps = math.ceil(n_train / batch_size)
    bar = tqdm(total=epochs, initial=start_epoch, desc=arch, unit="epoch", disable=not progress)
    if progress and log is print:
        log = tqdm.write
    for epoch in range(start_epoch, epochs):
        tick = time.perf_counter()
        elbo.kl_weight = max(kl_floor, linear_warmup(epoch, 5 * scale, 20 * scale))
        order = torch.randperm(n_train)
        data_term = kl = 0.0
        with local_reparameterization():
            for step in range(steps):
                index = order[step * batch_size : (step + 1) * batch_size]
                svi.step(data.train_images[index], data.train_labels[index])
                terms = elbo.last_terms
                data_term += terms["data"] / steps
                kl = terms["kl"] if terms["kl"] is not None else kl
        lr_used = lr * optim.lr_factor_used()
        optim.step()  # the learning-rate schedule, once per epoch
        seconds += time.perf_counter() - tick
        report = sparsity(guide, threshold)
        error = test_error(deterministic(model, guide, threshold), data.test_images, data.test_labels)
        neurons = neuron_sparsity(guide) if neuron_noise else None
        history.append(
            {
                "epoch": epoch + 1,
                "kl_weight": elbo.kl_weight,
                "lr": lr_used,
                "data_term": data_term,
                "kl": kl,
                "test_error": error,
                "compression": report.compression,
                **({"neurons_kept": {k: v.kept for k, v in neurons.layers.items()}} if neurons else {}),
            }
        )
        log(
            f"epoch {epoch + 1:3d}/{epochs}  kl weight {elbo.kl_weight:.2f}  test error {100 * error:.2f} %  "
            f"compression {report.compression:.1f}×"
            + (f"  neurons {'-'.join(str(v.kept) for v in neurons.layers.values())}" if neurons else "")
            + f"  ({seconds:.0f} s)"
        )
        bar.update(1)
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                optim=optim,
                epoch=epoch + 1,
                model=model,
                guide=guide,
                elbo=elbo,
                extra={"history": history, "seconds": seconds, "config": config, "resumes": resumes},
            )
    bar.close()
    report = sparsity(guide, threshold)
    result = {
        "arch": arch,
        "epochs": epochs,
        "kl_method": kl_method,
        "threshold": threshold,
        "seed": seed,
        "neuron_noise": neuron_noise,
        "sparse_weights": sparse_weights,
        "test_error": history[-1]["test_error"] if history else None,
        "sparsity": report.to_dict(),
        "train_seconds": seconds,
        "resumes": resumes,
        "history": history,
    }
    if out is not None:
        (pathlib.Path(out) / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result, report, model, guide


def _check_resume(checkpoint, saved, config, start_epoch):
    """Refuse to resume a checkpoint with options that would change its trajectory."""
    if saved is None:  # a checkpoint from before the options were recorded
        return
    for name in FIXED_ON_RESUME:
        if name in saved and saved[name] != config[name]:
            raise RunDirError(
                f"{str(checkpoint)!r} was trained with {name}={saved[name]!r}; "
                f"it cannot be resumed with {name}={config[name]!r}"
            )
    if config["epochs"] < start_epoch:
        raise RunDirError(
            f"{str(checkpoint)!r} already holds {start_epoch} epochs; "
            f"epochs={config['epochs']} would leave nothing to train"
        )
