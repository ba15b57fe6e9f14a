"""MNIST from the four IDX files (LeCun et al. 1998). Nothing is downloaded: give the folder."""

import hashlib
import os
import pathlib
from typing import NamedTuple

import torch

from .idx import read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
ENV_VAR = "PYRO_VD_DATA"


class MNIST(NamedTuple):
    """Images as float32 in [0, 1] of shape (N, 1, 28, 28); labels as int64 of shape (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def resolve_data_dir(data_dir=None, subdir=None):
    """``data_dir``, else ``$PYRO_VD_DATA`` (plus ``subdir`` if that folder has it); an error if neither."""
    if data_dir is None:
        root = os.environ.get(ENV_VAR)
        if not root:
            raise ValueError(f"no data folder given: pass data_dir (CLI: --data-dir) or set ${ENV_VAR}")
        data_dir = pathlib.Path(root)
        if subdir and (data_dir / subdir).is_dir():
            data_dir = data_dir / subdir
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {str(data_dir)!r} does not exist")
    return data_dir


def _find(data_dir, stem):
    for name in (stem + ".gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
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
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{split}: images of shape {images.shape} and labels of shape {labels.shape} do not "
                "match (expected (N, rows, cols) and (N,))"
            )
    return MNIST(
        *(
            torch.from_numpy(arrays[key].copy()).float().div_(255.0).unsqueeze(1)
            if key.endswith("images")
            else torch.from_numpy(arrays[key].astype("int64"))
            for key in FILES
        )
    )
