"""Data sets (read from local files; nothing is downloaded)."""

from .cifar10 import CIFAR10, load_cifar10, write_cifar10
from .fingerprint import fingerprint
from .idx import read_idx, write_idx
from .mnist import MNIST, load_mnist, resolve_data_dir

__all__ = [
    "CIFAR10",
    "MNIST",
    "fingerprint",
    "load_cifar10",
    "load_mnist",
    "read_idx",
    "resolve_data_dir",
    "write_cifar10",
    "write_idx",
]
