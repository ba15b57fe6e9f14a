"""On toy problems with irrelevant inputs, their weights reach log α > 3 and are pruned while
accuracy holds: a linear model, and an MLP under the default recipe (issue 11: ≥ 90 % of the
irrelevant-input weights pruned at equal accuracy)."""

import pyro
import pytest
import torch
from torch import nn

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, bayesianize, deterministic, sparsity
from pyro_vd.poutine import local_reparameterization

N, D, RELEVANT = 500, 20, 5


def test_irrelevant_inputs_are_pruned():
    pyro.set_rng_seed(5)
    w = 2 * torch.randn(RELEVANT)
    x = torch.randn(N, D)
    y = (x[:, :RELEVANT] @ w > 0).float()
    model = bayesianize(nn.Linear(D, 1), num_data=N, likelihood="bernoulli")
    guide = AutoVariationalDropout(model)
    svi = pyro.infer.SVI(
        model, guide, pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.997}), VariationalDropoutELBO()
    )
    with local_reparameterization():
        for _ in range(2000):
            svi.step(x, y)
    log_alpha = guide.get_log_alpha("net.weight")[0]
    # Measured over seeds 0-5: irrelevant log α ≥ 3.21 (4.45 for this seed); test accuracy ≥ 0.984.
    assert (log_alpha[RELEVANT:] > 3).all()
    assert sparsity(guide).layers["net.weight"].kept <= RELEVANT
    net = deterministic(model, guide)
    x_test = torch.randn(2000, D)
    y_test = (x_test[:, :RELEVANT] @ w > 0).float()
    accuracy = ((net(x_test)[:, 0] > 0).float() == y_test).float().mean()
    assert accuracy > 0.95


@pytest.mark.slow
def test_an_mlp_prunes_the_weights_of_its_irrelevant_inputs_with_the_default_recipe():
    """MLP 20-50-2, 4 of 20 inputs relevant (a random tanh teacher), N = 2000, 150 epochs of batches of
    100, Adam(1e-2), the guide's defaults. Measured over seeds 0-5 (`/tmp` script of issue 11's note):
    0.919-0.971 of the irrelevant-input weights pruned, test accuracy 0.923-0.971 against 0.839-0.954 for
    the same network trained without VD (which overfits); 0.971 and 0.963 / 0.889 for this seed."""
    n, d, relevant, epochs, batch = 2000, 20, 4, 150, 100
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    g = torch.Generator().manual_seed(0)
    teacher_in, teacher_out = torch.randn(relevant, 8, generator=g), torch.randn(8, generator=g)

    def label(x):
        return (torch.tanh(x[:, :relevant] @ teacher_in) @ teacher_out > 0).long()

    x, x_test = torch.randn(n, d, generator=g), torch.randn(5000, d, generator=g)
    y, y_test = label(x), label(x_test)

    def batches():
        order = torch.randperm(n)
        return [order[i : i + batch] for i in range(0, n, batch)]

    model = bayesianize(nn.Sequential(nn.Linear(d, 50), nn.ReLU(), nn.Linear(50, 2)), num_data=n)
    guide = AutoVariationalDropout(model)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), VariationalDropoutELBO())
    with local_reparameterization():
        for _ in range(epochs):
            for index in batches():
                svi.step(x[index], y[index])
    log_alpha = guide.get_log_alpha(guide.site_names[0])  # (50, 20): the first layer
    pruned = (log_alpha[:, relevant:] > 3).float().mean()
    accuracy = (deterministic(model, guide)(x_test).argmax(-1) == y_test).float().mean()

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(d, 50), nn.ReLU(), nn.Linear(50, 2))
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-2)
    for _ in range(epochs):
        for index in batches():
            optimizer.zero_grad()
            nn.functional.cross_entropy(plain(x[index]), y[index]).backward()
            optimizer.step()
    with torch.no_grad():
        plain_accuracy = (plain(x_test).argmax(-1) == y_test).float().mean()
    assert pruned >= 0.9
    assert accuracy >= plain_accuracy - 0.01
