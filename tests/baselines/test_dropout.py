import math

import pytest
import torch
from torch import nn

from pyro_vd.baselines import GaussianDropout, train_maximum_likelihood, with_dropout
from pyro_vd.models import architectures


def test_gaussian_dropout_moments():
    layer = GaussianDropout(p=0.5)
    assert layer.alpha == 1.0
    x = torch.ones(200000)
    out = layer(x)
    # mean 1 ± 5 se, variance α ± 5 se of the sample variance
    assert abs(out.mean().item() - 1.0) < 5 * math.sqrt(1.0 / x.numel())
    assert abs(out.var().item() - 1.0) < 5 * math.sqrt(2.0 / x.numel())
    layer.eval()
    assert torch.equal(layer(x), x)


def test_gaussian_dropout_arguments():
    with pytest.raises(TypeError):
        GaussianDropout()
    with pytest.raises(ValueError, match="p must be"):
        GaussianDropout(p=1.0)
    with pytest.raises(ValueError, match="alpha"):
        GaussianDropout(-1.0)


@pytest.mark.parametrize(("kind", "cls"), [("binary", nn.Dropout), ("gaussian", GaussianDropout)])
def test_with_dropout_structure(kind, cls):
    net = with_dropout(architectures.lenet300100(), kind, p=0.5, input_p=0.2)
    drops = [m for m in net if isinstance(m, cls)]
    assert len(drops) == 3
    assert with_dropout(architectures.lenet300100(), "none")[1].in_features == 784
    with pytest.raises(ValueError, match="kind"):
        with_dropout(architectures.lenet300100(), "spike")


def test_train_maximum_likelihood_learns():
    torch.manual_seed(0)
    x = torch.randn(300, 5)
    y = (x[:, 0] > 0).long()
    net = with_dropout(architectures.mlp([5, 16, 2]), "gaussian", p=0.2)
    losses = train_maximum_likelihood(net, x, y, epochs=15, lr=0.01, batch_size=50)
    assert losses[-1] < 0.5 * losses[0]
    assert not net.training
    assert (net(x).argmax(-1) == y).float().mean() > 0.9
