"""
Forward + backward time of kl_log_uniform per 10⁶ elements, for each method, and the ratio
exact / molchanov (target ≤ 3×). Ratios are taken within one run: these machines are noisy.

    python benchmarks/kl.py                 # timing table (CPU, 2 threads; CUDA too if present)
    python benchmarks/kl.py --accuracy      # errors against scipy quadrature, float32 ulps
    python benchmarks/kl.py --additive      # the ELBO's fused KL sum from (θ, log σ²) against composed ops

``--additive``: forward + backward of :func:`~pyro_vd.distributions.kl_log_uniform_additive_sum` (Molchanov)
over the three weight tensors of LeNet-300-100, against the same sum composed from torch operations as one
writes it by hand (log α = log σ² − log(θ² + 1e-16), sigmoid, softplus, autograd), interleaved, medians.
"""

import argparse
import math
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from pyro_vd.distributions import KL_METHODS, kl_log_uniform, kl_log_uniform_additive_sum
from pyro_vd.distributions.kl_log_uniform import MOLCHANOV_K1, MOLCHANOV_K2, MOLCHANOV_K3


def time_method(method, log_alpha, repeats, sync):
    def step():
        x = log_alpha.detach().requires_grad_()
        kl_log_uniform(x, method).sum().backward()
        sync()

    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(args):
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"forward+backward of kl_log_uniform, {args.n:,} elements, median of {args.repeats}; "
        f"torch {torch.__version__}, {args.threads} CPU threads\n"
    )
    print("| device | dtype | " + " | ".join(f"{m} (ms)" for m in KL_METHODS) + " | exact / molchanov |")
    print("|---|---|" + "---:|" * (len(KL_METHODS) + 1))
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for dtype in (torch.float32, torch.float64):
            generator = torch.Generator().manual_seed(0)
            # log α spread over the range training visits (Sparse VD clips at ±8 to ±10).
            log_alpha = (torch.randn(args.n, generator=generator, dtype=dtype) * 4.0 - 2.0).to(device)
            per_million = {
                m: time_method(m, log_alpha, args.repeats, sync) * 1e6 / args.n * 1e3 for m in KL_METHODS
            }
            ratio = per_million["exact"] / per_million["molchanov"]
            cells = " | ".join(f"{per_million[m]:.2f}" for m in KL_METHODS)
            print(f"| {device} | {str(dtype).removeprefix('torch.')} | {cells} | {ratio:.2f}× |")


def accuracy(args):
    from scipy import integrate
    from scipy.special import dawsn

    def reference(t):
        x = math.exp(-0.5 * t) / math.sqrt(2.0)
        value = integrate.quad(dawsn, 0.0, min(x, 4.0), epsabs=1e-13, epsrel=1e-13, limit=400)[0]
        if x > 4.0:
            value += integrate.quad(
                lambda v: dawsn(math.exp(v)) * math.exp(v),
                math.log(4.0),
                math.log(x),
                epsabs=1e-13,
                epsrel=1e-13,
                limit=400,
            )[0]
        return 2.0 * value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        grid = np.linspace(-20.0, 20.0, 4001)
        ref = np.array([reference(t) for t in grid])
    t64 = torch.tensor(grid)
    print("errors against scipy quadrature of Dawson's integral, log α ∈ [-20, 20], 4001 points:")
    for method, (low, high) in {"exact": (-20, 20), "molchanov": (-10, 10), "kingma": (-10, 0)}.items():
        inside = (grid >= low) & (grid <= high)
        err = np.abs(kl_log_uniform(t64, method).numpy() - ref)[inside]
        print(
            f"  {method:9s} on [{low}, {high}]: max |error| {err.max():.3g} at log α = "
            f"{grid[inside][err.argmax()]:.2f}"
        )
    dense = torch.linspace(-20.0, 20.0, 200001, dtype=torch.float32)
    exact64 = kl_log_uniform(dense.double(), "exact").numpy()
    exact32 = kl_log_uniform(dense, "exact").double().numpy()
    ulp = np.spacing(np.abs(exact64).astype(np.float32)).astype(np.float64)
    ulps = np.abs(exact32 - exact64) / ulp
    print(
        f"  exact float32 vs float64 at the same 200001 float32 inputs: max {ulps.max():.2f} ulp, "
        f"mean {ulps.mean():.2f} ulp"
    )


def additive(args):
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    tensors = []
    for shape in [(300, 784), (100, 300), (10, 100)]:  # LeNet-300-100
        theta = torch.randn(shape, generator=generator) / math.sqrt(shape[1])
        log_sigma2 = torch.rand(shape, generator=generator) * 15.0 - 10.0  # log α from about −7 to +13
        tensors.append((theta.requires_grad_(), log_sigma2.requires_grad_()))

    def composed(theta, log_sigma2):
        log_alpha = log_sigma2 - torch.log(theta * theta + 1e-16)
        kl = MOLCHANOV_K1 * torch.sigmoid(-(MOLCHANOV_K2 + MOLCHANOV_K3 * log_alpha))
        return (kl + 0.5 * F.softplus(-log_alpha)).sum()

    variants = {"fused": kl_log_uniform_additive_sum, "composed": composed}
    times = {name: [] for name in variants}
    for repeat in range(args.repeats + 3):
        for name, fn in variants.items():  # interleaved
            start = time.perf_counter()
            for _ in range(20):
                sum(fn(theta, log_sigma2) for theta, log_sigma2 in tensors).backward()
            if repeat >= 3:  # warm-up
                times[name].append((time.perf_counter() - start) / 20)
    fused, plain = (statistics.median(times[name]) * 1e3 for name in variants)
    print(
        f"KL sum of LeNet-300-100's weights (266,200 elements), forward + backward, {args.threads} threads, "
        f"median of {args.repeats} × 20: fused {fused:.3f} ms, composed {plain:.3f} ms, "
        f"fused / composed = {fused / plain:.2f}"
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="elements per call")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accuracy", action="store_true", help="measure errors instead of time")
    parser.add_argument(
        "--additive", action="store_true", help="time the ELBO's fused KL sum against composed operations"
    )
    args = parser.parse_args()
    if args.additive:
        additive(args)
    else:
        accuracy(args) if args.accuracy else timing(args)


if __name__ == "__main__":
    main()
