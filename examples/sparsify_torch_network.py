"""
Sparsify your own torch network: ``bayesianize`` turns its Linear/Conv weights into log-uniform sample
sites; Sparse VD then learns which weights to drop, and ``deterministic`` gives back a plain torch
network with the pruned weights set to zero. Optionally ``neuron_noise=True`` prunes whole neurons and
``prune_neurons`` returns a physically smaller network.

Data: scikit-learn's bundled 8×8 digits (no download).

    python examples/sparsify_torch_network.py
"""

import math

import pyro
import torch
from sklearn.datasets import load_digits
from torch import nn

from pyro_vd import (
    AutoVariationalDropout,
    VariationalDropoutELBO,
    bayesianize,
    deterministic,
    linear_warmup,
    local_reparameterization,
    neuron_sparsity,
    prune_neurons,
    sparsity,
)

pyro.set_rng_seed(0)
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target)
order = torch.randperm(len(X))
train, test = order[:1400], order[1400:]

# any torch network: here a small MLP, first trained as usual
net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
for _ in range(60):
    for batch in train.split(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(X[batch]), y[batch]).backward()
        optimizer.step()
dense_accuracy = (net(X[test]).argmax(-1) == y[test]).float().mean().item()

# make it Bayesian, start from the trained weights, and let Sparse VD prune it
model = bayesianize(net, num_data=len(train), neuron_noise=True)
guide = AutoVariationalDropout(model, init_theta=net.state_dict())
elbo = VariationalDropoutELBO()
svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
epochs = 80
with local_reparameterization():
    for epoch in range(epochs):
        elbo.kl_weight = linear_warmup(epoch, 0, 40)
        for batch in train[torch.randperm(len(train))].split(100):
            svi.step(X[batch], y[batch])

sparse_net = deterministic(model, guide)  # a plain nn.Sequential, pruned weights set to 0
small_net = prune_neurons(model, guide)  # and with the pruned neurons removed
with torch.no_grad():
    sparse_accuracy = (sparse_net(X[test]).argmax(-1) == y[test]).float().mean().item()
    small_accuracy = (small_net(X[test]).argmax(-1) == y[test]).float().mean().item()
print(sparsity(guide))
print(neuron_sparsity(guide))
print(small_net)
print(f"test accuracy: dense {dense_accuracy:.3f}, sparse {sparse_accuracy:.3f}, small {small_accuracy:.3f}")
report = sparsity(guide)
assert report.compression > 5 and sparse_accuracy > dense_accuracy - 0.03, (
    report.compression,
    sparse_accuracy,
)
assert math.isclose(small_accuracy, sparse_accuracy)
