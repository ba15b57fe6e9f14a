r"""
Data-parallel training on :mod:`torch.distributed`: one process per core or GPU (``torchrun``), each
training on its own shard of the data, gradients averaged by
:class:`~torch.nn.parallel.DistributedDataParallel` (DDP). This is Pyro's module route (``DESIGN.md`` §3,
trap 14): ``pyro.settings.set(module_local_params=True)``, ``loss_fn = VariationalDropoutELBO()(model,
guide)`` (an ``nn.Module``), a plain torch optimizer on ``loss_fn.parameters()``.

Why the average is the right gradient. On rank :math:`r` the model's plate scales the likelihood of the
local batch of :math:`b` rows by :math:`N/b`; the KL of the global weights is not scaled. DDP averages
over the :math:`W` ranks:

.. math::

    \frac{1}{W}\sum_r \nabla\Big(-\frac{N}{b}\sum_{i \in B_r}\log p(t_i \mid x_i, w) + \lambda\,
    \mathrm{KL}\Big) = \nabla\Big(-\frac{N}{Wb}\sum_{i \in B}\log p(t_i \mid x_i, w)\Big) +
    \lambda\,\nabla\mathrm{KL},

the single-process gradient on the global batch :math:`B = \bigcup_r B_r` of :math:`Wb` rows, with the
KL counted once. It needs equal local batches, which :func:`local_batch_size` (``b = B / W``) and
:func:`shard_indices` (``DistributedSampler`` pads every shard to the same length) give.

Randomness. Build the model and guide from the same seed on every rank (``pyro.set_rng_seed(seed)``),
then call :func:`seed_noise`: rank 0 keeps that stream, every other rank gets its own, so each rank draws
independent local-reparameterization noise and a run is reproducible given the seed and the world size
(a one-process run is exactly the run without this module). The parameters themselves come from rank 0:
DDP's constructor broadcasts them.

Example (``torchrun --nproc_per_node=2 train.py``, or ``python train.py`` for one process)::

    pyro.settings.set(module_local_params=True)
    session = distributed.init_from_env()             # gloo on CPU, nccl on CUDA; no-op alone
    pyro.set_rng_seed(0)
    model = pyro_vd.models.LeNet300100(num_data=len(x)).to(session.device)  # x, y there too
    guide = pyro_vd.AutoVariationalDropout(model)
    distributed.seed_noise(0)
    loss_fn = distributed.data_parallel(VariationalDropoutELBO()(model, guide), x[:2], y[:2])
    optimizer = pyro_vd.inference.adam(loss_fn.parameters(), lr=1e-3)  # torch's Adam, fused
    b = distributed.local_batch_size(100)
    for epoch in range(epochs):
        for index in distributed.shard_indices(len(x), epoch=epoch, seed=0).split(b):
            optimizer.zero_grad()
            loss_fn(x[index], y[index]).backward()      # gradients averaged across ranks
            optimizer.step()
    if distributed.is_main_process():
        torch.save(guide.state_dict(), "guide.pt")
    distributed.close()

See ``examples/distributed_training.py``; the ``pyro-vd`` training commands use this module under
``torchrun --nproc_per_node=N -m pyro_vd <command> ...``.

Local SGD. ``data_parallel(..., average_every=k)`` with ``k > 1`` gives a :class:`LocalSGD` module
instead of DDP: no gradient is exchanged, each rank steps on its own gradient, and every ``k`` steps
the ranks' parameters are replaced by their mean. That is one all-reduce every ``k`` steps, which is
what makes two CPU processes pay on few cores (``benchmarks/distributed.py``), at the price of another
trajectory. Call :func:`average_parameters` (a no-op for DDP and one process) before evaluating or
saving, and keep every rank's optimizer state for an exact resume.
"""

import contextlib
import dataclasses
import functools
import os

import numpy as np
import pyro
import torch
import torch.distributed as dist

from ._validation import check_bool, nonnegative_int, positive_int

__all__ = [
    "LocalSGD",
    "Session",
    "average_parameters",
    "barrier",
    "broadcast_object",
    "close",
    "create_parameters",
    "current",
    "data_parallel",
    "gather_objects",
    "init_from_env",
    "is_main_process",
    "loader",
    "local_batch_size",
    "mean_across_ranks",
    "noise_seed",
    "rank_zero_only",
    "resolve_average_every",
    "resolve_device",
    "seed_noise",
    "shard_indices",
]


@dataclasses.dataclass(frozen=True)
class Session:
    """Where this process stands: its ``rank`` among ``world_size`` processes, its ``local_rank`` on its
    machine, and the ``device`` it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self):
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self):
        """More than one process."""
        return self.world_size > 1


_DEVICE = {}  # the device init_from_env chose, for current()
# the last close()'s barrier, held until the process ends (see close())
_LAST_BARRIER = []


def _env_int(name, default):
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else int(value)
    except ValueError:
        raise ValueError(f"${name} must be an integer; got {value!r}") from None


def init_from_env(backend=None):
    """
    Join the process group that ``torchrun`` (or ``python -m torch.distributed.run``) describes in the
    environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Without
    those, or with ``WORLD_SIZE=1``, nothing is initialized: one process, rank 0.

    :param str backend: ``None`` picks ``"nccl"`` when CUDA is available (one GPU per local rank) and
        ``"gloo"`` (CPU) otherwise.
    :returns: the :class:`Session`.
    """
    if backend not in (None, "gloo", "nccl"):  # (torch's AssertionError under torchrun)
        raise ValueError(f"backend must be 'gloo', 'nccl' or None; got {backend!r}")
    if dist.is_available() and dist.is_initialized():
        return current()
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size < 1:
        raise ValueError(f"$WORLD_SIZE must be >= 1; got {world_size}")
    if world_size == 1:
        return Session()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run a single process")
    local_rank = _env_int("LOCAL_RANK", 0)
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    # the last close()'s barrier, dropped here (by this thread): it kept the old group's gloo context
    # alive, and a second group connected to its stale addresses and hung in its first collective
    _LAST_BARRIER.clear()
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend='nccl' needs CUDA, which this torch does not see; use 'gloo' on the CPU")
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://")
    _DEVICE["device"] = device
    return current()


def current():
    """The :class:`Session` of this process: from the initialized process group, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Session()
    return Session(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=_env_int("LOCAL_RANK", 0),
        device=_DEVICE.get("device", torch.device("cpu")),
    )


def resolve_device(device=None, session=None):
    """
    The device a training function runs on.

    :param device: ``None`` — the session's (``cuda:LOCAL_RANK`` under ``torchrun`` with nccl, else the
        CPU); ``"auto"`` — the session's in a process group, else CUDA when available, else the CPU;
        or a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a :class:`torch.device`).
    :raises ValueError: an unknown device, CUDA asked for where there is none, or a device other than
        the one the process group put this rank on.
    """
    session = current() if session is None else session
    if device is None:
        return session.device
    if isinstance(device, str) and device == "auto":
        if session.distributed:
            return session.device
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if isinstance(device, int) and not isinstance(device, bool):
        device = torch.device("cuda", device)  # torch's reading of a bare index
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (or a torch.device); got {device!r}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={str(device)!r} but this machine has no CUDA device torch can use")
        index = torch.cuda.current_device() if device.index is None else device.index
        if not 0 <= index < torch.cuda.device_count():
            raise ValueError(
                f"device={str(device)!r} but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        device = torch.device("cuda", index)
    elif device.type == "cpu":
        device = torch.device("cpu")  # one CPU device: "cpu:1" is the same place
    else:
        raise ValueError(f"device must be a CPU or CUDA device; got {str(device)!r}")
    if session.distributed and device != session.device:
        raise ValueError(
            f"device={str(device)!r} but the process group put rank {session.rank} on "
            f"{str(session.device)!r}; leave the device to the session (device=None or 'auto'), or hide "
            "the GPUs (CUDA_VISIBLE_DEVICES=) for a process group on the CPU (gloo)"
        )
    return device


def close(failed=False):
    """Leave the process group: after a barrier, so that no rank leaves while another still talks; with
    ``failed`` (this rank is raising or failed, or no rank has anything more to exchange) without it, so
    the rank's error ends the process at once and the launcher (torchrun) stops the others, instead of
    every rank waiting on a collective the failed one never joins.

    The barrier's handle is kept until the process ends. A gloo barrier holds the collectives still in
    flight when it was queued (the last :func:`gather_objects`, say); whoever drops the barrier last
    frees them, and their tensors belong to Python objects. Without the handle that is the gloo worker
    thread, after it has woken this one, and when the script ends at once the thread reaches for the GIL
    of an interpreter already shutting down: a run that finished every step died on ``terminate called
    without an active exception`` (SIGABRT, about one launch in ten on two CPU ranks whose DDP module
    kept the process group alive). Held here, they are freed by the main thread, at exit. Only gloo's is
    held: the race was measured there, and holding an nccl work past its shutdown was never tried on a
    GPU."""
    if dist.is_available() and dist.is_initialized():
        if not failed and dist.get_backend() == "gloo":
            work = dist.barrier(async_op=True)
            work.wait()
            _LAST_BARRIER[:] = [work]
        elif not failed:
            dist.barrier()
        dist.destroy_process_group()
    _DEVICE.clear()


def is_main_process():
    """True on rank 0 (and in a single process)."""
    return current().is_main


def rank_zero_only(fn):
    """Decorate ``fn`` so that it runs on rank 0 only (other ranks get ``None``), e.g. writing files."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


def barrier():
    """Wait for every rank (nothing in a single process)."""
    if current().distributed:
        dist.barrier()


def broadcast_object(obj, src=0):
    """``obj`` of rank ``src``, on every rank (any picklable object)."""
    if not current().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj):
    """The list of every rank's ``obj``, in rank order, on every rank."""
    session = current()
    if not session.distributed:
        return [obj]
    boxes = [None] * session.world_size
    dist.all_gather_object(boxes, obj)
    return boxes


def mean_across_ranks(value):
    """The mean of a number over the ranks (e.g. a loss to log), as a float, on every rank."""
    session = current()
    if not session.distributed:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=session.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / session.world_size


# ------------------------------------------------------------------------------------------ seeding
def noise_seed(seed, rank, epoch=0):
    """The seed of rank ``rank``'s noise stream (``rank > 0``), from ``epoch`` on (a run resumed with
    another number of processes reseeds there): independent of every other ``(seed, rank, epoch)``."""
    # (0.5 was read as seed 0; numpy's SeedSequence splits an integer >= 2**32 into 32-bit words, so
    # (2**32, 1, 0) and (0, 1, 1) gave one seed)
    entropy = [
        nonnegative_int(value, name, below=2**32)
        for name, value in (("seed", seed), ("rank", rank), ("epoch", epoch))
    ]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_shuffling(seed, shuffle):
    """The sampler's seed and shuffle, checked (seed=None was a raw TypeError inside torch's sampler,
    1.5 a RuntimeError, and shuffle="no" shuffled)."""
    return nonnegative_int(seed, "seed"), check_bool(shuffle, "shuffle")  # (np.int64: a raw TypeError)


def seed_noise(seed, session=None):
    """
    Give each rank its own random stream, after the model and guide were built from ``seed`` on every
    rank: rank 0 keeps the stream of ``pyro.set_rng_seed(seed)`` (so a single process runs exactly as
    without this call), every other rank is reseeded with :func:`noise_seed` (torch, numpy, python).
    """
    session = current() if session is None else session
    seed_of_rank = noise_seed(seed, max(session.rank, 1))  # checks seed on every rank, rank 0 too
    if session.rank > 0:
        pyro.set_rng_seed(seed_of_rank % 2**32)


# --------------------------------------------------------------------------------------------- data
def local_batch_size(global_batch, session=None):
    """The batch of each rank, ``global_batch / world_size``: the global batch is what a single process
    would use, so hyperparameters keep their meaning. It must divide evenly (equal local batches are what
    make the averaged gradient the global batch's)."""
    session = current() if session is None else session
    positive_int(global_batch, "the batch size")
    if global_batch % session.world_size:
        raise ValueError(
            f"the batch of {global_batch} cannot be split evenly over {session.world_size} processes; "
            "give a batch size that the number of processes divides"
        )
    return int(global_batch) // session.world_size  # (a numpy integer failed in .split(b))


def shard_indices(n, *, epoch, seed=0, shuffle=True, session=None):
    """
    This rank's row indices of a data set of ``n`` rows for ``epoch``: a
    :class:`~torch.utils.data.DistributedSampler` with ``set_epoch(epoch)``, so that the ranks' shards
    are disjoint (but for the padding that makes them the same length) and reshuffled every epoch, the
    same way on every rank. Index in-memory tensors with them (``x[index]``), batch by
    ``.split(local_batch_size(B))``.
    """
    from torch.utils.data import DistributedSampler

    nonnegative_int(n, "n")
    nonnegative_int(epoch, "epoch")
    seed, shuffle = _check_shuffling(seed, shuffle)
    session = current() if session is None else session
    sampler = DistributedSampler(
        range(n), num_replicas=session.world_size, rank=session.rank, shuffle=shuffle, seed=seed
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def loader(dataset, batch_size, *, seed=0, shuffle=True, session=None, **kwargs):
    """
    A :class:`~torch.utils.data.DataLoader` over this rank's shard of ``dataset``, with local batches of
    ``batch_size / world_size`` (``batch_size`` is the global batch). Call
    ``loader.sampler.set_epoch(epoch)`` at the start of every epoch, as for any ``DistributedSampler``.
    ``kwargs`` go to the ``DataLoader`` (``num_workers``, ``pin_memory``, …).
    """
    from torch.utils.data import DataLoader, DistributedSampler

    seed, shuffle = _check_shuffling(seed, shuffle)
    session = current() if session is None else session
    sampler = DistributedSampler(
        dataset, num_replicas=session.world_size, rank=session.rank, shuffle=shuffle, seed=seed
    )
    return DataLoader(dataset, batch_size=local_batch_size(batch_size, session), sampler=sampler, **kwargs)


# ---------------------------------------------------------------------------------------- the model
@contextlib.contextmanager
def _rng_untouched(device):
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def create_parameters(loss_fn, *args, **kwargs):
    """
    Run the guide of the ELBO module ``loss_fn`` once on ``args`` (e.g. two rows of data) so that its
    lazily created parameters exist, without touching any random stream: afterwards the training draws
    what it would have drawn had the first step created them.
    """
    guide = getattr(loss_fn, "guide", None)
    if guide is None:
        raise TypeError(f"loss_fn must be an ELBO module (elbo(model, guide)); got {type(loss_fn).__name__}")
    with _rng_untouched(current().device), torch.no_grad():
        guide(*args, **kwargs)


def data_parallel(loss_fn, *args, average_every=1, **kwargs):
    """
    The ELBO module ``loss_fn`` ready for data-parallel training: its guide's lazy parameters created
    (:func:`create_parameters` with ``args``), then wrapped for the process group. In a single process
    ``loss_fn`` comes back unwrapped. Build the optimizer on the result's ``parameters()`` afterwards.

    :param int average_every: ``1`` (the default): :class:`~torch.nn.parallel.DistributedDataParallel`,
        whose constructor broadcasts every parameter from rank 0 and whose backward averages the
        gradients, so every step is the global batch's step. ``k > 1``: :class:`LocalSGD`, which
        broadcasts the parameters the same way, lets every rank take ``k`` steps on its own gradients
        and then averages the parameters: one all-reduce every ``k`` steps instead of one a step. Call
        :func:`average_parameters` before evaluating or saving.

    Needs ``pyro.settings.set(module_local_params=True)``: with Pyro's global parameter store the
    parameters would not be the module's own.
    """
    if not pyro.settings.get("module_local_params"):
        raise RuntimeError(
            "data_parallel needs Pyro's module-local parameters: call "
            "pyro.settings.set(module_local_params=True) before building the model and guide"
        )
    _check_average_every(average_every)
    create_parameters(loss_fn, *args, **kwargs)
    session = current()
    if not session.distributed:
        return loss_fn
    # (1 on one rank and 2 on another built DDP beside LocalSGD: torch's "inconsistent params" on one,
    # gloo's "connection closed" on the other)
    _check_same_average_every(average_every)
    if average_every > 1:
        return LocalSGD(loss_fn, average_every)
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [session.device] if session.device.type == "cuda" else None
    return DistributedDataParallel(loss_fn, device_ids=device_ids)


def _check_average_every(average_every):
    if not isinstance(average_every, int) or isinstance(average_every, bool) or average_every < 1:
        raise ValueError(
            f"average_every must be a positive integer (1: average the gradients every step); got "
            f"{average_every!r}"
        )


def resolve_average_every(average_every, session=None):
    """``average_every`` checked (a positive integer, else a ``ValueError``) and as it takes effect: 1
    in a single process, where there is nothing to average (what a run records)."""
    _check_average_every(average_every)
    session = current() if session is None else session
    return average_every if session.distributed else 1


# ------------------------------------------------------------------------------------------ local SGD
def _all_reduce_mean(tensors, world_size):
    """Replace each tensor by its mean over the ranks: one all-reduce per (device, dtype) group."""
    groups = {}
    for tensor in tensors:
        groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    with torch.no_grad():
        for group in groups.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.all_reduce(flat)  # gloo has no AVG: the sum, then / world_size
            flat /= world_size
            for tensor, value in zip(group, flat.split([t.numel() for t in group]), strict=True):
                tensor.copy_(value.view_as(tensor))


def _broadcast(tensors):
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def _check_same_average_every(average_every):
    """A ValueError on every rank unless all ask for the same ``average_every`` (5 and 6 paired their
    averages silently, one rank's after step 5 with the other's after step 6; 2 and 3 crashed in gloo at
    the end of an epoch)."""
    asked = gather_objects(int(average_every))
    if len(set(asked)) > 1:
        raise ValueError(
            f"the ranks asked for different average_every ({asked}, by rank): every rank must average "
            "after as many steps, or their averages pair up across different steps"
        )


class LocalSGD(torch.nn.Module):
    r"""
    Data-parallel training by periodic parameter averaging (local SGD; torch's
    ``PeriodicModelAverager`` without a warm-up, i.e. its "post-local SGD" from the first step): every
    rank steps its own optimizer on the gradient of its own shard, and every ``average_every`` steps
    the parameters :math:`\phi_r` of the :math:`W` ranks are replaced by their mean,

    .. math::

        \phi \leftarrow \frac{1}{W}\sum_{r=1}^{W} \phi_r .

    Between two averages nothing is sent, so the communication is one all-reduce of the parameters
    every ``average_every`` steps instead of one of the gradients every step (DDP); where that
    all-reduce is a large share of a step (gloo on a few CPU cores) this is the faster route. It is
    not the same trajectory: with ``average_every = 1`` and plain SGD it would be, with Adam it is not
    (each rank keeps its own moments, as torch's model averagers do), and with ``k > 1`` each rank's
    steps between averages see only its own rows. Measure the result you care about against DDP's
    (``benchmarks/distributed.py`` reports both).

    Wraps an ELBO module ``module`` as DDP does (``.module``); the constructor broadcasts rank 0's
    parameters and buffers. A training call (module in training mode, gradients enabled) counts a step,
    and the call after every ``average_every``-th one averages first, i.e. right after that step's
    ``optimizer.step()``. So make one training call per optimizer step (with gradient accumulation,
    average_every counts the micro-batches), and as many on every rank: the average is a collective call,
    which a rank that skips it leaves the others waiting for. Evaluation, saving, or anything that reads
    one rank's parameters as the run's needs :meth:`average_parameters` (or :func:`average_parameters`)
    first, which also starts the count again: the ranks' parameters differ between averages.
    Floating-point buffers are averaged with the parameters, other buffers are rank 0's.
    """

    def __init__(self, module, average_every):
        super().__init__()
        _check_average_every(average_every)
        session = current()
        if not session.distributed:
            raise RuntimeError("LocalSGD needs a process group (init_from_env under torchrun)")
        shapes = [(name, tuple(t.shape), str(t.dtype)) for name, t in _state_tensors(module)]
        # the guides' averaging too: whether average_parameters gathers the averages' names must agree
        shapes.append(("averaging", _averaging_settings(module)))
        if len({repr(s) for s in gather_objects(shapes)}) > 1:
            raise ValueError(
                "the ranks' modules differ in their parameters (names, shapes or dtypes) or their guides' "
                "averaging: build the same model and guide, and create their parameters, on every rank"
            )
        _check_same_average_every(average_every)
        self.module = module
        self.average_every = average_every
        self.world_size = session.world_size
        self.steps_since_average = 0
        _broadcast([t for _, t in _state_tensors(module)])

    def forward(self, *args, **kwargs):
        if self.training and torch.is_grad_enabled():
            if self.steps_since_average >= self.average_every:
                self.average_parameters()
            self.steps_since_average += 1
        return self.module(*args, **kwargs)

    def average_parameters(self):
        """Every rank's parameters (and floating-point buffers) replaced by their mean over the ranks,
        now, and so are the iterate averages of its guides (``averaging``); the count of steps starts
        again. Every rank must call it."""
        tensors = [t for _, t in _state_tensors(self.module)]
        _all_reduce_mean([t for t in tensors if t.is_floating_point()], self.world_size)
        _broadcast([t for t in tensors if not t.is_floating_point()])
        averages = _iterate_averages(self.module)
        if averages is not None:
            # every rank must hold the same averages (names and shapes) for one flat all-reduce to line
            # them up; a rank that reset or applied its averages alone would mix them up (their step
            # counts may differ, e.g. a head one rank's batches skipped: a plain mean then)
            keys = [(name, tuple(mean.shape), str(mean.dtype)) for name, mean in averages]
            if len({repr(k) for k in gather_objects(keys)}) > 1:
                raise ValueError(
                    "the ranks' iterate averages differ (one rank holds an average another does not): "
                    "call apply_average() or reset_average() on every rank, or on none"
                )
            _all_reduce_mean([mean for _, mean in averages], self.world_size)
        self.steps_since_average = 0


def _averaging_settings(module):
    """η of every variational dropout guide in ``module`` (None: it does not average)."""
    from .guides.auto_variational_dropout import vd_guides

    return [guide.averaging for _, guide in vd_guides(module)]


def _iterate_averages(module):
    """``(name, running mean)`` of the iterate averages of the variational dropout guides in ``module``
    that average (None where none does: the guides' settings, the same on every rank). An average is
    linear in the iterates, with the same weights on every rank (the ranks take the same steps), so the
    mean of the ranks' averages is the average of the averaged iterates (left per rank, they parted by
    up to 0.05, and ``apply_average()`` gave each rank other parameters)."""
    from .guides.auto_variational_dropout import vd_guides

    guides = [(path, guide) for path, guide in vd_guides(module) if guide.averaging is not None]
    if not guides:
        return None
    return [
        (f"{path}.{name}", mean) for path, guide in guides for name, mean in guide._iterate_average_means()
    ]


def _state_tensors(module):
    return [*module.named_parameters(), *((n, b) for n, b in module.named_buffers() if b is not None)]


def average_parameters(loss_fn):
    """
    Make the parameters of every rank equal, now: :meth:`LocalSGD.average_parameters` for a
    :class:`LocalSGD` module; nothing for DDP (its parameters never differ) or a single process. Every
    rank must call it, e.g. at the end of each epoch before evaluating or saving.
    """
    from torch.nn.parallel import DistributedDataParallel

    loss_fn = getattr(loss_fn, "_orig_mod", loss_fn)  # torch.compile's wrapper
    if isinstance(loss_fn, LocalSGD):
        loss_fn.average_parameters()
    elif current().distributed and not isinstance(loss_fn, DistributedDataParallel):
        raise TypeError(
            "average_parameters needs the module data_parallel returned (LocalSGD or DDP), not "
            f"{type(loss_fn).__name__}: the ranks' copies of a bare module are never averaged"
        )
