"""
Data-parallel Sparse VD with torch.distributed: every process trains on its shard of each epoch, and
DistributedDataParallel averages the gradients, so the run follows the single-process recipe on the
global batch (see ``pyro_vd.distributed``). Pyro's module route: module-local parameters, the ELBO as
an ``nn.Module``, a plain torch optimizer.

Data: scikit-learn's bundled 8×8 digits (no download).

    torchrun --nproc_per_node=2 examples/distributed_training.py     # two processes (gloo on CPU,
                                                                     # nccl with a GPU per process)
    python examples/distributed_training.py                          # one process, the same result
    torchrun --nproc_per_node=2 examples/distributed_training.py --average-every 4   # local SGD

With ``--average-every K`` (K > 1) the processes exchange nothing for K steps and then average their
parameters (``distributed.LocalSGD``): less communication, another trajectory.
"""

import argparse

import pyro
import torch
from sklearn.datasets import load_digits
from torch import nn

from pyro_vd import (
    AutoVariationalDropout,
    VariationalDropoutELBO,
    bayesianize,
    deterministic,
    distributed,
    linear_warmup,
    local_reparameterization,
    sparsity,
)

SEED, EPOCHS, BATCH = 0, 40, 100  # BATCH is the global batch: each of W processes takes BATCH / W
parser = argparse.ArgumentParser()
parser.add_argument("--average-every", type=int, default=1, help="1: DDP; K > 1: local SGD")
args = parser.parse_args()

session = distributed.init_from_env()  # reads torchrun's RANK / WORLD_SIZE; a plain run is rank 0 of 1
torch.set_num_threads(1)
digits = load_digits()
device = session.device  # cuda:LOCAL_RANK under torchrun with nccl (a GPU per process), else the CPU
X = torch.tensor(digits.data, dtype=torch.float32, device=device) / 16.0
y = torch.tensor(digits.target, device=device)
X_train, y_train, X_test, y_test = X[:1400], y[:1400], X[1400:], y[1400:]

with pyro.settings.context(module_local_params=True):  # parameters live on the modules (DDP sees them)
    pyro.set_rng_seed(SEED)  # the same model and guide on every rank...
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    model = bayesianize(net, num_data=len(X_train))
    guide = AutoVariationalDropout(model)
    distributed.seed_noise(SEED)  # ...but each rank its own noise
    elbo = VariationalDropoutELBO()
    # creates the guide's lazy parameters, then wraps in DDP (which broadcasts rank 0's parameters)
    loss_fn = distributed.data_parallel(
        elbo(model, guide), X_train[:2], y_train[:2], average_every=args.average_every
    )
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    local_batch = distributed.local_batch_size(BATCH)
    with local_reparameterization():
        for epoch in range(EPOCHS):
            elbo.kl_weight = linear_warmup(epoch, 0, 20)
            # this rank's rows, reshuffled every epoch (a DistributedSampler with set_epoch)
            shard = distributed.shard_indices(len(X_train), epoch=epoch, seed=SEED).to(device)
            for index in shard.split(local_batch):
                optimizer.zero_grad()
                # DDP: gradients averaged over the ranks; local SGD: this rank's own
                loss_fn(X_train[index], y_train[index]).backward()
                optimizer.step()
    distributed.average_parameters(loss_fn)  # local SGD: one model again (DDP, one process: no-op)

    sparse_net = deterministic(model, guide)  # the same on every rank
    accuracy = (sparse_net(X_test).argmax(-1) == y_test).float().mean().item()
    report = sparsity(guide)

if distributed.is_main_process():  # rank 0 alone reports (and would write files)
    processes = f"{session.world_size} process{'es' if session.distributed else ''}"
    print(f"{processes}: test accuracy {accuracy:.3f}, {report.compression:.1f}× compression")
assert accuracy > 0.85 and report.compression > 3, (accuracy, report.compression)
distributed.close()
