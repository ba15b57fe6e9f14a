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
    assert "removed" in notes[0]


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
