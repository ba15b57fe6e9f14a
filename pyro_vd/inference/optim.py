"""The optimizer the training commands use: ``torch.optim.Adam``, fused where torch has the kernel."""

import torch

#: Devices with a fused Adam kernel in torch 2.13 (CPU since 2.4).
FUSED_DEVICES = ("cpu", "cuda")


def adam(params, **kwargs):
    r"""
    ``torch.optim.Adam(params, fused=True, **kwargs)`` when every parameter is a floating-point tensor
    on a device with a fused kernel (CPU, CUDA), else the default implementation. Fused, Adam's update
    (:math:`m \leftarrow \beta_1 m + (1-\beta_1)g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2)g^2`,
    :math:`\theta \leftarrow \theta - \eta\,\hat m/(\sqrt{\hat v} + \epsilon)`) is one pass over each
    tensor instead of about ten: for Sparse VD, whose parameters (θ and log σ² per weight) are twice the
    network's, that is a tenth of a LeNet-300-100 step on a CPU (``benchmarks/throughput.py``). The
    update is the same up to floating-point rounding.

    :param params: parameters or parameter groups, as for ``torch.optim.Adam``.
    :param kwargs: ``lr``, ``betas``, … as for ``torch.optim.Adam``; an explicit ``fused`` or
        ``foreach`` is honoured.
    """
    params = list(params)
    if "fused" not in kwargs and "foreach" not in kwargs and _fusable(params):
        kwargs["fused"] = True
    return torch.optim.Adam(params, **kwargs)


def _fusable(params):
    tensors = []
    for item in params:
        tensors.extend(item["params"] if isinstance(item, dict) else [item])
    return bool(tensors) and all(
        isinstance(t, torch.Tensor) and t.is_floating_point() and t.device.type in FUSED_DEVICES
        for t in tensors
    )
