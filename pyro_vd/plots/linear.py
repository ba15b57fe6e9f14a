"""Pictures of ARD for linear models: coefficients with relevance, and the seed's batch-size plots."""

import numpy as np


def plot_coefficients(obj, site=None, *, feature_names=None, max_features=40, ax=None):
    """
    Forest plot of linear coefficients: θ ± 2 posterior standard deviations per feature, relevant features
    in colour, irrelevant in grey. ``obj`` is anything :func:`pyro_vd.analysis.relevance` accepts (a
    fitted estimator, a guide of a linear model, an ``InferenceData``); the features are labelled as in
    its table (``feature_names``, else the estimator's ``feature_names_in_``, else ``x0, x1, …``). With
    more than ``max_features`` features, the relevant ones and the largest |θ| of the others are shown.
    ``site`` names the weight site of a guide (or of its InferenceData) with several, as for ``relevance``.

    A one-vs-rest classifier with more than two classes gets one panel per class (titled with the class
    label, the same features in every panel, each with that class's θ and relevance); ``ax`` is then a
    sequence of one Axes per class.
    """
    import matplotlib.pyplot as plt

    from .._validation import positive_int
    from ..analysis.relevance import relevance

    positive_int(max_features, "max_features")
    table = relevance(obj, site, feature_names=feature_names)
    classes = list(table.index.unique("class")) if "class" in table.index.names else [None]
    per_class = {c: (table if c is None else table.xs(c, level="class")) for c in classes}
    features = _shown_features(per_class, max_features)
    if ax is None:
        fig, axes = plt.subplots(
            1, len(classes), figsize=(5 * len(classes), 0.22 * len(features) + 1), squeeze=False, sharey=True
        )
        axes = list(axes[0])
    else:
        axes = list(np.ravel(ax)) if np.ndim(ax) else [ax]
        if len(axes) != len(classes):
            raise ValueError(f"ax has {len(axes)} Axes for {len(classes)} classes: pass one Axes per class")
        fig = axes[0].figure
    for label, panel in zip(classes, axes, strict=True):
        _forest(per_class[label].iloc[features], panel)
        if label is not None:
            panel.set_title(f"class {label}", fontsize=9)
    fig.tight_layout()
    return fig


def _shown_features(per_class, max_features):
    """Positions of all features, or of the relevant ones (any class) and the largest |θ| of the rest."""
    n = len(next(iter(per_class.values())))
    if n <= max_features:
        return np.arange(n)
    relevant = np.any([t["relevant"].to_numpy() for t in per_class.values()], axis=0)
    size = np.max([t["theta"].abs().to_numpy() for t in per_class.values()], axis=0)
    rest = np.flatnonzero(~relevant)
    rest = rest[np.argsort(-size[rest], kind="stable")[: max(0, max_features - int(relevant.sum()))]]
    keep = relevant.copy()
    keep[rest] = True
    return np.flatnonzero(keep)


def _forest(table, ax):
    theta = table["theta"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.where(table["snr"] > 0, np.abs(theta) / table["snr"].to_numpy(), 0.0)
    std = np.nan_to_num(std, nan=0.0, posinf=0.0)
    y = np.arange(len(table))[::-1]
    colors = np.where(table["relevant"], "C0", "0.6")
    ax.errorbar(theta, y, xerr=2 * std, fmt="none", ecolor=colors, elinewidth=1)
    ax.scatter(theta, y, c=colors, s=12, zorder=3)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_yticks(y)
    ax.set_yticklabels([str(name) for name in table.index], fontsize=7)
    ax.set_xlabel("θ ± 2σ (relevant in blue)")


def plot_batch_size(rows, *, ax=None):
    """
    The seed's minibatch plots from the rows of :func:`pyro_vd.experiments.ard.minibatch` (one task):
    test MSE or accuracy, and irrelevant features pruned, against the batch size in % of the data, with
    the full-data methods as horizontal lines.
    """
    import matplotlib.pyplot as plt

    svi = [r for r in rows if r["method"].startswith("VD SVI, batch ")]
    full = [r for r in rows if not r["method"].startswith("VD SVI, batch ")]
    if not svi:
        raise ValueError("rows has no 'VD SVI, batch …' rows: pass the rows of one minibatch() task")
    fractions = [float(r["method"].split("batch ")[1].rstrip(" %")) for r in svi]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "value", svi[0]["metric"]), (axes[1], "pruned", "irrelevant pruned")):
        ax.plot(fractions, [r[key] for r in svi], "o-", label="VD SVI")
        for i, r in enumerate(full):
            ax.axhline(r[key], color=f"C{i + 1}", lw=0.8, ls="--", label=r["method"])
        ax.set_xscale("log")
        ax.set_xlabel("batch size, % of the data")
        ax.set_ylabel(label)
    axes[1].set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
