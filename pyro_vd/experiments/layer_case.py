"""
The seed's "layer case": one dropout rate α per layer, learned by variational dropout, with α clipped at
1 (Kingma et al. 2015), clipped at 1 with the KL divided by 3 (the seed: "the KL divergence was divided
by 3 to improve performance"), or free, against binary dropout (p = 0.5), Gaussian dropout (α = 1) and
no dropout, on the fully connected 3FC(1000) network (input-1000-1000-1000-10). Test error per epoch
for every method, and the learned α of each layer over training ("do the α stabilize?", measured by
:func:`alpha_drift`).

The seed ran it on CIFAR-10; here MNIST is the default (``dataset="cifar10"`` takes the CIFAR-10 python
files, see :func:`~pyro_vd.datasets.load_cifar10`).
"""

import math
import time
import types

import pyro
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..baselines import train_maximum_likelihood, with_dropout
from ..guides import AutoVariationalDropout
from ..inference import VariationalDropoutELBO, adam, deterministic
from ..models import BayesianMLP
from ..models.architectures import mlp
from ..poutine import local_reparameterization
from .sparse_vd_mnist import test_error

METHODS = (
    "VD α ≤ 1 (Kingma)",
    "VD α ≤ 1, KL / 3",
    "VD α free",
    "binary dropout",
    "Gaussian dropout",
    "no dropout",
)
#: Short names of :data:`METHODS` (``pyro-vd layer-case --methods``).
METHOD_KEYS = dict(
    zip(("clipped", "clipped-kl3", "free", "binary", "gaussian", "none"), METHODS, strict=True)
)
#: The VD methods: (α clipped at 1, weight of the KL term).
VD_SETTINGS = {"VD α ≤ 1 (Kingma)": (True, 1.0), "VD α ≤ 1, KL / 3": (True, 1 / 3), "VD α free": (False, 1.0)}
HIDDEN = (1000, 1000, 1000)


@pyro.settings.context(module_local_params=True)  # Pyro's module route (DESIGN.md §3, trap 14)
def _train_vd(data, sizes, *, clip, kl_weight, epochs, batch_size, lr, seed, evaluate, average_every):
    session = distributed.current()
    local_batch = distributed.local_batch_size(batch_size, session)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)  # the same model and guide on every rank
    n = len(data.train_images)
    model = BayesianMLP(sizes, num_data=n).to(data.train_images.device)
    # α per layer, starting at α = 1 (the variance of binary dropout with p = 0.5)
    guide = AutoVariationalDropout(
        model, granularity="layer", init_log_alpha=0.0, max_log_alpha=0.0 if clip else None, init_seed=seed
    )
    distributed.seed_noise(seed, session)  # each rank its own noise; rank 0 keeps the stream
    loss_fn = VariationalDropoutELBO(kl_weight=kl_weight)(model, guide)
    train_fn = distributed.data_parallel(
        loss_fn, data.train_images[:2], data.train_labels[:2], average_every=average_every
    )
    optimizer = adam(loss_fn.parameters(), lr=lr)  # fused where torch has the kernel
    steps = math.ceil(n / batch_size)
    for epoch in range(1, epochs + 1):
        order = _epoch_order(n, epoch - 1, seed, session)
        with local_reparameterization():
            for step in range(steps):
                index = order[step * local_batch : (step + 1) * local_batch]
                optimizer.zero_grad()
                train_fn(data.train_images[index], data.train_labels[index]).backward()
                optimizer.step()
        distributed.average_parameters(train_fn)  # local SGD: one model again, to evaluate
        alphas = [float(guide.get_log_alpha(name).reshape(-1)[0].exp()) for name in guide.site_names]
        # all weights kept: the layer case does not prune
        evaluate(epoch, deterministic(model, guide, threshold=math.inf), alphas)


def _epoch_order(n, epoch, seed, session):
    """One process: a permutation from the global stream, as always; several: this rank's shard."""
    if session.distributed:
        return distributed.shard_indices(n, epoch=epoch, seed=seed, session=session)
    return torch.randperm(n)


def _train_baseline(data, sizes, kind, *, epochs, batch_size, lr, seed, evaluate, average_every):
    session = distributed.current()
    torch.manual_seed(seed)
    net = with_dropout(mlp(sizes), kind, p=0.5).to(data.train_images.device)
    images, labels = data.train_images, data.train_labels
    if session.distributed:
        # Data-parallel: each rank trains on its shard (fixed across epochs, reshuffled within) with the
        # local batch; DDP broadcasts rank 0's initialization and averages the gradients (LocalSGD:
        # the parameters, every average_every steps and before every evaluation).
        from torch.nn.parallel import DistributedDataParallel

        shard = distributed.shard_indices(len(images), epoch=0, seed=seed, session=session)
        images, labels = images[shard], labels[shard]
        distributed.seed_noise(seed, session)  # each rank its own dropout masks
        net = distributed.LocalSGD(net, average_every) if average_every > 1 else DistributedDataParallel(net)

    def callback(epoch, net):
        distributed.average_parameters(net)
        evaluate(epoch, getattr(net, "module", net))

    train_maximum_likelihood(
        net,
        images,
        labels,
        epochs=epochs,
        batch_size=distributed.local_batch_size(batch_size, session),
        lr=lr,
        callback=callback,
    )


def run_layer_case(
    data,
    *,
    epochs=10,
    hidden=HIDDEN,
    batch_size=100,
    lr=1e-3,
    methods=METHODS,
    seed=0,
    device=None,
    average_every=1,
    progress=False,
    log=print,
):
    """
    Train every method of ``methods`` for ``epochs`` on ``data`` (an MNIST or CIFAR10 tuple), on
    ``device`` (``None``: the process group's, the CPU for one process; ``"auto"``: CUDA when available;
    see :func:`pyro_vd.distributed.resolve_device`).

    In a process group (:func:`pyro_vd.distributed.init_from_env`, e.g. under ``torchrun``) every method
    trains data-parallel: each rank on its shard with local batches of ``batch_size / W``, gradients
    averaged by DDP, rank 0 alone logging; a single process trains as it always did.
    ``average_every=k > 1`` trains the ranks by local SGD instead (:class:`pyro_vd.distributed.LocalSGD`:
    the parameters averaged every ``k`` steps and before every evaluation).

    :returns: ``{"methods": {name: {"test_error": [per epoch], "alpha": [per epoch: [per layer]],
        "seconds": s}}, "config": {...}, "world_size": W}`` (``alpha`` only for the VD methods).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    average_every = distributed.resolve_average_every(average_every)
    device = distributed.resolve_device(device)
    names = ("train_images", "train_labels", "test_images", "test_labels")
    if any(getattr(data, name).device != device for name in names):
        data = types.SimpleNamespace(**{name: getattr(data, name).to(device) for name in names})
    n_inputs = data.train_images[0].numel()
    n_classes = int(max(data.train_labels.max(), data.test_labels.max())) + 1
    sizes = [n_inputs, *hidden, max(n_classes, 2)]
    config = {"sizes": sizes, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    config["average_every"] = average_every
    result = {"methods": {}, "config": config}
    result["world_size"] = distributed.current().world_size
    result["device"] = str(device)
    if not distributed.is_main_process():  # rank 0 alone prints
        progress, log = False, _silent
    bar = tqdm(total=epochs * len(methods), unit="epoch", disable=not progress, desc="layer case")
    write = tqdm.write if progress and log is print else log
    for name in methods:
        record = {"test_error": [], "alpha": []}

        def evaluate(epoch, net, alphas=None, name=name, record=record):
            error = test_error(net, data.test_images, data.test_labels)
            record["test_error"].append(error)
            if alphas is not None:
                record["alpha"].append(alphas)
            extra = "" if alphas is None else "  α " + " ".join(f"{a:.3g}" for a in alphas)
            write(f"{name}: epoch {epoch}/{epochs}  test error {100 * error:.2f} %{extra}")
            bar.update(1)

        tick = time.perf_counter()
        if name in VD_SETTINGS:
            clip, kl_weight = VD_SETTINGS[name]
            _train_vd(
                data,
                sizes,
                clip=clip,
                kl_weight=kl_weight,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                evaluate=evaluate,
                average_every=average_every,
            )
        else:
            kind = {"binary dropout": "binary", "Gaussian dropout": "gaussian", "no dropout": "none"}[name]
            _train_baseline(
                data,
                sizes,
                kind,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                evaluate=evaluate,
                average_every=average_every,
            )
        record["seconds"] = time.perf_counter() - tick
        if not record["alpha"]:
            del record["alpha"]
        result["methods"][name] = record
    bar.close()
    return result


def _silent(*args, **kwargs):
    pass


def alpha_drift(alpha, window=10):
    """
    How far the α of each layer still move: the change of log₁₀ α per epoch over the last ``window``
    epochs (fewer if the run is shorter), per layer. A stable α has a drift near 0; the free α of the
    seed's question grow at a steady rate.

    :param alpha: α per epoch and layer, ``[[α_layer1, ...], ...]`` (a record's ``"alpha"``).
    :returns: a list, one float per layer (NaN for a run of one epoch).
    """
    import numpy as np

    values = np.log10(np.asarray(alpha, dtype=float))
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"alpha must be a non-empty list of per-layer lists; got shape {values.shape}")
    if len(values) < 2:
        return [math.nan] * values.shape[1]
    span = min(int(window), len(values) - 1)
    return ((values[-1] - values[-1 - span]) / span).tolist()


#: What makes runs of different methods comparable (:func:`merge_layer_case`); ``world_size`` is the
#: result's own key, the others are its ``config``'s.
SHARED_CONFIG = ("sizes", "epochs", "batch_size", "lr", "dataset", "seed", "world_size")


def merge_layer_case(results):
    """One result from runs of different methods made apart (e.g. one process each): their methods in
    the order of :data:`METHODS`, refused unless they share :data:`SHARED_CONFIG`."""
    if not results:
        raise ValueError("results is empty")

    def shared(result):
        config = {**result["config"], "world_size": result.get("world_size", 1)}
        return {key: config.get(key) for key in SHARED_CONFIG}

    first = shared(results[0])
    methods = {}
    for result in results:
        if shared(result) != first:
            raise ValueError(f"configurations differ: {shared(result)} against {first}")
        overlap = set(result["methods"]) & set(methods)
        if overlap:
            raise ValueError(f"methods {sorted(overlap)} appear in more than one result")
        methods.update(result["methods"])
    config = {key: value for key, value in first.items() if key != "world_size"}
    ordered = {name: methods[name] for name in METHODS if name in methods}
    return {"methods": ordered, "config": config, "world_size": first["world_size"]}


def format_layer_case(result):
    """A Markdown table: final and best test error of each method, the final α per layer and their
    drift (:func:`alpha_drift`: log₁₀ α per epoch over the last 10 epochs)."""
    lines = [
        "| method | test error (last epoch) | best | final α per layer | drift of log₁₀ α per epoch | s |",
        "|---|---:|---:|---|---|---:|",
    ]
    for name, record in result["methods"].items():
        errors = record["test_error"]
        alpha = drift = "–"
        if "alpha" in record:
            alpha = " / ".join(f"{a:.3g}" for a in record["alpha"][-1])
            drift = " / ".join("–" if math.isnan(v) else f"{v:+.3f}" for v in alpha_drift(record["alpha"]))
        last, best = 100 * errors[-1], 100 * min(errors)
        lines.append(
            f"| {name} | {last:.2f} % | {best:.2f} % | {alpha} | {drift} | {record['seconds']:.0f} |"
        )
    return "\n".join(lines)


def layer_case_figures(result):
    """``{"test_error": Figure, "alpha_trajectories": Figure}``: test error per epoch of every method,
    and the α of each layer of the VD methods over training (the second only when a VD method ran)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from ..plots import plot_alpha_trajectories

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, record in result["methods"].items():
        errors = record["test_error"]
        ax.plot(np.arange(1, len(errors) + 1), [100 * e for e in errors], "o-", ms=2, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error, %")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figures = {"test_error": fig}
    trajectories = {k: v["alpha"] for k, v in result["methods"].items() if "alpha" in v}
    if trajectories:
        figures["alpha_trajectories"] = plot_alpha_trajectories(trajectories)
    return figures
