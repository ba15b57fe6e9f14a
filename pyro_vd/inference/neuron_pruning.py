r"""
Structured pruning: removing whole neurons whose multiplicative noise carries no signal.

A neuron-noise site (:mod:`pyro_vd.models.neuron_noise`) with posterior
:class:`~pyro_vd.distributions.TruncatedLogNormal` keeps neuron :math:`j` when its signal-to-noise ratio
:math:`\mathbb{E}\,\theta_j / \sqrt{\mathrm{Var}\,\theta_j}` exceeds 1 (Neklyudov et al. 2017); at test
time a kept neuron's output is multiplied by :math:`\mathbb{E}\,\theta_j` and a pruned one's by 0.
Because the noise multiplies the input of a ``Linear``/``Conv`` layer, both factors fold into that
layer's weight columns, and a column of zeros is a neuron nobody listens to: :func:`prune_neurons`
removes it, with the previous layer's row (or output channel) that computed it.
"""

import copy
from collections import OrderedDict
from itertools import pairwise

import torch
from torch import nn

from .._validation import check_finite_real
from ..models.vd_model import WEIGHT_LAYERS
from .pruning import (
    DEFAULT_SNR_THRESHOLD,
    LayerSparsity,
    SparsityReport,
    check_finite_posterior,
    check_vd_guide,
    deterministic,
)

# Modules that act on each feature/channel separately and, with their default arguments, map 0 to 0 (so
# a neuron that is identically 0 stays 0 and can be removed from both sides; _maps_zero_to_zero asks
# each module), or that only reshape.
_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Hardtanh,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Tanhshrink,
    nn.Mish,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
_ELEMENTWISE_NONZERO = (nn.Sigmoid, nn.Softplus, nn.Hardsigmoid)  # per neuron, but f(0) != 0
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_POOLING = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


def neuron_keep_mask(guide, name, snr_threshold=DEFAULT_SNR_THRESHOLD):
    """Boolean mask of the neurons of noise site ``name`` that are kept: SNR > ``snr_threshold`` (a
    finite number; a ValueError where an SNR is NaN)."""
    snr_threshold = check_finite_real(snr_threshold, "snr_threshold")  # (NaN kept no neuron)
    snr = guide.get_noise_snr(name)
    check_finite_posterior(snr, f"SNR of noise site {name!r}")
    return snr > snr_threshold


def neuron_scales(guide, snr_threshold=DEFAULT_SNR_THRESHOLD):
    """``{noise site: E θ for kept neurons, 0 for pruned ones}``: the test-time noise."""
    check_vd_guide(guide)
    return {
        name: guide.get_noise_mean(name) * neuron_keep_mask(guide, name, snr_threshold)
        for name in guide.noise_site_names
    }


def neuron_sparsity(guide, snr_threshold=DEFAULT_SNR_THRESHOLD):
    """Kept and total neurons of every noise site, as a :class:`~pyro_vd.inference.SparsityReport`
    (``compression`` is the ratio of neurons)."""
    check_vd_guide(guide)
    snr_threshold = check_finite_real(snr_threshold, "snr_threshold")
    report = SparsityReport(threshold=snr_threshold, criterion=f"SNR ≤ {snr_threshold:g}")
    for name in guide.noise_site_names:
        mask = neuron_keep_mask(guide, name, snr_threshold)
        report.layers[name] = LayerSparsity(name, int(mask.sum()), mask.numel())
    return report


class SelectInputs(nn.Module):
    """Keeps the input features (or channels) ``index`` along dimension 1."""

    def __init__(self, index, num_inputs):
        super().__init__()
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))
        self.num_inputs = int(num_inputs)

    def forward(self, x):
        return x.index_select(1, self.index)

    def extra_repr(self):
        return f"{self.index.numel()} of {self.num_inputs}"


def _leaves(module, prefix=""):
    """The modules of a (nested) ``nn.Sequential`` in execution order, as ``(name, module)``."""
    if isinstance(module, nn.Sequential):
        # _modules, not named_children(): that lists a module used twice (one ReLU object) once, and the
        # shrunk network would lose its second use
        for name, child in module._modules.items():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, module


def _check_chain(leaves):
    for name, module in leaves:
        if isinstance(module, WEIGHT_LAYERS):
            if getattr(module, "groups", 1) != 1:
                raise ValueError(f"prune_neurons: layer {name!r} is a grouped convolution, not supported")
        elif not isinstance(module, _ELEMENTWISE + _ELEMENTWISE_NONZERO + _POOLING + (nn.Flatten,)):
            raise ValueError(
                f"prune_neurons works on nn.Sequential chains of Linear/Conv layers, elementwise "
                f"activations, dropout, pooling and Flatten; module {name!r} is a {type(module).__name__} "
                "(use pyro_vd.inference.deterministic for a full-size network)"
            )


def _dead_columns(weight):
    return weight.detach().flatten(2).abs().sum((0, 2)) == 0 if weight.dim() > 2 else (weight == 0).all(0)


def _zero_rows(layer, between):
    """Outputs of ``layer`` that are identically 0 after the modules ``between``."""
    weight = layer.weight.detach()
    zero = weight.reshape(weight.shape[0], -1).abs().sum(1) == 0
    if layer.bias is not None:
        zero &= layer.bias.detach() == 0
    if not all(_maps_zero_to_zero(m) for m in between):
        return torch.zeros_like(zero)
    return zero


def _maps_zero_to_zero(module):
    """Whether ``module`` (of the chain) leaves an identically-0 neuron at 0: asked of the module itself,
    since a class's default does not settle it (``Hardtanh(min_val=0.2)`` maps 0 to 0.2)."""
    if isinstance(module, _DROPOUT) or not isinstance(module, _ELEMENTWISE + _ELEMENTWISE_NONZERO):
        return True  # pooling, Flatten and (eval-mode) dropout move or average values, 0 stays 0
    with torch.no_grad():
        return bool((module(torch.zeros(1, 1)) == 0).all())


def _shrunk(layer, rows=None, columns=None):
    """A copy of ``layer`` with only the output ``rows`` and input ``columns`` (index tensors)."""
    weight, bias = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
    if rows is not None:
        weight = weight[rows]
        bias = None if bias is None else bias[rows]
    if columns is not None:
        weight = weight[:, columns]
    new = copy.deepcopy(layer)
    if isinstance(layer, nn.Linear):
        new.in_features, new.out_features = weight.shape[1], weight.shape[0]
    else:
        new.in_channels, new.out_channels = weight.shape[1], weight.shape[0]
    new.weight = nn.Parameter(weight.clone())
    if bias is not None:
        new.bias = nn.Parameter(bias.clone())
    return new


def shrink(net):
    """
    Remove from a plain ``nn.Sequential`` network every neuron that does not affect its output: input
    columns of a layer that are all zero (with the previous layer's row or channel that feeds them), and
    output rows of a layer that are identically zero (with the next layer's columns). The returned
    network computes the same function; removed input features of the first layer are dropped by a
    :class:`SelectInputs` just before it, so it takes the same input.
    """
    leaves = list(_leaves(net))
    _check_chain(leaves)
    layer_at = [i for i, (_, m) in enumerate(leaves) if isinstance(m, WEIGHT_LAYERS)]
    if not layer_at:
        raise ValueError("prune_neurons: the network has no Linear or Conv layer")
    rows = {i: None for i in layer_at}
    columns = {i: None for i in layer_at}
    first = leaves[layer_at[0]][1]
    alive = ~_dead_columns(first.weight)
    if not alive.all():
        if not alive.any():
            alive[0] = True  # keep one input: an all-zero layer still has a well-formed shape
        columns[layer_at[0]] = alive.nonzero().squeeze(1)
    for prev, nxt in pairwise(layer_at):
        prev_layer, next_layer = leaves[prev][1], leaves[nxt][1]
        between = [m for _, m in leaves[prev + 1 : nxt]]
        channels = prev_layer.weight.shape[0]
        features = next_layer.weight.shape[1]
        if features % channels:
            raise ValueError(
                f"prune_neurons: {leaves[nxt][0]!r} has {features} inputs, not a multiple of the "
                f"{channels} outputs of {leaves[prev][0]!r}"
            )
        per_channel = features // channels  # > 1 when a Flatten turns channels into features
        dead = _dead_columns(next_layer.weight).reshape(channels, per_channel).all(1)
        dead |= _zero_rows(prev_layer, between)
        keep = ~dead
        if not keep.any():
            keep[0] = True
        if keep.all():
            continue
        rows[prev] = keep.nonzero().squeeze(1)
        columns[nxt] = keep.repeat_interleave(per_channel).nonzero().squeeze(1)
    modules = OrderedDict()
    for i, (name, module) in enumerate(leaves):
        if i == layer_at[0] and columns[i] is not None:  # after any Flatten that precedes the first layer
            modules["select_inputs"] = SelectInputs(columns[i], first.weight.shape[1])
        key = name.replace(".", "_") or f"layer{i}"
        if i in rows:
            modules[key] = _shrunk(module, rows[i], columns[i])
        else:
            modules[key] = copy.deepcopy(module)
    return nn.Sequential(modules).eval()


def prune_neurons(model, guide, *, snr_threshold=DEFAULT_SNR_THRESHOLD, threshold=None, shrink_network=True):
    """
    The physically smaller network of a model trained with neuron noise (and, optionally, Sparse VD).

    1. The deterministic network of the pruned model (:func:`~pyro_vd.inference.deterministic`): weights
       θ with log α > ``threshold`` set to 0; each noise site replaced by E θ for neurons with SNR >
       ``snr_threshold`` and by 0 for the others, folded into the columns of the layer it feeds.
    2. Every neuron that no longer matters is removed (:func:`shrink`): rows of ``Linear`` weights and
       output channels of convolutions, with the matching columns / input channels of the next layer,
       and unused input features (a leading :class:`SelectInputs`).

    The result is a plain ``nn.Sequential`` in eval mode whose output equals the pruned stochastic
    model's deterministic prediction (up to float rounding). It needs a
    :class:`~pyro_vd.models.VDModel` whose network is an ``nn.Sequential`` chain (the
    ``pyro_vd.models`` networks, ``mlp``, LeNets).

    :param model: the :class:`~pyro_vd.models.VDModel`.
    :param guide: its trained :class:`~pyro_vd.guides.AutoVariationalDropout`.
    :param float snr_threshold: neurons with SNR at or below it are removed (1).
    :param threshold: weights with log α above its bound are set to 0
        (:func:`~pyro_vd.inference.pruning.log_alpha_bound`: by default the model's rule, else 3).
    :param bool shrink_network: ``False`` returns the full-size network of step 1.
    """
    net = deterministic(model, guide, threshold, snr_threshold=snr_threshold)
    if getattr(model, "template", None) is None:
        raise ValueError(
            "prune_neurons needs a pyro_vd.models.VDModel (built by bayesianize); for other models use "
            "pyro_vd.inference.deterministic"
        )
    if not shrink_network:
        return net
    small = shrink(net)
    _check_same_function(net, small, _example_input(guide))
    return small


def _example_input(guide):
    """A tensor shaped as the rows the guide was set up on (its prototype trace's first argument), or
    None."""
    trace = getattr(guide, "prototype_trace", None)
    args = trace.nodes["_INPUT"]["args"] if trace is not None and "_INPUT" in trace.nodes else ()
    x = args[0] if args else None
    return x if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dim() >= 2 else None


def _check_same_function(net, small, x, rows=8):
    """A ValueError unless the shrunk network ``small`` computes what ``net`` computes on random rows
    shaped as ``x`` (a few of them). :func:`shrink` reads the chain's layout from the weights' shapes alone
    and assumes channels first (``(B, C, …)``, flattened channel by channel); a ``Linear`` applied to a
    (batch, time, features) input, or to a convolution's length dimension, breaks that, and the shrunk
    network took other inputs or computed another function (a difference of 3.8 where the outputs were at
    most 2.6) without a word. Without ``x`` (a guide that never ran) nothing is checked."""
    if x is None:
        return
    generator = torch.Generator(device="cpu").manual_seed(0)
    sample = torch.randn((min(rows, len(x)), *x.shape[1:]), generator=generator, dtype=x.dtype).to(x.device)
    problem = None
    with torch.no_grad():
        expected = net(sample)
        if not isinstance(expected, torch.Tensor) or not expected.is_floating_point():
            return
        try:
            got = small(sample)
        except RuntimeError as error:
            problem = f"the shrunk network fails on inputs of shape {tuple(sample.shape)}: {error}"
        else:
            scale = float(expected.abs().max()) if expected.numel() else 0.0
            # summing fewer zero terms only rounds differently: 1e-4 relative in float32
            tolerance = 1000 * torch.finfo(expected.dtype).eps * (1.0 + scale)
            if got.shape != expected.shape:
                problem = (
                    f"the shrunk network's outputs have shape {tuple(got.shape)}, not {tuple(expected.shape)}"
                )
            elif not float((got - expected).abs().max()) <= tolerance:
                difference = float((got - expected).abs().max())
                problem = f"the shrunk network's outputs differ from the full one's by up to {difference:.3g}"
    if problem is not None:
        raise ValueError(
            f"prune_neurons: {problem}. Removing neurons assumes each layer's outputs lie on dimension 1 "
            "((batch, features) or (batch, channels, ...)) up to the next layer; a Linear applied to more "
            "dimensions than (batch, features), or to a convolution's length, breaks that. Use "
            "prune_neurons(..., shrink_network=False) or pyro_vd.inference.deterministic for the full-size "
            "network."
        )


def count_neurons(net):
    """Input neurons of each ``Linear``/``Conv`` layer of a plain network: ``{layer name: count}``."""
    return {
        name: module.weight.shape[1] for name, module in _leaves(net) if isinstance(module, WEIGHT_LAYERS)
    }
