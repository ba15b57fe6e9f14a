"""
The Sparse VD recipe for LeNet-300-100 on MNIST (Molchanov et al. 2017: 1.92 % error at 68× fewer
weights). Prints the test error of the pruned network, per-layer pruned %, overall compression, and
writes results.json (and a checkpoint per epoch, for --resume) into --out.

    python benchmarks/sparse_vd_mnist.py --epochs 200 --data-dir ../shared/data/mnist --out results/sparse
"""

import argparse
import pathlib

import torch

from pyro_vd.datasets import load_mnist
from pyro_vd.experiments.sparse_vd_mnist import ARCHITECTURES, RECIPE_EPOCHS, run_sparse_vd_mnist

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=RECIPE_EPOCHS)
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), default="lenet300100")
    parser.add_argument("--kl-method", default="molchanov")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else None)
    parser.add_argument("--out", default="results/sparse_vd_mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_mnist(args.data_dir)
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    result, report, _, _ = run_sparse_vd_mnist(
        data,
        arch=args.arch,
        epochs=args.epochs,
        kl_method=args.kl_method,
        seed=args.seed,
        out=args.out,
        resume=args.resume,
    )
    print()
    print(report)
    print(
        f"\ntest error {100 * result['test_error']:.2f} % at {report.compression:.1f}× compression "
        f"after {result['epochs']} epochs ({result['train_seconds'] / 60:.1f} min of training)"
    )
    print(f"results: {args.out}/results.json")


if __name__ == "__main__":
    main()
