import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pyro_vd.cli import build_parser, main
from pyro_vd.datasets import write_cifar10, write_idx
from pyro_vd.datasets.mnist import FILES
from pyro_vd.experiments.layer_case import METHODS

COMMANDS = ("kl-table", "ard-table", "ard-minibatch", "layer-case", "sparse-mnist", "structured-mnist")


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


def test_a_resume_keeps_the_runs_device_and_pretraining(tmp_path, capsys, tiny_mnist):
    args = ["sparse-mnist", "--quick", "--quiet", "--data-dir", str(tiny_mnist), "--out", str(tmp_path)]
    assert main([*args, "--device", "cpu", "--pretrain-epochs", "1"]) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert first["device"] == "cpu" and first["pretrain_epochs"] == 1
    assert main([*args, "--resume", "--epochs", "2"]) == 0  # neither flag repeated
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert len(resumed["history"]) == 2 and resumed["pretrain_epochs"] == 1
    assert resumed["pretrained_test_error"] == first["pretrained_test_error"]
    with pytest.raises(SystemExit):  # another pretraining would be another run
        main([*args, "--resume", "--epochs", "3", "--pretrain-epochs", "2"])
    assert "--pretrain-epochs" in capsys.readouterr().err


def test_sparse_mnist_recipe_defaults_to_the_authors_clip_and_train_prune():
    from pyro_vd.cli import build_parser

    parse = build_parser().parse_args
    args = parse(["sparse-mnist"])
    assert (args.clip_log_alpha, args.train_prune) == (8.0, 3.0)
    args = parse(["sparse-mnist", "--clip-log-alpha", "none", "--train-prune", "None"])
    assert (args.clip_log_alpha, args.train_prune) == (None, None)


@pytest.mark.parametrize("command", ["sparse-mnist", "structured-mnist", "layer-case"])
def test_average_every_is_a_training_option_a_resume_may_change(command, capsys):
    from pyro_vd.cli import MAY_CHANGE_ON_RESUME, build_parser

    parse = build_parser().parse_args
    assert parse([command]).average_every is None  # DDP (1), or the resumed run's
    assert parse([command, "--average-every", "8"]).average_every == 8
    for bad in ("0", "-2", "1.5"):
        with pytest.raises(SystemExit):
            parse([command, "--average-every", bad])
        assert "--average-every" in capsys.readouterr().err
    assert "average_every" in MAY_CHANGE_ON_RESUME  # like the number of processes


def test_a_checkpoint_from_before_train_prune_is_not_resumed_with_it(tmp_path):
    from pyro_vd.experiments.run_dir import RunDirError
    from pyro_vd.experiments.sparse_vd_mnist import _check_resume

    old = {"arch": "lenet300100", "epochs": 200}  # saved before the two options were recorded
    new = {"arch": "lenet300100", "epochs": 200, "clip_log_alpha": 8.0, "train_prune": 3.0}
    with pytest.raises(RunDirError, match="clip_log_alpha=None"):
        _check_resume(tmp_path / "checkpoint.pt", old, new, 10)
    _check_resume(tmp_path / "checkpoint.pt", old, {**new, "clip_log_alpha": None, "train_prune": None}, 10)


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
    assert tuple(result["methods"]) == METHODS  # all of them by default, in order
    assert result["config"]["sizes"][0] == (784 if dataset == "mnist" else 3072)
    assert result["methods"]["VD α ≤ 1 (Kingma)"]["alpha"][-1][0] <= 1.0


@pytest.mark.slow
def test_layer_case_trains_the_methods_it_is_given(tmp_path, capsys, tiny_mnist):
    out = tmp_path / "out"
    args = ["layer-case", "--quick", "--quiet", "--data-dir", str(tiny_mnist), "--out", str(out)]
    assert main([*args, "--methods", "none,clipped-kl3"]) == 0
    result = _check_outputs(out, ["test_error", "alpha_trajectories"], capsys.readouterr().out)
    # in the experiment's order, whatever the order given
    assert list(result["methods"]) == ["VD α ≤ 1, KL / 3", "no dropout"]
    assert result["methods"]["VD α ≤ 1, KL / 3"]["alpha"][-1][0] <= 1.0
    assert result["config"]["seed"] == 0


def test_missing_data_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYRO_VD_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # the default --out, results/sparse-mnist, is relative
    assert main(["sparse-mnist", "--quick", "--data-dir", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "--data-dir" in err
    assert list(tmp_path.iterdir()) == []  # the failed run left no folder behind to refuse the next


def test_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["no-such-command"])
    assert excinfo.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- --help
def test_every_help_prints(capsys):
    subcommands = build_parser()._subparsers._group_actions[0].choices
    assert set(subcommands) == set(COMMANDS)
    for argv in ([], *([name] for name in COMMANDS)):
        with pytest.raises(SystemExit) as excinfo:
            main([*argv, "--help"])
        assert excinfo.value.code == 0
        printed = capsys.readouterr().out
        assert printed.startswith("usage: pyro-vd") and (not argv or "--overwrite" in printed)
        assert "0.1/1/10 % batches" in printed if argv in ([], ["ard-minibatch"]) else True


def _pyro_vd(*argv, cwd, timeout=600):
    """``python -m pyro_vd ARGV`` in a process of its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pyro_vd", *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_python_dash_m_help(tmp_path):
    done = _pyro_vd("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in COMMANDS)


# ------------------------------------------------------------------------------ values on the line
T = pytest.param
BAD_VALUES = [
    T(["sparse-mnist", "--epochs", "0"], "--epochs", id="epochs 0"),
    T(["sparse-mnist", "--epochs", "-1"], "--epochs", id="epochs -1"),
    T(["layer-case", "--epochs", "0"], "--epochs", id="layer-case epochs 0"),
    T(["layer-case", "--methods", "clipped,dropout"], "--methods", id="layer-case unknown method"),
    T(["layer-case", "--methods", "free,free"], "--methods", id="layer-case method twice"),
    T(["layer-case", "--methods", ""], "--methods", id="layer-case no method"),
    T(["structured-mnist", "--repeats", "0"], "--repeats", id="repeats 0"),
    T(["kl-table", "--seed", "-1"], "--seed", id="seed -1"),
    T(["kl-table", "--seed", str(2**40)], "--seed", id="seed 2**40"),
    T(["ard-table", "--n", "0"], "--n", id="n 0"),
    T(["ard-table", "--d", "0"], "--d", id="d 0"),
    T(["ard-table", "--n-relevant", "-1"], "--n-relevant", id="n-relevant -1"),
    T(["ard-table", "--d", "5", "--n-relevant", "6"], "--n-relevant", id="n-relevant > d"),
    T(["ard-minibatch", "--steps", "0"], "--steps", id="steps 0"),
    T(["structured-mnist", "--noise-lr", "-0.01"], "--noise-lr", id="noise-lr negative"),
    T(["structured-mnist", "--noise-lr", "nan"], "--noise-lr", id="noise-lr nan"),
    T(["structured-mnist", "--noise-lr", "inf"], "--noise-lr", id="noise-lr inf"),
    T(["sparse-mnist", "--threads", "0"], "--threads", id="threads 0"),
    T(["kl-table", "--out", ""], "--out", id="out empty"),
    T(["sparse-mnist", "--resume", "--overwrite"], "--overwrite", id="resume and overwrite"),
    T(["sparse-mnist", "--train-prune", "nan"], "--train-prune", id="train-prune nan"),
    T(["sparse-mnist", "--clip-log-alpha", "0"], "--clip-log-alpha", id="clip 0"),
    # (a raw "cannot be converted to type float without overflow" at the first step)
    T(["sparse-mnist", "--clip-log-alpha", "1e308"], "--clip-log-alpha", id="clip 1e308"),
    T(["sparse-mnist", "--data-dir", ""], "--data-dir", id="data-dir empty"),  # (was the current folder)
    T(["kl-table", "--out", "x" * 300], "--out", id="out name too long"),  # (a raw OSError)
    # log α held below the pruning rule (3) or below --train-prune: nothing could ever be pruned
    T(["sparse-mnist", "--clip-log-alpha", "3"], "--clip-log-alpha", id="clip at the rule"),
    T(["sparse-mnist", "--clip-log-alpha", "5", "--train-prune", "6"], "--train-prune", id="prune > clip"),
    # --quick runs at its own sizes: asking for others with it is refused, not ignored
    T(["ard-table", "--quick", "--n", "500"], "--n", id="quick with n"),
    T(["ard-minibatch", "--quick", "--steps", "50"], "--steps", id="quick with steps"),
    T(["ard-table", "--quick", "--n-relevant", "45"], "(--quick)", id="n-relevant > quick d"),
]


@pytest.mark.parametrize("argv, option", BAD_VALUES)
def test_bad_values_exit_with_usage_before_any_work(tmp_path, monkeypatch, capsys, argv, option):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pyro-vd") and option in err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # nothing made, not even results/


def _refused(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_out_that_cannot_hold_a_run_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import pyro_vd.experiments.ard as ard

    monkeypatch.setattr(ard, "more_features", lambda **_: pytest.fail("the computation started"))
    (tmp_path / "a-file").write_text("")
    assert "is a file" in _refused(["ard-table", "--out", str(tmp_path / "a-file")], capsys)
    assert "is a file" in _refused(["ard-table", "--out", str(tmp_path / "a-file" / "sub")], capsys)
    monkeypatch.setattr(os, "access", lambda *_: False)  # root may write anywhere: pretend
    assert "not writable" in _refused(["ard-table", "--out", str(tmp_path / "new")], capsys)
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------ data
def _damage_gzip(folder):
    path = folder / (FILES["train_images"] + ".gz")
    path.write_bytes(path.read_bytes()[:-100])
    return path.name


def _bad_label(folder):
    write_idx(folder / (FILES["test_labels"] + ".gz"), np.full(100, 12, np.uint8))
    return FILES["test_labels"]


def _float_images(folder):
    write_idx(folder / (FILES["test_images"] + ".gz"), np.full((100, 28, 28), 0.5, np.float32))
    return FILES["test_images"]


def _train_images_32(folder):
    write_idx(folder / (FILES["train_images"] + ".gz"), np.zeros((300, 32, 32), np.uint8))
    return FILES["train_images"]


def _data_dir_is_a_file(folder):
    (folder / "file").write_text("")
    return "file"


@pytest.mark.parametrize(
    "damage", [_damage_gzip, _bad_label, _float_images, _train_images_32, _data_dir_is_a_file]
)
def test_bad_data_is_one_line(tmp_path, capsys, tiny_mnist, damage):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for file in tiny_mnist.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    name = damage(folder)
    data_dir = folder / "file" if name == "file" else folder
    argv = ["sparse-mnist", "--quick", "--quiet", "--data-dir", str(data_dir), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pyro-vd sparse-mnist: ") and name in err


def test_bad_cifar_is_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar"
    write_cifar10(
        folder, (rng.integers(0, 256, (10, 3072)), rng.integers(0, 10, 10)), (np.zeros((4, 3072)), [0] * 4)
    )
    import pickle

    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.full((4, 3072), 0.5), b"labels": [0] * 4}, handle)
    argv = [
        "layer-case",
        "--quick",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(folder),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "test_batch" in err and "uint8" in err


# ------------------------------------------------------------------- the run folder, in processes
def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_a_second_run_never_replaces_the_first(tmp_path, tiny_mnist):
    out = tmp_path / "out"
    run = ("sparse-mnist", "--quick", "--quiet", "--threads", "1", "--data-dir", tiny_mnist, "--out", out)
    first = _pyro_vd(*run, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = _files(out)
    assert {"checkpoint.pt", "results.json", "run.json"} <= set(before) and "run.lock" not in before
    second = _pyro_vd(*run, "--arch", "lenet5", cwd=tmp_path)
    assert second.returncode == 2
    assert "already holds" in second.stderr and "--overwrite" in second.stderr
    assert _files(out) == before
    third = _pyro_vd(*run, "--arch", "lenet5", "--overwrite", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "first_layer_masks.png" not in _files(out)  # the first run's files went, all of them
    assert json.loads((out / "results.json").read_text())["arch"] == "lenet5"


_HOLD_LOCK = """
import sys
from pyro_vd.experiments.run_dir import RunDir
with RunDir(sys.argv[1], command="sparse-mnist", options={}, overwrite=True, log=lambda _: None):
    print("held", flush=True)
    sys.stdin.read()
"""


def _lock_holder(out):
    """A process that holds ``out``'s lock until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_a_run_in_progress_holds_its_folder(tmp_path, tiny_mnist):
    out = tmp_path / "out"
    run = ("sparse-mnist", "--quick", "--quiet", "--threads", "1", "--data-dir", tiny_mnist, "--out", out)
    assert _pyro_vd(*run, cwd=tmp_path).returncode == 0
    with _lock_holder(out) as holder:
        for extra in (["--resume", "--epochs", "2"], ["--overwrite"], []):
            busy = _pyro_vd(*run, *extra, cwd=tmp_path)
            assert busy.returncode == 1, (extra, busy.stderr)
            assert f"in use by process {holder.pid}" in busy.stderr
            assert len(busy.stderr.strip().splitlines()) == 1
        holder.stdin.close()
    # A holder killed outright leaves its lock file: the next run takes it over and says so. The holder
    # was an --overwrite that had moved the old run aside: that is refused until the user decides.
    with _lock_holder(out) as holder:
        holder.kill()
    assert (out / "run.lock").read_text().strip() == str(holder.pid)
    assert (out / ".overwritten" / "run.json").is_file()
    refused = _pyro_vd(*run, "--overwrite", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "stale lock" in refused.stderr and str(holder.pid) in refused.stderr
    assert "holds .overwritten/" in refused.stderr and (out / ".overwritten" / "run.json").is_file()
    shutil.rmtree(out / ".overwritten")
    taken = _pyro_vd(*run, "--overwrite", cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert not (out / "run.lock").exists() and not (out / ".overwritten").exists()


@pytest.mark.slow
def test_resume_checks_the_folder_and_the_options(tmp_path, tiny_mnist):
    out = tmp_path / "out"
    run = ("sparse-mnist", "--quick", "--quiet", "--threads", "1", "--data-dir", tiny_mnist, "--out", out)
    nothing = _pyro_vd(*run, "--resume", cwd=tmp_path)
    assert nothing.returncode == 2 and "no checkpoint.pt" in nothing.stderr
    assert _pyro_vd(*run, cwd=tmp_path).returncode == 0
    before = _files(out)
    for option, value in (("--kl-method", "exact"), ("--seed", "1"), ("--arch", "lenet5")):
        refused = _pyro_vd(*run, "--resume", option, value, cwd=tmp_path)
        assert refused.returncode == 2 and f"with {option} {value}, but" in refused.stderr, refused.stderr
    assert _files(out) == before
    longer = _pyro_vd(*run, "--resume", "--epochs", "3", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr
    result = json.loads((out / "results.json").read_text())
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3] and result["epochs"] == 3
    assert all(h["lr"] > 0 for h in result["history"])
    assert result["resumes"] == [{"at_epoch": 1, "epochs": 3, "was": 1}]
    record = json.loads((out / "run.json").read_text())
    assert record["resumes"][-1]["changed"] == {"epochs": [1, 3]}
    again = _pyro_vd(*run, "--resume", cwd=tmp_path)  # --epochs left out: the run's own 3
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "results.json").read_text())["epochs"] == 3


# ------------------------------------------------------------------- several ranks (torchrun), in-process
def _fake_ranks(monkeypatch, rank, verdict=None):
    """Pretend to be ``rank`` of 2: the messages rank 0 broadcasts are recorded; another rank receives
    ``verdict``."""
    from pyro_vd import cli, distributed

    sent = []

    def broadcast(message, src=0):
        sent.append(message)
        return message if rank == 0 else verdict

    monkeypatch.setattr(distributed, "broadcast_object", broadcast)
    return cli, distributed.Session(rank=rank, world_size=2), sent


def test_rank_zero_alone_checks_out_and_stops_the_others_with_its_status(tmp_path, monkeypatch, capsys):
    cli, session, sent = _fake_ranks(monkeypatch, 0)
    (tmp_path / "x.txt").write_text("someone's file")
    args = cli.build_parser().parse_args(["sparse-mnist", "--quick", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        cli._lead(args, session)
    assert stop.value.code == 2 and sent == [("stop", 2)]
    assert "already holds files" in capsys.readouterr().err


def test_rank_zero_refuses_processes_that_do_not_divide_the_batch(tmp_path, monkeypatch, capsys):
    from pyro_vd.distributed import Session

    cli, _, sent = _fake_ranks(monkeypatch, 0)
    args = cli.build_parser().parse_args(["sparse-mnist", "--quick", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        cli._lead(args, Session(rank=0, world_size=3))
    assert sent == [("stop", 2)]
    assert "cannot be split evenly over 3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # the folder is left as it was


def test_other_ranks_follow_rank_zero(tmp_path, monkeypatch):
    cli, session, _ = _fake_ranks(monkeypatch, 1, verdict=("stop", 2))
    args = cli.build_parser().parse_args(["sparse-mnist", "--out", str(tmp_path)])
    assert cli._follow(args, session) == 2  # quietly: rank 0 reports why
    ran = []
    options = {"out": str(tmp_path), "epochs": 7, "quiet": False}
    cli, session, _ = _fake_ranks(monkeypatch, 1, verdict=("start", options))
    args = cli.build_parser().parse_args(["sparse-mnist", "--out", str(tmp_path)])
    args.run = lambda a: ran.append((a.epochs, a.quiet)) or 0
    assert cli._follow(args, session) == 0 and ran == [(7, True)]  # rank 0's options, no output
    args = cli.build_parser().parse_args(["kl-table", "--out", str(tmp_path)])
    args.run = lambda a: ran.append("kl-table")
    assert cli._follow(args, session) == 0 and "kl-table" not in ran  # rank 0 alone runs it
