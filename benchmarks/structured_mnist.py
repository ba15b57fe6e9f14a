"""
Structured Bayesian Pruning of LeNet-500-300 on MNIST: test error, input neurons kept per layer, and the
CPU inference speedup of the physically smaller network against the full-size dense one (batch 1000,
median of interleaved repeats, same run). Published anchor: 245-160-55 neurons at 1.55 % error.

    python benchmarks/structured_mnist.py --epochs 200 [--sparse-weights] --out results/structured
"""

import argparse
import pathlib

import torch

from pyro_vd.datasets import load_mnist
from pyro_vd.experiments.structured_mnist import run_structured_mnist

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--sparse-weights", action="store_true", help="Sparse VD on the weights as well")
    parser.add_argument("--noise-lr", type=float, default=1e-2)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else None)
    parser.add_argument("--out", default="results/structured_mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_mnist(args.data_dir)
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    summary, small = run_structured_mnist(
        data,
        epochs=args.epochs,
        sparse_weights=args.sparse_weights,
        noise_lr=args.noise_lr,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
        repeats=args.repeats,
    )
    print()
    print(small)
    total = "-".join(str(v) for v in summary["neurons_total"].values())
    print(
        f"\ntest error {100 * summary['test_error']:.2f} % (full-size pruned network "
        f"{100 * summary['test_error_full_size']:.2f} %); neurons {summary['architecture_kept']} of {total}"
    )
    print(
        f"weights {summary['weights_small']} ({summary['weights_nonzero_small']} nonzero) of "
        f"{summary['weights_dense']}"
    )
    print(
        f"inference, batch 1000, median of {args.repeats}: dense {1e3 * summary['dense_seconds']:.2f} ms, "
        f"small {1e3 * summary['small_seconds']:.2f} ms, speedup {summary['speedup']:.2f}×"
    )


if __name__ == "__main__":
    main()
