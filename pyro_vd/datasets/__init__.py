"""Data sets (read from local files; nothing is downloaded)."""

from .idx import read_idx, write_idx
from .mnist import MNIST, load_mnist, resolve_data_dir

__all__ = ["MNIST", "load_mnist", "read_idx", "resolve_data_dir", "write_idx"]
