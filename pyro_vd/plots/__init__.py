"""Plots of what variational dropout learned (matplotlib; every function returns its ``Figure``)."""

from .layers import plot_first_layer_masks, plot_log_alpha_histogram, plot_log_alpha_vs_theta
from .linear import plot_batch_size, plot_coefficients
from .training import plot_alpha_trajectories, plot_training_curves

__all__ = [
    "plot_alpha_trajectories",
    "plot_batch_size",
    "plot_coefficients",
    "plot_first_layer_masks",
    "plot_log_alpha_histogram",
    "plot_log_alpha_vs_theta",
    "plot_training_curves",
]
