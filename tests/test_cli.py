import json

from pyro_vd.cli import main


def test_kl_table(tmp_path, capsys):
    assert main(["kl-table", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| log α | exact | molchanov | kingma |" in printed
    result = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text().strip() in printed
    rows = {row["log_alpha"]: row for row in result["rows"]}
    assert abs(rows[0.0]["exact"] - 0.4266857) < 1e-6
    assert result["max_error"]["molchanov"]["max_abs_error"] <= 0.0095
    assert result["max_error"]["kingma"]["max_abs_error"] <= 0.045


def test_unknown_command_exits_with_usage(capsys):
    import pytest

    with pytest.raises(SystemExit) as excinfo:
        main(["no-such-command"])
    assert excinfo.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
