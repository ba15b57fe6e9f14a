"""Plain torch networks of the seed's experiments (the deterministic architectures)."""

from collections import OrderedDict
from itertools import pairwise

from torch import nn


def mlp(sizes, activation=nn.ReLU):
    """``Flatten`` then ``fc1 … fcK`` (``Linear`` layers of ``sizes``) with ``activation`` between them."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive layer widths; got {sizes}")
    layers = [("flatten", nn.Flatten())]
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
        layers.append((f"fc{i}", nn.Linear(fan_in, fan_out)))
        if i < len(sizes) - 1:
            layers.append((f"act{i}", activation()))
    return nn.Sequential(OrderedDict(layers))


def lenet300100():
    """LeNet-300-100: 784-300-100-10 with ReLU (LeCun et al. 1998; Sparse VD's MNIST MLP)."""
    return mlp([784, 300, 100, 10])


def lenet500300():
    """LeNet-500-300: 784-500-300-10 with ReLU (the structured-pruning MLP of Neklyudov et al. 2017)."""
    return mlp([784, 500, 300, 10])


def lenet5():
    """LeNet-5, Caffe variant: conv 20@5×5, max-pool 2, conv 50@5×5, max-pool 2, fc 500, ReLU, fc 10.

    As in Caffe's ``lenet_train_test.prototxt`` (and Sparse VD), the convolutions have no nonlinearity."""
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 20, 5)),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(20, 50, 5)),
                ("pool2", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(800, 500)),
                ("act1", nn.ReLU()),
                ("fc2", nn.Linear(500, 10)),
            ]
        )
    )
