import hashlib

import numpy as np
import pytest
import torch

from pyro_vd.datasets import load_mnist, read_idx, write_idx
from pyro_vd.datasets.mnist import FILES


def _make_mnist(folder, n_train=6, n_test=4, compress=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    sums = []
    for key, stem in FILES.items():
        path = write_idx(folder / (stem + (".gz" if compress else "")), arrays[key])
        sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.name}")
    (folder / "MD5SUMS").write_text("\n".join(sums) + "\n")
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    for name in ("a.idx", "a.idx.gz"):
        assert np.array_equal(read_idx(write_idx(tmp_path / name, array)), array)


def test_bad_idx(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    path = write_idx(tmp_path / "short", np.zeros((3, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match="announces"):
        read_idx(path)


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist(tmp_path, compress):
    arrays = _make_mnist(tmp_path, compress=compress)
    data = load_mnist(tmp_path, verify_md5=True)
    assert data.train_images.shape == (6, 1, 28, 28) and data.train_images.dtype == torch.float32
    assert data.test_labels.dtype == torch.int64
    assert torch.allclose(data.train_images[:, 0] * 255, torch.from_numpy(arrays["train_images"]).float())
    assert torch.equal(data.test_labels, torch.from_numpy(arrays["test_labels"]).long())


def test_a_file_both_compressed_and_not_must_hold_the_same_data(tmp_path):
    """The .gz won silently: an edited or replaced uncompressed copy beside it was never read."""
    arrays = _make_mnist(tmp_path)
    stem = FILES["train_labels"]
    write_idx(tmp_path / stem, arrays["train_labels"])  # the same data, uncompressed: fine
    assert torch.equal(load_mnist(tmp_path).train_labels, torch.from_numpy(arrays["train_labels"]).long())
    write_idx(tmp_path / stem, (arrays["train_labels"] + 1) % 10)
    with pytest.raises(ValueError, match=f"both {stem}.gz and {stem}, with different data"):
        load_mnist(tmp_path)
    # read as read_idx reads them: an uncompressed file named .gz holds the same data
    write_idx(tmp_path / (stem + ".gz"), (arrays["train_labels"] + 1) % 10, compress=False)
    assert load_mnist(tmp_path).train_labels[0] == (arrays["train_labels"][0] + 1) % 10
    # a damaged .gz beside a good copy is named as damaged (it was a raw zlib.error)
    damaged = bytearray(write_idx(tmp_path / (stem + ".gz"), arrays["train_labels"]).read_bytes())
    damaged[33] ^= 0xFF
    (tmp_path / (stem + ".gz")).write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=f"{stem}.gz"):
        load_mnist(tmp_path)


def test_missing_file_is_named(tmp_path):
    _make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_md5_mismatch(tmp_path):
    _make_mnist(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.zeros(6, np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: MD5"):
        load_mnist(tmp_path, verify_md5=True)
    load_mnist(tmp_path)  # without the check it loads


def test_mismatched_sizes(tmp_path):
    _make_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        load_mnist(tmp_path)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    _make_mnist(tmp_path / "mnist")
    monkeypatch.setenv("PYRO_VD_DATA", str(tmp_path))
    assert load_mnist().train_images.shape[0] == 6
    monkeypatch.delenv("PYRO_VD_DATA")
    with pytest.raises(ValueError, match="PYRO_VD_DATA"):
        load_mnist()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


# --------------------------------------------------------------------- corrupt or unexpected files
def _corrupt_gzip(path):
    payload = bytearray(path.read_bytes())
    payload[20:40] = bytes(20)  # inside the deflate stream
    path.write_bytes(bytes(payload))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _header_only(path):
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")  # 3 sizes announced, half of one follows


@pytest.mark.parametrize("damage", [_truncate, _corrupt_gzip, _header_only], ids=lambda f: f.__name__)
def test_damaged_idx_is_a_value_error_naming_the_file(tmp_path, damage):
    _make_mnist(tmp_path, n_train=60)
    damage(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path)


T = pytest.param
BAD_CONTENTS = [
    T("train_labels", np.array([0, 1, 2, 3, 4, 10], np.uint8), "0..9", id="label 10"),
    T("test_labels", np.array([0, -1, 2, 3], np.int8), "0..9", id="negative label"),
    T("train_labels", np.array([0, 1.5, 2, 3, 4, 5], np.float32), "fractional", id="fractional label"),
    T("train_images", np.full((6, 28, 28), 0.5, np.float32), "uint8", id="float images in [0, 1]"),
    T("test_images", np.full((4, 28, 28), 300, np.int16), "0..255", id="int16 pixels above 255"),
    T("train_images", np.zeros((6, 32, 32), np.uint8), "28", id="32 x 32 train images"),
    T("test_images", np.zeros((0, 28, 28), np.uint8), "do not match|no images", id="no test images"),
]


@pytest.mark.parametrize("key, array, expected", BAD_CONTENTS)
def test_unexpected_contents_are_value_errors_naming_the_file(tmp_path, key, array, expected):
    _make_mnist(tmp_path)
    write_idx(tmp_path / (FILES[key] + ".gz"), array)
    with pytest.raises(ValueError, match=expected) as excinfo:
        load_mnist(tmp_path)
    assert FILES[key] in str(excinfo.value)


def test_whole_float_labels_are_accepted(tmp_path):
    arrays = _make_mnist(tmp_path)
    write_idx(tmp_path / (FILES["train_labels"] + ".gz"), arrays["train_labels"].astype(np.float32))
    assert torch.equal(load_mnist(tmp_path).train_labels, torch.from_numpy(arrays["train_labels"]).long())


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "mnist.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        load_mnist(tmp_path / "mnist.tar")
