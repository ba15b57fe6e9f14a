r"""The feature-relevance table: θ, log α (or the RVM precision α), signal-to-noise ratio, relevant."""

import numpy as np
import torch

from .._warnings import warn_at_caller
from ..inference.pruning import (
    DEFAULT_THRESHOLD,
    check_evidence_row,
    check_finite_posterior,
    check_vd_guide,
    log_alpha_bound,
    row_size,
)
from ..linear.relevance import log_alpha_threshold


def relevance(obj, site=None, *, feature_names=None, threshold=None):
    r"""
    A :class:`pandas.DataFrame`, one row per weight (per feature for a linear model), with columns
    ``theta``, ``log_alpha`` (VD) or ``alpha`` (RVM prior precision), ``snr`` and ``relevant``.

    * a trained :class:`~pyro_vd.guides.AutoVariationalDropout` and a ``site`` (default: its only weight
      site): :math:`\mathrm{SNR} = |\theta|/\sigma = \alpha^{-1/2}`, relevant when
      :math:`\log\alpha \le` ``threshold`` (a number; ``"evidence"`` applies :mod:`pyro_vd.linear.relevance`'s
      rule with d = the site's number of weights, ``"sparse_vd"`` is 3). By default (None) the rule the
      guide's model names in its ``relevance_rule`` — ``"evidence"`` for
      :class:`~pyro_vd.models.LinearRegression` and :class:`~pyro_vd.models.LogisticRegression`, as
      ``VDRegression`` decides — else Sparse VD's 3;
    * a fitted estimator of :mod:`pyro_vd.linear`: its own rule decides (``relevance_``); SNR is
      :math:`\alpha^{-1/2}` for VD and :math:`|m_d| / \sqrt{\Sigma_{dd}}` for the RVM-type ones. The
      features are named by ``feature_names``, else by ``feature_names_in_`` (fitted on a data frame),
      else ``x0, x1, …``;
    * an ``InferenceData`` from :func:`to_inference_data`: read from its ``variational`` group (a
      ``threshold`` left at None is the bound the guide's rule gave, recorded in the group's attributes,
      or an estimator's own decisions, recorded in its ``relevant``; an ARD estimator's α are in the
      units of X and y, so only its recorded decisions are read).

    A one-vs-rest classifier with more than two classes (``coef_`` of shape (n_classes, n_features)), or an
    ``InferenceData`` of one, gives one row per (class, feature), indexed by a ``(class, feature)``
    :class:`~pandas.MultiIndex`: each row holds that class's θ, α and SNR, and ``relevant`` is that class's
    own flag (``table.groupby(level="feature")["relevant"].any()`` is the estimator's ``relevance_``;
    ``table.xs(label, level="class")`` is one class's table).

    Rows are sorted as the features are; ``df.sort_values("snr")`` ranks them.
    """
    import pandas as pd

    if isinstance(feature_names, str):  # ("abc" named three features a, b, c)
        raise TypeError(f"feature_names must be a list of names, not a string; got {feature_names!r}")
    classes = None  # class labels when there is one row of weights per class
    from pyro.infer.autoguide import AutoGuideList

    if isinstance(obj, AutoGuideList):
        check_vd_guide(obj)  # a TypeError naming the part to pass
    if hasattr(obj, "get_log_alpha"):  # a guide
        names = obj.site_names
        if site is None:
            if not names:
                raise ValueError("the guide has no weight sites (has it run? a model of noise sites only?)")
            if len(names) != 1:
                raise ValueError(f"the guide has several weight sites {names}: pass site=")
            site = names[0]
        if site not in names:
            raise ValueError(f"site {site!r} is not a weight site of the guide ({names})")
        if getattr(obj, "log_alpha_held", False):
            warn_at_caller(
                f"the guide holds log α at its start for {obj.hold_log_alpha} training steps "
                f"(hold_log_alpha) and has taken {obj.trained_steps}: this relevance is the start's "
                "(every weight kept at a dense start), not a trained one"
            )
        table = _vd_table(
            obj.get_theta(site).cpu().numpy().ravel(),
            obj.get_log_alpha(site).cpu().numpy().ravel(),
            # the guide's rule, checked as sparsity and deterministic check it (±inf taken: before,
            # relevance refused the inf that sparsity took)
            bound=log_alpha_bound(obj, site, threshold),
        )
    elif hasattr(obj, "groups") and "variational" in obj.groups():  # InferenceData
        group = obj["variational"]
        if "theta" in group:
            if site is not None:  # (an estimator's weights are one site: "nope" was taken)
                raise ValueError(
                    f"site={site!r}: this InferenceData is an estimator's, whose weights are one site "
                    "(coef); leave site out"
                )
            theta = group["theta"]
            coords = theta.coords
            if feature_names is None and "feature" in coords:
                feature_names = list(coords["feature"].values)
            if "class" in theta.dims:
                classes = list(coords["class"].values) if "class" in coords else list(range(theta.shape[0]))
            theta = theta.values
            recorded = group["relevant"].values.astype(bool) if "relevant" in group else None
            if "log_alpha" in group:
                table = _estimator_vd_table(  # the estimator's rule, as to_inference_data recorded it
                    theta,
                    group["log_alpha"].values,
                    threshold,
                    features=group.attrs.get("evidence_features"),
                    kl_method=group.attrs.get("kl_method", "exact"),
                    cap=group.attrs.get("max_log_alpha", np.inf),
                )
                if threshold is None and recorded is not None:  # the estimator's own rule decided
                    table["relevant"] = recorded
            else:
                if threshold is not None:
                    raise ValueError(
                        "an ARD estimator's relevance is its own rule (α for standardized data below its "
                        "alpha_bound), recorded in the InferenceData; refit with another alpha_bound "
                        "instead of passing threshold="
                    )
                if recorded is None:
                    raise ValueError(
                        "this InferenceData of an ARD estimator does not record its relevance (made by an "
                        "older pyro_vd): its α are in the units of X and y; call relevance(estimator)"
                    )
                if "snr" not in group:
                    # (|θ|·√α, the prior's scale, is about 1 at the ARD optimum: not the posterior's)
                    raise ValueError(
                        "this InferenceData of an ARD estimator does not record its posterior's "
                        "signal-to-noise ratio (made by an older pyro_vd): call relevance(estimator)"
                    )
                table = {
                    "theta": theta,
                    "alpha": group["alpha"].values,
                    "snr": group["snr"].values,
                    "relevant": recorded,
                }
        else:
            sites = [k[: -len(".theta")] for k in group.data_vars if k.endswith(".theta")]
            site = site or (sites[0] if len(sites) == 1 else None)
            if site is None:
                raise ValueError(f"the InferenceData has several weight sites {sites}: pass site=")
            if f"{site}.theta" not in group or f"{site}.log_alpha" not in group:
                raise ValueError(f"site {site!r} is not a weight site of the InferenceData ({sites})")
            theta = group[f"{site}.theta"].values.ravel()
            log_alpha = group[f"{site}.log_alpha"].values
            coords = group[f"{site}.theta"].coords  # a linear model's feature names (one output row)
            if feature_names is None and "feature" in coords and len(coords["feature"]) == theta.size:
                feature_names = [str(name) for name in coords["feature"].values]
            if threshold is None:  # the rule of the guide's model, as to_inference_data recorded it
                threshold = group.attrs.get(f"{site}.log_alpha_bound", DEFAULT_THRESHOLD)
            # a named rule's d is the weights in a row of the site, read before the site is flattened
            # (flattened, "evidence" on a 40 × 30 weight took τ(1200) for τ(30); a convolution's row is
            # its input channels × kernel, as the guide's own rule reads it)
            row = group.attrs.get(f"{site}.evidence_row")  # (recorded where the guide knew it)
            if row is None:
                if threshold == "evidence":
                    check_evidence_row(site, np.shape(log_alpha))
                row = row_size(np.shape(log_alpha))
            bound = log_alpha_threshold(threshold, int(row))
            table = _vd_table(theta, log_alpha.ravel(), bound)
    elif hasattr(obj, "relevance_"):  # a fitted estimator
        from ..linear._posterior import weight_posteriors

        rows = weight_posteriors(obj)
        table = {key: np.stack([row[key] for row in rows]) for key in ("theta", "relevant")}
        if "log_alpha" in rows[0]:
            # the estimator's own decisions, or log α against the threshold asked for (as for its
            # InferenceData; before, a threshold given here was ignored without a word)
            vd = _estimator_vd_table(
                table["theta"],
                np.stack([r["log_alpha"] for r in rows]),
                threshold,
                features=_varying_features(obj),
                kl_method=obj.kl_method,
                cap=getattr(obj, "max_log_alpha", np.inf),
            )
            table = {**vd, "relevant": table["relevant"]} if threshold is None else vd
        else:
            if threshold is not None:
                raise ValueError(
                    f"{type(obj).__name__}'s relevance is its own rule (α for standardized data below its "
                    "alpha_bound); refit with another alpha_bound instead of passing threshold="
                )
            table["alpha"] = np.stack([r["alpha"] for r in rows])
            table["snr"] = np.stack([_ard_snr(r) for r in rows])
            table = {key: table[key] for key in ("theta", "alpha", "snr", "relevant")}
        if len(rows) > 1:
            classes = list(obj.classes_)
        if feature_names is None and getattr(obj, "feature_names_in_", None) is not None:
            feature_names = list(obj.feature_names_in_)
    else:
        if hasattr(obj, "fit") and hasattr(obj, "get_params"):
            raise TypeError(f"{type(obj).__name__} is not fitted: call fit first")
        raise TypeError(
            f"relevance() takes a guide, a fitted pyro_vd.linear estimator or an InferenceData; got "
            f"{type(obj).__name__}"
        )
    n = np.shape(table["theta"])[-1]
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"feature_names has {len(names)} names for {n} weights")
    if classes is None:
        table = {key: np.ravel(value) for key, value in table.items()}
        return pd.DataFrame(table, index=pd.Index(names, name="feature"))
    table = {key: np.asarray(value).reshape(-1) for key, value in table.items()}  # class-major
    index = pd.MultiIndex.from_product([classes, names], names=["class", "feature"])
    return pd.DataFrame(table, index=index)


def _varying_features(estimator):
    """The number of features a VD estimator's evidence rule counted: those that vary (its fit records
    it; an estimator fitted before this was recorded counts all)."""
    return int(getattr(estimator, "_n_varying", np.shape(estimator.coef_)[-1]))


def _estimator_vd_table(theta, log_alpha, threshold, *, features, kl_method, cap):
    """A VD estimator's table at ``threshold`` (None: Sparse VD's 3): ``"evidence"`` is τ(d) over the
    ``features`` that vary, as fitted (all the columns where that is not known), with its ``kl_method``,
    and a feature at the ``cap`` (α = ∞, θ = 0) is out of the model whatever the threshold."""
    rule = DEFAULT_THRESHOLD if threshold is None else threshold
    if isinstance(rule, str) and rule == "evidence" and features is not None:
        rule = float(log_alpha_threshold("evidence", int(features), kl_method))
    table = _vd_table(theta, log_alpha, rule)
    table["relevant"] = table["relevant"] & (log_alpha < cap)
    return table


def _vd_table(theta, log_alpha, threshold=None, *, bound=None):
    """The columns of a VD weight: θ, log α, SNR = α^{-1/2}, relevant when log α ≤ the bound of
    ``threshold`` (a number, ``"sparse_vd"``, or ``"evidence"`` with d = the weights in a row), or
    ``bound``, a log α bound already checked."""
    check_finite_posterior(torch.as_tensor(np.asarray(log_alpha, dtype=float)), "log α")  # NaN: "irrelevant"
    if bound is None:
        bound = log_alpha_threshold(threshold, np.shape(log_alpha)[-1])
    return {
        "theta": theta,
        "log_alpha": log_alpha,
        "snr": np.exp(-0.5 * log_alpha),
        "relevant": log_alpha <= bound,
    }


def _ard_snr(row):
    """|m_d| / √Σ_dd of one ARD posterior; the prior variance 1/α (an upper bound) without a covariance."""
    theta, alpha = row["theta"], row["alpha"]
    if row["covariance"] is not None:
        variance = np.clip(np.diag(row["covariance"]), 0.0, None)
    else:
        with np.errstate(divide="ignore"):
            variance = np.where(np.isfinite(alpha), 1.0 / alpha, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance > 0, np.abs(theta) / np.sqrt(variance), 0.0)
