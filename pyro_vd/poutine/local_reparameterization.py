r"""
The local reparameterization trick (Kingma et al. 2015) as a tensor that stands for a random weight.

A weight :math:`W` with independent :math:`w_{ij} \sim \mathcal{N}(\theta_{ij}, \sigma^2_{ij})` enters a
linear map :math:`B = AW^\top` (or a convolution, which is linear in the weights). Every pre-activation is
then Gaussian, and the trick samples it directly instead of sampling :math:`W`:

.. math::

    b_{mj} \sim \mathcal{N}(\gamma_{mj}, \delta_{mj}), \qquad
    \gamma = A\theta^\top + \text{bias}, \qquad \delta = (A \circ A)(\sigma^2)^\top.

The noise is then independent across the examples of a minibatch, which lowers the variance of the
gradient, and one matmul of :math:`A^2` replaces a weight sample per example.

:class:`LocalReparamWeight` is a :class:`torch.Tensor` subclass that carries :math:`(\theta, \sigma^2)`;
its data is :math:`\theta`'s (detached), so shape, dtype and device queries are free. Through
``__torch_function__``:

* ``F.linear``, ``F.conv1d/2d/3d`` and ``F.conv_transpose1d/2d/3d`` (hence ``nn.Linear``,
  ``nn.Conv*`` and ``nn.ConvTranspose*``) with it as the **weight** sample the pre-activations as
  above, with stride, padding, output padding, dilation and groups passed through to both calls
  (each is linear in the weight);
* any **other** use (the weight as an input, ``w.sum()``, a log-density…) draws one ordinary weight
  sample :math:`\theta + \sigma\varepsilon`, once, and uses it from then on, so the semantics stay
  those of a random weight.

Why a tensor subclass rather than a distribution over pre-activations: the pre-activation distribution
depends on the layer's input, which only the model's own ``forward`` knows; a tensor that stands for
the weight lets unmodified ``nn.Linear``/``nn.Conv2d`` code (and ``bayesianize``-d torch networks)
apply the trick without being rewritten.
"""

import torch
import torch.nn.functional as F

_LRT_FUNCTIONS = {
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.conv_transpose1d,
    F.conv_transpose2d,
    F.conv_transpose3d,
}
#: Queries answered from θ's data without sampling anything.
_METADATA = {
    "shape",
    "size",
    "dim",
    "ndim",
    "numel",
    "dtype",
    "device",
    "is_cuda",
    "layout",
    "requires_grad",
    "is_floating_point",
    "__len__",
    "stride",
    "is_contiguous",
    "element_size",
    "names",
    "is_sparse",
    "is_quantized",
    "is_meta",
    "is_nested",
}
#: Variance floor of the sampled pre-activations: keeps the square root differentiable where the
#: input is zero over a whole receptive field (Sparse VD's reference code adds the same 1e-8).
VARIANCE_EPS = 1e-8


def _function_name(func):
    name = getattr(func, "__name__", "")
    if name == "__get__":  # a property getter such as Tensor.shape.__get__
        name = getattr(getattr(func, "__self__", None), "__name__", "")
    return name


class LocalReparamWeight(torch.Tensor):
    r"""
    A random weight :math:`w \sim \mathcal{N}(\theta, \sigma^2)` (elementwise) that linear layers
    consume by the local reparameterization trick. Build it with ``LocalReparamWeight(theta, var)``;
    ``theta`` and ``var`` (:math:`\sigma^2`, same shape or broadcastable) keep their autograd graph.
    Each linear use draws fresh pre-activations. ``single_use=True`` (how
    :func:`~pyro_vd.poutine.local_reparameterization` draws a model's weight for one pass) refuses a
    second use: within one pass, two uses of one weight (a layer applied twice) would get independent
    noise, as if of two weights.
    """

    @staticmethod
    def __new__(cls, theta, var, *, single_use=False):
        weight = torch.Tensor._make_subclass(cls, theta.detach(), False)
        weight._vd_theta = theta
        weight._vd_var = var
        weight._vd_sample = None
        weight._vd_single_use = single_use
        weight._vd_used = False
        return weight

    def __init__(self, theta, var, *, single_use=False):
        pass

    @property
    def theta(self):
        """The mean θ (with its autograd graph)."""
        return self._vd_theta

    @property
    def var(self):
        """The variance σ² (with its autograd graph)."""
        return self._vd_var

    def materialize(self):
        """One ordinary sample θ + σ ε of the weight, drawn on first use and kept."""
        if self._vd_sample is None:
            theta, var = self._vd_theta, self._vd_var
            self._vd_sample = torch.addcmul(theta, var.sqrt(), torch.randn_like(theta))
        return self._vd_sample

    def __repr__(self):
        return f"LocalReparamWeight(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _function_name(func) in _METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        if func in _LRT_FUNCTIONS:
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            inputs = args[0] if args else kwargs.get("input")
            if isinstance(weight, LocalReparamWeight) and not isinstance(inputs, LocalReparamWeight):
                if weight._vd_used and weight._vd_single_use:
                    # the trick draws each use's pre-activations on their own, as if of another weight:
                    # the second use of one weight would train another model without a word
                    raise ValueError(
                        f"a random weight of shape {tuple(weight.shape)} goes through {_function_name(func)} "
                        "twice in one pass (a layer applied twice): the local reparameterization trick would "
                        "draw the two uses' noise independently, as if of two weights. Train this model "
                        "without local_reparameterization() (one weight drawn per step)"
                    )
                weight._vd_used = True
                return _local_reparameterization(func, args, kwargs)
        args, kwargs = _materialize_all(args), _materialize_all(kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def _materialize_all(tree):
    if isinstance(tree, LocalReparamWeight):
        return tree.materialize()
    if isinstance(tree, (list, tuple)):
        return type(tree)(_materialize_all(x) for x in tree)
    if isinstance(tree, dict):
        return {k: _materialize_all(v) for k, v in tree.items()}
    return tree


def _local_reparameterization(func, args, kwargs):
    r"""b ~ N(func(A, θ, bias, ...), func(A², σ², None, ...)) for a linear ``func`` of the weight."""
    args = list(args)
    kwargs = dict(kwargs)
    inputs = args[0] if args else kwargs.pop("input")
    weight = args[1] if len(args) > 1 else kwargs.pop("weight")
    bias = args[2] if len(args) > 2 else kwargs.pop("bias", None)
    rest = args[3:]
    if isinstance(bias, LocalReparamWeight):
        bias = bias.materialize()
    mean = func(inputs, weight.theta, bias, *rest, **kwargs)
    var = func(inputs * inputs, weight.var, None, *rest, **kwargs)
    std = var.add_(VARIANCE_EPS).sqrt_()
    return torch.addcmul(mean, std, torch.randn_like(mean))
