"""The comparison networks: the same architectures with binary, Gaussian or no dropout, trained by
plain maximum likelihood."""

import copy
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .gaussian_dropout import GaussianDropout

DROPOUT_KINDS = ("binary", "gaussian", "none")
_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def with_dropout(net, kind="binary", p=0.5, *, input_p=None):
    """
    A copy of ``net`` (an ``nn.Sequential``) with dropout before every weight layer but the first
    (before the first too if ``input_p`` is given).

    :param str kind: ``"binary"`` (``nn.Dropout(p)``), ``"gaussian"`` (:class:`GaussianDropout` with the
        same variance, α = p / (1 − p)) or ``"none"`` (the network unchanged).
    :param float p: the dropout rate of hidden layers.
    :param float input_p: the dropout rate of the input, or ``None`` for none.
    """
    if kind not in DROPOUT_KINDS:
        raise ValueError(f"kind must be one of {DROPOUT_KINDS}; got {kind!r}")
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"net must be an nn.Sequential; got {type(net).__name__}")
    net = copy.deepcopy(net)
    if kind == "none":
        return net

    def make(rate):
        return nn.Dropout(rate) if kind == "binary" else GaussianDropout(p=rate)

    layers, seen_weight = [], False
    for name, module in net.named_children():
        if isinstance(module, _WEIGHT_LAYERS):
            rate = p if seen_weight else input_p
            if rate:
                layers.append((f"drop_{name}", make(rate)))
            seen_weight = True
        layers.append((name, module))
    return nn.Sequential(OrderedDict(layers))


def train_maximum_likelihood(
    net, images, labels, *, epochs, batch_size=100, lr=1e-3, log=None, callback=None
):
    """
    Train ``net`` (logits out) by minimizing cross-entropy with Adam on shuffled minibatches.
    ``callback(epoch, net)`` runs after each epoch (``epoch`` counts from 1), e.g. to evaluate.

    :returns: the list of mean training losses per epoch.
    """
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    steps = math.ceil(len(images) / batch_size)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(images))
        total = 0.0
        for step in range(steps):
            index = order[step * batch_size : (step + 1) * batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(net(images[index]), labels[index])
            loss.backward()
            optimizer.step()
            total = total + loss.detach() / steps  # read once per epoch: no host sync per step on a GPU
        total = float(total)
        losses.append(total)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: train loss {total:.4f}")
        if callback is not None:
            net.eval()
            callback(epoch + 1, net)
    net.eval()
    return losses
