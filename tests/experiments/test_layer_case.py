import math
from types import SimpleNamespace

import pytest
import torch

from pyro_vd import VariationalDropoutELBO
from pyro_vd.cli import LAYER_CASE_METHODS
from pyro_vd.experiments import layer_case
from pyro_vd.experiments.layer_case import (
    METHOD_KEYS,
    METHODS,
    alpha_drift,
    format_layer_case,
    merge_layer_case,
)


def test_the_commands_short_names_are_the_experiments():
    assert tuple(METHOD_KEYS) == LAYER_CASE_METHODS
    assert tuple(METHOD_KEYS.values()) == METHODS


def test_alpha_drift_is_the_change_of_log10_alpha_per_epoch_over_the_window():
    # layer 1 grows tenfold every 2 epochs, layer 2 sits at the clip
    alpha = [[10 ** (e / 2), 1.0] for e in range(30)]
    assert alpha_drift(alpha) == pytest.approx([0.5, 0.0])
    # a window longer than the run uses the whole run
    assert alpha_drift(alpha[:4], window=10) == pytest.approx([0.5, 0.0])
    # only the last window counts: growth that has stopped reads as stable
    stopped = [[10 ** min(e, 5), 1.0] for e in range(30)]
    assert alpha_drift(stopped) == pytest.approx([0.0, 0.0])
    assert all(math.isnan(v) for v in alpha_drift([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="alpha"):
        alpha_drift([1.0, 2.0])


def _result(names, epochs=3, sizes=(784, 10)):
    methods = {}
    for name in names:
        record = {"test_error": [0.1] * epochs, "seconds": 1.0}
        if name.startswith("VD"):
            record["alpha"] = [[1.0, 1.0]] * epochs
        methods[name] = record
    return {"methods": methods, "config": {"sizes": list(sizes), "epochs": epochs}, "world_size": 1}


def test_merge_keeps_the_experiments_order_and_refuses_what_does_not_fit_together():
    merged = merge_layer_case([_result(["no dropout", "VD α free"]), _result(["VD α ≤ 1 (Kingma)"])])
    assert list(merged["methods"]) == ["VD α ≤ 1 (Kingma)", "VD α free", "no dropout"]
    assert "| VD α free | 10.00 % | 10.00 % | 1 / 1 | +0.000 / +0.000 | 1 |" in format_layer_case(merged)
    with pytest.raises(ValueError, match="more than one"):
        merge_layer_case([_result(["VD α free"]), _result(["VD α free"])])
    with pytest.raises(ValueError, match="configurations differ"):
        merge_layer_case([_result(["VD α free"]), _result(["no dropout"], epochs=4)])
    with pytest.raises(ValueError, match="empty"):
        merge_layer_case([])


def test_each_vd_method_trains_with_its_clip_and_kl_weight(monkeypatch):
    weights = []

    class Recorded(VariationalDropoutELBO):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            weights.append(self.kl_weight)

    monkeypatch.setattr(layer_case, "VariationalDropoutELBO", Recorded)
    monkeypatch.setattr(layer_case, "_train_baseline", lambda *a, **k: None)
    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(
        train_images=torch.rand(8, 1, 2, 2, generator=g),
        test_images=torch.rand(4, 1, 2, 2, generator=g),
        train_labels=torch.tensor([0, 1] * 4),
        test_labels=torch.tensor([0, 1] * 2),
    )
    result = layer_case.run_layer_case(data, epochs=2, hidden=(3,), batch_size=4, methods=METHODS[:3])
    assert weights == [1.0, pytest.approx(1 / 3), 1.0]
    alphas = {name: record["alpha"] for name, record in result["methods"].items()}
    # the clipped ones never pass α = 1; the free one has left it (started at α = 1, the KL pushes it up)
    assert max(max(epoch) for epoch in alphas["VD α ≤ 1 (Kingma)"] + alphas["VD α ≤ 1, KL / 3"]) <= 1.0
    assert max(alphas["VD α free"][-1]) > 1.0
    assert result["config"]["seed"] == 0


def test_runs_of_other_seeds_or_process_counts_are_not_merged():
    other_seed = _result(["no dropout"])
    other_seed["config"]["seed"] = 1
    with pytest.raises(ValueError, match="configurations differ"):
        merge_layer_case([_result(["VD α free"]), other_seed])
    other_world = _result(["no dropout"])
    other_world["world_size"] = 2
    with pytest.raises(ValueError, match="configurations differ"):
        merge_layer_case([_result(["VD α free"]), other_world])
