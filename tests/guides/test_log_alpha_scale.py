"""``log_alpha_scale``: the guide learns ψ = log α / c, so an optimizer's step moves log α c times as far."""

import pyro
import pytest
import torch
from pyro.infer import SVI
from torch import nn

from pyro_vd.guides import AutoVariationalDropout
from pyro_vd.guides.auto_variational_dropout import NEAR_ZERO_SCALE
from pyro_vd.inference import VariationalDropoutELBO
from pyro_vd.models import BayesianMLP, LinearRegression, LogisticRegression
from pyro_vd.models.linear import linear_guide_defaults

X, Y = torch.randn(8, 6), torch.randint(0, 3, (8,))


def _guide(scale, **kwargs):
    pyro.clear_param_store()  # a store holding another c's log α for these sites is refused
    kwargs.setdefault("parameterization", "multiplicative")
    guide = AutoVariationalDropout(
        BayesianMLP([6, 5, 3], num_data=100), init_log_alpha=-2.0, log_alpha_scale=scale, **kwargs
    )
    guide(X, Y)
    return guide


@pytest.mark.parametrize("parameterization", ["multiplicative", "shrinkage"])
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_adams_first_step_moves_log_alpha_c_times_its_learning_rate(parameterization, scale):
    pyro.clear_param_store()
    guide = _guide(scale, parameterization=parameterization)
    before = guide.get_log_alpha("net.fc1.weight")
    svi = SVI(guide.model, guide, pyro.optim.Adam({"lr": 0.01}), VariationalDropoutELBO())
    svi.step(X, Y)
    moved = (guide.get_log_alpha("net.fc1.weight") - before).abs()
    # Adam's first step is lr · g / (|g| + eps) = lr for every parameter: c · lr in log α
    assert torch.allclose(moved, torch.full_like(moved, 0.01 * scale), rtol=1e-3)


def test_the_parameter_is_log_alpha_over_c_named_for_c():
    guide = _guide(4.0, parameterization="shrinkage")
    assert torch.equal(guide.log_alphas_x4.net.fc1.weight, torch.full((5, 6), -0.5))
    assert torch.equal(guide.get_log_alpha("net.fc1.weight"), torch.full((5, 6), -2.0))
    assert "log_alphas" not in dict(guide.named_children())
    assert "log_alphas_x4.net.fc1.weight_unconstrained" in guide.state_dict()
    assert _guide(2.5).log_alphas_x2p5.net.fc1.weight.shape == (5, 6)
    shared = _guide(4.0, granularity="shared")
    assert float(shared.shared_log_alpha_x4.detach()) == -0.5
    assert torch.equal(shared.get_log_alpha("net.fc1.weight"), torch.full((5, 6), -2.0))


def test_scale_one_keeps_the_unscaled_names_and_state_dict():
    guide = _guide(1.0)
    assert torch.equal(guide.log_alphas.net.fc1.weight, torch.full((5, 6), -2.0))
    assert not any("scale" in key or "scaled" in key for key in guide.state_dict())


@pytest.mark.parametrize(("saved", "loaded"), [(4.0, 1.0), (1.0, 4.0), (4.0, 2.0)])
@pytest.mark.parametrize("granularity", ["weight", "shared"])
@pyro.settings.context(module_local_params=True)  # two guides of one model side by side
def test_a_state_dict_saved_with_another_scale_is_refused(saved, loaded, granularity):
    source, target = _guide(saved, granularity=granularity), _guide(loaded, granularity=granularity)
    with pytest.raises(ValueError, match=f"log_alpha_scale={saved:g}"):
        target.load_state_dict(source.state_dict())
    # also through a parent module (an ELBO module, an AutoGuideList)
    with pytest.raises(ValueError, match=f"log_alpha_scale={saved:g}"):
        nn.ModuleDict({"guide": target}).load_state_dict(nn.ModuleDict({"guide": source}).state_dict())


@pyro.settings.context(module_local_params=True)
def test_a_state_dict_with_the_same_scale_round_trips():
    source, target = _guide(4.0), _guide(4.0)
    with torch.no_grad():
        source.log_alphas_x4.net.fc1.weight.fill_(-1.25)
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.get_log_alpha("net.fc1.weight"), torch.full((5, 6), -5.0))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "5"])
def test_a_bad_scale_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="log_alpha_scale must be a finite number > 0"):
        AutoVariationalDropout(BayesianMLP([6, 5, 3]), parameterization="multiplicative", log_alpha_scale=bad)


@pytest.mark.parametrize("kwargs", [{}, {"parameterization": "additive"}])
def test_a_scale_is_refused_where_the_guide_learns_log_sigma2(kwargs):
    with pytest.raises(ValueError, match="learns log σ² per weight"):
        AutoVariationalDropout(BayesianMLP([6, 5, 3]), log_alpha_scale=5.0, **kwargs)
    # a site with a shared α learns log α: allowed
    layer = {"net.fc2.weight": "layer"}
    AutoVariationalDropout(BayesianMLP([6, 5, 3]), granularity=layer, log_alpha_scale=5.0)


@pytest.mark.parametrize("model", [LinearRegression, LogisticRegression])
def test_the_linear_models_recommend_a_scaled_log_alpha(model):
    x, y = torch.randn(10, 20), torch.randint(0, 2, (10,)).float()
    guide = AutoVariationalDropout(model(20, num_data=10))
    guide(x, y)
    start = linear_guide_defaults(20)["init_log_alpha"]
    assert guide.log_alpha_scale == 5.0
    assert torch.allclose(guide.get_log_alpha("net.weight"), torch.full((1, 20), start))
    assert torch.allclose(guide.log_alphas_x5.net.weight, torch.full((1, 20), start / 5.0))
    # the user's choice wins over the recommendation
    pyro.clear_param_store()
    unscaled = AutoVariationalDropout(model(20, num_data=10), log_alpha_scale=1.0)
    unscaled(x, y)
    assert torch.allclose(unscaled.log_alphas.net.weight, torch.full((1, 20), start))


# --------------------------------------------------------------------------- the linear models' start
def test_the_linear_models_start_next_to_theta_zero():
    pyro.clear_param_store()
    x, y = torch.randn(10, 20), torch.randn(10)
    guide = AutoVariationalDropout(LinearRegression(20, num_data=10), init_seed=3)
    guide(x, y)
    # φ ~ N(0, (10⁻³)²), θ = φ / (1 + α) with α = e⁻⁸: next to 0, but not the point mass θ = 0, and
    # random, so that no learning rate cancels it; the guide's own generator draws it
    theta = guide.get_theta("net.weight")
    assert (theta != 0).all() and theta.abs().max() < 5 * NEAR_ZERO_SCALE
    assert 0.5 * NEAR_ZERO_SCALE < theta.std() < 1.5 * NEAR_ZERO_SCALE
    pyro.clear_param_store()
    again = AutoVariationalDropout(LinearRegression(20, num_data=10), init_seed=3)
    again(x, y)
    assert torch.equal(again.get_theta("net.weight"), theta)
    # a user's additive parameterization keeps the random start (the recommendation is for log α sites)
    pyro.clear_param_store()
    additive = AutoVariationalDropout(LinearRegression(20, num_data=10), parameterization="additive")
    additive(x, y)
    assert additive.get_theta("net.weight").std() > 0.05
    # "zeros" is still there for who asks for it
    pyro.clear_param_store()
    zeros = AutoVariationalDropout(LinearRegression(20, num_data=10), init_theta="zeros")
    zeros(x, y)
    assert torch.equal(zeros.get_theta("net.weight"), torch.zeros(1, 20))


@pytest.mark.parametrize("start", ["zeros", "near_zero"])
def test_zeros_is_refused_where_a_site_learns_log_sigma2(start):
    with pytest.raises(ValueError, match=f"init_theta='{start}' needs a learned log α"):
        AutoVariationalDropout(BayesianMLP([6, 5, 3]), init_theta=start)
    # a site of a mixed guide that learns log σ²: at set-up
    guide = AutoVariationalDropout(
        BayesianMLP([6, 5, 3]), granularity={"net.fc2.weight": "layer"}, init_theta=start
    )
    with pytest.raises(ValueError, match=r"site 'net\.fc1\.weight' learns log σ²"):
        guide(X, Y)
    with pytest.raises(ValueError, match="init_theta must be None, 'zeros', 'near_zero'"):
        AutoVariationalDropout(BayesianMLP([6, 5, 3]), init_theta="ones")


def test_a_strong_coefficient_is_not_pruned_on_its_way_with_a_large_learning_rate():
    # From a random start, a weight that must change sign passes θ ≈ 0, where nothing holds its α
    # down; with log α learned 5 times as fast and Adam(0.05) (the README's module route), the
    # coefficient 2 was pruned in 2 of these 8 draws (θ ≈ 0.006 after 300 steps). From θ = 0, and from
    # the linear models' start next to it (θ ~ N(0, (10⁻³)²)): 8 of 8.
    for seed in range(8):
        pyro.set_rng_seed(seed)
        x = torch.randn(500, 8)
        y = x[:, :2] @ torch.tensor([2.0, -1.0]) + 0.5 * torch.randn(500)
        with pyro.settings.context(module_local_params=True):
            guide = AutoVariationalDropout(LinearRegression(8, num_data=500))
            loss_fn = VariationalDropoutELBO()(guide.model, guide)
            loss_fn(x, y)
            optimizer = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
            for _ in range(300):
                optimizer.zero_grad()
                loss_fn(x, y).backward()
                optimizer.step()
            guide.apply_average()
            theta = guide.get_theta("net.weight")[0]
        assert abs(theta[0] - 2.0) < 0.2 and abs(theta[1] + 1.0) < 0.2, (seed, theta[:2])


def test_the_scale_is_fixed_and_an_older_pickled_guide_reads_as_one():
    guide = _guide(4.0)
    with pytest.raises(AttributeError):
        guide.log_alpha_scale = 2.0
    old = _guide(1.0)
    del old.__dict__["_log_alpha_scale"]  # a guide pickled before the setting existed
    assert old.log_alpha_scale == 1.0
    assert torch.equal(old.get_log_alpha("net.fc1.weight"), torch.full((5, 6), -2.0))


@pytest.mark.parametrize(("saved", "loaded"), [(5.0, 1.0), (1.0, 5.0), (5.0, 3.0)])
def test_the_param_store_of_another_scale_is_refused(saved, loaded, tmp_path):
    # the SVI route: a store saved by a guide with one c, loaded for a guide of the same model with another
    x, y = torch.randn(10, 20), torch.randn(10)
    pyro.clear_param_store()
    AutoVariationalDropout(LinearRegression(20, num_data=10), log_alpha_scale=saved)(x, y)
    pyro.get_param_store().save(tmp_path / "store.pt")
    pyro.clear_param_store()
    pyro.get_param_store().load(tmp_path / "store.pt")
    guide = AutoVariationalDropout(LinearRegression(20, num_data=10), log_alpha_scale=loaded)
    with pytest.raises(ValueError, match=f"param store holds log α .* log_alpha_scale={saved:g}"):
        guide(x, y)
    # the same c loads; a guide of other sites (another model) is not concerned
    pyro.clear_param_store()
    pyro.get_param_store().load(tmp_path / "store.pt")
    AutoVariationalDropout(LinearRegression(20, num_data=10), log_alpha_scale=saved)(x, y)
    mlp = BayesianMLP([6, 5, 3])
    AutoVariationalDropout(mlp, parameterization="multiplicative", log_alpha_scale=loaded)(X, Y)
    pyro.clear_param_store()


def test_a_checkpoint_of_another_scale_is_refused_before_the_guide_ran(tmp_path):
    from pyro_vd.inference import load_checkpoint, save_checkpoint

    x, y = torch.randn(10, 20), torch.randn(10)
    pyro.clear_param_store()
    guide = AutoVariationalDropout(LinearRegression(20, num_data=10), log_alpha_scale=1.0)
    optim = pyro.optim.Adam({"lr": 0.01})
    SVI(guide.model, guide, optim, VariationalDropoutELBO()).step(x, y)
    save_checkpoint(tmp_path / "ckpt.pt", optim=optim, epoch=1, guide=guide)
    pyro.clear_param_store()
    fresh = AutoVariationalDropout(LinearRegression(20, num_data=10))  # the default c = 5, not yet run
    with pytest.raises(ValueError, match=r"log_alpha_scale 1\.0, this guide 5\.0"):
        load_checkpoint(tmp_path / "ckpt.pt", optim=pyro.optim.Adam({"lr": 0.01}), guide=fresh)
    pyro.clear_param_store()


def test_a_granularity_for_a_site_the_model_lacks_is_an_error():
    # a misspelt site would keep one α per weight (and learn log σ², so a log_alpha_scale would do nothing)
    pyro.clear_param_store()
    guide = AutoVariationalDropout(
        BayesianMLP([6, 5, 3]), granularity={"net.fc9.weight": "layer"}, log_alpha_scale=5.0
    )
    with pytest.raises(ValueError, match=r"granularity names \['net\.fc9\.weight'\]"):
        guide(X, Y)
