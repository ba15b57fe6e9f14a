"""Curves across training: sparsity and error per epoch, α trajectories (clipped against unclipped)."""

import numpy as np


def plot_training_curves(history, *, ax=None):
    """Test error (%) and compression (×) per epoch from an experiment's ``history`` list of dicts."""
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("history is empty")
    missing = sorted({key for h in history for key in ("epoch", "test_error") if key not in h})
    if missing:
        raise ValueError(f"history's entries need the keys 'epoch' and 'test_error'; some lack {missing}")
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.4)) if ax is None else (ax.figure, ax)
    ax.plot(epochs, [100 * h["test_error"] for h in history], "C0-", label="test error")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error, %", color="C0")
    if all("compression" in h for h in history):
        twin = ax.twinx()
        twin.plot(epochs, [h["compression"] for h in history], "C1-", label="compression")
        twin.set_ylabel("compression, ×", color="C1")
    fig.tight_layout()
    return fig


def plot_alpha_trajectories(trajectories, *, title="Do the α stabilize?"):
    """
    The seed's "do alphas stabilize" curves: ``{label: array (epochs, layers)}`` of α per layer over
    training, e.g. ``{"α ≤ 1 (Kingma)": ..., "α free": ...}``; one panel per label, log scale.
    """
    import matplotlib.pyplot as plt

    if not hasattr(trajectories, "items"):
        kind = type(trajectories).__name__
        raise TypeError(f"trajectories must be a dict {{label: array (epochs, layers)}}; got {kind}")
    if not trajectories:
        raise ValueError("trajectories is empty")
    fig, axes = plt.subplots(1, len(trajectories), figsize=(4.5 * len(trajectories), 3.4), squeeze=False)
    for ax, (label, values) in zip(axes[0], trajectories.items(), strict=True):
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2) or not values.size:
            raise ValueError(
                f"trajectories[{label!r}] must be a non-empty (epochs, layers) array; got shape "
                f"{values.shape}"
            )
        if np.any(values <= 0):  # (log α passed for α drew an empty log-scale panel)
            raise ValueError(
                f"trajectories[{label!r}] holds values <= 0: these are α (> 0) on a log scale; pass "
                "np.exp(log_alpha) for log α"
            )
        values = values[:, None] if values.ndim == 1 else values
        epochs = np.arange(1, len(values) + 1)
        for layer in range(values.shape[1]):
            ax.plot(epochs, values[:, layer], label=f"layer {layer + 1}")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("α")
        ax.set_title(label, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
