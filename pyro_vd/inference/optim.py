"""The optimizer the training commands use: ``torch.optim.Adam``, fused where torch has the kernel."""

import torch

#: Options a fused Adam refuses.
_UNFUSABLE_OPTIONS = ("differentiable", "capturable")


def adam(params, **kwargs):
    r"""
    ``torch.optim.Adam(params, fused=True, **kwargs)`` when every parameter is a floating-point tensor
    on a device for which this torch has a fused Adam kernel (CPU since torch 2.4, CUDA), else the
    default implementation. Fused, Adam's update
    (:math:`m \leftarrow \beta_1 m + (1-\beta_1)g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2)g^2`,
    :math:`\theta \leftarrow \theta - \eta\,\hat m/(\sqrt{\hat v} + \epsilon)`) is one pass over each
    tensor instead of about ten; for Sparse VD, whose parameters (θ and log σ² per weight) are twice the
    network's, that is a tenth of a LeNet-300-100 step on a CPU (``benchmarks/throughput.py``). The
    update is the same up to floating-point rounding.

    :param params: parameters or parameter groups (iterables, generators too), as for
        ``torch.optim.Adam``.
    :param kwargs: ``lr``, ``betas``, … as for ``torch.optim.Adam``; with an explicit ``fused`` or
        ``foreach``, or ``differentiable``/``capturable`` set, torch's choice is left alone.
    """
    if isinstance(params, torch.Tensor):  # torch refuses a bare tensor with its own message
        return torch.optim.Adam(params, **kwargs)
    params = [_group(item) if isinstance(item, dict) else item for item in params]
    if _choice_is_ours(kwargs) and _fusable(params):
        kwargs["fused"] = True
    return torch.optim.Adam(params, **kwargs)


def _choice_is_ours(kwargs):
    """Whether Adam's options leave the choice of the fused kernel to us: no explicit ``fused`` or
    ``foreach``, and none of the options a fused Adam refuses."""
    explicit = "fused" in kwargs or "foreach" in kwargs
    return not explicit and not any(kwargs.get(option) for option in _UNFUSABLE_OPTIONS)


def _group(group):
    """A parameter group whose ``params`` is a list (a generator is read once; a tensor is one parameter,
    as torch takes it)."""
    params = group["params"]
    return dict(group, params=[params] if isinstance(params, torch.Tensor) else list(params))


def _fused_devices():
    """The device types with a fused Adam kernel in this torch (none when it does not say)."""
    try:  # a private helper of torch (2.4+ lists "cpu"): if it moves, simply do not fuse
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return set(_get_fused_kernels_supported_devices())
    except Exception:
        return set()


def _fusable(params):
    tensors = []
    for item in params:
        if isinstance(item, dict):
            tensors.extend(item["params"])
        else:
            tensors.append(item)
    devices = _fused_devices()
    return bool(tensors) and all(
        isinstance(t, torch.Tensor) and t.is_floating_point() and t.device.type in devices for t in tensors
    )
