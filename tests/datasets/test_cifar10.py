import pickle

import numpy as np
import pytest
import torch

from pyro_vd.datasets import load_cifar10, write_cifar10


def _write(tmp_path, n_train=10, n_test=4):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8), rng.integers(0, 10, n_train)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), rng.integers(0, 10, n_test)
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, train, test)
    return train, test, folder


def test_round_trip_and_layout(tmp_path):
    train, test, folder = _write(tmp_path)
    data = load_cifar10(tmp_path)  # the parent folder works too
    assert data.train_images.shape == (10, 3, 32, 32) and data.train_images.dtype == torch.float32
    assert data.test_images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(data.train_labels.numpy(), train[1])
    # channel-major rows: the first 1024 bytes are the red plane
    expected = train[0][3].reshape(3, 32, 32)[0, 1, 2] / 255.0
    assert data.train_images[3, 0, 1, 2].item() == pytest.approx(expected)
    assert load_cifar10(folder).test_labels.tolist() == test[1].tolist()


def test_missing_and_corrupt_files(tmp_path):
    _, _, folder = _write(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(folder)
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(ValueError, match="expected"):
        load_cifar10(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        load_cifar10(folder)


def _replace_batch(folder, data, labels):
    with open(folder / "data_batch_2", "wb") as handle:
        pickle.dump({b"data": data, b"labels": labels}, handle)


T = pytest.param
BAD_BATCHES = [
    T(np.full((2, 3072), 0.5), [0, 1], "uint8", id="float data"),
    T(np.full((2, 3072), 300, np.int16), [0, 1], "0..255", id="int16 above 255"),
    T([[300] * 3072] * 2, [0, 1], "0..255", id="list above 255"),
    T(np.zeros((2, 3072), np.uint8), [0, 10], "0..9", id="label 10"),
    T(np.zeros((2, 3072), np.uint8), [0, 0.5], "fractional", id="fractional label"),
    T(np.zeros((2, 3072), np.uint8), [0], "expected", id="fewer labels"),
    T([[1, 2], [3]], [0, 1], "not an array", id="ragged data"),
]


@pytest.mark.parametrize("data, labels, expected", BAD_BATCHES)
def test_unexpected_batches_are_value_errors_naming_the_file(tmp_path, data, labels, expected):
    _, _, folder = _write(tmp_path)
    _replace_batch(folder, data, labels)
    with pytest.raises(ValueError, match=expected) as excinfo:
        load_cifar10(folder)
    assert "data_batch_2" in str(excinfo.value)


@pytest.mark.parametrize(
    "payload",
    [b"cnumpy\nno_such_attribute\n.", b"cos\nsystem\n(S'true'\ntR.", b"\x80\x04\x95"],
    ids=["missing attribute", "foreign global", "truncated"],
)
def test_foreign_or_broken_pickles_are_refused(tmp_path, payload):
    _, _, folder = _write(tmp_path)
    (folder / "data_batch_4").write_bytes(payload)
    with pytest.raises(ValueError, match=r"data_batch_4.*not a CIFAR-10 python batch"):
        load_cifar10(folder)
