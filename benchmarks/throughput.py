"""
Seconds per epoch of LeNet-300-100 training, batch 100, on 2 CPU threads, every variant in one run:

* ``svi``: LeNet300100 + AutoVariationalDropout + VariationalDropoutELBO + LRT handler, ``SVI.step`` with
  ``pyro.optim.Adam({"lr": 1e-3})`` (one torch Adam per parameter, as Pyro builds it);
* ``svi_fused``: the same with ``pyro.optim.Adam({"lr": 1e-3, "fused": True})``;
* ``svi_fusedadam``: the same with ``pyro_vd.inference.FusedAdam({"lr": 1e-3})`` (one fused torch step
  for all parameters, gradients released after it);
* ``module``: Pyro's module route (``module_local_params=True``, ``loss_fn = elbo(model, guide)``,
  ``torch.optim.Adam(loss_fn.parameters(), fused=True)``), what the training commands run;
* ``hand``: the same Sparse VD math hand-written in plain PyTorch (θ and log σ² per weight, LRT
  forward, Molchanov KL, loss = N · mean cross-entropy + KL, ``torch.optim.Adam``), the issue's baseline;
* ``hand_fused``: the hand-written version with ``torch.optim.Adam(fused=True)``;
* ``plain``: the deterministic network (cross-entropy, ``torch.optim.Adam``).

Ratios come from the same run (variants interleaved, so that machine noise hits all alike; medians of
repeats). Data: random MNIST-shaped tensors (throughput does not depend on the values).

``--memory``: each variant in a fresh subprocess; the peak heap memory a training run adds (model,
guide, gradients, optimizer state, saved activations), in MiB, sampled when the loss is ready, after the
backward pass and after the optimizer step.

    python benchmarks/throughput.py [--steps 200] [--repeats 5] [--threads 2] [--memory]
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import pyro
import torch
import torch.nn.functional as F
from torch import nn

import pyro_vd

N_TRAIN, BATCH = 60000, 100
DEVICE = torch.device("cpu")  # --device
MOLCHANOV = (0.63576, 1.87320, 1.48695)


class HandWrittenSparseVDLinear(nn.Module):
    """Sparse VD linear layer as one would write it by hand (Molchanov et al. 2017)."""

    def __init__(self, fan_in, fan_out):
        super().__init__()
        self.theta = nn.Parameter(torch.randn(fan_out, fan_in) / math.sqrt(fan_in))
        self.log_sigma2 = nn.Parameter(torch.full((fan_out, fan_in), -10.0))
        self.bias = nn.Parameter(torch.zeros(fan_out))

    def forward(self, x):
        mean = F.linear(x, self.theta, self.bias)
        var = F.linear(x * x, self.log_sigma2.exp())
        return mean + (var + 1e-8).sqrt() * torch.randn_like(mean)

    def kl(self):
        k1, k2, k3 = MOLCHANOV
        log_alpha = self.log_sigma2 - torch.log(self.theta * self.theta + 1e-16)
        return (k1 * torch.sigmoid(-(k2 + k3 * log_alpha)) + 0.5 * F.softplus(-log_alpha)).sum()


class HandWrittenSparseVDNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                HandWrittenSparseVDLinear(784, 300),
                HandWrittenSparseVDLinear(300, 100),
                HandWrittenSparseVDLinear(100, 10),
            ]
        )

    def forward(self, x):
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

    def kl(self):
        return sum(layer.kl() for layer in self.layers)


# Each builder returns step(x, y); the first call (lazy parameters, optimizer state) is not timed.
def build_svi(optim):
    pyro.clear_param_store()
    model = pyro_vd.models.LeNet300100(num_data=N_TRAIN).to(DEVICE)
    guide = pyro_vd.guides.AutoVariationalDropout(model)
    svi = pyro.infer.SVI(model, guide, optim, pyro_vd.inference.VariationalDropoutELBO())
    return pyro_vd.poutine.local_reparameterization(svi.step)


def build_module():
    with pyro.settings.context(module_local_params=True):
        model = pyro_vd.models.LeNet300100(num_data=N_TRAIN).to(DEVICE)
        guide = pyro_vd.guides.AutoVariationalDropout(model)
        loss_fn = pyro_vd.inference.VariationalDropoutELBO()(model, guide)
        lrt = pyro_vd.poutine.local_reparameterization()
        optimizer = []

    @pyro.settings.context(module_local_params=True)
    def step(x, y):
        with lrt:
            loss = loss_fn(x, y)
        if not optimizer:  # the guide's parameters exist after the first call
            optimizer.append(torch.optim.Adam(loss_fn.parameters(), lr=1e-3, fused=True))
        optimizer[0].zero_grad()
        loss.backward()
        optimizer[0].step()

    return step


def build_torch(net, sparse_vd, fused=False):
    net = net.to(DEVICE)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=fused)

    def step(x, y):
        optimizer.zero_grad()
        out = net(x)
        loss = N_TRAIN * F.cross_entropy(out, y) + net.kl() if sparse_vd else F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()

    return step


BUILDERS = {
    "svi": lambda: build_svi(pyro.optim.Adam({"lr": 1e-3})),
    "svi_fused": lambda: build_svi(pyro.optim.Adam({"lr": 1e-3, "fused": True})),
    "svi_fusedadam": lambda: build_svi(pyro_vd.inference.FusedAdam({"lr": 1e-3})),
    "module": build_module,
    "hand": lambda: build_torch(HandWrittenSparseVDNet(), True),
    "hand_fused": lambda: build_torch(HandWrittenSparseVDNet(), True, fused=True),
    "plain": lambda: build_torch(pyro_vd.models.architectures.lenet300100(), False),
}


def make_batches(steps):
    return [
        (torch.rand(BATCH, 1, 28, 28, device=DEVICE), torch.randint(0, 10, (BATCH,), device=DEVICE))
        for _ in range(steps + 1)
    ]


def synchronize():
    """Wait for the GPU's queue (device work is asynchronous: a host clock alone would time launches)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timing(args):
    batches = make_batches(args.steps)
    steps = {}
    for name in args.variants or BUILDERS:
        steps[name] = BUILDERS[name]()
        steps[name](*batches[-1])  # set-up outside the timing
        steps[name](*batches[-1])  # on CUDA: the kernels' first launches (loading, autotuning) too
    times = {name: [] for name in steps}
    for _ in range(args.repeats):  # interleaved
        for name, step in steps.items():
            synchronize()
            start = time.perf_counter()
            for x, y in batches[:-1]:
                step(x, y)
            synchronize()
            times[name].append(time.perf_counter() - start)
    per_epoch = N_TRAIN // BATCH / args.steps
    return {name: statistics.median(t) * per_epoch for name, t in times.items()}


class _Heap:
    """Bytes in use on the C heap (glibc's ``mallinfo2``: small blocks + mmapped ones), where torch's CPU
    allocator takes tensors from; the peak of samples taken when the loss is ready (every saved
    activation alive), after the backward pass (every gradient alive) and after the optimizer step."""

    def __init__(self):
        import ctypes

        class MallInfo2(ctypes.Structure):
            names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
            _fields_ = [(n, ctypes.c_size_t) for n in names.split()]

        self._mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
        self._mallinfo2.restype = MallInfo2
        self.peak = 0

    def in_use(self):
        info = self._mallinfo2()
        return info.uordblks + info.hblkhd

    def sample(self):
        self.peak = max(self.peak, self.in_use())


def peak_memory(name, steps):
    """Run in a subprocess: the peak heap memory a training run of ``steps`` steps adds, in MiB."""
    batches = make_batches(steps)
    if DEVICE.type == "cuda":  # the CUDA caching allocator's own count of the bytes tensors hold
        synchronize()
        before = torch.cuda.memory_allocated(DEVICE)
        torch.cuda.reset_peak_memory_stats(DEVICE)
        step = BUILDERS[name]()
        for x, y in batches:
            step(x, y)
        synchronize()
        return (torch.cuda.max_memory_allocated(DEVICE) - before) / 2**20
    heap = _Heap()
    backward = torch.Tensor.backward

    def sampled_backward(tensor, *args, **kwargs):
        heap.sample()
        backward(tensor, *args, **kwargs)
        heap.sample()

    torch.Tensor.backward = sampled_backward
    before = heap.in_use()
    step = BUILDERS[name]()
    for x, y in batches:
        step(x, y)
        heap.sample()
    return (heap.peak - before) / 2**20


def memory(args):
    result = {}
    for name in args.variants or BUILDERS:
        command = [sys.executable, __file__, "--_peak", name, "--steps", str(args.steps)]
        command += ["--threads", str(args.threads), "--device", str(DEVICE)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result[name] = float(out.strip().splitlines()[-1])
    return result


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200, help="steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="also measure the peak memory per variant")
    parser.add_argument("--variants", nargs="+", choices=list(BUILDERS), help="a subset (default: all)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--_peak", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global DEVICE
    try:
        DEVICE = pyro_vd.distributed.resolve_device(args.device)
    except ValueError as error:
        parser.error(f"--device: {error}")
    pyro.set_rng_seed(0)
    if args._peak:
        print(peak_memory(args._peak, args.steps))
        return
    epoch = timing(args)
    result = {"seconds_per_epoch": epoch, "threads": args.threads, "torch": torch.__version__}
    result["device"] = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"
    print(
        f"LeNet-300-100, batch {BATCH}, {args.threads} threads, {result['device']}, "
        f"median of {args.repeats} × {args.steps} steps"
    )
    print("| variant | s / epoch | / hand | / hand_fused | / plain |\n|---|---:|---:|---:|---:|")
    for name, seconds in epoch.items():
        ratios = [seconds / epoch[b] if b in epoch else math.nan for b in ("hand", "hand_fused", "plain")]
        print(f"| {name} | {seconds:.2f} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    print("targets: svi / hand ≤ 1.0; module / hand ≤ 0.8; module / plain ≤ 2.5")
    if args.memory:
        result["peak_mib"] = memory(args)
        kind = "peak CUDA MiB" if DEVICE.type == "cuda" else "peak heap MiB"
        print(f"| variant | {kind} | / hand |\n|---|---:|---:|")
        for name, mib in result["peak_mib"].items():
            print(f"| {name} | {mib:.1f} | {mib / result['peak_mib'].get('hand', math.nan):.2f} |")
        print("target: module / hand ≤ 1.1")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
