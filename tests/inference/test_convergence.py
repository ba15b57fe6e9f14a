import pyro
import pytest
import torch

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, local_reparameterization
from pyro_vd.inference import LogAlphaDrift
from pyro_vd.models import BayesianMLP


def _trained(steps):
    x = torch.randn(200, 10)
    y = (x[:, 0] > 0).long()
    model = BayesianMLP([10, 20, 2], num_data=200)
    guide = AutoVariationalDropout(model)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    with local_reparameterization():
        svi.step(x, y)
        drift = LogAlphaDrift(guide)
        for _ in range(steps):
            svi.step(x, y)
    return drift, guide


def test_drift_counts_the_weights_that_crossed_the_threshold():
    drift, guide = _trained(150)
    before = torch.cat([guide.get_log_alpha(n).flatten() for n in guide.site_names])
    report = drift.update()
    assert report.total == 10 * 20 + 20 * 2
    # the first 150 steps prune: many weights go from kept (log α = −10 + …) to pruned
    assert report.crossed == report.newly_pruned > 0 and not report.settled
    assert "crossed log α = 3" in str(report) and "still drifting" in str(report)
    # nothing trained since: no weight crossed, nothing moved
    still = drift.update()
    assert still.crossed == 0 and still.median_move == 0 and still.settled
    assert torch.equal(before, torch.cat([guide.get_log_alpha(n).flatten() for n in guide.site_names]))


def test_tolerances_are_checked():
    _, guide = _trained(1)
    with pytest.raises(ValueError, match="crossing_tolerance"):
        LogAlphaDrift(guide, crossing_tolerance=-1)
