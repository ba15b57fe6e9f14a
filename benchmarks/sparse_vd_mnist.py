"""
The Sparse VD recipe for LeNet-300-100 on MNIST (Molchanov et al. 2017: 1.92 % error at 68× fewer
weights): the test error of the pruned network, per-layer pruned %, overall compression, with
results.json, the plots and a checkpoint per epoch (for --resume) in --out. The same as
``pyro-vd sparse-mnist`` (every option of it works here), with the repository's MNIST as the default.

    python benchmarks/sparse_vd_mnist.py --epochs 200 --threads 1 --out results/sparse
"""

from _mnist_command import run

if __name__ == "__main__":
    run("sparse-mnist", "results/sparse_vd_mnist")
