r"""
The KL table: :math:`\mathrm{KL}(\mathcal{N}(\theta, \alpha\theta^2)\,\|\,\text{LogUniform})` by each
method across :math:`\log\alpha`, with each approximation's error against the exact value.
"""

import math

import torch

from ..distributions.kl_log_uniform import KL_METHODS, kl_log_uniform

#: Where each approximation is meant to be used (Kingma's was fitted on α ≤ 1).
VALID_RANGE = {"exact": (-math.inf, math.inf), "molchanov": (-math.inf, math.inf), "kingma": (-math.inf, 0.0)}


def kl_table(log_alphas=tuple(range(-10, 11, 2)), error_grid=(-10.0, 10.0, 20001)):
    """
    The KL by each method at ``log_alphas``, and each approximation's largest absolute error against
    the exact KL on a uniform grid of ``log α`` (``error_grid = (low, high, points)``), restricted to the
    method's range of validity.

    :returns: ``{"rows": [{"log_alpha", "exact", "molchanov", "kingma"}, ...],
        "max_error": {method: {"max_abs_error", "at_log_alpha", "range"}}}``
    """
    points = torch.tensor([float(a) for a in log_alphas], dtype=torch.float64)
    values = {method: kl_log_uniform(points, method) for method in KL_METHODS}
    rows = [
        {"log_alpha": points[i].item(), **{m: values[m][i].item() for m in KL_METHODS}}
        for i in range(len(points))
    ]
    low, high, num = error_grid
    grid = torch.linspace(low, high, int(num), dtype=torch.float64)
    exact = kl_log_uniform(grid, "exact")
    max_error = {}
    for method in ("molchanov", "kingma"):
        lo, hi = VALID_RANGE[method]
        inside = (grid >= lo) & (grid <= hi)
        error = (kl_log_uniform(grid, method) - exact).abs().where(inside, torch.zeros(()))
        worst = int(error.argmax())
        max_error[method] = {
            "max_abs_error": error[worst].item(),
            "at_log_alpha": grid[worst].item(),
            "range": [max(lo, low), min(hi, high)],
        }
    return {"rows": rows, "max_error": max_error}


def format_kl_table(result):
    """The result of :func:`kl_table` as a Markdown table and a summary of the errors."""
    lines = [
        "| log α | exact | molchanov | kingma |",
        "|------:|------:|----------:|-------:|",
    ]
    for row in result["rows"]:
        kingma = f"{row['kingma']:.6f}"
        if row["log_alpha"] > VALID_RANGE["kingma"][1]:
            kingma = "invalid (α > 1)"  # the polynomial diverges there; results.json keeps the value
        lines.append(f"| {row['log_alpha']:g} | {row['exact']:.6f} | {row['molchanov']:.6f} | {kingma} |")
    lines.append("")
    for method, err in result["max_error"].items():
        lo, hi = err["range"]
        lines.append(
            f"max |{method} - exact| on log α ∈ [{lo:g}, {hi:g}]: {err['max_abs_error']:.4f} "
            f"(at log α = {err['at_log_alpha']:.2f})"
        )
    return "\n".join(lines)
