"""Per-layer pictures of a trained Sparse VD network: log α against θ, histograms, first-layer masks."""

import math

import numpy as np

from .._validation import positive_int
from ..inference.pruning import check_vd_guide, log_alpha_bound


def _figure(n_panels, width=4.0, height=3.2, columns=None):
    import matplotlib.pyplot as plt

    columns = columns or min(n_panels, 3)
    rows = math.ceil(n_panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def _sites(guide, sites):
    check_vd_guide(guide)
    if isinstance(sites, str):  # one site's name (list("net.0.weight") would be its characters)
        sites = [sites]
    sites = list(guide.site_names if sites is None else sites)
    unknown = [s for s in sites if s not in guide.site_names]
    if unknown:
        raise ValueError(f"{unknown} are not weight sites of the guide ({guide.site_names})")
    if not sites:
        raise ValueError("the guide has no weight sites to plot")
    return sites


def plot_log_alpha_vs_theta(guide, sites=None, *, threshold=None, max_points=20000, seed=0):
    """The classic Sparse VD picture, one panel per layer: log α against θ, pruned weights (log α above
    the bound of ``threshold``, :func:`~pyro_vd.inference.pruning.log_alpha_bound`: by default the
    model's rule, else 3) in grey, at most ``max_points`` weights per panel (a fixed random subset)."""
    sites = _sites(guide, sites)
    positive_int(max_points, "max_points")
    fig, axes = _figure(len(sites))
    rng = np.random.default_rng(seed)
    for ax, name in zip(axes, sites, strict=True):
        theta = guide.get_theta(name).cpu().numpy().ravel()
        log_alpha = guide.get_log_alpha(name).cpu().numpy().ravel()
        if theta.size > max_points:
            keep = rng.choice(theta.size, max_points, replace=False)
            theta, log_alpha = theta[keep], log_alpha[keep]
        bound = log_alpha_bound(guide, name, threshold)
        pruned = log_alpha > bound
        ax.scatter(theta[pruned], log_alpha[pruned], s=2, c="0.7", label="pruned", rasterized=True)
        ax.scatter(theta[~pruned], log_alpha[~pruned], s=2, c="C0", label="kept", rasterized=True)
        ax.axhline(bound, color="C3", lw=0.8, ls="--")
        ax.set_xlabel("θ")
        ax.set_ylabel("log α")
        ax.set_title(name, fontsize=9)
    axes[0].legend(loc="lower right", fontsize=8, markerscale=4)
    fig.tight_layout()
    return fig


def plot_log_alpha_histogram(guide, sites=None, *, threshold=None, bins=80):
    """Histogram of log α per layer, with the pruning bound marked (``threshold`` as for
    :func:`plot_log_alpha_vs_theta`)."""
    sites = _sites(guide, sites)
    fig, axes = _figure(len(sites))
    for ax, name in zip(axes, sites, strict=True):
        log_alpha = guide.get_log_alpha(name).cpu().numpy().ravel()
        bound = log_alpha_bound(guide, name, threshold)
        ax.hist(log_alpha, bins=bins, color="C0")
        ax.axvline(bound, color="C3", lw=0.8, ls="--")
        ax.set_xlabel("log α")
        ax.set_ylabel("weights")
        ax.set_title(f"{name}: {100 * np.mean(log_alpha > bound):.1f} % pruned", fontsize=9)
    fig.tight_layout()
    return fig


def plot_first_layer_masks(guide, site=None, *, image_shape=(28, 28), units=8, threshold=None):
    """Kept-weight masks of the first layer as images (MNIST: 28×28): the number of kept connections of
    each input pixel, then the masks of the ``units`` output units with the most kept weights."""
    (site,) = _sites(guide, [site] if site is not None else guide.site_names[:1])
    positive_int(units, "units")
    if not (
        isinstance(image_shape, tuple | list)
        and len(image_shape) == 2
        and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in image_shape)
    ):  # (784 was "'int' object is not iterable")
        raise ValueError(f"image_shape must be (height, width), two positive integers; got {image_shape!r}")
    log_alpha = guide.get_log_alpha(site).cpu().numpy()
    if log_alpha.ndim != 2 or log_alpha.shape[1] != math.prod(image_shape):
        expected = f"(units, {math.prod(image_shape)})"
        raise ValueError(
            f"site {site!r} has weights of shape {log_alpha.shape}; expected {expected} for inputs of "
            f"shape {image_shape}"
        )
    kept = log_alpha <= log_alpha_bound(guide, site, threshold)
    order = np.argsort(-kept.sum(1))[:units]
    fig, axes = _figure(1 + len(order), width=1.8, height=1.9, columns=min(1 + len(order), 5))
    axes[0].imshow(kept.sum(0).reshape(image_shape), cmap="viridis")
    axes[0].set_title("kept per pixel", fontsize=8)
    for ax, unit in zip(axes[1:], order, strict=True):
        ax.imshow(kept[unit].reshape(image_shape), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"unit {unit}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
