import numpy as np
import pytest
import torch

from pyro_vd.distributions import kl_log_uniform, kl_log_uniform_grad
from pyro_vd.linear._kl_numpy import kl_slope_and_curvature, kl_value

# the table's ends (±40), points just beside them, 0, and a dense sweep past both ends
T = np.concatenate([np.linspace(-50.0, 50.0, 40001), [-40.0, 40.0, -40.0 - 1e-9, 40.0 + 1e-9, 0.0]])


@pytest.mark.parametrize("method", ["exact", "molchanov", "kingma"])
def test_numpy_kl_equals_the_torch_kl(method):
    t = T if method != "kingma" else T[T < 2.0]  # Kingma's cubic overflows float64 for large α
    value = kl_value(t, method)
    slope, _ = kl_slope_and_curvature(t, method)
    reference = kl_log_uniform(torch.as_tensor(t), method).numpy()
    reference_slope = kl_log_uniform_grad(torch.as_tensor(t), method).numpy()
    # Molchanov's: torch's softplus is linear beyond 20 (an error of e^-20 ≈ 2e-9); numpy's logaddexp is not
    atol = 5e-9 if method == "molchanov" else 1e-15
    assert np.allclose(value, reference, rtol=1e-14, atol=atol)
    assert np.allclose(slope, reference_slope, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("method", ["exact", "molchanov", "kingma"])
def test_curvature_is_the_slopes_derivative(method):
    t = T if method != "kingma" else T[T < 2.0]
    # away from the table's knots (every 1/32), where the interpolant's derivative jumps by ~1e-9
    t = t[np.abs(t * 32 - np.round(t * 32)) > 0.01]
    h = 1e-5
    _, curvature = kl_slope_and_curvature(t, method)
    up, _ = kl_slope_and_curvature(t + h, method)
    down, _ = kl_slope_and_curvature(t - h, method)
    difference = (up - down) / (2 * h)
    # central differences: O(h²) truncation plus 1e-16 / h rounding, measured ≤ 2e-11 (≤ 7e-6 for
    # Kingma's cubic, whose curvature reaches 4e4)
    assert np.allclose(curvature, difference, rtol=1e-8, atol=1e-9)


def test_unknown_methods_are_refused():
    with pytest.raises(ValueError, match="kl method"):
        kl_value(np.zeros(2), "exactt")
    with pytest.raises(ValueError, match="kl method"):
        kl_slope_and_curvature(np.zeros(2), "Kingma")
