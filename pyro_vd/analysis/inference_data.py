r"""
:func:`to_inference_data`: an :class:`arviz.InferenceData` from a trained variational dropout model and
its guide, or from a fitted linear estimator of :mod:`pyro_vd.linear`.

Groups: ``posterior`` (draws of the weights from q, one chain), ``posterior_predictive`` and
``log_likelihood`` (pointwise, so that ``az.loo`` / ``az.compare`` work), ``observed_data``, and
``variational`` — the variational parameters θ and log α of every weight site (for RVM-type estimators,
the posterior mean and the prior precision α).
"""

import warnings

import numpy as np
import pyro.poutine as poutine
import torch


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
    if sites != ["net.weight"]:
        return {}, {}
    d = model.template.weight.shape[1]
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names but the model has {d} features")
    return {"feature": names, "output": [0]}, {"net.weight": ["output", "feature"]}


@torch.no_grad()
def _from_pyro(model, guide, args, kwargs, num_samples, feature_names, coords, dims):
    posterior, predictive, log_likelihood, observed = {}, {}, {}, {}
    for _ in range(num_samples):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        unconditioned = poutine.uncondition(poutine.replay(model, trace=guide_trace))
        predictive_trace = poutine.trace(unconditioned).get_trace(*args, **kwargs)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"]:
                posterior.setdefault(name, []).append(_numpy(site["value"]))
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            fn = site["fn"]
            while hasattr(fn, "base_dist") and hasattr(fn, "reinterpreted_batch_ndims"):
                fn = fn.base_dist  # pointwise: one log-density per data point
            log_likelihood.setdefault(name, []).append(_numpy(fn.log_prob(site["value"])))
            observed[name] = _numpy(site["value"])
            predictive.setdefault(name, []).append(_numpy(predictive_trace.nodes[name]["value"]))
    if not observed:
        raise ValueError(
            "the model has no observed site for these arguments: pass the targets (e.g. model(x, y)) so "
            "that the log-likelihood and the posterior predictive can be computed"
        )
    stack = lambda draws: {k: np.stack(v)[None] for k, v in draws.items()}  # noqa: E731  (chain, draw, ...)
    variational = {}
    for name in getattr(guide, "site_names", []):
        variational[f"{name}.theta"] = _numpy(guide.get_theta(name))
        variational[f"{name}.log_alpha"] = _numpy(guide.get_log_alpha(name))
    for name in getattr(guide, "noise_site_names", []):
        variational[f"{name}.mean"] = _numpy(guide.get_noise_mean(name))
        variational[f"{name}.snr"] = _numpy(guide.get_noise_snr(name))
    auto_coords, auto_dims = _linear_dims(model, feature_names)
    coords = {**auto_coords, **(coords or {})}
    dims = {**auto_dims, **(dims or {})}
    for key in variational:
        site = key.rsplit(".", 1)[0]
        if site in dims:
            dims.setdefault(key, dims[site])
    return _build(
        posterior=stack(posterior),
        posterior_predictive=stack(predictive),
        log_likelihood=stack(log_likelihood),
        observed_data=observed,
        variational=variational,
        coords=coords,
        dims=dims,
    )


def _build(*, posterior, variational, coords, dims, **groups):
    az = import_arviz()
    idata = az.from_dict(posterior=posterior, coords=coords, dims=dims, **groups)
    group = az.from_dict(constant_data=variational, coords=coords, dims=dims).constant_data
    idata.add_groups({"variational": group})
    return idata


def _from_estimator(estimator, X, y, num_samples, feature_names, seed):
    if not hasattr(estimator, "coef_"):
        raise TypeError(
            f"{type(estimator).__name__} is not fitted (no coef_): call fit first, or pass a Pyro model "
            "and its guide"
        )
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
    if coef.shape[0] != 1:
        raise ValueError("to_inference_data supports binary classifiers and regressors (one coef_ row)")
    coef = coef[0]
    d = coef.size
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(d)]
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names but the estimator has {d} features")
    rng = np.random.default_rng(seed)
    variational = {"theta": coef}
    if hasattr(estimator, "log_alpha_"):  # VD: q(w_d) = N(θ_d, α_d θ_d²), factorized
        log_alpha = np.atleast_2d(estimator.log_alpha_)[0]
        variational["log_alpha"] = log_alpha
        std = np.abs(coef) * np.exp(0.5 * np.clip(log_alpha, None, 700))
        draws = coef + std * rng.standard_normal((num_samples, d))
    else:  # RVM / G-KL: N(m, Σ) on the active weights, the others exactly 0
        alpha = np.atleast_2d(estimator.alpha_)[0]
        variational["alpha"] = alpha
        cov = getattr(estimator, "covariance_", None)
        if cov is None and hasattr(estimator, "sigma_"):
            cov = np.zeros((d, d))
            active = np.asarray(getattr(estimator, "active_", np.flatnonzero(np.isfinite(alpha))))
            cov[np.ix_(active, active)] = estimator.sigma_
        if cov is None:
            draws = np.tile(coef, (num_samples, 1))
        else:
            cov = 0.5 * (cov + cov.T)
            values, vectors = np.linalg.eigh(cov)
            root = vectors * np.sqrt(np.clip(values, 0, None))
            draws = coef + rng.standard_normal((num_samples, d)) @ root.T
    intercept = float(np.ravel(getattr(estimator, "intercept_", 0.0))[0])
    coords = {"feature": names}
    dims = {"coef": ["feature"], "theta": ["feature"], "log_alpha": ["feature"], "alpha": ["feature"]}
    posterior = {"coef": draws[None]}
    if X is None or y is None:
        return _build(posterior=posterior, variational=variational, coords=coords, dims=dims)
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    eta = draws @ X.T + intercept  # (draws, n)
    if hasattr(estimator, "classes_"):
        t = (y == estimator.classes_[-1]).astype(float)
        log_lik = -np.logaddexp(0.0, -(2 * t - 1) * eta)
        predictive = (rng.random(eta.shape) < 1 / (1 + np.exp(-eta))).astype(int)
        observed = t.astype(int)
    else:
        beta = float(getattr(estimator, "noise_precision_", 1.0))
        log_lik = 0.5 * np.log(beta / (2 * np.pi)) - 0.5 * beta * (y - eta) ** 2
        predictive = eta + rng.standard_normal(eta.shape) / np.sqrt(beta)
        observed = y.astype(float)
    return _build(
        posterior=posterior,
        posterior_predictive={"y": predictive[None]},
        log_likelihood={"y": log_lik[None]},
        observed_data={"y": observed},
        variational=variational,
        coords=coords,
        dims=dims,
    )


def to_inference_data(
    model, guide=None, *args, num_samples=200, feature_names=None, coords=None, dims=None, seed=0, **kwargs
):
    """
    An :class:`arviz.InferenceData` of a trained model.

    * ``to_inference_data(model, guide, x, y, num_samples=200)`` — a Pyro model (e.g. a
      :class:`~pyro_vd.models.VDModel`) and its trained guide, called with the data: ``num_samples``
      draws of every latent site from the guide (weights sampled, no local reparameterization), the
      posterior predictive of each observed site, its pointwise log-likelihood, and the ``variational``
      group (θ and log α per weight site; E θ and SNR per neuron-noise site).
    * ``to_inference_data(estimator, X=X, y=y)`` — a fitted :class:`~pyro_vd.linear.VDRegression`,
      :class:`~pyro_vd.linear.RVR`, …: draws of ``coef`` from its Gaussian posterior; with ``X`` and
      ``y`` also the pointwise log-likelihood and the posterior predictive.

    :param feature_names: names of the features (the ``feature`` coordinate) for linear models.
    :param dict coords: extra ArviZ coordinates; ``dims``: ``{variable: [dim names]}``.
    :param int seed: the seed of the draws (Pyro's and numpy's generators).
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer; got {num_samples!r}")
    if guide is None or hasattr(model, "coef_") or not callable(guide):
        X = kwargs.pop("X", args[0] if args else None)
        y = kwargs.pop("y", args[1] if len(args) > 1 else None)
        if guide is not None and X is None:
            X, guide = guide, None
        return _from_estimator(model, X, y, num_samples, feature_names, seed)
    import pyro

    with torch.random.fork_rng():
        pyro.set_rng_seed(seed)
        return _from_pyro(model, guide, args, kwargs, num_samples, feature_names, coords, dims)
