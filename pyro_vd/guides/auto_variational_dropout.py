"""The automatic variational dropout guide: q(w) = N(θ, αθ²) at every LogUniform site of a model, and a
truncated log-normal at every neuron-noise (TruncatedLogUniform) site."""

import functools
import itertools
import math
import numbers
import re
import weakref
from contextlib import ExitStack

import pyro
import pyro.poutine as poutine
import torch
from pyro.distributions import Independent
from pyro.infer.autoguide import AutoGuide
from pyro.infer.autoguide.initialization import InitMessenger
from pyro.nn.module import PyroModule, PyroParam
from pyro.ops.tensor_utils import periodic_repeat
from pyro.poutine.messenger import unwrap
from torch.distributions import constraints
from torch.utils.weak import WeakIdKeyDictionary

from .._param_store import pyro_parameters, store_disagreements
from .._validation import check_finite_real, is_finite_real, scalar
from .._warnings import warn_at_caller
from ..distributions.kl_log_uniform import DEFAULT_KL_METHOD, check_kl_method
from ..distributions.log_uniform import LogUniform
from ..distributions.truncated_log_normal import TruncatedLogNormal
from ..distributions.truncated_log_uniform import TruncatedLogUniform
from ..distributions.vd_normal import VDNormal

GRANULARITIES = ("weight", "output", "input", "layer", "shared")
PARAMETERIZATIONS = ("additive", "multiplicative", "shrinkage")
#: The starts of θ at or next to 0 (``init_theta``), for sites that learn log α.
STARTS_AT_ZERO = ("zeros", "near_zero")
#: The standard deviation of ``init_theta="near_zero"``: θ ~ N(0, NEAR_ZERO_SCALE²).
NEAR_ZERO_SCALE = 1e-3
#: The settings a model may recommend through a ``guide_defaults`` mapping (used where left at None).
MODEL_DEFAULTS = (
    "parameterization",
    "init_theta",
    "init_log_sigma2",
    "init_log_alpha",
    "log_alpha_scale",
    "averaging",
    "hold_log_alpha",
    "train_prune",
)
#: The names of the log α parameters, per site and shared; with ``log_alpha_scale`` c ≠ 1 they end in
#: ``_x`` and c (``log_alphas_x5``, ``shared_log_alpha_x2p5``), so that values saved with one c are never
#: read with another (see ``_check_log_alpha_names``).
_LOG_ALPHA_NAME = re.compile(r"^(log_alphas|shared_log_alpha)(?:_x([0-9pem]+))?(?:_unconstrained)?$")
#: SBP clips both μ and log σ of the neuron noise to this interval.
NOISE_PARAM_BOUNDS = (-20.0, 5.0)


def _check_noise_start(value, name):
    """A neuron-noise start inside :data:`NOISE_PARAM_BOUNDS`, else a ValueError: the posterior clamps μ
    and log σ to that interval, and the clamp has no gradient outside it, so a start beyond it never
    moved (``init_noise_loc=-25`` kept every neuron at E θ = 2e-9, reported kept at SNR 11.7)."""
    value = check_finite_real(value, name)
    low, high = NOISE_PARAM_BOUNDS
    if not low <= value <= high:
        raise ValueError(
            f"{name} must lie in [{low:g}, {high:g}], where the guide clamps the neuron noise's parameters "
            f"(outside it the clamp has no gradient and the parameter would never train); got {value!r}"
        )
    return value


def _base(fn):
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn


def _is_log_uniform(fn):
    return isinstance(_base(fn), LogUniform)


def _is_neuron_noise(fn):
    return isinstance(_base(fn), TruncatedLogUniform)


def _alpha_shape(shape, event_dim, granularity):
    """Shape of log α for a site of value ``shape``: ``"layer"`` one for the site; ``"output"`` and
    ``"input"`` reduce the event dims and keep the batch dims, but a weight declared through plates
    alone (``with pyro.plate("units", 10): LogUniform()``, no event dims) is reduced over its own dims:
    it is the same weight as ``LogUniform(event_shape=(10,))``, and used to get one α per weight."""
    shape = list(shape)
    batch, event = shape[: len(shape) - event_dim], shape[len(shape) - event_dim :]
    if granularity == "weight":
        return torch.Size(shape)
    if granularity == "layer":
        return torch.Size([1] * len(shape))
    if not event:
        batch, event = [], shape
    if granularity == "output":  # one α per output unit: dim 0 of (out, in, *kernel)
        event = [event[0]] + [1] * (len(event) - 1)
    elif granularity == "input":  # one α per input unit (Kingma's variant A): dim 1
        event = [1] + event[1:2] + [1] * (len(event) - 2) if len(event) > 1 else event
    return torch.Size(batch + event)


def _hook_once(hooks, key, tensor, hook):
    """Register ``hook`` on ``tensor`` unless the hook under ``key`` is already on this tensor (a replaced
    tensor gets it anew and the old one loses it)."""
    current = hooks.get(key)
    if current is not None and current[0]() is tensor:
        return
    if current is not None:
        current[1].remove()
    hooks[key] = (weakref.ref(tensor), tensor.register_hook(hook))


def _count_step(guide_ref, theta_ref, grad):
    """Count a training step of the guide: a backward pass that reaches its first θ after that θ changed
    (an optimizer step) or was replaced since the last one counted (see :func:`_theta_changed`)."""
    guide, theta = guide_ref(), theta_ref()
    if guide is None or theta is None:
        return
    if _theta_changed(guide.__dict__.get("_counted"), theta):
        steps = guide.__dict__.get("_trained_steps", 0) + 1
        guide.__dict__["_trained_steps"] = steps
        # While a hold is pending, keep θ's values too: optimizers that write through ``.data`` (Pyro's
        # ClippedAdam, AdagradRMSProp, DCTAdam) do not move the version counter.
        snapshot = theta.detach().clone() if steps <= guide.hold_log_alpha else None
        guide.__dict__["_counted"] = (theta_ref, theta._version, snapshot)


def _theta_changed(counted, theta):
    """Whether ``theta`` changed since ``counted`` = (its weak reference, version, values or None) was
    recorded: another tensor, a moved version counter, or (where the values were kept) other values."""
    if counted is None or counted[0]() is not theta or counted[1] != theta._version:
        return True
    return counted[2] is not None and not torch.equal(counted[2], theta.detach())


def _zero_while_held(guide_ref, grad):
    """A learned log α's gradient while the guide holds it (``hold_log_alpha``): zero."""
    guide = guide_ref()
    if guide is not None and guide._holding():
        return torch.zeros_like(grad)
    return None


class AutoVariationalDropout(AutoGuide):
    r"""
    Variational dropout for every :class:`~pyro_vd.distributions.LogUniform` site of a model: the guide
    samples each such site from :math:`q(w) = \mathcal{N}(\theta, \alpha\theta^2)`
    (:class:`~pyro_vd.distributions.VDNormal`), directly at the model's site name, so that the KL to the
    prior is computed in closed form (by :class:`~pyro_vd.inference.VariationalDropoutELBO` or
    Pyro's :class:`~pyro.infer.TraceMeanField_ELBO`) and the local reparameterization handler can see
    :math:`(\theta, \sigma^2)`.

    **Neuron noise** (structured dropout, :mod:`pyro_vd.models.neuron_noise`): every
    :class:`~pyro_vd.distributions.TruncatedLogUniform` site gets the posterior
    :class:`~pyro_vd.distributions.TruncatedLogNormal` with learned :math:`\mu` and :math:`\log\sigma`
    per neuron (parameters ``noise_locs.<site>`` and ``noise_log_scales.<site>``, initialized to 0 and −5
    and clipped to :math:`[-20, 5]` as in Neklyudov et al. 2017), truncated to the prior's interval. So one
    guide covers weight-level and neuron-level sparsity in the same model.

    It refuses models with other latent sites, naming them; give those their own guide with
    :class:`~pyro.infer.autoguide.AutoGuideList`::

        guide = AutoGuideList(model)
        guide.append(AutoVariationalDropout(poutine.block(model, expose=weight_sites)))
        guide.append(AutoNormal(poutine.block(model, hide=weight_sites)))

    :param callable model: a Pyro model (e.g. a :class:`~pyro_vd.models.VDModel`).
    :param granularity: how many dropout rates α a site gets — ``"weight"`` (one per weight; Sparse VD),
        ``"output"`` (one per output neuron: dim 0 of a ``(out, in, *kernel)`` weight), ``"input"``
        (one per input unit, Kingma's variant A), ``"layer"`` (one per site) or ``"shared"`` (one for
        the whole model); or a dict ``{site: granularity}`` (sites not named get ``"weight"``).
        ``"output"`` and ``"input"`` index dims 0 and 1 of the weight as torch stores it: for a
        ``ConvTranspose*`` layer, whose weight is ``(in, out / groups, *kernel)``, ``"output"`` gives
        one α per *input* channel and ``"input"`` one per output channel.
    :param str parameterization: ``"additive"`` — learn :math:`(\theta, \log\sigma^2)`, which lets α grow
        without bound (the default for ``"weight"``); ``"multiplicative"`` — learn
        :math:`(\theta, \log\alpha)` (the default when α is shared); or ``"shrinkage"`` — learn
        :math:`(\varphi, \log\alpha)` with :math:`\theta = \varphi / (1 + \alpha)`. For a linear model
        the ELBO's optimal θ given α is :math:`r/(S(1+\alpha))` (r: the feature's correlation with the
        residual, S = Σx²; DESIGN.md §1), so φ's optimum does not move with α and a dropped-out weight
        is shrunk to 0 by α itself rather than by θ reaching 0 under the optimizer's step noise; the
        default of :class:`~pyro_vd.models.LinearRegression` and
        :class:`~pyro_vd.models.LogisticRegression`. φ starts where θ would (``init_theta``), so θ starts
        shrunk by :math:`1/(1+\alpha)`.
    :param float max_log_alpha: clip :math:`\log\alpha` from above (``0.`` is Kingma's α ≤ 1).
    :param float min_log_alpha: clip :math:`\log\alpha` from below.
    :param str kl_method: the KL the guide's :class:`VDNormal` asks for (``"molchanov"``, ``"kingma"``,
        ``"exact"``); :class:`~pyro_vd.inference.VariationalDropoutELBO` may override it.
    :param init_theta: ``None`` — :math:`\theta \sim \mathcal{N}(0, 1/\text{fan\_in})`; a mapping such
        as a pretrained ``state_dict`` (keys are site names, or site names without the model's leading
        ``"net."``), falling back to the default for sites it lacks; a callable ``site -> tensor``;
        ``"near_zero"`` — :math:`\theta \sim \mathcal{N}(0, (10^{-3})^2)` (:data:`NEAR_ZERO_SCALE`; the
        linear models' recommendation); or ``"zeros"`` — θ = 0. Both of the last two need a learned
        log α (multiplicative, shrinkage): with log σ² learned, θ ≈ 0 would make α huge. A start next
        to 0 leaves next to no weight noise (its variance is αθ²), so the data's gradient on θ has one
        sign from the first step and a relevant weight does not wander through 0 under noise. From the
        random start, a weight that must change sign passes θ ≈ 0, where nothing holds its α down; with
        log α learned 5 times as fast (``log_alpha_scale``) and Adam(0.05), a coefficient of 2 was
        pruned in 2 of 8 draws. θ = 0 exactly, though, is a point mass q(w) = δ(w):
        VariationalDropoutELBO and TraceMeanField_ELBO (closed-form KL) train from it, but an ELBO that
        differentiates :math:`\log q(w) - \log p(w)` at a sampled w (``Trace_ELBO``, ``JitTrace_ELBO``,
        ``TraceGraph_ELBO``) cannot, and :meth:`VDNormal.log_prob
        <pyro_vd.distributions.VDNormal.log_prob>` refuses it. ``"near_zero"`` is random so that no
        learning rate cancels it: from a constant start c, Adam's first step (± its learning rate) put
        θ on 0 whenever the learning rate was c.
    :param float init_log_sigma2: initial :math:`\log\sigma^2` (additive), −10 as in Sparse VD.
    :param float init_log_alpha: initial :math:`\log\alpha` (multiplicative, shrinkage), −4.
    :param float log_alpha_scale: c > 0 (multiplicative, shrinkage; 1 by default): the guide learns
        :math:`\psi = \log\alpha / c` and forms :math:`\log\alpha = c\,\psi`, so that an Adam-type
        optimizer's step (about its learning rate whatever the gradient's scale) moves log α c times as
        far as it moves θ; plain SGD's step in log α grows by c². With c ≠ 1 the parameters are named for
        c (``log_alphas_x5.<site>``, ``shared_log_alpha_x5``), and a state dict, checkpoint or param store
        whose log α was saved with another c is refused rather than read as this guide's ψ. The linear
        models recommend c = 5: with Adam(1e-2) and minibatches of 0.1 % the relevant features' log α
        still lay 1.2–1.8 above their optimum after 3000 steps with c = 1, which left weakly relevant
        features pruned and θ biased (``benchmarks/svi_agreement.py``).

    The settings of :data:`MODEL_DEFAULTS` (``parameterization``, ``init_theta``, ``init_log_sigma2``,
    ``init_log_alpha``, ``log_alpha_scale``, ``averaging``, ``hold_log_alpha``, ``train_prune``) left at
    ``None`` take the model's recommendation when it has a ``guide_defaults`` mapping (the linear models
    of :mod:`pyro_vd.models.linear` recommend ``"shrinkage"``, θ started ``"near_zero"``, averaging with
    η = 3, c = 5 and a dense start log α = −8 held for 500 steps,
    :func:`~pyro_vd.models.linear.linear_guide_defaults`: a linear model is not a deep net), else the
    values above.
    :param int init_seed: seed of the initialization's own generator. By default one is drawn from
        torch's global generator when the guide is built, so ``pyro.set_rng_seed`` fixes it, and the lazy
        initialization at the first step draws nothing from the global stream (a run resumed from a
        checkpoint follows the same trajectory).
    :param averaging: ``False`` (the default for deep nets) — none; a number η ≥ 0 — **iterate
        averaging**: the guide keeps the polynomial-decay average (Shamir & Zhang 2013) of every parameter
        the ELBO trains with it — its own and its model's point estimates (biases, the noise scale) —
        over the training steps,
        :math:`\bar x_k = \bar x_{k-1} + \tfrac{\eta + 1}{k + \eta}(x_k - \bar x_{k-1})`, which weights
        step k by about :math:`k^\eta` (η = 0: the plain mean of all iterates).
        :meth:`apply_average` sets the parameters to it when training ends; until then they are the
        live iterates. With a constant step size Adam's iterate jitters around the optimum by several
        posterior standard deviations when minibatches are small (its stationary spread grows as
        :math:`\sqrt{N/B}`); the average does not. The linear models recommend η = 3
        (:data:`~pyro_vd.models.linear.LINEAR_GUIDE_DEFAULTS`; measured in ``benchmarks/svi_agreement.py``).
        A step is counted when a parameter's gradient is accumulated (a tensor hook, so ``JitTrace_ELBO``
        and the module route count too; once per step whatever the particles). The averages are
        in-memory: they start again when a parameter tensor is replaced (the param store loaded or set),
        when the guide's state is loaded (``load_state_dict``, also through a parent module), when it
        is moved or converted (``.to()``), and on :meth:`reset_average`.
        :func:`~pyro_vd.inference.save_checkpoint` saves them and
        :func:`~pyro_vd.inference.load_checkpoint` continues them (:meth:`average_state`,
        :meth:`load_average_state`); a pickled guide has none.
    :param float train_prune: optional **train-time pruning** at this log α (the Sparse VD authors'
        ``train_clip``, at 3): the weights the guide samples have mean :math:`\theta` only where
        :math:`\log\alpha` is below it (0 elsewhere; the noise and the KL unchanged), so that training
        sees the network the pruning rule will deploy (:class:`~pyro_vd.distributions.VDNormal`'s
        ``prune_above``). Readouts (``get_theta``, ``posterior``) report the unpruned θ. With ``averaging``,
        a site that learns log α is pruned by the iterate average of its log α (what
        :func:`~pyro_vd.analysis.relevance` reads after :meth:`apply_average`) once that holds a step: the
        live iterate of small minibatches jitters by a unit or more, and a weakly relevant weight it carried
        past the bound lost its mean, then for good (2 of the 5 linear fits at 0.1 % batches it was tried
        on, ``benchmarks/svi_agreement.py``). Until the average holds a step (at the start, and after
        :meth:`reset_average`, :meth:`apply_average`, a loaded state or ``.to()``) and in a step compiled by
        ``JitTrace_ELBO`` (which would keep a stale copy of the average) the live log α decides. A weight
        exactly at the bound is pruned here (log α < bound is kept, as in the Sparse VD code), while
        :func:`~pyro_vd.analysis.relevance` keeps log α ≤ bound; they differ only there. On the linear
        models, the evidence bound τ(d) that :func:`~pyro_vd.analysis.relevance` applies to them takes a
        feature past it out of the model, as ``VDRegression``'s and ``VDClassifier``'s search does, and the
        kept features' θ are fitted without it; its cost, a pruned weight's log α moved only by the KL's
        small slope and by noise, is why they do not recommend it
        (:func:`~pyro_vd.models.linear.linear_guide_defaults`). ``False`` turns a model's recommended
        pruning off. The setting is not saved in checkpoints: a run resumed with another ``train_prune``
        follows it from there.
        "The KL unchanged" holds for a closed-form KL (:class:`~pyro_vd.inference.VariationalDropoutELBO`,
        ``TraceMeanField_ELBO``). An ELBO that samples w (``Trace_ELBO``) evaluates log q − log p at
        w = σε for a pruned weight, which depends on no parameter: the KL's pull on its log α is gone,
        and only the likelihood moves it (measured: an irrelevant feature's averaged log α came back
        to within 0.06 of τ(d) at step 6000, then climbed to 2.9 by step 12 000; the relevant sets of
        12 fits were right). Leave it off there to keep the sampled KL's pull.
    :param int hold_log_alpha: K ≥ 0 (0 by default for deep nets): for the first K **training steps**
        (:attr:`trained_steps`) the learned log α (multiplicative, shrinkage; not log σ² of additive
        sites) is held at its start — the guide zeroes its gradient, so the optimizer sees zeros for it
        and leaves it where it is — while θ and the model's point estimates train; log α trains from
        step K + 1 on. The linear models recommend K = 500 with a dense start (log α = −8,
        :func:`~pyro_vd.models.linear.linear_guide_defaults`): θ first reaches the least-squares-like
        solution under a small α, then α moves. Started together, the two race: with a start on the
        pruned side, a feature that borrows a correlated neighbour's weight early fills Adam's
        second-moment estimate of log α with the large gradients of that transient, and afterwards
        climbs too slowly to be pruned in 3000 steps; from a dense start without the hold, a relevant
        feature whose θ lags behind its neighbour's is pruned before θ arrives
        (``benchmarks/svi_agreement.py``). The zeroing is a hook on the tensors the optimizer steps, so
        it holds under ``JitTrace_ELBO``, the module route and DDP (where every parameter still gets a
        gradient). The count is part of the guide's ``state_dict``, so checkpoints resume it (pass the
        guide to :func:`~pyro_vd.inference.load_checkpoint`); a state saved without it counts as past
        the hold; so does a guide that finds trained log α (moved from their start) of its sites in
        Pyro's param store when it is set up (its first call after ``pyro.get_param_store().load(...)``:
        the store keeps no step count; untrained leftovers of another guide of the same names are held
        as asked). An optimizer's momentum for log α from before the hold (a state rolled back into it)
        still moves it.
    :param float init_noise_loc: initial :math:`\mu` of the neuron noise (0).
    :param float init_noise_log_scale: initial :math:`\log\sigma` of the neuron noise (−5).
    :param callable create_plates: as for every :class:`~pyro.infer.autoguide.AutoGuide`.

    Parameters are created lazily at the first call, on the device and dtype of the model's first
    tensor argument.
    """

    def __init__(
        self,
        model,
        *,
        granularity="weight",
        parameterization=None,
        max_log_alpha=None,
        min_log_alpha=None,
        kl_method=DEFAULT_KL_METHOD,
        init_theta=None,
        init_log_sigma2=None,
        init_log_alpha=None,
        log_alpha_scale=None,
        init_seed=None,
        init_noise_loc=0.0,
        init_noise_log_scale=-5.0,
        averaging=None,
        hold_log_alpha=None,
        train_prune=None,
        create_plates=None,
    ):
        if not callable(model):
            raise TypeError(f"model must be a Pyro model (a callable); got {type(model).__name__}")
        self._granularity = self._check_granularity(granularity)
        recommended = _model_defaults(model)
        if parameterization is None:
            parameterization = recommended.get("parameterization")
        if init_log_sigma2 is None:
            init_log_sigma2 = recommended.get("init_log_sigma2", -10.0)
        if init_log_alpha is None:
            init_log_alpha = recommended.get("init_log_alpha", -4.0)
        if averaging is None:
            averaging = recommended.get("averaging")
        hold_given = hold_log_alpha is not None
        if hold_log_alpha is None:
            hold_log_alpha = recommended.get("hold_log_alpha", 0)
        if train_prune is None:
            train_prune = recommended.get("train_prune")
        elif train_prune is False:  # off, also where the model recommends it
            train_prune = None
        elif not isinstance(train_prune, numbers.Real) or isinstance(train_prune, bool):
            raise TypeError(
                f"train_prune must be a real number (a log α), None or False; got {train_prune!r}"
            )
        if isinstance(hold_log_alpha, bool) or not isinstance(hold_log_alpha, numbers.Integral):
            raise TypeError(f"hold_log_alpha must be an int (a number of steps); got {hold_log_alpha!r}")
        if hold_log_alpha < 0:
            raise ValueError(f"hold_log_alpha must be >= 0; got {hold_log_alpha}")
        # the relevance rule the model names, kept for a guide pickled (or deep-copied) without its model
        self.__dict__["_relevance_rule"] = getattr(unwrap(model), "relevance_rule", None)
        # and its layers' weight sites (their rows are known: the evidence rule reads them as such)
        self.__dict__["_layer_sites"] = tuple(getattr(unwrap(model), "weight_sites", None) or ())
        self.__dict__["_hold_log_alpha"] = int(hold_log_alpha)
        self.__dict__["_trained_steps"] = 0
        # the model's recommended start applies where it can: at or next to 0 only where log α is learned
        self._init_theta_recommended = init_theta is None and "init_theta" in recommended
        if init_theta is None:
            init_theta = recommended.get("init_theta")
        scale_given = log_alpha_scale is not None
        if log_alpha_scale is None:
            log_alpha_scale = recommended.get("log_alpha_scale", 1.0)
        if (
            isinstance(log_alpha_scale, bool)
            or not isinstance(log_alpha_scale, numbers.Real)
            or not math.isfinite(log_alpha_scale)
            or log_alpha_scale <= 0
        ):
            raise ValueError(f"log_alpha_scale must be a finite number > 0; got {log_alpha_scale!r}")
        self.__dict__["_averaging"] = _check_averaging(averaging)
        if parameterization is not None and parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {PARAMETERIZATIONS} or None; got {parameterization!r}"
            )
        self._parameterization = parameterization
        self.__dict__["_log_alpha_scale"] = float(log_alpha_scale)  # read-only: see log_alpha_scale
        if isinstance(init_theta, str) and init_theta in STARTS_AT_ZERO and not self._init_theta_recommended:
            if self._learns_log_sigma2_only():
                raise ValueError(
                    f"init_theta={init_theta!r} needs a learned log α (parameterization 'multiplicative' "
                    "or 'shrinkage'); this guide learns log σ² per weight, and θ ≈ 0 would make α huge"
                )
        if scale_given and self.log_alpha_scale != 1.0 and self._learns_log_sigma2_only():
            raise ValueError(
                "log_alpha_scale applies to a learned log α (parameterization 'multiplicative' or "
                "'shrinkage', or a granularity other than 'weight'); this guide learns log σ² per weight "
                "(parameterization='additive'), so it would have no effect"
            )
        if self.hold_log_alpha and self._learns_log_sigma2_only():
            if hold_given:
                raise ValueError(
                    f"hold_log_alpha={self.hold_log_alpha} holds a learned log α (parameterization "
                    "'multiplicative' or 'shrinkage', or a granularity other than 'weight'); this guide "
                    "learns log σ² per weight (parameterization='additive'), so nothing would be held"
                )
            self.__dict__["_hold_log_alpha"] = 0  # the model's recommendation, where nothing can be held
        if parameterization == "additive":
            shared = sorted({g for g in self._granularities() if g != "weight"})
            if shared:
                raise ValueError(
                    f"parameterization='additive' learns σ² per weight, but granularity {shared[0]!r} "
                    "shares α between weights, which needs parameterization='multiplicative' (or None)"
                )
        self.kl_method = check_kl_method(kl_method)
        # VDNormal validates the bounds; build one now so that bad bounds fail here, not at step 1.
        VDNormal(
            torch.ones(()),
            torch.zeros(()),
            min_log_alpha=min_log_alpha,
            max_log_alpha=max_log_alpha,
            prune_above=train_prune,
        )
        if train_prune is not None and max_log_alpha is not None and train_prune >= max_log_alpha:
            # clipped at max_log_alpha, a weight reaches log α = max_log_alpha at most: training (which
            # prunes log α ≥ train_prune) and every reader (which prunes log α > the threshold) then
            # disagreed about the clipped weights, or nothing was ever pruned while training
            raise ValueError(
                f"train_prune ({train_prune:g}) must be below max_log_alpha ({max_log_alpha:g}): log α is "
                "clipped at max_log_alpha, so a weight at the clip would be pruned while training and "
                "reported and deployed as kept (sparsity and deterministic prune log α above the "
                "threshold). The authors' recipe clips at 8 and prunes at 3"
            )
        self.min_log_alpha = min_log_alpha
        self.max_log_alpha = max_log_alpha
        self.train_prune = train_prune
        if isinstance(init_theta, str):
            if init_theta not in STARTS_AT_ZERO:
                raise ValueError(
                    "init_theta must be None, 'zeros', 'near_zero', a mapping or a callable; "
                    f"got {init_theta!r}"
                )
        elif init_theta is not None and not callable(init_theta) and not hasattr(init_theta, "get"):
            raise TypeError(
                "init_theta must be None, 'zeros', 'near_zero', a mapping (e.g. a state_dict) or a "
                f"callable; got {type(init_theta).__name__}"
            )
        self.init_theta = init_theta
        # (NaN or ±inf here failed only at the first step, blamed on the optimization)
        self.init_log_sigma2 = check_finite_real(init_log_sigma2, "init_log_sigma2")
        self.init_log_alpha = check_finite_real(init_log_alpha, "init_log_alpha")
        self.init_noise_loc = _check_noise_start(init_noise_loc, "init_noise_loc")
        self.init_noise_log_scale = _check_noise_start(init_noise_log_scale, "init_noise_log_scale")
        if init_seed is None:
            init_seed = int(torch.randint(0, 2**62, ()).item())
        seed = scalar(init_seed)  # (a one-element tensor or array as its number)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
            # (1.5 was read as 1; torch wraps −1 to 2**64 − 1 and fails on 2**64 at the first call)
            raise ValueError(f"init_seed must be an integer in [0, 2**64) or None; got {init_seed!r}")
        self.init_seed = int(seed)
        super().__init__(model, create_plates=create_plates)
        self._leaves = {}  # (group, site) -> the modules on its dotted path: see _param
        self.__dict__["_averages"] = {}  # (group, site) -> _Average: see averaging

    def _granularities(self):
        if isinstance(self._granularity, dict):
            return [*self._granularity.values(), "weight"]
        return [self._granularity]

    @staticmethod
    def _check_granularity(granularity):
        if isinstance(granularity, dict) and not all(isinstance(k, str) for k in granularity):
            raise TypeError("granularity's keys must be site names (str)")
        values = granularity.values() if isinstance(granularity, dict) else [granularity]
        for value in values:
            if value not in GRANULARITIES:
                raise ValueError(
                    f"granularity must be one of {GRANULARITIES} (or a dict of them); got {value!r}"
                )
        return granularity

    def granularity(self, name):
        """The α granularity of site ``name``."""
        if isinstance(self._granularity, dict):
            return self._granularity.get(name, "weight")
        return self._granularity

    def parameterization(self, name):
        """``"additive"`` or ``"multiplicative"`` for site ``name``."""
        granularity = self.granularity(name)
        if self._parameterization is None:
            return "additive" if granularity == "weight" else "multiplicative"
        if self._parameterization == "shrinkage":
            return "shrinkage"
        if self._parameterization == "additive" and granularity != "weight":
            raise ValueError(
                f"site {name!r}: granularity {granularity!r} shares α between weights, which needs "
                "parameterization='multiplicative' (σ² = αθ² cannot be learned per weight then)"
            )
        return self._parameterization

    def _learns_log_sigma2_only(self):
        """True when no site can have a learned log α (every site additive)."""
        if self._parameterization == "additive":
            return True
        return self._parameterization is None and all(g == "weight" for g in self._granularities())

    @property
    def averaging(self):
        """η of the iterate averaging, or None for none (see the class's ``averaging``). Setting it
        validates it as the constructor does (``False`` means None); a change of η starts the averages
        afresh (an average taken with one η cannot continue with another), and None removes them."""
        return self.__dict__.get("_averaging", self.__dict__.get("averaging"))  # (a guide pickled before)

    @averaging.setter
    def averaging(self, value):
        value = _check_averaging(value)
        changed = value != self.averaging
        self.__dict__["_averaging"] = value
        if changed and "_averages" in self.__dict__:
            self.reset_average()

    @property
    def log_alpha_scale(self):
        """c of ``log_alpha_scale``: log α = c · ψ (fixed when the guide is built; 1 for a guide pickled
        before the setting existed)."""
        return self.__dict__.get("_log_alpha_scale", 1.0)

    @property
    def hold_log_alpha(self):
        """K of ``hold_log_alpha`` (0 for a guide pickled before the setting existed)."""
        return self.__dict__.get("_hold_log_alpha", 0)

    @property
    def trained_steps(self):
        """The training steps this guide has taken part in: backward passes through its first trainable θ
        with that θ changed since the last one counted (so several particles, accumulated micro-batches
        or an extra ``backward`` between two optimizer steps count once). Kept in the guide's
        ``state_dict``; what ``hold_log_alpha`` counts. "Changed" is θ's version counter, and while a
        hold is pending also θ's values: optimizers that write through ``.data`` (Pyro's ``ClippedAdam``,
        ``AdagradRMSProp``) or with torch's fused kernels (``pyro.optim.Adam({"fused": True})``) leave
        the counter, so after the hold their steps are not counted, and the iterate averages skip the
        held log α that plain Adam counts (the averaged log α differs by up to 0.2 with the linear
        models' recipe). :class:`~pyro_vd.inference.FusedAdam` moves the counter, as plain Adam does."""
        return self.__dict__.get("_trained_steps", 0)

    @property
    def log_alpha_held(self):
        """Whether the learned log α is held at its start now (see ``hold_log_alpha``)."""
        return self._holding()

    def _holding(self):
        return self._completed_steps() < self.hold_log_alpha

    def _completed_steps(self):
        """:attr:`trained_steps` before the step now in progress: inside a backward pass, or between one
        and the optimizer's step, the step already counted (its θ has not changed since) is not complete.
        So the hold of a step does not depend on the order in which its backward pass runs the hooks."""
        last = self.__dict__.get("_counted")
        theta = last[0]() if last is not None else None
        if theta is not None and not _theta_changed(last, theta):
            return self.trained_steps - 1
        return self.trained_steps

    def _track_steps(self):
        """Keep the step counter's hook on the current tensor of the first trainable θ, and, while log α
        is held, a hook that zeroes the gradient of every learned log α tensor (hooks on the leaves the
        optimizer steps, so that a compiled step, which does not run this code, keeps them)."""
        hooks = self.__dict__.setdefault("_step_hooks", {})
        thetas = (self._param("thetas", name) for name in self._sites)
        theta = next((t for t in thetas if t.requires_grad), None)
        if theta is not None:
            _hook_once(
                hooks, "count", theta, functools.partial(_count_step, weakref.ref(self), weakref.ref(theta))
            )
        held = [key for key in hooks if key[0] == "hold"]
        if not self._holding():
            for key in held:
                hooks.pop(key)[1].remove()
            return
        for name in self._sites:
            if self.parameterization(name) == "additive":
                continue
            leaf = self._log_alpha_leaf(name)
            if leaf.requires_grad:
                _hook_once(
                    hooks, ("hold", id(leaf)), leaf, functools.partial(_zero_while_held, weakref.ref(self))
                )

    def get_extra_state(self):
        """:attr:`trained_steps` as a tensor, so that ``state_dict`` (and checkpoints) keep it."""
        return torch.tensor(self.trained_steps)

    def set_extra_state(self, state):
        self.__dict__["_trained_steps"] = int(state)
        self.__dict__.pop("_counted", None)

    def _log_alpha_names(self):
        """The names of this guide's per-site and shared log α parameters (see ``_LOG_ALPHA_NAME``)."""
        return _log_alpha_names(self.log_alpha_scale)

    def _log_alpha_leaf(self, name):
        """The learned tensor of site ``name``'s log α: ψ (per site, or the shared one)."""
        per_site, shared = self._log_alpha_names()
        if self.granularity(name) == "shared":
            return getattr(self, shared)
        return self._param(per_site, name)

    def _log_alpha_param(self, name):
        """log α of site ``name`` as learned (before clipping and broadcasting): c · ψ."""
        log_alpha = self._log_alpha_leaf(name)
        c = self.log_alpha_scale
        return log_alpha if c == 1.0 else log_alpha * c

    # ----------------------------------------------------------------------------------- set-up
    def _init_theta(self, site, generator, used_keys):
        name, shape = site["name"], site["fn"].shape()
        if isinstance(self.init_theta, str):  # "zeros" or "near_zero"
            if self.parameterization(name) != "additive":
                if self.init_theta == "zeros":
                    return torch.zeros(shape)
                return NEAR_ZERO_SCALE * torch.randn(shape, generator=generator)
            if not self.__dict__.get("_init_theta_recommended"):
                raise ValueError(
                    f"init_theta={self.init_theta!r} needs a learned log α (parameterization "
                    f"'multiplicative' or 'shrinkage'); site {name!r} learns log σ², and θ ≈ 0 would make "
                    "its α huge"
                )
            value = None  # the model's start on a site the user made additive: the random start
        elif callable(self.init_theta):
            value = self.init_theta(site)
        elif self.init_theta is not None:
            value = None
            for key in (name, name.split(".", 1)[1] if "." in name else None):
                if key is not None and self.init_theta.get(key) is not None:
                    value = self.init_theta.get(key)
                    used_keys.add(key)
                    break
        else:
            value = None
        if value is None:
            event_shape = site["fn"].event_shape or shape
            fan_in = math.prod(event_shape[1:]) if len(event_shape) > 1 else max(1, math.prod(event_shape))
            return torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        value = torch.as_tensor(value).detach()
        if value.shape != shape:
            raise ValueError(
                f"init_theta for site {name!r} has shape {tuple(value.shape)}, expected {tuple(shape)}"
            )
        return value.clone()

    def _setup_prototype(self, *args, **kwargs):
        """Build the guide from one run of the model. A set-up that fails (a site this guide cannot
        take, an option naming no site, a param store of another model) leaves no half-built guide:
        the next call sets it up again, and fails again with the same clear error, instead of running
        on without its parameters."""
        try:
            self._build_prototype(*args, **kwargs)
        except BaseException:
            self.prototype_trace = None
            raise

    def _build_prototype(self, *args, **kwargs):
        tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
        floats = [t for t in tensors if t.is_floating_point()]
        device = tensors[0].device if tensors else torch.device("cpu")
        dtype = floats[0].dtype if floats else torch.get_default_dtype()
        generator = torch.Generator().manual_seed(self.init_seed)
        used_keys = set()

        def init_fn(site):
            if _is_log_uniform(site["fn"]):
                return self._init_theta(site, generator, used_keys).to(device=device, dtype=dtype)
            if _is_neuron_noise(site["fn"]):  # a value in the support, drawn from no generator
                return torch.full(
                    site["fn"].shape(), math.exp(_base(site["fn"]).high), device=device, dtype=dtype
                )
            return site["fn"].sample()

        # As AutoGuide._setup_prototype, with the model wrapped in the initialization (the improper
        # prior cannot be sampled, and a handler outside poutine.block would not see the sites).
        model = poutine.block(InitMessenger(init_fn)(self.model), self._prototype_hide_fn)
        self.prototype_trace = poutine.block(poutine.trace(model).get_trace)(*args, **kwargs)
        self._prototype_frames = {}
        for _, site in self.prototype_trace.iter_stochastic_nodes():
            for frame in site["cond_indep_stack"]:
                if not frame.vectorized:
                    raise NotImplementedError("AutoVariationalDropout does not support sequential pyro.plate")
                self._prototype_frames[frame.name] = frame

        self._sites = {}
        self._noise_sites = {}
        others = []
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if _is_log_uniform(site["fn"]):
                self._sites[name] = site
            elif _is_neuron_noise(site["fn"]):
                self._noise_sites[name] = site
            else:
                others.append(f"{name} ({type(site['fn']).__name__})")
        if others:
            raise ValueError(
                "AutoVariationalDropout handles LogUniform and TruncatedLogUniform sites only; the model "
                "also has the latent "
                f"sites {', '.join(others)}. Give those their own guide: AutoGuideList with "
                "AutoVariationalDropout(poutine.block(model, expose=[...])) and e.g. "
                "AutoNormal(poutine.block(model, hide=[...])). If one of them is the likelihood, call "
                "the guide (or svi.step) with its data, e.g. guide(x, y): without them it is a latent site."
            )
        self._report_init_theta(used_keys)
        if isinstance(self._granularity, dict):  # a misspelt site would silently keep one α per weight
            unknown = sorted(set(self._granularity) - set(self._sites))
            if unknown:
                raise ValueError(
                    f"granularity names {unknown}, which are not weight (LogUniform) sites of the model; "
                    f"its sites are {list(self._sites)}"
                )
        # in the model's order, so that Pyro's mean-field check sees the same sequence
        self._all_sites = {
            n: s
            for n, s in self.prototype_trace.iter_stochastic_nodes()
            if n in self._sites or n in self._noise_sites
        }
        if not self._sites and not self._noise_sites:
            raise ValueError(
                "AutoVariationalDropout found no LogUniform or TruncatedLogUniform sites in the model: "
                "give the weights a "
                "pyro_vd.distributions.LogUniform prior (or build the model with pyro_vd.models.bayesianize)"
            )

        self.thetas = PyroModule()
        self.log_sigma2s = PyroModule()
        per_site, shared_name = self._log_alpha_names()
        log_alphas = PyroModule()
        setattr(self, per_site, log_alphas)
        init_psi = self.init_log_alpha / self.log_alpha_scale
        self._check_param_store_log_alphas()
        if self._completed_steps() < self.hold_log_alpha and self._stored_log_alphas_moved(
            per_site, shared_name, init_psi
        ):
            # the guide takes up log α a trained guide left in Pyro's param store (its
            # ``get_param_store().load``): the store keeps no step count, and holding the loaded log α
            # for K more steps would freeze it; like a state saved without the count, it is past the
            # hold. Only where they moved from the start: leftovers of an untrained guide of the same
            # names (a second guide in a session) are a fresh start, held as asked.
            self.__dict__["_trained_steps"] = self.hold_log_alpha
        self.noise_locs = PyroModule()
        self.noise_log_scales = PyroModule()
        for name, site in self._noise_sites.items():
            value = _full_size(site)
            event_dim = site["fn"].event_dim
            for module, init in (
                (self.noise_locs, self.init_noise_loc),
                (self.noise_log_scales, self.init_noise_log_scale),
            ):
                self._set_param(module, name, torch.full_like(value, init), event_dim)
        shared = None
        for name, site in self._sites.items():
            theta = _full_size(site)
            event_dim = site["fn"].event_dim
            self._set_param(self.thetas, name, theta, event_dim)
            granularity = self.granularity(name)
            if self.parameterization(name) == "additive":
                init = torch.full_like(theta, self.init_log_sigma2)
                self._set_param(self.log_sigma2s, name, init, event_dim)
            elif granularity == "shared":
                shared = torch.full((), init_psi, dtype=theta.dtype, device=theta.device)
            else:
                shape = _alpha_shape(theta.shape, event_dim, granularity)
                init = torch.full(shape, init_psi, dtype=theta.dtype, device=theta.device)
                self._set_param(log_alphas, name, init, event_dim)
        if shared is not None:
            self._set_param(self, shared_name, shared, None)

    def _report_init_theta(self, used_keys):
        """A mapping ``init_theta`` that matches no site is an error; one that misses some sites, or
        has weight keys that match none, is reported."""
        if self.init_theta is None or isinstance(self.init_theta, str) or callable(self.init_theta):
            return
        if not self._sites:
            return
        keys = [str(k) for k in self.init_theta.keys()]
        random_sites = [n for n in self._sites if n not in used_keys and n.split(".", 1)[-1] not in used_keys]
        if not used_keys:
            raise ValueError(
                f"init_theta matches none of the guide's sites {list(self._sites)}; its keys are "
                f"{keys[:8]}{' …' if len(keys) > 8 else ''} (keys are site names, or site names without the "
                "model's leading 'net.', e.g. a state_dict of the network bayesianize was given)"
            )
        unused = [k for k in keys if k not in used_keys and k.rsplit(".", 1)[-1] == "weight"]
        if random_sites or unused:
            warn_at_caller(
                "init_theta: "
                + (f"sites {random_sites} have no key and start from random θ" if random_sites else "")
                + ("; " if random_sites and unused else "")
                + (f"keys {unused} match no site" if unused else ""),
                UserWarning,
            )

    # ------------------------------------------------------------------------------- sampling
    @property
    def site_names(self):
        """Names of the weight (LogUniform) sites this guide covers (available after the first call)."""
        self._check_ready()
        return list(self._sites)

    @property
    def noise_site_names(self):
        """Names of the neuron-noise (TruncatedLogUniform) sites this guide covers."""
        self._check_ready()
        return list(self._noise_sites)

    def _unknown_site(self, name, noise=False):
        """A ValueError naming the sites the guide has (a raw AttributeError of its modules before)."""
        self._check_ready()
        sites = list(self._noise_sites) if noise else list(self._sites)
        kind = "neuron-noise" if noise else "weight"
        raise ValueError(f"{name!r} is not a {kind} site of the guide; its {kind} sites are {sites}")

    def _check_ready(self):
        if self.prototype_trace is None:
            raise RuntimeError(
                "the guide has not been run yet: call it (or svi.step) once with the model's data"
            )

    def _check_values(self):
        """:meth:`_check_ready`, and where a reader of values (θ, α, the noise) runs outside the guide's
        call, a warning if Pyro's param store holds other values under its parameters' names."""
        self._check_ready()
        if not self._pyro_context.active:  # a reader, outside the guide's call
            # (the parameters' list is kept: walking the modules for it at every reader call made readers
            # 10 times slower on a 100-site guide)
            key, parameters = self.__dict__.get("_pyro_parameters", (None, None))
            if key is not self.prototype_trace:  # (set up anew: new parameters)
                parameters = pyro_parameters(self)
                self.__dict__["_pyro_parameters"] = (self.prototype_trace, parameters)
            differ = store_disagreements(parameters=parameters)
            if differ:
                warn_at_caller(
                    f"the guide holds other values than Pyro's param store under {len(differ)} of its "
                    f"parameters' names (e.g. {differ[0]!r}): its readers give its own, while its forward "
                    "(SVI, Predictive) would use the store's. After pyro.get_param_store().load(...), run "
                    "it once (pyro.infer.Predictive(model, guide=guide, num_samples=1)(x)) to take the "
                    "loaded values; for a guide kept from an earlier run (another run's parameters are in "
                    "the store), call pyro.clear_param_store() to keep its own (running it would replace "
                    "them with the other run's)",
                    UserWarning,
                )

    def _param(self, group, name):
        """The parameter of site ``name`` in ``group`` (``"thetas"``, ``"log_sigma2s"``, …): one
        ``pyro.param`` statement on the leaf module. The modules on the dotted path are looked up once
        and kept (walking the path through ``PyroModule.__getattr__`` at every step is a measurable
        share of a step); each link is checked by identity, so a replaced submodule is followed."""
        leaves = self.__dict__.setdefault("_leaves", {})  # also for a guide pickled before the cache
        cached = leaves.get((group, name))
        if cached is None or not all(parent._modules.get(key) is child for parent, key, child in cached[0]):
            *parts, attr = f"{group}.{name}".split(".")
            module, links = self, []
            for part in parts:
                child = module._modules[part]
                links.append((module, part, child))
                module = child
            cached = leaves[(group, name)] = (tuple(links), attr)
        links, attr = cached
        return getattr(links[-1][2], attr)

    # ------------------------------------------------------------------------ iterate averaging
    def _averaged_parameters(self):
        """``{name: leaf}``: every parameter the ELBO trains with this guide, the guide's own and its
        model's point estimates (biases, a noise scale). With the param store, the store's tensors (a
        module holds its copy of a replaced one until its next call)."""
        store = pyro.get_param_store()._params
        local = pyro.settings.get("module_local_params")
        found = {}
        for owner, module in (("guide", self), ("model", guide_model(self))):
            if not isinstance(module, torch.nn.Module):
                continue
            found.update({f"{owner}.{n}": p for n, p in module.named_parameters()})
            if local:
                continue
            for path, submodule in module.named_modules():
                prefix = submodule.__dict__.get("_pyro_name")
                for attr in submodule.__dict__.get("_pyro_params", {}):
                    current = store.get(f"{prefix}.{attr}" if prefix else attr)
                    if current is not None:
                        found[f"{owner}.{path + '.' if path else ''}{attr}_unconstrained"] = current
        return {n: p for n, p in found.items() if p.is_leaf and p.requires_grad}

    def _sync_averages(self):
        """Put an averaging hook on every parameter tensor that has none (new or replaced tensors start
        a new average). Runs at set-up, at every Python call of the guide and after a reset, so a
        compiled (JIT) step, which does not run this code, still has its hooks."""
        if self.averaging is None or self.prototype_trace is None:
            return
        averages = self.__dict__.setdefault("_averages", {})
        restored = self.__dict__.get("_restored_averages") or {}
        for name, leaf in self._averaged_parameters().items():
            average = averages.get(name)
            if average is None or average.tensor() is not leaf:
                if average is not None:
                    average.handle.remove()
                averages[name] = _Average(self, leaf)
                saved = restored.pop(name, None)
                if saved is not None and leaf in self.__dict__.get("_restored_targets", ()):
                    averages[name].restore(saved, leaf)

    def reset_average(self):
        """Forget the iterate averages (``averaging``): they start again from the next step (e.g. after a
        warm-up, or on new data)."""
        self._drop_averages()
        self.__dict__["_restored_averages"] = {}
        self._sync_averages()

    def _drop_averages(self):
        for average in self.__dict__.get("_averages", {}).values():
            average.handle.remove()
        self.__dict__["_averages"] = {}

    def average_state(self):
        """The iterate averages as plain data, for :func:`~pyro_vd.inference.save_checkpoint`: ``None``
        without ``averaging``, else ``{"eta": η, "averages": {name: {"count", "mean", "last"}}}`` (the
        averages that hold a step, by the parameter's name in the guide or its model)."""
        if self.averaging is None:
            return None
        self._sync_averages()
        # restored ones not yet taken up (the guide has not run since) as they were, then the live ones
        restored = (self.__dict__.get("_restored_averages") or {}).items()
        live = [(name, a) for name, a in self.__dict__.get("_averages", {}).items() if a.count]
        averages = {name: _copied(a["count"], a["mean"], a["last"]) for name, a in restored}
        averages.update((name, a.state()) for name, a in live)
        return {"eta": self.averaging, "averages": averages}

    def load_average_state(self, state):
        """Continue the averages of :meth:`average_state` (:func:`~pyro_vd.inference.load_checkpoint`
        calls it after restoring the parameters): each average goes on from the saved one where the guide
        averages with the same η and the parameter has the same shape and dtype (else it starts afresh,
        as an average taken with one η cannot go on with another, which a ``UserWarning`` says, as it says
        when ``state`` is None for a guide that averages); a guide that has not run yet takes
        them when it sets up, for the tensors the parameters are now (the param store's, the modules'),
        and not for tensors that replace them before (a store cleared or loaded again). Returns the
        number of averages continued now."""
        self._drop_averages()
        same = state is not None and self.averaging is not None and state["eta"] == self.averaging
        if self.averaging is not None and not same:  # a resumed apply_average() would average less
            saved = (
                "holds no iterate averages for this guide (saved without averaging, or before checkpoints "
                "kept them)"
                if state is None
                else f"holds iterate averages taken with η = {state['eta']:g}"
            )
            warn_at_caller(
                f"the state {saved}, and this guide averages with η = {self.averaging:g}: its averages "
                "start again from the next step, so apply_average() will average only the steps after it"
            )
        self.__dict__["_restored_averages"] = dict(state["averages"]) if same else {}
        targets = WeakIdKeyDictionary()  # the tensors the saved averages belong to
        model = guide_model(self)
        for tensor in itertools.chain(
            pyro.get_param_store()._params.values(),
            self.parameters(),
            model.parameters() if isinstance(model, torch.nn.Module) else (),
        ):
            targets[tensor] = True
        self.__dict__["_restored_targets"] = targets
        before = len(self.__dict__["_restored_averages"])
        self._sync_averages()
        return before - len(self.__dict__["_restored_averages"])

    def _iterate_average_means(self):
        """``(name, running mean)`` of the iterate averages that hold a step, by parameter name (for
        :class:`~pyro_vd.distributed.LocalSGD`, which averages them over the ranks)."""
        averages = self.__dict__.get("_averages", {})
        return [(name, averages[name].mean) for name in sorted(averages) if averages[name].count]

    def average_count(self):
        """How many training steps the iterate averages hold: the fewest over the parameters that have
        been trained since the averages (re)started (a parameter that never had a gradient, such as an
        unused head, has no average and does not count); 0 without ``averaging`` or before the first
        step."""
        self._sync_averages()  # the param store may have been loaded or set since the last step
        return min((a.count for a in self.__dict__.get("_averages", {}).values() if a.count), default=0)

    @torch.no_grad()
    def apply_average(self):
        """
        Set every averaged parameter — the guide's and its model's — to its iterate average, and start
        the averages afresh; returns the number of steps averaged (:meth:`average_count`; 0: nothing
        changed). Call it when training ends: θ, α, the model's biases and noise scale then come from the
        same average, and every reader (``get_theta``, ``Predictive``, ``relevance``, ``sparsity``,
        ``deterministic``, checkpoints) sees the averaged posterior. A parameter that never had a
        gradient keeps its value; one whose tensor was replaced since (the param store loaded or set)
        keeps the new value, and its average, taken from the values replaced, is dropped.
        """
        count = self.average_count()  # (syncs: averages of replaced tensors are dropped first)
        for average in self.__dict__.get("_averages", {}).values():
            leaf = average.tensor()
            if leaf is not None and average.count:
                leaf.copy_(average.mean)
        self.reset_average()
        return count

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._check_saved_log_alpha_scale(state_dict, prefix)
        # a state saved before the step count existed: its log α has trained already (past the hold)
        state_dict.setdefault(
            prefix + "_extra_state", torch.tensor(max(self.trained_steps, self.hold_log_alpha))
        )
        # also runs when a parent module (an AutoGuideList, an ELBO module) is loaded: the averages were
        # taken from the values being replaced
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.reset_average()

    def _check_saved_log_alpha_scale(self, state_dict, prefix):
        """Refuse a state dict whose log α parameters were saved with another ``log_alpha_scale``: read
        as this guide's ψ = log α / c they would give every α wrong, and left unread they would restart it."""
        _check_log_alpha_names(
            (key[len(prefix) :].split(".", 1)[0] for key in state_dict if key.startswith(prefix)),
            self.log_alpha_scale,
            "the state dict",
        )

    def _set_param(self, module, name, init, event_dim):
        """``module.<name> = PyroParam(init)`` (``name`` may be dotted). With Pyro's global param store,
        a stored tensor of that full name with another shape is refused first: it was left by another
        guide of the same name (e.g. for a model with more features, fitted without
        ``pyro.clear_param_store()``). Pyro would hand this guide the stored tensor, and the mismatch
        would surface later as a shape error in the model, blaming the data."""
        if not pyro.settings.get("module_local_params"):
            prefix = module.__dict__.get("_pyro_name")
            fullname = f"{prefix}.{name}" if prefix else name
            store = pyro.get_param_store()
            if fullname in store and store[fullname].shape != init.shape:
                raise ValueError(
                    f"Pyro's param store already holds {fullname!r} with shape "
                    f"{tuple(store[fullname].shape)}, but this guide needs {tuple(init.shape)} for it: "
                    "it was left by another guide of the same name (another model). Call "
                    "pyro.clear_param_store() before fitting a new model, or keep each model's "
                    "parameters on its modules (pyro.settings.set(module_local_params=True))"
                )
        _deep_setattr(module, name, PyroParam(init, constraints.real, event_dim))

    def _stored_log_alphas_moved(self, per_site, shared_name, init_psi):
        """Whether Pyro's param store holds a log α of this guide's sites that differs from its start (never
        with ``module_local_params``: the parameters are then the guide's own)."""
        if pyro.settings.get("module_local_params"):
            return False
        base = self.__dict__.get("_pyro_name") or ""
        prefix = f"{base}." if base else ""
        store = pyro.get_param_store()
        names = [f"{prefix}{per_site}.{site}" for site in self._sites] + [f"{prefix}{shared_name}"]
        return any(name in store and bool((store[name].detach() != init_psi).any()) for name in names)

    def _check_param_store_log_alphas(self):
        """With Pyro's global param store: refuse a store that holds this guide's log α under another
        ``log_alpha_scale`` (e.g. saved by a guide with another c, or before the linear models
        recommended one); this guide would silently start its α again while taking θ from the store."""
        if pyro.settings.get("module_local_params"):
            return
        base = self.__dict__.get("_pyro_name") or ""
        prefix = f"{base}." if base else ""
        shared = any(self.granularity(n) == "shared" for n in self._sites)
        names = []
        for key in pyro.get_param_store().keys():
            group, _, site = key[len(prefix) :].partition(".")
            # only entries of this guide's own sites: another model's guide may use another c
            if key.startswith(prefix) and (site in self._sites or (shared and not site)):
                names.append(group)
        _check_log_alpha_names(names, self.log_alpha_scale, "Pyro's param store")

    def _apply(self, *args, **kwargs):
        result = super()._apply(*args, **kwargs)  # .to(), .double(), .cuda(): averages of other tensors
        self.reset_average()
        return result

    def __getstate__(self):
        # Pyro's AutoGuide.__getstate__ clears _model and master (weak references) on the live guide, not
        # on the state it returns: torch.save(guide) left the guide without its model, and so without
        # the relevance rule the model names (the evidence rule of the linear models fell back to 3).
        # They are put back here; the state drops them.
        live = {key: self.__dict__[key] for key in ("_model", "master") if key in self.__dict__}
        try:
            state = dict(super().__getstate__())
        finally:
            self.__dict__.update(live)
        state["_model"] = state["master"] = None
        state["_averages"] = {}  # hooks and weak references do not pickle; see ``averaging``
        state.pop("_pyro_parameters", None)  # (the reader check's list: rebuilt)
        state["_restored_averages"] = {}
        state.pop("_restored_targets", None)  # (weak references)
        state.pop("_step_hooks", None)  # (hooks on the tensors of the last step)
        state.pop("_counted", None)
        return state

    def posterior(self, name, *, train=False):
        """The posterior of site ``name`` (batch shape = the site's full shape): a :class:`VDNormal` for a
        weight site, a :class:`TruncatedLogNormal` for a neuron-noise site. ``train=True`` gives what
        the guide samples from (with ``train_prune``, the pruned weights' mean set to 0). Outside a guide
        call it reads the guide's own tensors: after the param store was loaded or set, call the guide
        once for it (and ``get_theta``, ``relevance``, …) to follow the store's new ones."""
        self._check_values()
        if name in self._noise_sites:
            return self._noise_posterior(name)
        if name not in self._sites:
            self._unknown_site(name)
        theta = self._param("thetas", name)
        kwargs = {
            "min_log_alpha": self.min_log_alpha,
            "max_log_alpha": self.max_log_alpha,
            "kl_method": self.kl_method,
            "validate_args": False,
        }
        if train and self.__dict__.get("train_prune") is not None:
            kwargs["prune_above"] = self.train_prune
        parameterization = self.parameterization(name)
        if parameterization == "additive":
            return VDNormal(theta, self._param("log_sigma2s", name), **kwargs)
        if "prune_above" in kwargs:
            kwargs["prune_log_alpha"] = self._averaged_log_alpha(name)
        log_alpha = self._log_alpha_param(name).expand(theta.shape)
        if parameterization == "shrinkage":  # θ = φ / (1 + α), with α as VDNormal clips it
            if self.min_log_alpha is not None or self.max_log_alpha is not None:
                log_alpha = log_alpha.clamp(self.min_log_alpha, self.max_log_alpha)
            theta = theta * torch.sigmoid(-log_alpha)
        return VDNormal.from_log_alpha(theta, log_alpha, **kwargs)

    def _averaged_log_alpha(self, name):
        """The iterate average of site ``name``'s learned log α (c · ψ̄, clipped as VDNormal clips), or
        None without ``averaging`` or before the average holds a step."""
        if self.averaging is None or torch.jit.is_tracing():  # a traced step would keep a stale copy
            return None
        leaf = self._log_alpha_leaf(name)
        for average in self.__dict__.get("_averages", {}).values():
            if average.tensor() is leaf and average.mean is not None:
                log_alpha = average.mean * self.log_alpha_scale
                if self.min_log_alpha is not None or self.max_log_alpha is not None:
                    log_alpha = log_alpha.clamp(self.min_log_alpha, self.max_log_alpha)
                return log_alpha
        return None

    def _noise_posterior(self, name):
        prior = _base(self._noise_sites[name]["fn"])
        low, high = NOISE_PARAM_BOUNDS
        loc = self._param("noise_locs", name).clamp(low, high)
        scale = self._param("noise_log_scales", name).clamp(low, high).exp()
        return TruncatedLogNormal(loc, scale, prior.low, prior.high, validate_args=False)

    def forward(self, *args, **kwargs):
        """Sample every LogUniform site from its :class:`VDNormal` and every neuron-noise site from its
        :class:`TruncatedLogNormal`; returns ``{site: value}``."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        if self.averaging is not None:
            self._sync_averages()
        plates = self._create_plates(*args, **kwargs)
        self._track_steps()
        result = {}
        for name, site in self._all_sites.items():
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                # Inside a subsampled plate, pyro.param subsamples the full-size parameters itself
                # (they carry event_dim).
                q = self.posterior(name, train=True)
                event_dim = site["fn"].event_dim
                result[name] = pyro.sample(name, q.to_event(event_dim) if event_dim else q)
        return result

    # ---------------------------------------------------------------------------------- summaries
    @torch.no_grad()
    def get_theta(self, name):
        """θ of site ``name`` (detached)."""
        self._check_ready()
        if name not in self._sites:
            self._unknown_site(name)
        if self.parameterization(name) == "shrinkage":
            return self.posterior(name).loc.detach().clone()  # (which checks the values)
        self._check_values()
        return self._param("thetas", name).detach().clone()

    @torch.no_grad()
    def get_log_alpha(self, name):
        """log α of site ``name``, broadcast to the weight's shape and clipped as the guide clips it."""
        return self.posterior(name).log_alpha.detach().clone()  # (posterior checks the values)

    @torch.no_grad()
    def get_noise_mean(self, name):
        """E θ of neuron-noise site ``name``: the factor a neuron's output is scaled by at test time."""
        self._check_values()
        if name not in self._noise_sites:
            self._unknown_site(name, noise=True)
        return self._noise_posterior(name).mean.detach().clone()

    def noise_bounds(self, name):
        """``(low, high)``: the interval of log θ that neuron-noise site ``name``'s prior (the model's
        ``noise_bounds``), and so its posterior, is truncated to."""
        if name not in self._noise_sites:
            self._unknown_site(name, noise=True)
        prior = _base(self._noise_sites[name]["fn"])
        return float(prior.low), float(prior.high)

    @torch.no_grad()
    def get_noise_snr(self, name):
        """The signal-to-noise ratio E θ / √Var θ of neuron-noise site ``name`` (SBP keeps SNR > 1)."""
        self._check_values()
        if name not in self._noise_sites:
            self._unknown_site(name, noise=True)
        return self._noise_posterior(name).snr.detach().clone()

    @torch.no_grad()
    def median(self, *args, **kwargs):
        """The posterior median of every site, ``{site: tensor}``: θ for a weight (the mean too), the
        median of the truncated log-normal for neuron noise."""
        return {name: value[0] for name, value in self.quantiles([0.5], *args, **kwargs).items()}

    @torch.no_grad()
    def quantiles(self, quantiles, *args, **kwargs):
        """Posterior quantiles of every site: ``{site: tensor of shape (len(q),) + shape}`` (θ + σ Φ⁻¹(q)
        for a weight; the inverse CDF of the truncated log-normal for neuron noise)."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        result = {}
        for name in [*self._sites, *self._noise_sites]:
            q = self.posterior(name)
            levels = torch.as_tensor(quantiles, dtype=q.loc.dtype, device=q.loc.device)
            result[name] = q.icdf(levels.reshape((-1,) + (1,) * q.loc.dim()))
        return result


class _Average:
    """The polynomial-decay average of one parameter tensor's iterates, fed by a hook that runs when the
    tensor's gradient has been accumulated (before the optimizer steps, so iterate k is averaged). A
    step is counted once, however many backward passes it makes (particles): a pass counts when the
    tensor changed since the last one counted. Its version counter tells that cheaply where it moved,
    but not always: torch's fused Adam kernels (``fused=True``, :class:`~pyro_vd.inference.FusedAdam`,
    :func:`~pyro_vd.inference.adam`) and optimizers that write through ``.data`` (Pyro's
    ``ClippedAdam``) change the values without moving it, so where it did not move the values are
    compared with the last iterate counted (kept for that). A step that leaves a tensor exactly as it
    was is not counted for it."""

    __slots__ = ("__weakref__", "count", "handle", "last", "mean", "tensor", "version")

    def __init__(self, guide, tensor):
        self.tensor = weakref.ref(tensor)
        self.count = 0
        self.mean = self.last = None
        self.version = None
        guide_ref, average_ref = weakref.ref(guide), weakref.ref(self)

        def hook(param):
            guide, average = guide_ref(), average_ref()
            if guide is None or average is None or average.tensor() is not param:
                return
            eta = guide.averaging
            if eta is not None:
                average.add(param, eta)

        self.handle = tensor.register_post_accumulate_grad_hook(hook)

    def state(self):
        """``{"count", "mean", "last"}``, copied (what :meth:`restore` takes)."""
        return _copied(self.count, self.mean, self.last)

    @torch.no_grad()
    def restore(self, saved, leaf):
        """Go on from a saved average (:meth:`AutoVariationalDropout.average_state`) of a tensor like
        ``leaf``; nothing where the shape or dtype differ. The next step counts (its value is compared
        with the saved last iterate, which the optimizer's saved step moved on from)."""
        mean, last = saved["mean"], saved["last"]
        if mean.shape != leaf.shape or mean.dtype != leaf.dtype or last.shape != leaf.shape:
            return
        self.count = int(saved["count"])
        self.mean = mean.detach().to(leaf.device, copy=True)
        self.last = last.detach().to(device=leaf.device, dtype=leaf.dtype, copy=True)
        self.version = None

    @torch.no_grad()
    def add(self, value, eta):
        value = value.detach()
        fresh = self.mean is None or self.mean.dtype != value.dtype or self.mean.device != value.device
        if not fresh and value._version == self.version and _same(value, self.last):
            return  # another backward pass of the same step
        self.version = value._version
        if fresh:  # (a tensor converted in place starts afresh)
            self.count, self.mean, self.last = 1, value.clone(), value.clone()
            return
        self.last.copy_(value)
        self.count += 1
        self.mean.lerp_(value, (eta + 1.0) / (self.count + eta))


def _copied(count, mean, last):
    """An iterate average as saved: ``{"count", "mean", "last"}``, the tensors copied."""
    return {"count": count, "mean": mean.detach().clone(), "last": last.detach().clone()}


def _same(a, b):
    """Whether tensors ``a`` and ``b`` hold the same values, NaN equal to NaN."""
    return torch.equal(a, b) or bool(torch.isclose(a, b, rtol=0.0, atol=0.0, equal_nan=True).all())


def _check_averaging(averaging):
    """``averaging`` as the guide keeps it: None (also for False) or η as a float; else a ValueError."""
    if averaging is None or averaging is False:
        return None
    if not is_finite_real(averaging) or averaging < 0:
        raise ValueError(f"averaging must be None, False or a finite number η >= 0; got {averaging!r}")
    return float(averaging)


def _scale_token(c):
    """The suffix of the log α parameters' names for ``log_alpha_scale`` c ("" for 1, "_x5", "_x2p5")."""
    if c == 1.0:
        return ""
    return "_x" + format(c, ".6g").replace(".", "p").replace("-", "m").replace("+", "")


@functools.cache  # read at every step (posterior)
def _log_alpha_names(c):
    token = _scale_token(c)
    return f"log_alphas{token}", f"shared_log_alpha{token}"


def _check_log_alpha_names(names, c, where):
    """Raise if any of ``names`` (first components of parameter names) is a log α parameter saved with
    a ``log_alpha_scale`` other than c."""
    mine = _scale_token(c)
    for name in sorted(set(names)):
        match = _LOG_ALPHA_NAME.match(name)
        if match is None:
            continue
        token = match.group(2)
        if ("" if token is None else f"_x{token}") == mine:
            continue
        theirs = 1.0 if token is None else float(token.replace("p", ".").replace("m", "-"))
        raise ValueError(
            f"{where} holds log α parameters ({name!r}) saved by a guide with log_alpha_scale={theirs:g} "
            f"(they hold log α / {theirs:g}); this guide has log_alpha_scale={c:g}. Build the guide with "
            f"log_alpha_scale={theirs:g} to load them (the linear models' default was 1 before it became "
            "5), or clear what holds them (pyro.clear_param_store())"
        )


def vd_guides(module):
    """``(path, AutoVariationalDropout)`` for ``module`` itself ("") and every one inside it (the parts of
    an ``AutoGuideList``, the guide of an ELBO module); none for anything that is not a torch module."""
    if not isinstance(module, torch.nn.Module):
        return []
    return [(path, m) for path, m in module.named_modules() if isinstance(m, AutoVariationalDropout)]


def guide_model(guide):
    """The model of ``guide`` under any Pyro handlers (``poutine.block(model, ...)`` and the like), or
    None (a guide unpickled without its model)."""
    model = guide.__dict__.get("_model")
    return unwrap(model[0]) if model else None


def _model_defaults(model):
    """The model's ``guide_defaults`` (settings it recommends), checked; {} when it has none (also
    through Pyro handlers such as ``poutine.block``)."""
    defaults = getattr(unwrap(model), "guide_defaults", None) or {}
    unknown = sorted(set(defaults) - set(MODEL_DEFAULTS))
    if unknown:
        raise ValueError(f"the model's guide_defaults has unknown keys {unknown}; allowed: {MODEL_DEFAULTS}")
    return dict(defaults)


def _full_size(site):
    """The site's value, repeated to full size along subsampled plates (a global parameter's shape)."""
    value = site["value"].detach()
    event_dim = site["fn"].event_dim
    for frame in site["cond_indep_stack"]:
        full_size = frame.full_size or frame.size
        if full_size != frame.size:
            value = periodic_repeat(value, full_size, frame.dim - event_dim).contiguous()
    return value


def _deep_setattr(module, name, value):
    """Like pyro's deep_setattr: nested PyroModules for dotted site names."""
    head, _, rest = name.partition(".")
    if not rest:
        setattr(module, head, value)
        return
    if not hasattr(module, head):
        setattr(module, head, PyroModule())
    _deep_setattr(getattr(module, head), rest, value)
