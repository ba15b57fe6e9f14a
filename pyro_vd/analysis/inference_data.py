r"""
:func:`to_inference_data`: an :class:`arviz.InferenceData` from a trained variational dropout model and
its guide, or from a fitted linear estimator of :mod:`pyro_vd.linear`.

Groups: ``posterior`` (draws of the weights from q, one chain), ``posterior_predictive`` and
``log_likelihood`` (pointwise, so that ``az.loo`` / ``az.compare`` work), ``observed_data``, and
``variational`` — the variational parameters θ and log α of every weight site (for RVM-type estimators,
the posterior mean and the prior precision α).
"""

import contextlib
import numbers
import random
import warnings

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.distributions import MaskedDistribution, Unit
from pyro.poutine.condition_messenger import ConditionMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.trace_struct import Trace
from torch.distributions import Independent

from .._validation import nonnegative_int
from ..guides.auto_variational_dropout import vd_guides
from ..inference.pruning import (
    check_finite_posterior,
    check_store_agrees,
    is_layer_site,
    log_alpha_bound,
    row_size,
)
from ..poutine.full_data_messenger import EvaluationMessenger


def import_arviz():
    """``arviz``, imported without its 0.x "major refactor" FutureWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def _numpy(value):
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _linear_dims(model, feature_names):
    """Named dims for the pyro_vd.models linear models: the weight is (1, d)."""
    sites = getattr(model, "weight_sites", [])
    template = getattr(model, "template", None)
    if sites != ["net.weight"] or not isinstance(template, torch.nn.Linear):  # (a lone conv: no features)
        if feature_names is not None:
            raise ValueError(
                "feature_names label the weight of a linear model (one Linear layer); this model's weight "
                f"sites are {sites}: name their dims with coords= and dims= instead"
            )
        return {}, {}
    outputs, d = template.weight.shape  # (a lone bayesianized nn.Linear(3, 2) has two outputs)
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names but the model has {d} features")
    return {"feature": names, "output": list(range(outputs))}, {"net.weight": ["output", "feature"]}


@contextlib.contextmanager
def _eval_mode(*objects):
    """Every ``nn.Module`` among ``objects`` in eval mode (BatchNorm uses its running statistics and
    leaves them alone, dropout is off); each submodule's own mode is restored afterwards."""
    modules = [m for obj in objects if isinstance(obj, torch.nn.Module) for m in obj.modules()]
    modes = [m.training for m in modules]
    try:
        for module in modules:
            module.training = False
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.training = mode


@contextlib.contextmanager
def _whole_weights():
    """Every active ``local_reparameterization()`` handler switched off meanwhile: the draws are whole
    weights from q, also when called inside a training loop's ``with local_reparameterization():``
    (its pre-activation handles are not weights). Other handlers around the call (``condition``,
    ``scale``, …) still apply."""
    from pyro.poutine.runtime import _PYRO_STACK

    from ..poutine.local_reparameterization_messenger import LocalReparameterizationMessenger

    active = [m for m in _PYRO_STACK if isinstance(m, LocalReparameterizationMessenger) and m.enabled]
    try:
        for messenger in active:
            messenger.enabled = False
        yield
    finally:
        for messenger in active:
            messenger.enabled = True


@torch.no_grad()
def _from_pyro(model, guide, args, kwargs, num_samples, feature_names, coords, dims, pointwise):
    # a guide kept from an earlier run whose names another run's parameters now hold: running it would
    # export (and take on) the other run's values without a word
    check_store_agrees(model, guide)
    with _eval_mode(model, guide), _whole_weights(), EvaluationMessenger("draws stacked for ArviZ"):
        return _collect_pyro(model, guide, args, kwargs, num_samples, feature_names, coords, dims, pointwise)


def _check_covered(model, guide_trace, model_trace, args, kwargs):
    """
    A ValueError where a latent site of the model that the guide does not draw (a noise scale another
    guide of an ``AutoGuideList`` learns, with ``guide[0]`` passed) feeds an observed site: it would be
    drawn from its prior at every draw, and the pointwise log-likelihood and the predictive would be the
    prior's (by Pyro's provenance tracking; a latent no observed site reads, such as a prediction of
    other rows, passes; a dependence through Python control flow is not seen).
    """
    free = [
        name
        for name, site in model_trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and name not in guide_trace.nodes
        and not isinstance(site["fn"], _Subsample)
    ]
    if not free:
        return
    read = set().union(*_reads(model, guide_trace, args, kwargs).values())
    uncovered = [name for name in free if name in read]
    enumerated = [name for name in uncovered if model_trace.nodes[name]["infer"].get("enumerate")]
    if enumerated:
        raise ValueError(
            f"the model has discrete latent sites {enumerated} that it enumerates (TraceEnum_ELBO) and the "
            "guide does not draw: the log-likelihood and the predictive would draw them from their prior. "
            "Analyse a model with them summed out of the likelihood, or with their values fixed "
            "(poutine.condition, e.g. from pyro.infer.infer_discrete)"
        )
    if uncovered:
        raise ValueError(
            f"the model has latent sites {uncovered} that the guide does not draw: the log-likelihood and "
            "the predictive would draw them from their prior every time. Pass the whole guide (e.g. the "
            "AutoGuideList, not guide[0]), or fix them first, "
            "to_inference_data(poutine.condition(model, data=other_guide.median()), guide, ...): a "
            "conditioned site is observed to Pyro, so it is recorded with the data, and held at its value in "
            "the posterior predictive (az.loo(idata, "
            "var_name='y') then scores y alone)"
        )


def _reads(model, guide_trace, args, kwargs, *, observed_only=True):
    """``{site: the sites and params its log-density reads}`` (its own value included) of the observed
    sites, or of every sample site, by Pyro's provenance tracking, with the guide's draws in the latent
    sites."""
    from pyro.infer.inspect import TrackProvenance
    from pyro.ops.provenance import get_provenance

    drawn = {
        name: site["value"]
        for name, site in guide_trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    with torch.random.fork_rng(), TrackProvenance():
        trace = poutine.trace(poutine.condition(model, data=drawn)).get_trace(*args, **kwargs)
    return {
        name: set(get_provenance(site["fn"].log_prob(site["value"])))
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and (site["is_observed"] or not observed_only)
        and not isinstance(site["fn"], _Subsample)
    }


class _HandlerConditioned(Messenger):
    """Records the sample sites whose value a ``poutine.condition`` on the stack supplies (the model's
    own ``obs=`` is not such a value)."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def _pyro_sample(self, msg):
        from pyro.poutine.runtime import _PYRO_STACK

        for frame in _PYRO_STACK:
            if isinstance(frame, ConditionMessenger):
                data = frame.data.nodes if isinstance(frame.data, Trace) else frame.data
                value = data.get(msg["name"])
                if isinstance(value, dict):  # a trace's node
                    value = value.get("value")
                if value is not None:
                    self.names.add(msg["name"])


def _held_observations(model, guide_trace, conditioned, args, kwargs):
    """
    The sites the posterior predictive keeps at their values: a latent the user fixed
    (``poutine.condition(model, data=other_guide.median())``, as the refusal of an uncovered latent
    advises) is an observed site to Pyro, and ``poutine.uncondition`` drew it from its prior at every
    draw (a noise scale fixed at 0.49 came back with mean 1.65, and y's predictive spread with it). Held:
    a site whose value a ``poutine.condition`` supplies (``conditioned``) and that another site reads.
    Data given by the model's ``obs=``, and data conditioned that nothing reads (``poutine.condition(
    model, data={"y": y})``), are drawn afresh, as in a posterior predictive.
    """
    if not conditioned:
        return []
    reads = _reads(model, guide_trace, args, kwargs, observed_only=False)
    return [
        name for name in conditioned if any(name in read for other, read in reads.items() if other != name)
    ]


def _pointwise_log_prob(site, pointwise):
    """One log-density per data point: with ``pointwise="row"``, per element of the site's plates (a
    row's event dims, such as a multi-output target under ``.to_event(1)``, summed as Pyro scores it and
    ArviZ's ``from_pyro`` records it); with ``"element"``, or for a site outside every plate (a vector of
    data points under ``.to_event``), per element of the value. A masked point scores 0, as in Pyro's
    ``compute_log_prob``: masked by ``poutine.mask`` (the site's mask) or by ``.mask()``."""
    fn = site["fn"]
    masks = [(site["mask"], fn.batch_shape)]  # each aligned with a batch shape, from the right
    if not (pointwise == "row" and any(frame.vectorized for frame in site["cond_indep_stack"])):
        while isinstance(fn, Independent | MaskedDistribution):  # peeled off, their masks kept
            if isinstance(fn, MaskedDistribution):
                masks.append((fn._mask, fn.batch_shape))
            fn = fn.base_dist
    log_prob = fn.log_prob(site["value"])  # (a MaskedDistribution left unpeeled applies its own)
    for mask, batch_shape in masks:
        if mask is None or mask is True:
            continue
        if mask is False:
            return torch.zeros_like(log_prob)
        mask = torch.as_tensor(mask, device=log_prob.device).expand(batch_shape)
        mask = mask.reshape(mask.shape + (1,) * (log_prob.dim() - mask.dim()))  # the peeled dims
        log_prob = torch.where(mask, log_prob, torch.zeros_like(log_prob))
    return log_prob


def _collect_pyro(model, guide, args, kwargs, num_samples, feature_names, coords, dims, pointwise):
    posterior, predictive, log_likelihood, observed = {}, {}, {}, {}
    for draw in range(num_samples):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        if draw == 0:  # (the guide is set up now) a diverged run's NaN, named before the model fails on it
            for _, part in vd_guides(guide):
                for name in part.site_names:
                    check_finite_posterior(part.get_log_alpha(name), f"log α of site {name!r}")
                    check_finite_posterior(part.get_theta(name), f"θ of site {name!r}")
        conditioned = _HandlerConditioned() if draw == 0 else contextlib.nullcontext()  # (read at draw 0)
        with conditioned:
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        if draw == 0:
            _check_covered(model, guide_trace, model_trace, args, kwargs)
            held = _held_observations(model, guide_trace, sorted(conditioned.names), args, kwargs)
        unconditioned = poutine.uncondition(poutine.replay(model, trace=guide_trace))
        fixed = {name: model_trace.nodes[name]["value"] for name in held}
        predictive_trace = poutine.trace(poutine.condition(unconditioned, data=fixed)).get_trace(
            *args, **kwargs
        )
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"]:
                posterior.setdefault(name, []).append(_numpy(site["value"]))
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            if site["infer"].get("_deterministic"):  # pyro.deterministic: a function of the draws
                posterior.setdefault(name, []).append(_numpy(site["value"]))
                continue
            if isinstance(site["fn"], Unit):  # pyro.factor: a term of the density, not data
                continue
            log_likelihood.setdefault(name, []).append(_numpy(_pointwise_log_prob(site, pointwise)))
            observed[name] = _numpy(site["value"])
            predictive.setdefault(name, []).append(_numpy(predictive_trace.nodes[name]["value"]))
    if not observed:
        raise ValueError(
            "the model has no observed site for these arguments: pass the targets (e.g. model(x, y)) so "
            "that the log-likelihood and the posterior predictive can be computed"
        )
    stack = lambda draws: {k: np.stack(v)[None] for k, v in draws.items()}  # noqa: E731  (chain, draw, ...)
    variational, bounds = {}, {}
    for _, part in vd_guides(guide):
        for name in part.site_names:
            variational[f"{name}.theta"] = _numpy(part.get_theta(name))
            variational[f"{name}.log_alpha"] = _numpy(part.get_log_alpha(name))
            # the relevance rule of the guide's model (relevance() of this InferenceData reads it back),
            # and the evidence rule's d where it is known (a layer's row; not a hand-written (d, 1) weight)
            bounds[f"{name}.log_alpha_bound"] = log_alpha_bound(part, name)
            shape = tuple(part.get_log_alpha(name).shape)
            if is_layer_site(part, name) or not (len(shape) > 1 and row_size(shape) == 1):
                bounds[f"{name}.evidence_row"] = row_size(shape)
        for name in getattr(part, "noise_site_names", []):
            variational[f"{name}.mean"] = _numpy(part.get_noise_mean(name))
            variational[f"{name}.snr"] = _numpy(part.get_noise_snr(name))
    auto_coords, auto_dims = _linear_dims(model, feature_names)
    coords = {**auto_coords, **(coords or {})}
    dims = {**auto_dims, **(dims or {})}
    for key, value in variational.items():
        # a weight site's draws, θ and log α on the same dims (ArviZ names each variable's own,
        # w_dim_0 against w.theta_dim_0, and arithmetic between them broadcast to an outer product)
        site = key.rsplit(".", 1)[0]
        if site not in dims and site in posterior and np.shape(posterior[site][0]) == np.shape(value):
            dims[site] = [f"{site}_dim_{i}" for i in range(np.ndim(value))]
    for key in variational:
        site = key.rsplit(".", 1)[0]
        if site in dims:
            dims.setdefault(key, dims[site])
    idata = _build(
        posterior=stack(posterior),
        posterior_predictive=stack(predictive),
        log_likelihood=stack(log_likelihood),
        observed_data=observed,
        variational=variational,
        coords=coords,
        dims=dims,
    )
    if bounds:  # (a guide without a VD part has no variational group: a raw KeyError)
        idata["variational"].attrs.update(bounds)
    return idata


def _build(*, posterior, variational, coords, dims, **groups):
    az = import_arviz()
    idata = az.from_dict(posterior=posterior, coords=coords, dims=dims, **groups)
    if variational:  # (a guide with no variational dropout part has none)
        group = az.from_dict(constant_data=variational, coords=coords, dims=dims).constant_data
        idata.add_groups({"variational": group})
    return idata


def _from_estimator(estimator, X, y, num_samples, feature_names, seed):
    r"""
    Draws of ``coef`` from a fitted :mod:`pyro_vd.linear` estimator's Gaussian posterior, its
    ``variational`` group, and with ``X`` and ``y`` the pointwise log-likelihood and posterior predictive.

    The ``feature`` coordinate is ``feature_names``, else ``feature_names_in_`` (fitted on a data frame),
    else ``x0, x1, …``; ``X`` is checked as ``predict`` checks it (count and names of the columns). For
    classifiers the observed data and the predictive draws are class indices into ``classes_``.

    A one-vs-rest classifier with more than two classes has one weight vector per class: ``coef``,
    ``theta`` and ``log_alpha`` / ``alpha`` get dims ``("class", "feature")``, the ``class`` coordinate
    being ``classes_``. Its K binary posteriors were fitted independently, and no multiclass likelihood
    was: the log-likelihood and the posterior predictive are those of the categorical
    :math:`p(y = k \mid w) = \sigma(\eta_k) / \sum_j \sigma(\eta_j)`,
    :math:`\eta_k = x^\top w_k + b_k`, per draw (the normalization ``predict_proba`` applies to the
    predictive probabilities), so that ``az.loo`` / ``az.compare`` score the class label as for any
    classifier. (The one-vs-rest model's own likelihood, :math:`\prod_k \sigma(\pm\eta_k)`, is a
    density over one-hot vectors, not over labels.)
    """
    if not hasattr(estimator, "coef_"):
        raise TypeError(
            f"{type(estimator).__name__} is not fitted (no coef_): call fit first, or pass a Pyro model "
            "and its guide"
        )
    from ..linear._base import validate_X
    from ..linear._posterior import weight_posteriors

    rows = weight_posteriors(estimator)
    d = rows[0]["theta"].size
    if feature_names is None and getattr(estimator, "feature_names_in_", None) is not None:
        feature_names = list(estimator.feature_names_in_)
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names but the estimator has {d} features")
    rng = np.random.default_rng(seed)
    draws = np.stack([_coef_draws(row, num_samples, rng) for row in rows], axis=1)  # (draw, class, feature)
    key = "log_alpha" if "log_alpha" in rows[0] else "alpha"
    # ``relevant``: the estimator's own decision per row, recorded, since α in the units of X and y cannot
    # be read against a fixed bound (the ARD rules standardize it; relevance() reads this)
    rows = [{**row, "snr": _posterior_snr(row)} for row in rows]
    variational = {name: np.stack([row[name] for row in rows]) for name in ("theta", key, "snr", "relevant")}
    coords = {"feature": names}
    weight_dims = ["feature"]
    if len(rows) > 1:
        coords["class"] = list(estimator.classes_)
        weight_dims = ["class", "feature"]
    else:
        draws, variational = draws[:, 0], {name: value[0] for name, value in variational.items()}
    dims = {name: weight_dims for name in ("coef", "theta", "log_alpha", "alpha", "snr", "relevant")}
    posterior = {"coef": draws[None]}
    if X is None or y is None:
        return _with_rule(
            estimator, _build(posterior=posterior, variational=variational, coords=coords, dims=dims)
        )
    X, _ = validate_X(estimator, X, reset=False)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"y must have shape ({len(X)},); got {y.shape}")
    if not hasattr(estimator, "classes_"):  # checked as fit checks it (a classifier's against classes_)
        from ..linear._base import check_y

        y = check_y(y, len(X))
    intercept = np.atleast_1d(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=float))
    centre = getattr(estimator, "X_offset_", None)
    if centre is not None:
        # q's intercept is taken at the column means: a draw w predicts (x − x̄)ᵀw + b + x̄ᵀθ, so the
        # weights' noise never multiplies the columns' offsets
        theta = np.stack([row["theta"] for row in rows])
        intercept = intercept + theta @ centre
        X = X - centre
    if hasattr(estimator, "classes_"):
        log_lik, predictive, observed = _classifier_likelihood(estimator, draws, intercept, X, y, rng)
    else:
        eta = draws @ X.T + intercept[0]  # (draws, n)
        beta = float(getattr(estimator, "noise_precision_", 1.0))
        log_lik = 0.5 * np.log(beta / (2 * np.pi)) - 0.5 * beta * (y - eta) ** 2
        predictive = eta + rng.standard_normal(eta.shape) / np.sqrt(beta)
        observed = y.astype(float)
    idata = _build(
        posterior=posterior,
        posterior_predictive={"y": predictive[None]},
        log_likelihood={"y": log_lik[None]},
        observed_data={"y": observed},
        variational=variational,
        coords=coords,
        dims=dims,
    )
    return _with_rule(estimator, idata)


def _with_rule(estimator, idata):
    """A VD estimator's rule, recorded for ``relevance(idata, threshold=...)`` to read log α as
    ``relevance(estimator, threshold=...)`` does: the evidence rule's d (the features that vary), its
    KL method, and the cap at which a feature is out of the model (before, 10 constant columns of 30 moved
    τ, and a feature at the cap read as relevant at a threshold above it)."""
    if hasattr(estimator, "kl_method"):
        from .relevance import _varying_features

        idata["variational"].attrs.update(
            evidence_features=_varying_features(estimator),
            kl_method=estimator.kl_method,
            max_log_alpha=float(getattr(estimator, "max_log_alpha", np.inf)),
        )
    return idata


def _posterior_snr(row):
    r"""Each weight's posterior :math:`|\text{mean}| / \text{sd}`: :math:`\alpha^{-1/2}` for VD, and
    :math:`|m_d| / \sqrt{\Sigma_{dd}}` for the ARD ones (see ``relevance``)."""
    from .relevance import _ard_snr

    return np.exp(-0.5 * row["log_alpha"]) if "log_alpha" in row else _ard_snr(row)


def _coef_draws(row, num_samples, rng):
    """``num_samples`` draws of one weight vector from its Gaussian posterior (see ``weight_posteriors``)."""
    theta = row["theta"]
    d = theta.size
    if "log_alpha" in row:  # VD: q(w_d) = N(θ_d, α_d θ_d²), factorized
        std = np.abs(theta) * np.exp(0.5 * np.clip(row["log_alpha"], None, 700))
        return theta + std * rng.standard_normal((num_samples, d))
    cov = row["covariance"]  # RVM / G-KL: N(m, Σ) on the active weights, the others exactly 0
    if cov is None:
        return np.tile(theta, (num_samples, 1))
    cov = 0.5 * (cov + cov.T)
    values, vectors = np.linalg.eigh(cov)
    root = vectors * np.sqrt(np.clip(values, 0, None))
    return theta + rng.standard_normal((num_samples, d)) @ root.T


def _classifier_likelihood(estimator, draws, intercept, X, y, rng):
    """Pointwise log-likelihood, predictive draws and observed labels, all as indices into ``classes_``:
    Bernoulli for two classes, the normalized one-vs-rest categorical for more."""
    classes = np.asarray(estimator.classes_)
    unknown = ~np.isin(y, classes)
    if unknown.any():
        raise ValueError(f"y has labels the classifier was not fitted on: {np.unique(y[unknown])[:5]}")
    observed = np.searchsorted(classes, y) if classes.dtype.kind != "O" else _label_index(classes, y)
    if len(classes) == 2:
        eta = draws @ X.T + intercept[0]  # (draws, n)
        log_lik = -np.logaddexp(0.0, -(2 * observed - 1) * eta)
        predictive = (rng.random(eta.shape) < 1 / (1 + np.exp(-eta))).astype(int)
        return log_lik, predictive, observed
    eta = np.einsum("skd,nd->snk", draws, X) + intercept  # (draws, n, class)
    log_p = -np.logaddexp(0.0, -eta)  # log σ(η_k)
    log_p = log_p - np.logaddexp.reduce(log_p, axis=-1, keepdims=True)
    log_lik = np.take_along_axis(log_p, observed[None, :, None], axis=-1)[..., 0]
    cumulative = np.cumsum(np.exp(log_p), axis=-1)
    u = rng.random(eta.shape[:2])[..., None] * cumulative[..., -1:]
    predictive = np.minimum((u >= cumulative).sum(-1), len(classes) - 1)
    return log_lik, predictive, observed


def _label_index(classes, y):
    position = {label: i for i, label in enumerate(classes)}
    return np.array([position[label] for label in y])


def to_inference_data(
    model,
    guide=None,
    *args,
    num_samples=200,
    feature_names=None,
    coords=None,
    dims=None,
    seed=0,
    pointwise="row",
    **kwargs,
):
    """
    An :class:`arviz.InferenceData` of a trained model.

    * ``to_inference_data(model, guide, x, y, num_samples=200)`` — a Pyro model (e.g. a
      :class:`~pyro_vd.models.VDModel`) and its trained guide, called with the data: ``num_samples``
      draws of every latent site from the guide (weights sampled, no local reparameterization), the
      posterior predictive of each observed site, its pointwise log-likelihood, and the ``variational``
      group (θ and log α per weight site; E θ and SNR per neuron-noise site). The model and guide
      run in eval mode (BatchNorm's running statistics are used and left alone, dropout is off); each
      module's mode is restored afterwards. A model whose plate draws a random subsample is refused:
      every draw must see the same rows.
    * ``to_inference_data(estimator, X=X, y=y)`` — a fitted :class:`~pyro_vd.linear.VDRegression`,
      :class:`~pyro_vd.linear.RVR`, …: draws of ``coef`` from its Gaussian posterior; with ``X`` and
      ``y`` also the pointwise log-likelihood and the posterior predictive.

    :param feature_names: names of the features (the ``feature`` coordinate) for linear models.
    :param dict coords: extra ArviZ coordinates; ``dims``: ``{variable: [dim names]}``.
    :param int seed: the seed of the draws (Pyro's and numpy's generators; the global ones are left as
        they were). ``None``: a Pyro model's draws come from the global generators, and move them on.
    :param str pointwise: a Pyro model's pointwise log-likelihood: ``"row"`` (one value per element of
        the data plate, a multi-output row's event dims summed, as Pyro scores it and ArviZ's
        ``from_pyro`` records it: ``az.loo`` leaves out a row) or ``"element"`` (one value per element
        of the observed value, its shape, which ``az.loo_pit`` needs).
    """
    if pointwise not in ("row", "element"):
        raise ValueError(f"pointwise must be 'row' or 'element'; got {pointwise!r}")
    if not isinstance(num_samples, numbers.Integral) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
    if seed is not None:
        nonnegative_int(seed, "seed")
    if guide is None or hasattr(model, "coef_") or not callable(guide):
        # an estimator: X and y by keyword or position (to_inference_data(fit, X, y) put X in ``guide``
        # and read y as X: the likelihood groups were dropped without a word)
        positional = ([] if guide is None else [guide]) + list(args)
        if len(positional) > 2:
            raise TypeError(f"to_inference_data(estimator, X, y) takes X and y; got {len(positional)} values")
        data = dict(zip(("X", "y"), positional, strict=False))
        for name in ("X", "y"):
            if name in kwargs:
                if name in data:
                    raise TypeError(f"to_inference_data got {name} by position and by keyword")
                data[name] = kwargs.pop(name)
        if kwargs:
            raise TypeError(f"to_inference_data(estimator, ...) got unexpected arguments {sorted(kwargs)}")
        if coords is not None or dims is not None:  # (they were dropped without a word)
            raise TypeError(
                "coords= and dims= name a Pyro model's sites; an estimator's InferenceData names its own "
                "(feature, class): pass feature_names= for the features"
            )
        X, y = data.get("X"), data.get("y")
        if (X is None) != (y is None):
            raise ValueError(
                "give both X and y (for the log-likelihood and posterior predictive groups), or neither"
            )
        return _from_estimator(model, X, y, int(num_samples), feature_names, seed)
    import pyro

    if seed is None:  # the global generators as they are, and moved on (as the estimators' seed=None)
        return _from_pyro(
            model, guide, args, kwargs, int(num_samples), feature_names, coords, dims, pointwise
        )
    nonnegative_int(seed, "seed", below=2**32)  # (numpy's global generator takes no more)
    # pyro.set_rng_seed seeds torch's, numpy's and Python's global generators: all three are restored
    # (before, a loop calling this got numpy's and Python's same draws after every call)
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (the global one)
    try:
        with torch.random.fork_rng():
            pyro.set_rng_seed(seed)
            return _from_pyro(
                model, guide, args, kwargs, int(num_samples), feature_names, coords, dims, pointwise
            )
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
