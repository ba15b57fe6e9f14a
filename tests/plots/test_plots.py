import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pyro
import pytest
import torch

from pyro_vd import AutoVariationalDropout, bayesianize
from pyro_vd.linear import RVR, VDClassifier, VDRegression
from pyro_vd.models.architectures import mlp
from pyro_vd.plots import (
    plot_alpha_trajectories,
    plot_batch_size,
    plot_coefficients,
    plot_first_layer_masks,
    plot_log_alpha_histogram,
    plot_log_alpha_vs_theta,
    plot_training_curves,
)


@pytest.fixture(scope="module")
def guide():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = bayesianize(mlp([784, 16, 10]), 100)
    guide = AutoVariationalDropout(model)
    guide(torch.randn(4, 784), torch.zeros(4, dtype=torch.long))
    with torch.no_grad():
        guide.log_sigma2s.net.fc1.weight.uniform_(-12, 4)
    return guide


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_layer_plots(guide):
    assert len(_panels(plot_log_alpha_vs_theta(guide, max_points=500))) == 2
    assert len(_panels(plot_log_alpha_histogram(guide))) == 2
    fig = plot_first_layer_masks(guide, units=4)
    assert len(_panels(fig)) == 5
    assert fig.axes[0].images[0].get_array().shape == (28, 28)
    with pytest.raises(ValueError, match="expected"):
        plot_first_layer_masks(guide, "net.fc2.weight")
    with pytest.raises(ValueError, match="not weight sites"):
        plot_log_alpha_histogram(guide, ["net.fc9.weight"])
    plt.close("all")


def test_linear_plots():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 60))
    y = X[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.standard_normal(200)
    for estimator in (VDRegression(), RVR()):
        fig = plot_coefficients(estimator.fit(X, y), max_features=20)
        assert len(fig.axes[0].get_yticklabels()) <= 20
    rows = [
        {"method": "VD-RVR", "metric": "test MSE", "value": 0.1, "pruned": 90},
        {"method": "VD SVI, batch 1 %", "metric": "test MSE", "value": 0.2, "pruned": 80},
        {"method": "VD SVI, batch 10 %", "metric": "test MSE", "value": 0.15, "pruned": 85},
    ]
    fig = plot_batch_size(rows)
    assert list(fig.axes[0].lines[0].get_xdata()) == [1.0, 10.0]
    with pytest.raises(ValueError, match="VD SVI"):
        plot_batch_size(rows[:1])
    plt.close("all")


def test_training_plots():
    history = [{"epoch": e, "test_error": 0.1 / e, "compression": e} for e in range(1, 6)]
    fig = plot_training_curves(history)
    assert len(fig.axes) == 2  # error and the twin axis of compression
    fig = plot_alpha_trajectories({"clipped": np.ones((5, 3)), "free": np.linspace(1, 4, 15).reshape(5, 3)})
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 3
    with pytest.raises(ValueError, match="empty"):
        plot_training_curves([])
    plt.close("all")


def _labels(ax):
    return [label.get_text() for label in ax.get_yticklabels()]


def test_coefficient_plot_labels_come_from_the_feature_names():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    names = ["age", "bmi", "dose", "height", "weight"]
    X = pd.DataFrame(rng.standard_normal((150, 5)), columns=names)
    y = X["bmi"].to_numpy() - X["dose"].to_numpy() + 0.3 * rng.standard_normal(150)
    fig = plot_coefficients(VDRegression().fit(X, y))
    assert _labels(fig.axes[0]) == names  # the first column at the top
    fig = plot_coefficients(VDRegression().fit(X, y), feature_names=list("abcde"))
    assert _labels(fig.axes[0]) == list("abcde")
    plt.close("all")


def test_coefficient_plot_draws_every_class():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((200, 6))
    scores = X[:, :2] @ np.array([[3.0, 0.0, -3.0], [0.0, 3.0, -3.0]]) + 0.5 * rng.standard_normal((200, 3))
    fit = VDClassifier().fit(X, np.array(["a", "b", "c"])[np.argmax(scores, 1)])
    fig = plot_coefficients(fit)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["class a", "class b", "class c"]
    assert _labels(panels[0]) == [f"x{i}" for i in range(6)]  # the panels share the feature axis
    for k, ax in enumerate(panels):
        theta = ax.collections[-1].get_offsets()[:, 0]  # the markers, top row first
        np.testing.assert_allclose(theta, fit.coef_[k])
    fig = plot_coefficients(fit, max_features=3)  # the same features in every panel
    assert all(ax.get_shared_y_axes().joined(ax, fig.axes[0]) for ax in _panels(fig))
    _, axes = plt.subplots(1, 3)
    assert plot_coefficients(fit, ax=axes).axes[0] is axes[0]
    with pytest.raises(ValueError, match="one Axes per class"):
        plot_coefficients(fit, ax=axes[0])
    plt.close("all")


def test_a_guide_with_several_sites_plots_the_site_named(guide):
    """The error for a guide of several sites says 'pass site=': plot_coefficients takes it."""
    with pytest.raises(ValueError, match="pass site="):
        plot_coefficients(guide)
    site = guide.site_names[1]  # (10, 16): the table has a row per weight
    labels = _labels(plot_coefficients(guide, site, max_features=12).axes[0])
    assert 12 <= len(labels) <= 160 and set(labels) <= {f"x{i}" for i in range(160)}
    plt.close("all")


def test_a_site_named_by_a_string_is_one_site(guide):
    # list("net.fc1.weight") was its characters: "['n', 'e', 't', ...] are not weight sites"
    assert len(_panels(plot_log_alpha_vs_theta(guide, "net.fc1.weight", max_points=100))) == 1
    assert len(_panels(plot_log_alpha_histogram(guide, "net.fc2.weight"))) == 1
    plt.close("all")


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda g: plot_first_layer_masks(g, "nope"), ValueError, "not weight sites"),  # (AttributeError)
        (lambda g: plot_first_layer_masks(g, units=0), ValueError, "units must be a positive integer"),
        (lambda g: plot_log_alpha_vs_theta(g, max_points=-5), ValueError, "max_points must be"),
        (
            lambda g: plot_coefficients(g, "net.fc1.weight", max_features=None),
            ValueError,
            "max_features must",
        ),
        (lambda g: plot_training_curves([{"epoch": 1}]), ValueError, r"lack \['test_error'\]"),
        (lambda g: plot_alpha_trajectories([1, 2]), TypeError, "must be a dict"),
        (lambda g: plot_alpha_trajectories({"a": np.ones((2, 2, 2))}), ValueError, r"\(epochs, layers\)"),
        (lambda g: plot_log_alpha_histogram(object()), TypeError, "expected an AutoVariationalDropout"),
        # ("'int' object is not iterable")
        (lambda g: plot_first_layer_masks(g, image_shape=784), ValueError, r"image_shape must be \(height"),
        # (log α for α: an empty log-scale panel)
        (lambda g: plot_alpha_trajectories({"a": [-3.0, -2.0]}), ValueError, "pass np.exp"),
    ],
    ids=[
        "masks site",
        "units",
        "max_points",
        "max_features",
        "history key",
        "not a dict",
        "3-d",
        "not a guide",
        "image_shape int",
        "log alpha",
    ],
)
def test_bad_arguments_are_named(guide, call, error, match):
    with pytest.raises(error, match=match):
        call(guide)
    plt.close("all")
