"""
ARD for a linear model in a few lines of Pyro: which of 20 features matter?

A LinearRegression PyroModule with log-uniform priors on its weights, the variational dropout guide and
ELBO, SVI; then ArviZ (the summary of the weights, LOO) and the relevance table, next to the exact
coordinate-ascent solution of the same model (``VDRegression``).

Under SVI the log α of an irrelevant feature climbs towards +∞ slowly (its gradient decays like 1/α; the
exact solver jumps there in one step), so after a few thousand steps they sit well above the relevant
ones but not all past the pruning threshold log α = 3: rank by log α, or finish with ``VDRegression``.

    python examples/ard_linear_pyro.py
"""

import pyro
import torch

from pyro_vd import AutoVariationalDropout, VariationalDropoutELBO, local_reparameterization
from pyro_vd.analysis import import_arviz, relevance, to_inference_data
from pyro_vd.linear import VDRegression
from pyro_vd.models import LinearRegression

az = import_arviz()
pyro.set_rng_seed(0)
n, d = 2000, 20
X = torch.randn(n, d)
true_w = torch.zeros(d)
true_w[:4] = torch.tensor([2.0, -1.0, 0.5, 1.5])  # only the first 4 features are relevant
y = X @ true_w + 0.3 * torch.randn(n)
names = [f"feature_{i}" for i in range(d)]

# --- the ten lines -------------------------------------------------------------------------------
model = LinearRegression(d, num_data=n)
guide = AutoVariationalDropout(model)
optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.999})  # a decaying step lets θ settle
svi = pyro.infer.SVI(model, guide, optim, VariationalDropoutELBO())
with local_reparameterization():
    for _ in range(4000):
        svi.step(X, y)
idata = to_inference_data(model, guide, X[:500], y[:500], num_samples=300, feature_names=names)
table = relevance(guide, feature_names=names)
# -------------------------------------------------------------------------------------------------

print(az.summary(idata, var_names=["net.weight"], kind="stats").round(3))
print(az.loo(idata))
exact = relevance(VDRegression().fit(X.double().numpy(), y.double().numpy()), feature_names=names)
table["log_alpha (exact)"] = exact["log_alpha"]
print(table.sort_values("log_alpha").round(2))
ranked = list(table.sort_values("log_alpha").index[:4])
print(
    "four most relevant by SVI:",
    ranked,
    "| relevant by the exact solver:",
    list(exact.index[exact["relevant"]]),
)
gap = table["log_alpha"].iloc[4:].min() - table["log_alpha"].iloc[:4].max()
assert sorted(ranked) == names[:4] and gap > 5, (ranked, gap)
