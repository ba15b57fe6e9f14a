"""
ARD for a linear model in a few lines of Pyro: which of 20 features matter?

A LinearRegression PyroModule with log-uniform priors on its weights, the variational dropout guide and
ELBO, minibatch SVI; then ArviZ: the summary of the weights, LOO, and the relevance table.

    python examples/ard_linear_pyro.py
"""

import pyro
import torch

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, local_reparameterization
from pyro_vd.analysis import import_arviz, relevance, to_inference_data
from pyro_vd.models import LinearRegression

az = import_arviz()
pyro.set_rng_seed(0)
n, d = 2000, 20
X = torch.randn(n, d)
true_w = torch.zeros(d)
true_w[:4] = torch.tensor([2.0, -1.0, 0.5, 1.5])  # only the first 4 features are relevant
y = X @ true_w + 0.3 * torch.randn(n)

# --- the ten lines -------------------------------------------------------------------------------
model = LinearRegression(d, num_data=n)
guide = AutoVariationalDropout(model)
svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), VariationalDropoutELBO())
with local_reparameterization():
    for step in range(1500):
        batch = torch.randint(0, n, (200,))
        svi.step(X[batch], y[batch])
names = [f"feature_{i}" for i in range(d)]
idata = to_inference_data(model, guide, X[:500], y[:500], num_samples=300, feature_names=names)
table = relevance(guide, feature_names=names)
# -------------------------------------------------------------------------------------------------

print(az.summary(idata, var_names=["net.weight"], kind="stats").round(3))
print(az.loo(idata))
print(table.round(3))
relevant = list(table.index[table["relevant"]])
print("relevant features:", relevant)
assert relevant == names[:4], relevant
