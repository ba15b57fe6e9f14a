import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_vd.distributions import LogUniform, VDNormal
from pyro_vd.guides import AutoVariationalDropout
from pyro_vd.inference import VariationalDropoutELBO
from pyro_vd.models import BayesianMLP, LeNet5, bayesianize

X, Y = torch.randn(8, 6), torch.randint(0, 3, (8,))


def _mlp():
    return BayesianMLP([6, 5, 3], num_data=100)


def test_covers_every_weight_site():
    model = _mlp()
    guide = AutoVariationalDropout(model)
    samples = guide(X, Y)
    assert guide.site_names == ["net.fc1.weight", "net.fc2.weight"]
    assert samples["net.fc1.weight"].shape == (5, 6)
    trace = pyro.poutine.trace(guide).get_trace(X, Y)
    q = trace.nodes["net.fc1.weight"]["fn"]
    assert isinstance(q.base_dist, VDNormal) and q.event_shape == (5, 6)


def test_initialization_defaults():
    guide = AutoVariationalDropout(_mlp())
    guide(X, Y)
    theta = guide.get_theta("net.fc1.weight")
    assert 0.1 < theta.std() * 6**0.5 < 3  # N(0, 1/fan_in)
    q = guide.posterior("net.fc1.weight")
    assert torch.allclose(q.log_sigma2, torch.full((5, 6), -10.0))


def test_init_seed_is_reproducible_and_uses_no_global_draws():
    a = AutoVariationalDropout(_mlp(), init_seed=3)
    b = AutoVariationalDropout(_mlp(), init_seed=3)
    a(X, Y)
    state = torch.get_rng_state()
    pyro.clear_param_store()
    b._setup_prototype(X, Y)
    assert torch.equal(torch.get_rng_state(), state)  # set-up drew nothing from the global stream
    assert torch.equal(a.get_theta("net.fc1.weight"), b.get_theta("net.fc1.weight"))


def test_init_from_pretrained_state_dict():
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    guide = AutoVariationalDropout(bayesianize(net, num_data=100), init_theta=net.state_dict())
    guide(X, Y)
    assert torch.equal(guide.get_theta("net.0.weight"), net[0].weight.detach())


def test_init_with_wrong_shape_is_a_clear_error():
    guide = AutoVariationalDropout(_mlp(), init_theta={"fc1.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"init_theta for site 'net.fc1.weight' has shape \(2, 2\)"):
        guide(X, Y)


@pytest.mark.parametrize(
    ("granularity", "shape"),
    [("weight", (5, 6)), ("output", (5, 1)), ("input", (1, 6)), ("layer", (1, 1)), ("shared", ())],
)
def test_granularity_shapes(granularity, shape):
    guide = AutoVariationalDropout(_mlp(), granularity=granularity, parameterization="multiplicative")
    guide(X, Y)
    if granularity == "shared":
        param = guide.shared_log_alpha
    else:
        param = guide.log_alphas.net.fc1.weight
    assert param.shape == shape
    assert guide.get_log_alpha("net.fc1.weight").shape == (5, 6)


@pytest.mark.parametrize(
    ("granularity", "shape"), [("weight", (5, 6)), ("output", (5, 1)), ("input", (1, 6)), ("layer", (1, 1))]
)
def test_a_weight_declared_through_plates_gets_the_granularity_asked_for(granularity, shape):
    """``with plate(5), plate(6): LogUniform()`` is the same weight as ``LogUniform(event_shape=(5, 6))``;
    with no event dims, "layer" and "output" used to give one α per weight."""
    x, y = torch.randn(30, 6), torch.randn(30, 5)

    def declared(plates):
        def model(x, y):
            if plates:
                with pyro.plate("out", 5, dim=-2), pyro.plate("in", 6, dim=-1):
                    w = pyro.sample("w", LogUniform())
            else:
                w = pyro.sample("w", LogUniform(event_shape=(5, 6)))
            with pyro.plate("data", len(x)):
                pyro.sample("y", dist.Normal(x @ w.T, 1.0).to_event(1), obs=y)

        return model

    for plates in (False, True):
        pyro.clear_param_store()
        guide = AutoVariationalDropout(
            declared(plates), granularity=granularity, parameterization="multiplicative"
        )
        guide(x, y)
        assert guide.log_alphas.w.shape == shape, plates
        assert guide.get_log_alpha("w").shape == (5, 6)


def test_conv_granularity():
    guide = AutoVariationalDropout(LeNet5(num_data=100), granularity="output")
    guide(torch.rand(2, 1, 28, 28), torch.tensor([1, 2]))
    assert guide.log_alphas.net.conv1.weight.shape == (20, 1, 1, 1)
    assert guide.parameterization("net.conv1.weight") == "multiplicative"


def test_granularity_dict():
    guide = AutoVariationalDropout(_mlp(), granularity={"net.fc2.weight": "layer"})
    guide(X, Y)
    assert guide.parameterization("net.fc1.weight") == "additive"
    assert guide.log_alphas.net.fc2.weight.shape == (1, 1)


def test_kingma_clip():
    guide = AutoVariationalDropout(_mlp(), max_log_alpha=0.0, init_log_sigma2=5.0)
    guide(X, Y)
    log_alpha = guide.get_log_alpha("net.fc1.weight")
    assert log_alpha.max() == 0.0


def test_median_and_quantiles():
    guide = AutoVariationalDropout(_mlp())
    median = guide.median(X, Y)
    assert torch.equal(median["net.fc1.weight"], guide.get_theta("net.fc1.weight"))
    quantiles = guide.quantiles([0.1, 0.5, 0.9])["net.fc1.weight"]
    assert quantiles.shape == (3, 5, 6)
    assert torch.allclose(quantiles[1], median["net.fc1.weight"])
    assert (quantiles[2] >= quantiles[0]).all()


def test_weights_in_a_subsampled_plate():
    def model(x):
        with pyro.plate("units", 10, subsample_size=4):
            w = pyro.sample("w", LogUniform())
        pyro.sample("obs", dist.Normal(w.sum(), 1.0), obs=torch.tensor(0.0))

    guide = AutoVariationalDropout(model)
    guide(X)
    assert guide.get_theta("w").shape == (10,)
    with pyro.poutine.trace() as trace:
        guide(X)
    assert trace.trace.nodes["w"]["value"].shape == (4,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="granularity"):
        AutoVariationalDropout(_mlp(), granularity="neuron")
    with pytest.raises(ValueError, match="parameterization"):
        AutoVariationalDropout(_mlp(), parameterization="log")
    with pytest.raises(ValueError, match="kl method"):
        AutoVariationalDropout(_mlp(), kl_method="mc")
    with pytest.raises(ValueError, match="min_log_alpha"):
        AutoVariationalDropout(_mlp(), min_log_alpha=1.0, max_log_alpha=0.0)
    for bad in (3.0, True, math.nan, torch.tensor(3.0), b"zeros"):
        with pytest.raises(TypeError, match="init_theta must be None, 'zeros', 'near_zero', a mapping"):
            AutoVariationalDropout(_mlp(), init_theta=bad)
    for bad in ("3", [0.0]):
        with pytest.raises((TypeError, ValueError), match="init_theta must be None"):
            AutoVariationalDropout(_mlp(), init_theta=bad)
    for bad in ("x", True, [1.0]):
        with pytest.raises(TypeError, match="train_prune must be a real number"):
            AutoVariationalDropout(_mlp(), train_prune=bad)
    # rejected when the guide is built, not at the first step
    for granularity in ("output", {"net.0.weight": "layer"}):
        with pytest.raises(ValueError, match="needs parameterization='multiplicative'"):
            AutoVariationalDropout(_mlp(), granularity=granularity, parameterization="additive")
    with pytest.raises(RuntimeError, match="has not been run yet"):
        AutoVariationalDropout(_mlp()).site_names  # noqa: B018


def test_more_bad_arguments_are_named():
    """Each was accepted (init_seed=1.5 read as 1, a model of 5, enabled="no" left the trick on) or a raw
    AttributeError (an unknown site) or Pyro's "Cannot transform _NonZeroReal constraints"."""
    from pyro_vd.poutine import local_reparameterization

    for bad in (1.5, -1, 2**64):
        with pytest.raises(ValueError, match=r"init_seed must be an integer in \[0, 2\*\*64\)"):
            AutoVariationalDropout(_mlp(), init_seed=bad)
    with pytest.raises(TypeError, match="model must be a Pyro model"):
        AutoVariationalDropout(5)
    with pytest.raises(TypeError, match="enabled must be True or False"):
        local_reparameterization(enabled="no")
    model = _mlp()
    guide = AutoVariationalDropout(model)
    guide(torch.randn(4, 6), torch.zeros(4, dtype=torch.long))
    for read in (guide.get_theta, guide.get_log_alpha, guide.posterior):
        with pytest.raises(
            ValueError, match="'bogus' is not a weight site of the guide; its weight sites are"
        ):
            read("bogus")
    with pytest.raises(ValueError, match="not a neuron-noise site"):
        guide.get_noise_snr("net.0.weight")
    for autoguide in (pyro.infer.autoguide.AutoNormal, pyro.infer.autoguide.AutoDelta):
        pyro.clear_param_store()
        with pytest.raises(
            NotImplementedError, match=r"guide the weights with pyro_vd\.AutoVariationalDropout"
        ):
            autoguide(model)(torch.randn(4, 6), torch.zeros(4, dtype=torch.long))


def test_refuses_models_without_log_uniform_sites():
    def model(x):
        pyro.sample("obs", dist.Normal(0.0, 1.0), obs=x.sum())

    with pytest.raises(ValueError, match="found no LogUniform or TruncatedLogUniform sites"):
        AutoVariationalDropout(model)(X)


def test_refuses_other_latent_sites_by_name():
    def model(x):
        pyro.sample("w", LogUniform(event_shape=(6,)))
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"latent sites z \(Normal\).*AutoGuideList"):
        AutoVariationalDropout(model)(X)


def test_init_theta_that_matches_no_site_is_an_error():
    guide = AutoVariationalDropout(_mlp(), init_theta={"encoder.weight": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match=r"init_theta matches none of the guide's sites.*fc1\.weight"):
        guide(X, Y)


def test_init_theta_reports_sites_left_random_and_unused_keys():
    model = _mlp()
    site = model.weight_sites[0]
    shape = model.template.get_submodule(site[len("net.") : -len(".weight")]).weight.shape
    init = {site: torch.full(shape, 0.5), "head.weight": torch.zeros(2, 2), "0.bias": torch.zeros(1)}
    guide = AutoVariationalDropout(model, init_theta=init)
    with pytest.warns(UserWarning, match=r"have no key and start from random θ.*'head\.weight'"):
        guide(X, Y)
    assert torch.equal(guide.get_theta(site), torch.full(shape, 0.5))


# ------------------------------------------------------------------ defaults recommended by the model
def test_linear_models_recommend_shrinkage_from_a_dense_start_held_for_500_steps():
    from pyro_vd.models import LinearRegression, LogisticRegression
    from pyro_vd.models.linear import LINEAR_INIT_LOG_ALPHA

    start = LINEAR_INIT_LOG_ALPHA
    assert start == -8.0
    for model in (LinearRegression(6, num_data=100), LogisticRegression(6, num_data=100)):
        assert model.relevance_rule == "evidence"
        guide = AutoVariationalDropout(model)
        guide(X, torch.rand(8).round())
        assert guide.parameterization("net.weight") == "shrinkage"
        assert guide.hold_log_alpha == 500
        q = guide.posterior("net.weight")
        assert torch.allclose(q.log_alpha, torch.full((1, 6), start), atol=1e-3)
        phi = guide.thetas.net.weight.detach()
        # θ = φ / (1 + α): the guide reports θ, not φ
        assert torch.allclose(guide.get_theta("net.weight"), phi * torch.sigmoid(-q.log_alpha.detach()))
        pyro.clear_param_store()
    # the start does not depend on the number of features
    assert LinearRegression(1).guide_defaults["init_log_alpha"] == start
    assert LinearRegression(1000).guide_defaults["init_log_alpha"] == start
    assert AutoVariationalDropout(LinearRegression(3), hold_log_alpha=0).hold_log_alpha == 0


def test_deep_nets_keep_sparse_vd_defaults():
    guide = AutoVariationalDropout(_mlp())
    guide(X, Y)
    assert guide.parameterization("net.fc1.weight") == "additive"
    assert torch.allclose(guide.posterior("net.fc1.weight").log_sigma2, torch.full((5, 6), -10.0))


def test_explicit_settings_override_the_models_recommendation():
    from pyro_vd.models import LinearRegression

    guide = AutoVariationalDropout(LinearRegression(6, num_data=100), parameterization="additive")
    guide(X, torch.randn(8))
    assert guide.parameterization("net.weight") == "additive"
    assert torch.allclose(guide.posterior("net.weight").log_sigma2, torch.full((1, 6), -10.0))
    pyro.clear_param_store()
    guide = AutoVariationalDropout(LinearRegression(6, num_data=100), init_log_alpha=-1.0)
    guide(X, torch.randn(8))
    assert torch.allclose(guide.get_log_alpha("net.weight"), torch.full((1, 6), -1.0))


def test_shrinkage_clips_alpha_in_theta_too():
    guide = AutoVariationalDropout(
        _mlp(), parameterization="shrinkage", init_log_alpha=5.0, max_log_alpha=1.0
    )
    guide(X, Y)
    q = guide.posterior("net.fc1.weight")
    phi = guide.thetas.net.fc1.weight.detach()
    assert torch.allclose(q.log_alpha, torch.ones(5, 6))
    assert torch.allclose(q.loc, phi / (1 + torch.e))


def test_unknown_guide_defaults_are_refused():
    model = _mlp()
    model.guide_defaults = {"init_log_sigma": 1.0}
    with pytest.raises(ValueError, match="guide_defaults has unknown keys"):
        AutoVariationalDropout(model)


def test_the_parameter_lookup_follows_replaced_submodules_and_old_pickles():
    """The guide keeps the modules on each site's dotted path (a measured share of a training step);
    a replaced submodule is followed, and a guide pickled before that cache existed still runs."""
    from pyro.nn import PyroModule, PyroParam
    from torch.distributions import constraints

    import pyro_vd

    model = pyro_vd.models.BayesianMLP([6, 5, 2], num_data=100)
    guide = pyro_vd.guides.AutoVariationalDropout(model)
    x, y = torch.randn(10, 6), torch.randint(0, 2, (10,))
    guide(x, y)
    name = guide.site_names[0]
    *parents, last, _ = name.split(".")
    module = guide.thetas
    for part in parents:
        module = getattr(module, part)
    leaf = PyroModule()
    leaf.weight = PyroParam(torch.zeros(5, 6), constraints.real, 2)
    setattr(module, last, leaf)
    assert (guide.get_theta(name) == 0).all() and (guide(x, y)[name] != 0).any()
    del guide.__dict__["_leaves"]  # as unpickled from a version without the cache
    assert guide(x, y)[name].shape == (5, 6)


def test_train_prune_zeroes_the_sampled_mean_and_keeps_the_readouts():
    guide = AutoVariationalDropout(_mlp(), train_prune=3.0, init_log_sigma2=-10.0)
    guide(X, Y)
    name = "net.fc1.weight"
    with torch.no_grad():  # make some weights pruned: log α = log σ² − log θ² ≥ 3
        guide.log_sigma2s.net.fc1.weight[:2] = 5.0
    trace = pyro.poutine.trace(guide).get_trace(X, Y)
    q = trace.nodes[name]["fn"].base_dist
    pruned = guide.get_log_alpha(name) >= 3.0
    assert pruned[:2].all() and not pruned[2:].any()
    assert (q.loc.detach()[pruned] == 0).all()
    assert torch.equal(q.loc.detach()[~pruned], guide.get_theta(name)[~pruned])
    assert (guide.get_theta(name)[pruned] != 0).all()  # the readout is the unpruned θ
    assert not hasattr(guide.posterior(name), "prune_above") or guide.posterior(name).prune_above is None
    with pytest.raises(ValueError, match="prune_above"):
        AutoVariationalDropout(_mlp(), train_prune=float("nan"))


@pytest.mark.parametrize("averaging", [3.0, False])
def test_train_prune_reads_the_averaged_log_alpha_where_the_guide_averages(averaging):
    # the live log α of small minibatches jitters; with averaging the mask follows the average
    from pyro_vd.models import LinearRegression

    pyro.clear_param_store()
    x, y = torch.randn(50, 4), torch.randn(50)
    model = LinearRegression(4, num_data=50)
    guide = AutoVariationalDropout(model, train_prune=-2.0, averaging=averaging, hold_log_alpha=0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), VariationalDropoutELBO())
    for _ in range(3):
        svi.step(x, y)
    name = "net.weight"
    with torch.no_grad():  # the live log α of feature 0 jumps past the bound; its average is near −8
        guide.log_alphas_x5.net.weight[0, 0] = 1.0
    q = pyro.poutine.trace(guide).get_trace(x, y).nodes[name]["fn"].base_dist
    live = guide.get_log_alpha(name)[0]
    assert live[0] > -2.0 and (live[1:] < -7).all()
    if averaging:
        assert torch.equal(q.loc.detach(), guide.get_theta(name))  # the average keeps it
        averaged = guide._averaged_log_alpha(name)
        assert averaged is not None and (averaged < -7).all()
    else:
        assert q.loc.detach()[0, 0] == 0 and (q.loc.detach()[0, 1:] != 0).all()
    pyro.clear_param_store()


def test_a_traced_step_prunes_by_the_live_log_alpha(monkeypatch):
    # torch.jit.trace (JitTrace_ELBO) would keep the average's tensor of the tracing call as a constant
    from pyro_vd.models import LinearRegression

    pyro.clear_param_store()
    x, y = torch.randn(50, 4), torch.randn(50)
    model = LinearRegression(4, num_data=50)
    guide = AutoVariationalDropout(model, hold_log_alpha=0)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), VariationalDropoutELBO())
    svi.step(x, y)
    assert guide._averaged_log_alpha("net.weight") is not None
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert guide._averaged_log_alpha("net.weight") is None
    pyro.clear_param_store()


def test_a_model_may_recommend_train_time_pruning_and_false_turns_it_off():
    from pyro_vd.models import LinearRegression
    from pyro_vd.models.linear import linear_guide_defaults

    model = LinearRegression(30)
    assert "train_prune" not in model.guide_defaults  # measured, not recommended (linear_guide_defaults)
    assert AutoVariationalDropout(model).train_prune is None
    model.guide_defaults = {**model.guide_defaults, "train_prune": -2.0}
    assert AutoVariationalDropout(model).train_prune == -2.0
    assert AutoVariationalDropout(model, train_prune=1.5).train_prune == 1.5
    assert AutoVariationalDropout(model, train_prune=False).train_prune is None  # off
    assert AutoVariationalDropout(_mlp()).train_prune is None  # deep nets: off unless asked
    with pytest.raises(TypeError, match="n_features must be an int"):
        linear_guide_defaults(None)
    with pytest.raises(ValueError, match="n_features must be >= 1"):
        linear_guide_defaults(0)


@pytest.mark.parametrize("granularity", [None, "output"])
def test_a_store_left_by_another_models_guide_is_refused_by_name(granularity):
    """Pyro hands a guide the stored tensor of its name: one of another shape (another model fitted
    without clear_param_store, or another granularity) used to fail later, in the model, blaming x."""
    from pyro_vd.models import LinearRegression

    pyro.clear_param_store()
    x3, x5, y = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4)
    AutoVariationalDropout(LinearRegression(3, num_data=4))(x3, y)
    options = {} if granularity is None else {"granularity": granularity}
    wider = AutoVariationalDropout(LinearRegression(5, num_data=4), **options)
    with pytest.raises(ValueError, match=r"already holds 'AutoVariationalDropout\.thetas\.net\.weight'"):
        wider(x5, y)
    pyro.clear_param_store()
    wider(x5, y)  # after the clear: fine
    fitted = pyro.get_param_store()["AutoVariationalDropout.thetas.net.weight"].detach().clone()
    AutoVariationalDropout(LinearRegression(5, num_data=4), **options)(x5, y)  # the same shapes: Pyro's
    assert torch.equal(pyro.get_param_store()["AutoVariationalDropout.thetas.net.weight"], fitted)
    pyro.clear_param_store()


def test_another_granularity_of_the_same_model_is_refused_too():
    pyro.clear_param_store()
    x, y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    model = BayesianMLP([3, 4, 2], num_data=4)
    AutoVariationalDropout(model, granularity="output")(x, y)  # one α per output neuron
    with pytest.raises(ValueError, match=r"already holds 'AutoVariationalDropout\.log_alphas"):
        AutoVariationalDropout(model, granularity="layer")(x, y)
    pyro.clear_param_store()


def test_a_failed_set_up_fails_the_same_way_again():
    """A set-up error used to leave a half-built guide: the next call ran on, with an AttributeError
    or KeyError from deep inside, instead of the error that says what to fix."""
    model = BayesianMLP([3, 4, 2], num_data=4)
    guide = AutoVariationalDropout(model, granularity={"net.fc9.weight": "layer"})
    x, y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
    for _ in range(2):
        with pytest.raises(ValueError, match="granularity names"):
            guide(x, y)
        assert guide.prototype_trace is None


def test_saving_a_guide_keeps_its_model_and_its_models_relevance_rule():
    """Pyro's AutoGuide.__getstate__ cleared the live guide's model: after torch.save(guide) the linear
    models' evidence rule τ(d) fell back to log α ≤ 3 on the live guide and on the reloaded one."""
    import io

    from pyro.infer.autoguide import AutoGuideList, AutoNormal

    from pyro_vd.inference import log_alpha_bound
    from pyro_vd.linear.relevance import evidence_log_alpha_threshold
    from pyro_vd.models import LinearRegression

    model = LinearRegression(20, num_data=100)
    guide = AutoVariationalDropout(model)
    X20, y20 = torch.randn(100, 20), torch.randn(100)
    guide(X20, y20)
    site = guide.site_names[0]
    tau = evidence_log_alpha_threshold(20)
    assert log_alpha_bound(guide, site) == pytest.approx(tau)
    buffer = io.BytesIO()
    torch.save(guide, buffer)
    assert guide.model is model and log_alpha_bound(guide, site) == pytest.approx(tau)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded._model is None and log_alpha_bound(loaded, site) == pytest.approx(tau)
    # inside an AutoGuideList the parts keep their master (Pyro clears it on the live parts too)
    listed = AutoGuideList(model)
    listed.append(AutoVariationalDropout(pyro.poutine.block(model, expose=[site])))
    listed.append(AutoNormal(pyro.poutine.block(model, hide=[site])))
    listed(X20, y20)
    torch.save(listed, io.BytesIO())
    assert listed[0].master is not None and listed[0].master() is listed


@pytest.mark.parametrize(
    "name", ["init_log_sigma2", "init_log_alpha", "init_noise_loc", "init_noise_log_scale"]
)
def test_non_finite_starts_are_refused_when_the_guide_is_built(name):
    # NaN was accepted here and failed at the first step as "the optimization diverged"
    from pyro_vd.models import BayesianMLP

    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"{name} must be a finite real number"):
            AutoVariationalDropout(BayesianMLP([4, 3], num_data=10), **{name: bad})


@pytest.mark.parametrize("train_prune, max_log_alpha", [(3.0, 3.0), (5.0, 3.0)])
def test_train_time_pruning_at_or_above_the_clip_is_refused(train_prune, max_log_alpha):
    # clipped at 3 and pruned at 3 while training, half the weights trained with mean 0 while sparsity
    # counted all 48 kept and deterministic() deployed their θ; above the clip nothing was ever pruned
    with pytest.raises(ValueError, match=r"train_prune \(\S+\) must be below max_log_alpha"):
        AutoVariationalDropout(_mlp(), train_prune=train_prune, max_log_alpha=max_log_alpha)
    AutoVariationalDropout(_mlp(), train_prune=3.0, max_log_alpha=8.0)  # the authors' recipe


@pytest.mark.parametrize(
    "argument, value", [("init_noise_loc", -25.0), ("init_noise_loc", 10.0), ("init_noise_log_scale", 6.0)]
)
def test_a_neuron_noise_start_outside_its_clamp_is_refused(argument, value):
    # the posterior clamps μ and log σ to [-20, 5], where the clamp has no gradient: init_noise_loc=-25
    # never moved in 100 steps, every neuron at E θ = 2e-9 reported kept at SNR 11.7
    model = bayesianize(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), neuron_noise=True)
    with pytest.raises(ValueError, match=rf"{argument} must lie in \[-20, 5\]"):
        AutoVariationalDropout(model, **{argument: value})
    AutoVariationalDropout(model, **{argument: -20.0 if value < 0 else 5.0})  # the bounds themselves


def test_a_reader_says_when_the_param_store_holds_other_values(tmp_path):
    # outside a call the guide reads its own tensors (as Pyro's autoguides): after the store was loaded
    # get_theta gave the replaced θ, where SVI and Predictive use the loaded one, without a word
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = _mlp()
    guide = AutoVariationalDropout(model)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), VariationalDropoutELBO())
    for _ in range(3):
        svi.step(X, Y)
    pyro.get_param_store().save(tmp_path / "store.pt")
    saved = guide.get_theta("net.fc1.weight")
    svi.step(X, Y)
    pyro.get_param_store().load(tmp_path / "store.pt")
    with pytest.warns(UserWarning, match="holds other values than Pyro's param store"):
        guide.get_theta("net.fc1.weight")
    pyro.infer.Predictive(model, guide=guide, num_samples=1)(X)  # it takes the store's values
    assert torch.equal(guide.get_theta("net.fc1.weight"), saved)  # and says nothing
