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


class _Guide:
    """A stand-in guide whose log α the test sets (one site): LogAlphaDrift reads only ``site_names``,
    ``get_log_alpha`` and the clips ``max_log_alpha`` / ``min_log_alpha``."""

    site_names = ("w",)
    max_log_alpha = min_log_alpha = None

    def __init__(self, log_alpha):
        self.set(log_alpha)

    def set(self, log_alpha):
        self.log_alpha = torch.as_tensor(log_alpha, dtype=torch.float64)

    def get_log_alpha(self, name):
        return self.log_alpha.clone()


def test_a_weight_climbing_steadily_towards_the_threshold_is_not_settled():
    # The linear-ARD case (correlated features, Adam): an irrelevant feature's log α climbs steadily
    # from −5 towards the bound −2, far from it for most of the way, while no weight crosses and none
    # lies within 1 of the bound. A relevant weight jitters far below it; a pruned one sits above.
    guide = _Guide([-5.0, -9.0, 5.0])
    drift = LogAlphaDrift(guide, threshold=-2.0, crossing_tolerance=0.0)
    reports = []
    for k in range(1, 151):
        guide.set([-5.0 + 0.016 * k, -9.0 + 0.1 * (-1) ** k, 5.0])
        reports.append(drift.update())
    # at k updates it is 3 − 0.016 k from the bound and reaches it within k more from k = 94 on; from
    # k = 125 on it lies within 1 of the bound, where its move per update (0.016) is below the
    # median-move tolerance (0.05), but it still heads for the bound (another feature of the
    # linear-ARD runs climbed through that last unit at 0.024–0.039 an epoch)
    assert [r.heading for r in reports] == [int(k >= 94) for k in range(1, 151)]
    assert [r.settled for r in reports] == [k < 94 for k in range(1, 151)]
    assert reports[130].near_threshold == 1 and reports[130].median_move < 0.05
    assert all(r.crossed == 0 for r in reports)
    assert "1 heading for it: still drifting" in str(reports[100])
    assert len(drift._anchors) <= 2  # snapshots at the last two powers of two, not one per update


def test_a_noisy_climb_is_heading_at_every_update_not_only_when_its_last_move_points_up():
    # the same climb with minibatch noise on log α (sd 0.02 an update, larger than the climb's 0.016):
    # the last move points down in about a third of the updates, the trend does not
    generator = torch.Generator().manual_seed(0)
    noise = 0.02 * torch.randn(150, generator=generator, dtype=torch.float64)
    guide = _Guide([-5.0])
    drift = LogAlphaDrift(guide, threshold=-2.0, crossing_tolerance=0.0)
    heading = {}
    for k in range(1, 151):
        guide.set([-5.0 + 0.016 * k + float(noise[k - 1])])
        heading[k] = drift.update().heading
    assert all(heading[k] == 1 for k in range(100, 119))  # 0.2 past the start, 0.11 before the band
    assert sum(float(noise[k - 1] - noise[k - 2]) < -0.016 for k in range(100, 119)) >= 3


def test_the_trend_is_taken_over_the_later_half_of_the_updates():
    # Away from the bound for 64 updates, then towards it: over the whole history the weight has moved
    # away (or not at all at k = 128: −3.5 then and now); over the later part it climbed (at k = 123
    # from −5.1 at update 32 to −3.75: 1.35 in 91 updates, 1.83 in 123 more, 1.75 to go).
    guide = _Guide([-3.5])
    drift = LogAlphaDrift(guide, threshold=-2.0, crossing_tolerance=0.0)
    heading = {}
    for k in range(1, 129):
        guide.set([-3.5 - 0.05 * k if k <= 64 else -6.7 + 0.05 * (k - 64)])
        heading[k] = drift.update().heading
    assert [k for k in heading if heading[k]] == [123, 124, 125, 126, 127, 128]


def test_a_weight_that_stopped_or_moves_away_is_not_heading():
    guide = _Guide([-5.0, -5.0, 0.0])
    drift = LogAlphaDrift(guide, threshold=-2.0, crossing_tolerance=0.0)
    for k in range(1, 61):  # up towards the bound, down away from it, and a pruned one moving away
        guide.set([-5.0 + 0.03 * k, -5.0 - 0.03 * k, 0.03 * k])
        moving = drift.update()
    assert moving.heading == 1 and not moving.settled
    stopped = drift.update()  # the learning rate decayed to 0: nothing moves any more
    assert stopped.heading == 0 and stopped.settled


def test_a_pruned_weight_coming_down_steadily_is_heading_for_the_threshold():
    guide = _Guide([3.0, 3.0, 3.0])
    drift = LogAlphaDrift(guide, threshold=-2.0, crossing_tolerance=0.0)
    for k in range(1, 61):  # down by 0.05 an update, by 0.01, and not at all
        guide.set([3.0 - 0.05 * k, 3.0 - 0.01 * k, 3.0])
        report = drift.update()
    # at k = 60 the first is 2 from the bound and at its trend would come down 3 in 60 more updates; the
    # second is 4.4 away and would come down 0.6
    assert report.heading == 1 and not report.settled


def test_weights_near_the_threshold_that_barely_move_or_far_ones_that_jitter_are_not_heading():
    generator = torch.Generator().manual_seed(0)
    near = -2.0 - 0.004 + 0.001 * torch.randn(200, 1000, generator=generator, dtype=torch.float64)
    far = -4.0 + 0.1 * torch.randn(200, 1000, generator=generator, dtype=torch.float64)  # 20 sd away
    guide = _Guide(torch.cat([near[0], far[0]]))
    drift = LogAlphaDrift(guide, threshold=-2.0)  # default tolerances: at most 2 of 2000 may cross
    reports = []
    for k in range(1, 200):
        guide.set(torch.cat([near[k], far[k]]))
        reports.append(drift.update())
    assert all(r.heading == 0 for r in reports)  # the near ones are judged by their median move
    assert sum(r.settled for r in reports) >= 0.9 * len(reports)  # a crossing now and then


def test_a_weight_the_guide_clips_below_the_threshold_is_never_heading():
    guide = _Guide([-10.0])
    guide.max_log_alpha = 0.0  # Kingma's α ≤ 1: log α = 3 cannot be reached
    drift = LogAlphaDrift(guide, threshold=3.0, crossing_tolerance=0.0)
    for k in range(1, 101):
        guide.set([min(-10.0 + 0.1 * k, 0.0)])
        assert drift.update().heading == 0


def test_a_tracker_restored_from_its_state_reports_what_the_uninterrupted_one_does():
    path = [-3.5 - 0.05 * k if k <= 64 else -6.7 + 0.05 * (k - 64) for k in range(1, 129)]
    guide = _Guide([-3.5])
    whole = LogAlphaDrift(guide, threshold=-2.0, crossing_tolerance=0.0)
    reports = []
    for k, value in enumerate(path, start=1):
        guide.set([value])
        reports.append(whole.update())
        if k == 100:
            state = whole.state_dict()
    restored = LogAlphaDrift(_Guide([path[99]]), threshold=-2.0, crossing_tolerance=0.0)
    restored.load_state_dict(state)
    again = []
    for value in path[100:]:
        restored.guide.set([value])
        again.append(restored.update())
    assert again == reports[100:] and any(r.heading for r in again)
    with pytest.raises(ValueError, match="of 1 weights; this guide has 2"):
        LogAlphaDrift(_Guide([-3.0, -3.0]), threshold=-2.0).load_state_dict(state)


def test_a_guide_without_weight_sites_is_refused_with_a_pointer_to_neuron_sparsity():
    from torch import nn

    from pyro_vd import bayesianize

    model = bayesianize(
        nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3)), neuron_noise=True, sparse_weights=False
    )
    guide = AutoVariationalDropout(model)
    guide(torch.randn(16, 8), torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="neuron_sparsity"):
        LogAlphaDrift(guide)
