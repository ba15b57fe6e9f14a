"""CIFAR-10 from its "python version" files (Krizhevsky 2009). Nothing is downloaded: give the folder."""

import pickle
from typing import NamedTuple

import numpy as np
import torch

from .mnist import check_labels, check_pixels, resolve_data_dir

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SUBDIR = "cifar-10-batches-py"


class CIFAR10(NamedTuple):
    """Images as float32 in [0, 1] of shape (N, 3, 32, 32); labels as int64 of shape (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds (dicts, lists, bytes, numbers and numpy arrays) and nothing
    else: a pickle naming any other global is refused instead of run."""

    _ALLOWED = {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    } | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never does")
        return super().find_class(module, name)


def _read_batch(path):
    try:
        with open(path, "rb") as handle:
            batch = _BatchUnpickler(handle, encoding="bytes").load()
    except OSError:
        raise
    except Exception as error:  # a corrupt pickle raises nearly anything (EOFError, KeyError, …)
        raise ValueError(f"{str(path)!r} is not a CIFAR-10 python batch: {error!r}") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{str(path)!r} is not a CIFAR-10 python batch (no dict inside)")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{str(path)!r} has no 'data' and 'labels' entries")
    try:
        data, labels = np.asarray(data), np.asarray(labels)
    except ValueError as error:  # ragged lists
        raise ValueError(f"{str(path)!r}: 'data' or 'labels' is not an array: {error}") from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1 or len(data) != len(labels):
        raise ValueError(
            f"{str(path)!r}: data of shape {data.shape} and labels of shape {labels.shape}; "
            "expected (N, 3072) and (N,)"
        )
    return check_pixels(path, data), check_labels(path, labels)


def load_cifar10(data_dir=None):
    """
    Load CIFAR-10 from the folder of the python version (``data_batch_1`` … ``data_batch_5`` and
    ``test_batch``, pickled dicts with ``data`` — uint8 rows of 3072 = 3 × 32 × 32, channel-major — and
    ``labels``). ``data_dir`` may be that folder or its parent holding ``cifar-10-batches-py/``; default
    ``$PYRO_VD_DATA`` (or its ``cifar-10-batches-py/`` subfolder).

    :returns: :class:`CIFAR10` with float32 images in [0, 1], shape (N, 3, 32, 32), and int64 labels.
    """
    data_dir = resolve_data_dir(data_dir, SUBDIR)
    if not (data_dir / TEST_BATCH).is_file() and (data_dir / SUBDIR).is_dir():
        data_dir = data_dir / SUBDIR
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 files {missing} are missing from {str(data_dir)!r}")
    train = [_read_batch(data_dir / name) for name in TRAIN_BATCHES]
    test = _read_batch(data_dir / TEST_BATCH)

    def images(rows):
        return torch.from_numpy(rows.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)

    return CIFAR10(
        images(np.concatenate([d for d, _ in train])),
        torch.from_numpy(np.concatenate([labels for _, labels in train])),
        images(test[0]),
        torch.from_numpy(test[1]),
    )


def write_cifar10(data_dir, train, test):
    """Write ``(data, labels)`` arrays as the six CIFAR-10 python batches (the train set split in five);
    for tests and for converting other data to the format."""
    import pathlib

    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    data, labels = np.asarray(train[0], np.uint8), np.asarray(train[1])
    for name, index in zip(TRAIN_BATCHES, np.array_split(np.arange(len(data)), 5), strict=True):
        with open(data_dir / name, "wb") as handle:
            pickle.dump({b"data": data[index], b"labels": labels[index].tolist()}, handle)
    with open(data_dir / TEST_BATCH, "wb") as handle:
        pickle.dump({b"data": np.asarray(test[0], np.uint8), b"labels": np.asarray(test[1]).tolist()}, handle)
