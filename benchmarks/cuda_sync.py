"""
Host synchronizations per training step on a CUDA device, for each route of ``throughput.py``
(``svi``, ``module``, ``hand``, ``plain``): a step that waits for the GPU (``.item()``, ``bool(tensor)``,
a copy to the host) keeps the CPU from queueing the next kernels while the GPU works. Counted with
``torch.cuda.set_sync_debug_mode("warn")``; each distinct place a sync comes from is printed once.

    python benchmarks/cuda_sync.py [--steps 5] [--no-validation]
"""

import argparse
import collections
import warnings

import pyro
import throughput
import torch


def count(name, steps):
    step = throughput.BUILDERS[name]()
    batches = throughput.make_batches(steps)
    step(*batches[-1])  # set-up (lazy parameters, optimizer state) is not counted
    torch.cuda.synchronize()
    places = collections.Counter()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for x, y in batches[:-1]:
                step(x, y)
        for warning in caught:
            if "synchronizing" not in str(warning.message):
                continue
            places[(warning.filename, warning.lineno)] += 1
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return places


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--no-validation", action="store_true", help="pyro.enable_validation(False)")
    parser.add_argument("--variants", nargs="+", default=["svi", "module", "hand", "plain"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("this counts synchronizations with a GPU; torch sees no CUDA device here")
    throughput.DEVICE = torch.device("cuda")
    if args.no_validation:
        pyro.enable_validation(False)
    print(f"host synchronizations per step, {args.steps} steps, validation {not args.no_validation}")
    for name in args.variants:
        places = count(name, args.steps)
        total = sum(places.values()) / args.steps
        print(f"{name}: {total:.1f} per step")
        for (filename, lineno), n in places.most_common():
            print(f"    {n / args.steps:.1f} × {filename}:{lineno}")


if __name__ == "__main__":
    main()
