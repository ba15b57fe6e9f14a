"""Turning a torch network into a Pyro model with log-uniform priors on its weights."""

import copy
import itertools
import math
import numbers
from collections.abc import Iterable

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam, PyroSample
from pyro.nn.module import to_pyro_module_
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.runtime import _PYRO_STACK
from torch import nn
from torch.distributions import constraints

from .._validation import check_bool
from .._warnings import warn_at_caller
from ..distributions.log_uniform import LogUniform
from ..poutine.full_data_messenger import evaluating
from .neuron_noise import DEFAULT_HIGH, DEFAULT_LOW, add_input_noise

#: Layer types whose weights become LogUniform sites and whose inputs can carry neuron noise (conv is
#: linear in its weights, so LRT applies).
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Transposed convolutions: linear in the weight too (LRT applies), weight laid out (in, out/groups, *k).
TRANSPOSED_LAYERS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: Layers whose affine parameters are point estimates by design: not reported as left deterministic.
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
LIKELIHOODS = ("categorical", "bernoulli", "normal")


class DeterministicParametersWarning(UserWarning):
    """``bayesianize`` left weights of layer types it does not support (LSTM, GRU, Embedding, …) as
    point estimates."""


class VDModel(PyroModule):
    r"""
    A Pyro model around a torch network ``net`` whose ``Linear``/``Conv*`` weights have the improper
    log-uniform prior :math:`p(\log|w|) = \text{const}`; biases (and every other parameter) stay
    point-estimated parameters. ``forward(x, y=None)`` returns the network's output and observes ``y``
    under the likelihood inside ``pyro.plate("data", num_data, subsample=...)``, which scales the
    minibatch log-likelihood by :math:`N/B` — the unbiased minibatch ELBO (global weights are not
    scaled).

    Sites are named ``"net." + parameter name``, e.g. ``net.fc1.weight``. The original architecture is
    kept (on the ``meta`` device, no memory) so that :func:`pyro_vd.inference.deterministic` can
    rebuild a plain torch network.

    :param torch.nn.Module net: the network; it is deep-copied, the caller's module is not changed.
    :param int num_data: the training-set size N (``None``: no scaling, the batch is the data).
    :param likelihood: ``"categorical"`` (logits, classes on the last dim), ``"bernoulli"`` (logits of a
        binary target), ``"normal"`` (regression with noise scale ``noise_scale``) or a callable
        ``output -> distribution``.
    :param float noise_scale: the Normal likelihood's σ; ``None`` learns it.
    :param include: names of submodules (as in ``net.named_modules()``) whose weights get the prior;
        ``None`` (default): every ``Linear``, ``Conv*`` and ``ConvTranspose*`` layer.
    :param exclude: names of submodules whose weights stay deterministic parameters.

    Weights of other layer types (``LSTM``, ``GRU``, ``Embedding``, …) stay point estimates; a
    :class:`DeterministicParametersWarning` lists them (name them in ``exclude`` to silence it).
    Every parameter that stays a point estimate (biases included) is a
    :class:`~pyro.nn.PyroParam`, so Pyro's parameter store is its one source of truth:
    ``pyro.get_param_store().load(...)`` or ``set_state`` updates what the network computes with.

    ``forward`` checks the targets against the likelihood: a ``(B, 1)`` target of a single-output
    model is squeezed to ``(B,)``; any other shape that differs from the likelihood's is a
    ``ValueError`` (never broadcast into a ``B × B`` likelihood).
    :param neuron_noise: structured dropout (:mod:`pyro_vd.models.neuron_noise`): ``True`` puts a
        multiplicative noise site ``net.<layer>.input_noise`` (prior
        :class:`~pyro_vd.distributions.TruncatedLogUniform`) on the input neurons of every ``Linear`` /
        ``Conv*`` layer; a list names the layers that get one; ``False`` (default) none.
    :param bool sparse_weights: ``True`` (default): the weights get log-uniform priors (Sparse VD).
        ``False``: they stay point-estimated parameters, for neuron noise alone.
    :param tuple noise_bounds: ``(low, high)`` of log θ for the neuron noise, ``(-20, 0)`` as in SBP.
    """

    def __init__(
        self,
        net,
        num_data=None,
        likelihood="categorical",
        *,
        noise_scale=None,
        include=None,
        exclude=(),
        neuron_noise=False,
        sparse_weights=True,
        noise_bounds=(DEFAULT_LOW, DEFAULT_HIGH),
    ):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module; got {type(net).__name__}")
        if num_data is not None and (
            isinstance(num_data, bool) or not isinstance(num_data, numbers.Integral) or num_data < 1
        ):
            raise ValueError(f"num_data must be a positive integer or None; got {num_data!r}")
        if not callable(likelihood) and likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS} or a callable; got {likelihood!r}")
        # (a list of layer names was taken as True: every layer's weights got the prior)
        check_bool(sparse_weights, "sparse_weights")
        self.num_data = num_data
        self.likelihood = likelihood
        names = dict(net.named_modules())
        exclude = _check_names("exclude", exclude, names)
        vd_layers = [n for n, m in names.items() if isinstance(m, WEIGHT_LAYERS + TRANSPOSED_LAYERS)]
        if include is not None:
            include = _check_names("include", include, names)
            unsupported = [n for n in include if n not in vd_layers]
            if unsupported:
                raise ValueError(
                    f"include names {unsupported}, which are not Linear, Conv or ConvTranspose layers "
                    f"(those are {vd_layers})"
                )
        self._template = (copy.deepcopy(net).to("meta"),)  # a tuple: not registered as a submodule
        net = copy.deepcopy(net)
        layers = [n for n, m in net.named_modules() if isinstance(m, WEIGHT_LAYERS)]
        chosen = vd_layers if include is None else [n for n in vd_layers if n in include]
        weights = [n for n in chosen if n not in exclude] if sparse_weights else []
        noisy = _noise_layers(neuron_noise, layers)
        _check_untied(net)
        _warn_deterministic(names, exclude)
        if not weights and not noisy:
            raise ValueError(
                "net has no Linear or Conv/ConvTranspose layer whose weights could get a LogUniform prior"
                if sparse_weights
                else "sparse_weights=False leaves nothing random: ask for neuron_noise as well"
            )
        to_pyro_module_(net)
        self._weight_priors = []  # (and the neuron noise's: every prior whose draws follow x's dtype)
        modules = dict(net.named_modules())
        for name in noisy:  # first: it reads the layer's weight shape
            self._weight_priors.append(add_input_noise(modules[name], *noise_bounds).base_dist)
        for name in weights:
            module = modules[name]
            prior = LogUniform(event_shape=module.weight.shape, dtype=module.weight.dtype)
            module.weight = PyroSample(prior)
            self._weight_priors.append(prior)
        _point_estimates_to_pyro_params(net)
        self.net = net
        self.weight_sites = [f"net.{n}.weight" if n else "net.weight" for n in weights]
        self.noise_sites = [f"net.{n}.input_noise" if n else "net.input_noise" for n in noisy]
        if likelihood == "normal":
            if noise_scale is None:
                self.noise_scale = PyroParam(torch.tensor(1.0), constraint=constraints.positive)
            else:
                if not isinstance(noise_scale, numbers.Real) or not 0 < noise_scale < math.inf:
                    raise ValueError(
                        f"noise_scale must be a positive finite number or None; got {noise_scale!r}"
                    )
                self.noise_scale = float(noise_scale)

    @property
    def template(self):
        """The original architecture, on the ``meta`` device."""
        return self._template[0]

    def _distribution(self, output, batch):
        if callable(self.likelihood):
            return _per_row(self.likelihood(output), batch)
        if self.likelihood == "categorical":
            return dist.Categorical(logits=output)
        if output.dim() == 2 and output.shape[-1] == 1:
            output = output.squeeze(-1)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=output).to_event(output.dim() - 1)
        return dist.Normal(output, self.noise_scale).to_event(output.dim() - 1)

    def forward(self, x, y=None):
        _refuse_vectorized_plates()
        x = self._check_input(x)
        try:
            output = self.net(x)
        except RuntimeError as error:
            if "dtype" in str(error) or "scalar type" in str(error):
                raise TypeError(
                    f"x has dtype {x.dtype}, which the network (computing in {self.template_dtype}) does "
                    f"not take: {error}"
                ) from error
            if "shape" not in str(error) and "size" not in str(error):
                raise
            raise ValueError(f"x of shape {tuple(x.shape)} does not fit the network: {error}") from error
        if isinstance(output, torch.Tensor):
            batch, dtype, device = output.shape[0], output.dtype, output.device
        elif callable(self.likelihood):  # e.g. (logits, features): the likelihood picks what it needs
            batch, dtype, device = (
                x.shape[0],
                x.dtype if x.is_floating_point() else self.template_dtype,
                x.device,
            )
        else:
            raise TypeError(
                f"net returns a {type(output).__name__}, not a tensor: pass likelihood= a callable that "
                "builds the distribution of y from it, e.g. lambda out: dist.Categorical(logits=out[0])"
            )
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape[:1] != (batch,)):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be a tensor with {batch} rows, one per row of x; got {shape}")
        size = self.num_data or batch
        # predictions (Predictive on a test set), or an evaluation that reads each row's log-density
        # (to_inference_data, the pruning checks): nothing is scaled, and a test set may be the larger
        if size < batch and (y is None or evaluating()):
            size = batch
        if size < batch:
            raise ValueError(
                f"the batch has {batch} rows but num_data is {size}: num_data is the number of training "
                "rows the likelihood of a batch is scaled to; give the size of the whole training set"
            )
        likelihood = self._distribution(output, batch)
        if y is not None:
            y = self._check_target(y, likelihood, dtype)
        with pyro.plate("data", size, subsample=torch.arange(batch, device=device)):
            pyro.sample("obs", likelihood, obs=y)
        return output

    def _check_input(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if x.dim() == 0 or (x.is_floating_point() and x.dim() < 2):
            raise ValueError(
                f"x must have a batch dimension first, e.g. (batch, features); got shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch (0 rows)")
        dtype = self.template_dtype
        if x.is_floating_point() and x.dtype != dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the network computes in {dtype}: convert x with x.to({dtype}) "
                "or the model (and its guide's data) to x's dtype"
            )
        # the prior's stand-in draws (Predictive, autoguide set-up) in the network's dtype and x's device
        for prior in self._weight_priors:
            prior.dtype, prior.device = dtype, x.device
        return x

    @property
    def template_dtype(self):
        """The floating-point dtype the network computes in (its first floating parameter or buffer;
        the template's when it has none of its own)."""
        tensors = itertools.chain(self.net.parameters(), self.net.buffers(), self.template.parameters())
        return next((t.dtype for t in tensors if t.is_floating_point()), torch.get_default_dtype())

    def _check_target(self, y, likelihood, dtype):
        """``y`` shaped as the likelihood's values: (B, 1) → (B,) for one output; anything else that
        differs is an error, never a broadcast. Integer or bool targets of a Normal or Bernoulli
        likelihood are cast to ``dtype`` (the network's output's)."""
        expected = likelihood.batch_shape + likelihood.event_shape
        if self.likelihood in ("bernoulli", "normal") and not y.is_floating_point():
            # integer or bool labels (what data sets hold): the likelihood takes floats, and torch's
            # Bernoulli log density fails on them with an error about casting
            if y.is_complex():
                raise TypeError(f"y must be real; got dtype {y.dtype}")
            y = y.to(dtype)
        if y.shape == expected:
            return y
        if y.dim() == len(expected) + 1 and y.shape[-1] == 1 and y.shape[:-1] == expected:
            return y.squeeze(-1)
        if y.dim() + 1 == len(expected) and expected[-1] == 1 and y.shape == expected[:-1]:
            return y.unsqueeze(-1)  # (B,) for a (B, 1) likelihood (a callable's, one output)
        name = self.likelihood if isinstance(self.likelihood, str) else "likelihood"
        raise ValueError(
            f"y has shape {tuple(y.shape)} but the model's {name} likelihood takes targets of shape "
            f"{tuple(expected)} (one per row of x"
            + (", class indices" if self.likelihood == "categorical" else "")
            + "); reshape y instead of letting it broadcast"
        )


def _per_row(likelihood, batch):
    """A callable likelihood's distribution with one batch element per row: batch dims after the rows
    (a one-output ``Normal(out, s)`` of out (B, 1)) become event dims, as the built-in likelihoods make
    them. Left as batch dims, the data plate (the rows, at dim −1) broadcast (B, 1) to (B, B): the
    likelihood counted B times. A distribution whose batch does not start with the rows is refused."""
    shape = tuple(likelihood.batch_shape)
    if not shape or shape[0] != batch:
        raise ValueError(
            f"the likelihood's batch shape is {shape}, but it must start with the batch's {batch} rows, one "
            "distribution per row of x (the data plate's), e.g. lambda out: dist.Normal(out, 0.1)"
        )
    return likelihood.to_event(len(shape) - 1) if len(shape) > 1 else likelihood


def _refuse_vectorized_plates():
    """A torch network takes one weight tensor per call: a plate around the model (Predictive's
    ``parallel=True``, ``vectorize_particles=True``) would hand it a batch of weights."""
    outer = [m.name for m in _PYRO_STACK if isinstance(m, PlateMessenger)]
    if outer:
        raise ValueError(
            f"a VDModel cannot run inside the plate(s) {outer}: its torch layers take one weight "
            "sample per call, not a batch of them. Draw samples one at a time: "
            "Predictive(..., parallel=False) (the default), or an ELBO with vectorize_particles=False."
        )


def _check_names(argument, names, modules):
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"{argument} names {unknown}, which are not submodules of net")
    return names


def _warn_deterministic(modules, exclude):
    """Warn about weights of layer types that bayesianize cannot give the prior (LSTM, Embedding…)."""
    left = []
    for name, module in modules.items():
        if isinstance(module, WEIGHT_LAYERS + TRANSPOSED_LAYERS + _NORM_LAYERS):
            continue
        if any(name == e or name.startswith(e + ".") for e in exclude if e):
            continue
        left += [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
    if left:
        warn_at_caller(
            f"bayesianize leaves these parameters as point estimates (their layer types have no "
            f"variational dropout here): {', '.join(left)}. Name their modules in exclude= to silence "
            "this.",
            DeterministicParametersWarning,
        )


def _point_estimates_to_pyro_params(net):
    """Every remaining plain ``nn.Parameter`` becomes a ``PyroParam``: a plain parameter is tracked by
    object, so after ``param_store.load``/``set_state`` the module kept computing with its old tensor
    while the store held the loaded one (DESIGN.md §3, trap 12)."""
    for module in net.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                setattr(module, name, PyroParam(param.detach().clone(), constraints.real))


def _check_untied(net):
    """A ValueError where net holds one parameter under two names (tied weights): a random weight per
    layer would untie them without a word, and so would Pyro, whose param store keeps a point estimate
    per name (``to_pyro_module_``); the deployed network would then hold two different matrices."""
    modules = dict(net.named_modules(remove_duplicate=False))
    owners = {}
    for name, param in net.named_parameters(remove_duplicate=False):
        module = modules[name.rpartition(".")[0]]
        owners.setdefault(id(param), {}).setdefault(id(module), name)
    # (one module object at two places of the network is one site, used twice: not a tie)
    tied = [list(names.values()) for names in owners.values() if len(names) > 1]
    if tied:
        raise ValueError(
            f"net has tied parameters: {tied[0]} are one parameter. bayesianize (and Pyro's param store, "
            "which keeps one entry per name) would train them apart, untied; untie them in net"
        )


def _noise_layers(neuron_noise, layers):
    if type(neuron_noise).__name__ in ("bool", "bool_"):  # (numpy's too)
        return list(layers) if neuron_noise else []
    if neuron_noise is None:
        return []
    names = (
        None
        if isinstance(neuron_noise, (str, bytes))
        or not isinstance(neuron_noise, Iterable)
        or getattr(neuron_noise, "ndim", None) == 0  # (a 0-d tensor or array: not iterable after all)
        else list(neuron_noise)
    )
    if names is None or not all(isinstance(n, str) for n in names):
        raise TypeError(f"neuron_noise must be True, False or a list of layer names; got {neuron_noise!r}")
    neuron_noise = names
    unknown = [n for n in neuron_noise if n not in layers]
    if unknown:
        raise ValueError(
            f"neuron_noise names {unknown}, which are not Linear/Conv layers of net (those are {layers})"
        )
    return neuron_noise


def bayesianize(module, num_data=None, likelihood="categorical", **kwargs):
    """
    A :class:`VDModel` from a torch network: its ``Linear``/``Conv*`` weights become
    :class:`~pyro_vd.distributions.LogUniform` sample sites, ready for
    :class:`~pyro_vd.guides.AutoVariationalDropout`. ``module`` itself is left unchanged, so its
    trained weights can initialize the guide (``init_theta=module.state_dict()``)::

        model = bayesianize(net, num_data=len(train_set))
        guide = AutoVariationalDropout(model, init_theta=net.state_dict())

    See :class:`VDModel` for the arguments.
    """
    return VDModel(module, num_data=num_data, likelihood=likelihood, **kwargs)
