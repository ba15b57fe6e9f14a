"""
Seconds per epoch of LeNet-300-100 training, batch 100, on 2 CPU threads:

(a) pyro_vd: LeNet300100 + AutoVariationalDropout + VariationalDropoutELBO + pyro SVI + LRT handler;
(b) the same Sparse VD math hand-written in plain PyTorch (θ and log σ² per weight, LRT forward,
    Molchanov KL, loss = N · mean cross-entropy + KL, torch.optim.Adam);
(c) the plain deterministic network (cross-entropy, Adam).

Ratios a/b (target ≤ 1.0) and a/c (target ≤ 2.5) come from the same run. Data: random MNIST-shaped
tensors (throughput does not depend on the values).

    python benchmarks/throughput.py [--steps 200] [--repeats 3] [--threads 2]
"""

import argparse
import json
import math
import statistics
import time

import pyro
import torch
import torch.nn.functional as F
from torch import nn

import pyro_vd

N_TRAIN, BATCH = 60000, 100
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


def run_pyro_vd(batches):
    pyro.clear_param_store()
    model = pyro_vd.models.LeNet300100(num_data=N_TRAIN)
    guide = pyro_vd.guides.AutoVariationalDropout(model)
    svi = pyro.infer.SVI(
        model, guide, pyro.optim.Adam({"lr": 1e-3}), pyro_vd.inference.VariationalDropoutELBO()
    )
    with pyro_vd.poutine.local_reparameterization():
        svi.step(*batches[0])  # set-up (lazy parameters) outside the timing
        start = time.perf_counter()
        for x, y in batches:
            svi.step(x, y)
    return time.perf_counter() - start


def run_hand_written(batches):
    net = HandWrittenSparseVDNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad()
        loss = N_TRAIN * F.cross_entropy(net(x), y) + net.kl()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def run_plain(batches):
    net = pyro_vd.models.architectures.lenet300100()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200, help="steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    batches = [(torch.rand(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))) for _ in range(args.steps)]
    runners = {"a_pyro_vd": run_pyro_vd, "b_hand_written": run_hand_written, "c_plain": run_plain}
    times = {name: [] for name in runners}
    for _ in range(args.repeats):  # interleaved, so that machine noise hits all three alike
        for name, run in runners.items():
            times[name].append(run(batches))
    steps_per_epoch = N_TRAIN // BATCH
    epoch = {name: statistics.median(t) / args.steps * steps_per_epoch for name, t in times.items()}
    result = {
        "seconds_per_epoch": epoch,
        "a_over_b": epoch["a_pyro_vd"] / epoch["b_hand_written"],
        "a_over_c": epoch["a_pyro_vd"] / epoch["c_plain"],
        "threads": args.threads,
        "torch": torch.__version__,
    }
    print(
        f"LeNet-300-100, batch {BATCH}, {args.threads} threads, median of {args.repeats} × {args.steps} steps"
    )
    print("| variant | s / epoch |\n|---|---:|")
    for name, seconds in epoch.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"a/b = {result['a_over_b']:.2f} (target ≤ 1.0), a/c = {result['a_over_c']:.2f} (target ≤ 2.5)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
