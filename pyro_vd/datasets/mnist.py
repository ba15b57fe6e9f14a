"""MNIST from the four IDX files (LeCun et al. 1998). Nothing is downloaded: give the folder."""

import hashlib
import os
import pathlib
from typing import NamedTuple

import numpy as np
import torch

from .idx import read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
ENV_VAR = "PYRO_VD_DATA"
IMAGE_SIZE = (28, 28)
N_CLASSES = 10


class MNIST(NamedTuple):
    """Images as float32 in [0, 1] of shape (N, 1, 28, 28); labels as int64 of shape (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def resolve_data_dir(data_dir=None, subdir=None):
    """``data_dir``, else ``$PYRO_VD_DATA`` (plus ``subdir`` if that folder has it); an error if neither,
    if the folder does not exist (:class:`FileNotFoundError`) or is a file (:class:`ValueError`)."""
    if data_dir is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise ValueError(f"no data folder given: pass data_dir (CLI: --data-dir) or set ${ENV_VAR}")
        data_dir = pathlib.Path(root)
        if subdir and (data_dir / subdir).is_dir():
            data_dir = data_dir / subdir
    data_dir = pathlib.Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise ValueError(f"data folder {str(data_dir)!r} is a file; expected the folder holding the data")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {str(data_dir)!r} does not exist")
    return data_dir


def check_labels(path, labels, n_classes=N_CLASSES):
    """``labels`` as int64, if they are whole numbers in ``0 .. n_classes - 1``; else a ValueError
    naming ``path`` (shared by the MNIST and CIFAR-10 readers)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "uif":
        raise ValueError(
            f"{str(path)!r}: labels of type {labels.dtype}; expected integers 0..{n_classes - 1}"
        )
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
        raise ValueError(
            f"{str(path)!r}: fractional or non-finite labels; expected integers 0..{n_classes - 1}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > n_classes - 1):
        raise ValueError(
            f"{str(path)!r}: labels from {labels.min():g} to {labels.max():g}; "
            f"expected integers 0..{n_classes - 1}"
        )
    return labels.astype(np.int64)


def check_pixels(path, images):
    """``images`` as uint8, if they are integers in 0..255 (the bytes the formats store); else a
    ValueError naming ``path``. Floats are refused rather than guessed at (already scaled to [0, 1]?)."""
    images = np.asarray(images)
    if images.dtype.kind not in "ui":
        raise ValueError(
            f"{str(path)!r}: pixels of type {images.dtype}; expected unsigned bytes 0..255 (uint8)"
        )
    if images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"{str(path)!r}: pixels from {images.min()} to {images.max()}; expected 0..255")
    return images.astype(np.uint8)


def _find(data_dir, stem):
    """The file of ``stem`` in ``data_dir``: ``stem.gz`` or ``stem``; where both are there they must hold
    the same data (a ValueError otherwise: which one is meant cannot be guessed)."""
    compressed, plain = data_dir / (stem + ".gz"), data_dir / stem
    if compressed.is_file() and plain.is_file():
        # read as read_idx reads them (gzip by its magic bytes, whatever the name); a damaged file is
        # read_idx's ValueError naming it
        first, second = read_idx(compressed), read_idx(plain)
        if first.dtype != second.dtype or not np.array_equal(first, second):
            raise ValueError(
                f"{str(data_dir)!r} holds both {compressed.name} and {plain.name}, with different data: "
                "remove the one you do not mean"
            )
    for path in (compressed, plain):
        if path.is_file():
            return path
    raise FileNotFoundError(f"MNIST file {stem}.gz (or {stem}) is missing from {str(data_dir)!r}")


def _verify_md5(data_dir, paths):
    sums_file = data_dir / "MD5SUMS"
    if not sums_file.is_file():
        raise FileNotFoundError(f"verify_md5=True but {str(sums_file)!r} does not exist")
    expected = {}
    for line in sums_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            expected[parts[1].lstrip("*")] = parts[0].lower()
    for path in paths:
        if path.name not in expected:
            raise ValueError(f"MD5SUMS has no entry for {path.name}")
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest != expected[path.name]:
            raise ValueError(f"{path.name}: MD5 {digest} does not match MD5SUMS ({expected[path.name]})")


def load_mnist(data_dir=None, *, verify_md5=False):
    """
    Load MNIST from ``data_dir`` holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (uncompressed files work too).

    :param data_dir: the folder; default ``$PYRO_VD_DATA`` (or its ``mnist/`` subfolder).
    :param bool verify_md5: check each file against the folder's ``MD5SUMS``.
    :returns: :class:`MNIST` with float32 images in [0, 1], shape (N, 1, 28, 28), and int64 labels.
    """
    data_dir = resolve_data_dir(data_dir, "mnist")
    paths = {key: _find(data_dir, stem) for key, stem in FILES.items()}
    if verify_md5:
        _verify_md5(data_dir, paths.values())
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = f"{split}_images", f"{split}_labels"
        shape = arrays[images].shape
        if arrays[images].ndim != 3 or shape[1:] != IMAGE_SIZE:
            raise ValueError(
                f"{str(paths[images])!r}: images of shape {shape}; expected (N, 28, 28) (MNIST's 28 × 28)"
            )
        if arrays[labels].ndim != 1 or len(arrays[labels]) != shape[0]:
            raise ValueError(
                f"{str(paths[labels])!r}: labels of shape {arrays[labels].shape} do not match the "
                f"{shape[0]} images of {paths[images].name} (expected ({shape[0]},))"
            )
        if shape[0] == 0:
            raise ValueError(f"{str(paths[images])!r} holds no images")
        arrays[images] = check_pixels(paths[images], arrays[images])
        arrays[labels] = check_labels(paths[labels], arrays[labels])
    return MNIST(
        *(
            torch.from_numpy(arrays[key]).float().div_(255.0).unsqueeze(1)
            if key.endswith("images")
            else torch.from_numpy(arrays[key])
            for key in FILES
        )
    )
