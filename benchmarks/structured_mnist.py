"""
Structured Bayesian Pruning of LeNet-500-300 on MNIST: test error, input neurons kept per layer, and the
CPU inference speedup of the physically smaller network against the full-size dense one (batch 1000,
median of interleaved repeats, same run). Published anchor: 245-160-55 neurons at 1.55 % error. The same
as ``pyro-vd structured-mnist`` (every option of it works here), with the repository's MNIST as the
default.

    python benchmarks/structured_mnist.py --epochs 200 [--sparse-weights] --out results/structured
"""

from _mnist_command import run

if __name__ == "__main__":
    run("structured-mnist", "results/structured_mnist")
