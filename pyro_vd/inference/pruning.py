"""Pruning by the dropout rate: weights with log α above a threshold carry no information."""

import copy
import math
import numbers
from dataclasses import dataclass, field
from operator import attrgetter

import pyro.poutine as poutine
import torch
from pyro.poutine.subsample_messenger import _Subsample
from torch import nn

from .._param_store import store_disagreements
from .._validation import scalar
from ..poutine.full_data_messenger import EvaluationMessenger

#: Sparse VD's rule: a weight with log α > 3 (binary-dropout rate above 0.95) is pruned.
DEFAULT_THRESHOLD = 3.0
#: SBP's rule: a neuron is kept when E θ / √Var θ > 1.
DEFAULT_SNR_THRESHOLD = 1.0


def check_vd_guide(guide):
    """``guide`` if it is an :class:`~pyro_vd.guides.AutoVariationalDropout` (or has its readers), else
    a TypeError; an ``AutoGuideList`` is named, with the part to pass."""
    if hasattr(guide, "site_names") and hasattr(guide, "get_log_alpha"):
        return guide
    from pyro.infer.autoguide import AutoGuideList

    hint = ""
    if isinstance(guide, AutoGuideList):
        parts = [type(part).__name__ for part in guide]
        hint = f" (this one holds {parts}: pass its AutoVariationalDropout part, e.g. guide[0])"
    raise TypeError(f"expected an AutoVariationalDropout guide; got {type(guide).__name__}{hint}")


def log_alpha_bound(guide, name, threshold=None):
    """
    The log α bound a weight of site ``name`` is kept under: ``threshold`` as given — a number (not
    NaN), ``"sparse_vd"`` (3) or ``"evidence"`` (τ(d) of :mod:`pyro_vd.linear.relevance`, d = the
    weights in a row of the site: all but its first dimension, a convolution's input channels × kernel)
    — or, for None, the rule the guide's model names in its ``relevance_rule`` (the evidence rule for
    :class:`~pyro_vd.models.LinearRegression` and :class:`~pyro_vd.models.LogisticRegression`), else
    Sparse VD's 3. Every reader of a guide's relevance (:func:`keep_mask`, :func:`sparsity`,
    :func:`deterministic`, ``relevance``, ``LogAlphaDrift``, the plots, ``to_inference_data``) decides
    by it, so they agree.
    """
    if threshold is None:
        from ..guides.auto_variational_dropout import guide_model

        model = guide_model(guide)
        # (a guide unpickled without its model keeps the rule its model named when it was built)
        if model is None:
            rule = guide.__dict__.get("_relevance_rule")
        else:
            rule = getattr(model, "relevance_rule", None)
        threshold = rule or DEFAULT_THRESHOLD
    from ..linear.relevance import log_alpha_threshold

    threshold = scalar(threshold)  # (a one-element tensor or array as its number)
    if isinstance(threshold, str):
        shape = guide.get_log_alpha(name).shape
        if threshold == "evidence" and not is_layer_site(guide, name):
            check_evidence_row(name, shape)  # (a layer's rows are known: a Linear(1, k) has rows of 1)
        return float(log_alpha_threshold(threshold, row_size(shape)))
    # NaN would prune every weight without a word (log α <= NaN is False); ±inf keeps or prunes them all
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold):
        raise ValueError(
            f"threshold must be a real number (not NaN), 'evidence' or 'sparse_vd'; got {threshold!r}"
        )
    return float(threshold)


def is_layer_site(guide, name):
    """Whether site ``name`` is the weight of a layer of the guide's model (a ``VDModel``'s), whose rows
    are known; kept by the guide for when it is unpickled without its model."""
    from ..guides.auto_variational_dropout import guide_model

    model = guide_model(guide)
    layers = getattr(model, "weight_sites", None) if model is not None else guide.__dict__.get("_layer_sites")
    return name in (layers or ())


def check_evidence_row(name, shape):
    """
    A ValueError where the evidence rule's d is ambiguous: a hand-written site of shape (d, 1) (a column
    vector used as ``X @ w``) has rows of one weight, so the rule read τ(1) = 34.4 and kept every weight
    (log α = 4 too, which even Sparse VD's 3 prunes), where (d,) and (1, d) give τ(d). Only the model
    knows which dimension a weight's output sums over.
    """
    shape = tuple(shape)
    if len(shape) > 1 and row_size(shape) == 1 and math.prod(shape) > 1:
        raise ValueError(
            f"site {name!r} has shape {shape}: the evidence rule's d (the weights one output sums over: all "
            "but the first dimension) would be 1, and τ(1) keeps nearly every weight. Shape the weight "
            f"(1, {shape[0]}) or ({shape[0]},), or pass the bound as a number, "
            f"threshold=pyro_vd.linear.relevance.evidence_log_alpha_threshold({shape[0]})"
        )


def row_size(shape):
    """d of the evidence rule for a weight site of ``shape``: the weights in a row, all but the first
    dimension (a linear layer's inputs, a convolution's input channels × kernel); a vector's length,
    1 for a scalar."""
    shape = tuple(shape)
    return math.prod(shape[1:]) if len(shape) > 1 else math.prod(shape)


def keep_mask(guide, name, threshold=None):
    """Boolean mask of the weights of site ``name`` that are kept: ``log α <=`` the bound of
    ``threshold`` (:func:`log_alpha_bound`; None: the model's rule, else 3). A ValueError where a log α
    is NaN (a diverged run's parameters): NaN would count as pruned, and its θ would reach the
    deterministic network."""
    log_alpha = guide.get_log_alpha(name)
    check_finite_posterior(log_alpha, f"log α of site {name!r}")
    return log_alpha <= log_alpha_bound(guide, name, threshold)


def check_finite_posterior(value, what):
    """A ValueError naming ``what`` where ``value`` holds NaN (±inf is a legitimate α)."""
    bad = int(torch.isnan(value).sum())
    if bad:
        raise ValueError(
            f"{bad} of {value.numel()} values of the {what} are NaN: the guide's parameters diverged (a "
            "NaN gradient, or a checkpoint of a diverged run); restart from an earlier checkpoint, with a "
            "smaller learning rate"
        )


@dataclass
class LayerSparsity:
    """Kept and total weights of one site."""

    name: str
    kept: int
    total: int

    @property
    def pruned_fraction(self):
        return 1.0 - self.kept / self.total if self.total else 0.0  # (a zero-width layer prunes nothing)


@dataclass
class SparsityReport:
    """Per-site and overall sparsity; ``compression`` = total / kept (weights, or neurons)."""

    threshold: float
    layers: dict = field(default_factory=dict)
    criterion: str = ""

    @property
    def kept(self):
        return sum(layer.kept for layer in self.layers.values())

    @property
    def total(self):
        return sum(layer.total for layer in self.layers.values())

    @property
    def compression(self):
        if not self.kept:
            return float("inf") if self.total else 1.0
        return self.total / self.kept

    def to_dict(self):
        return {
            "threshold": self.threshold,
            "kept": self.kept,
            "total": self.total,
            "compression": self.compression,
            "layers": {
                name: {"kept": s.kept, "total": s.total, "pruned_fraction": s.pruned_fraction}
                for name, s in self.layers.items()
            },
        }

    def __str__(self):
        criterion = self.criterion or f"log α > {self.threshold:g}"
        lines = [f"| site | kept | total | pruned ({criterion}) |", "|---|---:|---:|---:|"]
        for s in self.layers.values():
            lines.append(f"| {s.name} | {s.kept} | {s.total} | {100 * s.pruned_fraction:.2f} % |")
        lines.append(f"| **all** | {self.kept} | {self.total} | compression {self.compression:.1f}× |")
        return "\n".join(lines)


def sparsity(guide, threshold=None):
    """
    How sparse each site of a trained :class:`~pyro_vd.guides.AutoVariationalDropout` is: a weight is
    pruned when its log α exceeds the bound of ``threshold`` (:func:`log_alpha_bound`: by default the
    model's rule, else 3, Molchanov et al. 2017).

    :returns: a :class:`SparsityReport` (``print`` it for a table; ``.compression`` is ×).
    """
    check_vd_guide(guide)
    bounds = {name: log_alpha_bound(guide, name, threshold) for name in guide.site_names}
    report = SparsityReport(threshold=next(iter(bounds.values()), DEFAULT_THRESHOLD))
    for name in guide.site_names:
        mask = keep_mask(guide, name, bounds[name])
        report.layers[name] = LayerSparsity(name, int(mask.sum()), mask.numel())
    return report


def pruned_weights(guide, threshold=None):
    """``{site: θ with the pruned weights set to 0}``: the test-time weights (no noise)."""
    check_vd_guide(guide)
    return {name: guide.get_theta(name) * keep_mask(guide, name, threshold) for name in guide.site_names}


class _ConditionedModel(nn.Module):
    """Runs a Pyro model with its weight sites fixed to given values; returns the model's output."""

    def __init__(self, model, weights):
        super().__init__()
        self.model = model
        for i, value in enumerate(weights.values()):
            self.register_buffer(f"weight_{i}", value)
        self._names = list(weights)
        self._leaves = frozenset()  # sites outside every plate already found to feed nothing

    def _upstream(self, sites, data, args, kwargs):
        """Those of ``sites`` that another sample site or the model's return value depends on (latents
        feeding the model, such as a noise scale), by Pyro's provenance tracking; not leaves the output
        does not read (a likelihood outside any plate, sampled where no ``obs`` is given). A dependence
        through Python control flow (``0.5 if s > 0 else 2.0``) is not seen."""
        from pyro.infer.inspect import TrackProvenance
        from pyro.ops.provenance import get_provenance

        with poutine.block(), torch.random.fork_rng(), torch.no_grad(), EvaluationMessenger("the outputs"):
            with TrackProvenance():
                trace = poutine.trace(poutine.condition(self.model, data=data)).get_trace(*args, **kwargs)
        read = set(_provenance(trace.nodes["_RETURN"]["value"], get_provenance))
        for name, site in trace.nodes.items():
            if site["type"] == "sample" and not isinstance(site["fn"], _Subsample):
                read |= set(get_provenance(site["fn"].log_prob(site["value"]))) - {name}
        return [name for name in sites if name in read]

    def forward(self, *args, **kwargs):
        data = {name: getattr(self, f"weight_{i}") for i, name in enumerate(self._names)}
        with poutine.block(), torch.no_grad(), EvaluationMessenger("the network's outputs"):
            trace = poutine.trace(poutine.condition(self.model, data=data)).get_trace(*args, **kwargs)
        free = [  # sites outside every plate, neither observed nor fixed by the guide
            name
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and name not in data
            and not site["cond_indep_stack"]
            and not isinstance(site["fn"], _Subsample)
        ]
        unchecked = [name for name in free if name not in self._leaves]  # (checked once, not per call)
        upstream = self._upstream(unchecked, data, args, kwargs) if unchecked else []
        if upstream:  # drawn from their prior at every call: a different network each time
            raise ValueError(
                f"the model has global latent sites {upstream} that the guide does not cover: "
                "deterministic() would draw them from their prior at every call. Fix them first, e.g. at "
                "another guide's median: "
                "deterministic(pyro.poutine.condition(model, data=other_guide.median()), guide)"
            )
        self._leaves = self._leaves | frozenset(unchecked)
        return trace.nodes["_RETURN"]["value"]


def _provenance(value, get_provenance):
    """The sample sites a (nested) return value was computed from."""
    if isinstance(value, torch.Tensor):
        return get_provenance(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return frozenset().union(*(_provenance(v, get_provenance) for v in value))
    return frozenset()


def check_store_agrees(*modules):
    """
    A ValueError where Pyro's param store holds other values than ``modules`` (a model, its guide) under
    their parameters' names. A ``PyroModule`` reads the store inside its own call (the model's forward,
    the guide's, ``Predictive``) and its own tensors outside it (the guide's readers, as Pyro's
    autoguides' ``median``): after ``pyro.get_param_store().load(...)``, or with a guide kept from an
    earlier run whose names another run's parameters now hold, ``deterministic`` exported the guide's own
    θ with the store's biases, a network of two training states, without a word. Nothing is checked
    under ``module_local_params`` (no store).
    """
    differ = store_disagreements(*modules)
    if differ:
        raise ValueError(
            f"Pyro's param store holds other values than the model and guide under {len(differ)} of their "
            f"parameters' names (e.g. {differ[0]!r}): the model and guide compute with the store's values "
            "inside a call and hold their own outside it, and the export would mix the two. After "
            "pyro.get_param_store().load(...), run them once (pyro.infer.Predictive(model, guide=guide, "
            "num_samples=1)(x)) to take the loaded values; for a model and guide kept from an earlier run "
            "(another run's parameters are in the store), call pyro.clear_param_store() to keep their own "
            "(running them would replace them with the other run's)"
        )


def deterministic(model, guide, threshold=None, *, snr_threshold=DEFAULT_SNR_THRESHOLD):
    """
    The network for deployment: weights θ, those with log α above the bound of ``threshold`` set to 0
    (:func:`log_alpha_bound`: by default the model's rule, else 3), no noise.
    Neuron noise (:mod:`pyro_vd.models.neuron_noise`) is replaced by its mean E θ, and by 0 for neurons
    with SNR ≤ ``snr_threshold``; in a :class:`~pyro_vd.models.VDModel` it is folded into the weight
    columns of the layer whose input it multiplies (:func:`pyro_vd.inference.prune_neurons` then removes
    the pruned neurons).

    For a :class:`~pyro_vd.models.VDModel` (``bayesianize`` and the ``pyro_vd.models`` networks) this is
    a plain torch module of the original architecture, with the learned biases and buffers, in eval
    mode; its output is the network's (e.g. logits). For any other Pyro model it is a module that runs
    the model with the weights fixed and returns what the model returns; a model whose plate draws a
    random subsample is refused there (its outputs would be for random rows), and so is one with a
    global latent site (outside every plate) that ``guide`` does not fix, such as a noise scale another
    guide of an ``AutoGuideList`` learns: it would be drawn from its prior at every call. Fix those first,
    ``deterministic(poutine.condition(model, data=guide[1].median()), guide[0])``.
    """
    from .neuron_pruning import neuron_scales

    check_store_agrees(model, guide)
    weights = pruned_weights(guide, threshold)
    noise = neuron_scales(guide, snr_threshold)
    template = getattr(model, "template", None)
    if template is None:
        return _ConditionedModel(model, {**weights, **noise}).eval()
    device = next(iter({**weights, **noise}.values())).device
    net = copy.deepcopy(template).to_empty(device=device)
    state = {}
    # Point estimates (PyroParams) are the module's own: check_store_agrees above made sure they are the
    # param store's where it holds them. Read inside the model's Pyro context they were registered in the
    # global store (a model trained under module_local_params then lent its biases to the next one's
    # export), and taken from it.
    with poutine.block(), torch.no_grad():
        for key in net.state_dict():
            site = f"net.{key}"
            state[key] = weights[site] if site in weights else attrgetter(key)(model.net).detach()
    for site, scale in noise.items():  # x·θ then W: the same as W with its columns scaled by θ
        key = site[len("net.") : -len("input_noise")] + "weight"
        weight = state[key]
        groups = getattr(attrgetter(key[: -len(".weight")])(net) if "." in key else net, "groups", 1)
        # a grouped convolution's output channel o reads the input channels of its group only:
        # weight[o, c] multiplies input channel (o // (out/groups))·(in/groups) + c
        columns = scale.reshape(groups, -1).repeat_interleave(weight.shape[0] // groups, dim=0)
        state[key] = weight * columns.reshape(columns.shape + (1,) * (weight.dim() - 2)).to(weight)
    net.load_state_dict(state)
    return net.eval()
