import pytest

from pyro_vd.experiments.ard import format_rows, minibatch, more_features


def test_more_features_rows():
    pytest.importorskip("sklearn")
    result = more_features(n=150, d=25, n_relevant=4, seed=1, log=lambda _: None)
    methods = [r["method"] for r in result["regression"]]
    assert methods[:3] == ["VD-RVR", "RVR", "G-KL RVR"] and methods[-1].startswith("oracle")
    assert "sklearn ARDRegression" in methods
    assert [r["method"] for r in result["classification"]][:3] == ["VD-RVC", "RVC", "G-KL RVC"]
    assert any(r["method"].startswith("L1 logistic") for r in result["classification"])
    for row in result["regression"] + result["classification"]:
        assert row["n_irrelevant"] == 21 and 0 <= row["pruned"] <= 21 and 0 <= row["kept"] <= 4
        assert row["seconds"] >= 0
    oracle = result["regression"][-1]
    vd = result["regression"][0]
    assert vd["value"] < 2 * oracle["value"]  # test MSE close to the oracle's
    table = format_rows(result["regression"])
    assert table.startswith("| method | test MSE |") and "VD-RVR" in table


def test_minibatch_rows():
    result = minibatch(
        n=2000,
        d=12,
        n_relevant=3,
        fractions=(0.05, 0.5),
        steps=200,
        include={"VD-RVR", "VD-RVC"},
        log=lambda _: None,
    )
    names = [r["method"] for r in result["regression"]]
    assert "VD SVI, batch 5 %" in names and "VD SVI, batch 50 %" in names
    assert len(result["classification"]) == len(result["regression"]) - (
        1 if "sklearn ARDRegression" in names else 0
    ) + (1 if any(r["method"].startswith("L1") for r in result["classification"]) else 0)
