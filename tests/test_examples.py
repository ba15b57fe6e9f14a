"""Every example runs as shipped (each asserts what it shows) in under a minute."""

import pathlib
import runpy
import sys

import matplotlib
import pyro
import pytest

EXAMPLES = sorted((pathlib.Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path, monkeypatch, capsys, tmp_path):
    pytest.importorskip("sklearn")
    matplotlib.use("Agg")
    monkeypatch.setattr(
        sys,
        "argv",
        [str(path), "--out", str(tmp_path / "plot.png")] if "breast" in path.stem else [str(path)],
    )
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out
    assert pyro.settings.get("module_local_params") is False  # no example leaks Pyro's settings


def test_there_are_four_examples():
    assert len(EXAMPLES) == 4
