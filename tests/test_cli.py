import json

import numpy as np
import pytest

from pyro_vd.cli import main
from pyro_vd.datasets import write_cifar10, write_idx
from pyro_vd.datasets.mnist import FILES


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """A tiny MNIST in IDX files: digits drawn as a bright 4×4 block at a class-dependent place."""
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("test", 100)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = 2 + 2 * (label // 5) * 5, 2 + 5 * (label % 5)
            images[i, row : row + 4, col : col + 4] = 255
        write_idx(folder / (FILES[f"{split}_images"] + ".gz"), images)
        write_idx(folder / (FILES[f"{split}_labels"] + ".gz"), labels)
    return folder


def _check_outputs(folder, pngs, printed):
    result = json.loads((folder / "results.json").read_text())
    assert (folder / "results.md").read_text().strip() in printed
    for png in pngs:
        assert (folder / f"{png}.png").stat().st_size > 1000
    return result


def test_kl_table(tmp_path, capsys):
    assert main(["kl-table", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| log α | exact | molchanov | kingma |" in printed
    result = _check_outputs(tmp_path, [], printed)
    rows = {row["log_alpha"]: row for row in result["rows"]}
    assert abs(rows[0.0]["exact"] - 0.4266857) < 1e-6
    assert result["max_error"]["molchanov"]["max_abs_error"] <= 0.0095
    assert result["max_error"]["kingma"]["max_abs_error"] <= 0.045


def test_ard_table_quick(tmp_path, capsys):
    assert main(["ard-table", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    result = _check_outputs(tmp_path, ["vd_rvr_coefficients"], printed)
    methods = [r["method"] for r in result["regression"]]
    assert methods[:3] == ["VD-RVR", "RVR", "G-KL RVR"]
    assert "| VD-RVC |" in printed


@pytest.mark.slow
def test_ard_minibatch_quick(tmp_path, capsys):
    assert main(["ard-minibatch", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    result = _check_outputs(tmp_path, ["batch_size_regression", "batch_size_classification"], printed)
    assert any(r["method"].startswith("VD SVI, batch 1 %") for r in result["regression"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lenet300100", "lenet5"])
def test_sparse_mnist_quick(tmp_path, capsys, tiny_mnist, arch):
    args = ["sparse-mnist", "--quick", "--quiet", "--arch", arch, "--data-dir", str(tiny_mnist)]
    assert main([*args, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    pngs = ["log_alpha_vs_theta", "log_alpha_histogram", "training"]
    pngs += ["first_layer_masks"] if arch == "lenet300100" else []
    result = _check_outputs(tmp_path, pngs, printed)
    assert result["epochs"] == 1 and 0 <= result["test_error"] <= 1


@pytest.mark.slow
def test_structured_mnist_quick(tmp_path, capsys, tiny_mnist):
    args = ["structured-mnist", "--quick", "--quiet", "--data-dir", str(tiny_mnist), "--out", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = _check_outputs(tmp_path, ["training"], printed)
    assert result["neurons_total"] == {"fc1": 784, "fc2": 500, "fc3": 300}
    assert result["test_error"] == result["test_error_full_size"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_layer_case_quick(tmp_path, capsys, tiny_mnist, dataset):
    folder = tiny_mnist
    if dataset == "cifar10":
        rng = np.random.default_rng(0)
        folder = tmp_path / "cifar"
        write_cifar10(
            folder,
            (rng.integers(0, 256, (50, 3072)), rng.integers(0, 10, 50)),
            (rng.integers(0, 256, (20, 3072)), rng.integers(0, 10, 20)),
        )
    out = tmp_path / "out"
    args = ["layer-case", "--quick", "--quiet", "--dataset", dataset, "--data-dir", str(folder)]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = _check_outputs(out, ["test_error", "alpha_trajectories"], printed)
    assert set(result["methods"]) == {
        "VD α ≤ 1 (Kingma)",
        "VD α free",
        "binary dropout",
        "Gaussian dropout",
        "no dropout",
    }
    assert result["config"]["sizes"][0] == (784 if dataset == "mnist" else 3072)
    assert result["methods"]["VD α ≤ 1 (Kingma)"]["alpha"][-1][0] <= 1.0


def test_missing_data_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYRO_VD_DATA", raising=False)
    assert main(["sparse-mnist", "--quick", "--data-dir", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "--data-dir" in err


def test_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["no-such-command"])
    assert excinfo.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
