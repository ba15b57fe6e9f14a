"""Pictures of ARD for linear models: coefficients with relevance, and the seed's batch-size plots."""

import numpy as np


def plot_coefficients(obj, *, feature_names=None, max_features=40, ax=None):
    """
    Forest plot of linear coefficients: θ ± 2 posterior standard deviations per feature, relevant features
    in colour, irrelevant in grey. ``obj`` is anything :func:`pyro_vd.analysis.relevance` accepts (a
    fitted estimator, a guide of a linear model, an ``InferenceData``). With more than ``max_features``
    features, the relevant ones and the largest |θ| of the others are shown.
    """
    import matplotlib.pyplot as plt

    from ..analysis.relevance import relevance

    table = relevance(obj, feature_names=feature_names)
    if len(table) > max_features:
        relevant = table[table["relevant"]]
        rest = table[~table["relevant"]]
        rest = rest.loc[
            rest["theta"].abs().sort_values(ascending=False).index[: max(0, max_features - len(relevant))]
        ]
        table = table.loc[[i for i in table.index if i in set(relevant.index) | set(rest.index)]]
    theta = table["theta"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.where(table["snr"] > 0, np.abs(theta) / table["snr"].to_numpy(), 0.0)
    std = np.nan_to_num(std, nan=0.0, posinf=0.0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 0.22 * len(table) + 1))
    else:
        fig = ax.figure
    y = np.arange(len(table))[::-1]
    colors = np.where(table["relevant"], "C0", "0.6")
    ax.errorbar(theta, y, xerr=2 * std, fmt="none", ecolor=colors, elinewidth=1)
    ax.scatter(theta, y, c=colors, s=12, zorder=3)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_yticks(y)
    ax.set_yticklabels(table.index, fontsize=7)
    ax.set_xlabel("θ ± 2σ (relevant in blue)")
    fig.tight_layout()
    return fig


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
