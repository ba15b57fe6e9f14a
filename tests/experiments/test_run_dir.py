import json
import subprocess
import sys

import pytest

from pyro_vd.experiments.run_dir import RunDir, RunDirBusy, RunDirError, check_out_path, recorded_options


def _run(path, notes=None, **kwargs):
    options = kwargs.pop("options", {"seed": 0, "epochs": 2})
    log = notes.append if notes is not None else lambda _: None
    return RunDir(path, command="sparse-mnist", options=options, resumable=True, log=log, **kwargs)


def _finish(path, *names):
    with _run(path):
        for name in names:
            (path / name).write_text(name)


def test_a_fresh_run_records_its_options_and_releases_its_lock(tmp_path):
    out = tmp_path / "a" / "b"
    with _run(out):
        assert (out / "run.lock").read_text().strip().isdigit()
    assert not (out / "run.lock").exists()
    record = json.loads((out / "run.json").read_text())
    assert record["command"] == "sparse-mnist" and record["options"] == {"seed": 0, "epochs": 2}
    assert recorded_options(out) == {"seed": 0, "epochs": 2}
    assert recorded_options(tmp_path) is None


def test_a_folder_holding_anything_is_refused(tmp_path):
    _finish(tmp_path, "results.json")
    with pytest.raises(RunDirError, match=r"already holds files \(results.json, run.json\).*--resume"):
        _run(tmp_path).__enter__()
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("")
    with pytest.raises(RunDirError, match=r"\(x.txt\); pass --overwrite to replace"):
        RunDir(other, command="kl-table", options={}).__enter__()
    assert (tmp_path / "results.json").read_text() == "results.json"


def test_overwrite_removes_only_what_a_run_writes(tmp_path):
    _finish(tmp_path, "results.json", "checkpoint.pt", "training.png", "holiday.png", "notes.txt")
    notes = []
    with _run(tmp_path, notes, overwrite=True, figures=("training",)):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.png", "notes.txt", "run.json"]
    assert "replacing" in notes[0]


def test_overwrite_leaves_the_users_own_copies_of_run_files(tmp_path):
    backups = ["checkpoint.pt.bak", "run.json.orig", "checkpoint.pt.1", "results.json.old"]
    _finish(tmp_path, "checkpoint.pt", *backups)
    stale = "checkpoint.pt.0123abcd.4242.k2j_x9.tmp"  # a killed save's temporary file is the run's
    (tmp_path / stale).write_text("")
    with _run(tmp_path, overwrite=True):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*backups, "run.json"])


def test_an_overwrite_that_fails_before_training_puts_the_old_run_back(tmp_path):
    names = ["checkpoint.pt", "results.json", "training.png"]
    _finish(tmp_path, *names, "notes.txt")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileNotFoundError), _run(tmp_path, overwrite=True, figures=("training",)):
        moved_aside = [".overwritten", "notes.txt", "run.json", "run.lock"]
        assert sorted(p.name for p in tmp_path.iterdir()) == moved_aside
        raise FileNotFoundError("no data")  # e.g. a missing --data-dir, before any checkpoint
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # a run that wrote some of its own files (another command's plot, results) before failing: the
    # folder is the old run's again, not a mix of both
    with pytest.raises(RuntimeError), _run(tmp_path, overwrite=True, figures=("training", "batch_size")):
        (tmp_path / "batch_size.png").write_text("new plot")
        (tmp_path / "results.json").write_text("new results")
        raise RuntimeError("failed after writing")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # once the new run has saved a checkpoint, a failure keeps both: the new run (to --resume) and the
    # one it replaced, in .overwritten/ (before, Ctrl-C at epoch 5 of a new run deleted a finished run)
    notes = []
    with pytest.raises(RuntimeError), _run(tmp_path, notes, overwrite=True, figures=("training",)):
        (tmp_path / "checkpoint.pt").write_text("new")
        raise RuntimeError("diverged at epoch 3")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".overwritten",
        "checkpoint.pt",
        "notes.txt",
        "run.json",
    ]
    assert (tmp_path / "checkpoint.pt").read_text() == "new"
    kept = {p.name: p.read_bytes() for p in (tmp_path / ".overwritten").iterdir()}
    assert kept == {name: before[name] for name in [*names, "run.json"]}
    assert any("kept in" in note and "--resume" in note for note in notes)
    with _run(tmp_path, resume=True):  # the new run goes on; the old one stays where it is
        pass
    assert (tmp_path / ".overwritten" / "checkpoint.pt").read_bytes() == before["checkpoint.pt"]
    # another --overwrite is refused, and its advice is not to move the older files over the newer run
    with pytest.raises(RunDirError, match=r"newer run that replaced them, which trained .*would replace"):
        _run(tmp_path, overwrite=True).__enter__()


def test_the_files_of_an_interrupted_overwrite_are_never_deleted(tmp_path):
    _finish(tmp_path, "checkpoint.pt")
    (tmp_path / ".overwritten").mkdir()
    (tmp_path / ".overwritten" / "checkpoint.pt").write_text("the only good run")
    with pytest.raises(RunDirError, match=r"holds \.overwritten/.*move them back"):
        _run(tmp_path, overwrite=True).__enter__()
    assert (tmp_path / ".overwritten" / "checkpoint.pt").read_text() == "the only good run"


def test_resume_needs_a_checkpoint_and_the_same_fixed_options(tmp_path):
    _finish(tmp_path, "results.json")
    with pytest.raises(RunDirError, match=r"no checkpoint\.pt"):
        _run(tmp_path, resume=True).__enter__()
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(RunDirError, match=r"--resume with --seed 1, but .* made with --seed 0"):
        _run(tmp_path, resume=True, options={"seed": 1, "epochs": 2}, fixed=("seed",)).__enter__()
    with _run(tmp_path, resume=True, options={"seed": 0, "epochs": 5}, fixed=("seed",)):
        pass
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["options"]["epochs"] == 5
    assert [r["changed"] for r in record["resumes"]] == [{"epochs": [2, 5]}]
    with pytest.raises(RunDirError, match="contradict"):
        _run(tmp_path, resume=True, overwrite=True)


def test_a_held_folder_is_busy(tmp_path):
    with _run(tmp_path), pytest.raises(RunDirBusy, match="in use by process"):
        _run(tmp_path, overwrite=True).__enter__()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / "run.lock").write_text(dead.stdout)
    notes = []
    with _run(tmp_path, notes):
        pass
    assert notes == [
        f"took over the stale lock {str(tmp_path / 'run.lock')!r} "
        f"(process {dead.stdout.strip()} is no longer running)"
    ]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_trace(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(KeyError), _run(out):
        raise KeyError("the data is missing")
    assert list(tmp_path.iterdir()) == []
    _finish(tmp_path / "old", "checkpoint.pt")
    before = (tmp_path / "old" / "run.json").read_text()
    with pytest.raises(KeyError), _run(tmp_path / "old", resume=True, options={"seed": 0, "epochs": 9}):
        raise KeyError("the data is missing")
    assert (tmp_path / "old" / "run.json").read_text() == before  # the resume never happened
    with pytest.raises(KeyError), _run(tmp_path / "new2"):
        (tmp_path / "new2" / "checkpoint.pt").write_text("an epoch")
        raise KeyError("interrupted")
    assert sorted(p.name for p in (tmp_path / "new2").iterdir()) == ["checkpoint.pt", "run.json"]


@pytest.mark.parametrize("out, message", [("", "empty"), (" ", "empty"), ("a-file", "is a file")])
def test_out_paths_that_cannot_hold_a_run(tmp_path, out, message):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RunDirError, match=message):
        check_out_path(tmp_path / out if out.strip() else out)
    with pytest.raises(RunDirError, match="is a file"):
        check_out_path(tmp_path / "a-file" / "below")


def test_a_refusal_changes_nothing(tmp_path):
    (tmp_path / "run.json").write_text('{"command": "sparse-mnist", "options": {}}')  # a run killed early
    with pytest.raises(RunDirError, match="already holds"):
        _run(tmp_path).__enter__()
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_results_files_are_valid_json_and_written_whole(tmp_path):
    import numpy as np

    from pyro_vd.experiments.run_dir import results_json, write_atomically

    text = results_json({"c": float("inf"), "d": [float("nan"), np.float32(0.5)], "e": np.arange(2)})
    assert json.loads(text) == {"c": "inf", "d": ["nan", 0.5], "e": [0, 1]}  # no Infinity / NaN tokens
    path = tmp_path / "results.json"
    write_atomically(path, "old")

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, interrupted)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize(
    "record",
    [{"command": "sparse-mnist", "options": [1]}, {"command": "sparse-mnist", "options": {}, "resumes": {}}],
    ids=["options a list", "resumes a mapping"],
)
def test_a_run_record_of_the_wrong_structure_is_refused_in_one_line(tmp_path, record):
    _finish(tmp_path, "checkpoint.pt")
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(RunDirError, match="is not a pyro-vd run record"):
        _run(tmp_path, resume=True).__enter__()
    assert json.loads((tmp_path / "run.json").read_text()) == record


def test_an_overwrite_interrupted_while_moving_the_old_run_aside_loses_nothing(tmp_path, monkeypatch):
    """_undo took the files not yet moved for files of the failed run, and deleted them."""
    import os

    _finish(tmp_path, "checkpoint.pt", "results.json", "results.md", "training.png", "notes.txt")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    moves, replace = [], os.replace

    def interrupted(source, target):
        moves.append(source)
        if len(moves) == 2:
            raise KeyboardInterrupt
        return replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, overwrite=True, figures=("training",)).__enter__()
    monkeypatch.setattr(os, "replace", replace)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_leaves_a_users_own_files_of_the_same_names(tmp_path):
    """No pyro-vd run.json: a checkpoint.pt or results.md of the user's is not a run's. --overwrite
    replaced results.md and deleted training.png in such a folder (kl-table does not even write it)."""
    for name in ("results.md", "training.png", "checkpoint.pt", "notes.txt"):
        (tmp_path / name).write_text(f"mine: {name}")
    with pytest.raises(RunDirError, match=r"no pyro-vd run\.json: they are not a pyro-vd run's"):
        _run(tmp_path, overwrite=True, figures=("training",)).__enter__()
    (tmp_path / "run.json").write_text("not json")  # a file of that name is not a record either
    with pytest.raises(RunDirError, match=r"no pyro-vd run\.json"):
        _run(tmp_path, overwrite=True, figures=("training",)).__enter__()
    assert all(
        (tmp_path / n).read_text() == f"mine: {n}" for n in ("results.md", "training.png", "checkpoint.pt")
    )
    assert not (tmp_path / "run.lock").exists()


def test_a_new_run_that_fails_while_writing_its_results_leaves_nothing(tmp_path):
    """A run without a checkpoint (ard-table) interrupted while writing its plot left results.json,
    results.md and run.json, and the rerun was refused ("already holds files")."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), _run(out, figures=("coefficients",)):
        (out / "results.json").write_text("{}")
        (out / "results.md").write_text("table")
        (out / "coefficients.png.tmp").write_text("half a plot")
        raise KeyboardInterrupt
    assert not out.exists()
    keep = tmp_path / "kept"
    keep.mkdir()
    (keep / "notes.txt").write_text(
        "mine"
    )  # a folder with the user's files (and --overwrite): only the run's go
    with pytest.raises(RuntimeError), _run(keep, overwrite=True, figures=("coefficients",)):
        (keep / "results.json").write_text("{}")
        raise RuntimeError("failed")
    assert sorted(p.name for p in keep.iterdir()) == ["notes.txt"]


def test_the_lock_is_not_taken_through_a_symbolic_link(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("data")
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.lock").symlink_to(precious)
    with pytest.raises(RunDirError, match="cannot make the lock"):
        _run(out).__enter__()
    assert precious.read_text() == "data"
