r"""The feature-relevance table: θ, log α (or the RVM precision α), signal-to-noise ratio, relevant."""

import numpy as np

from ..inference.pruning import DEFAULT_THRESHOLD


def relevance(obj, site=None, *, feature_names=None, threshold=DEFAULT_THRESHOLD):
    r"""
    A :class:`pandas.DataFrame`, one row per weight (per feature for a linear model), with columns
    ``theta``, ``log_alpha`` (VD) or ``alpha`` (RVM prior precision), ``snr`` and ``relevant``.

    * a trained :class:`~pyro_vd.guides.AutoVariationalDropout` and a ``site`` (default: its only weight
      site): :math:`\mathrm{SNR} = |\theta|/\sigma = \alpha^{-1/2}`, relevant when
      :math:`\log\alpha \le` ``threshold`` (3);
    * a fitted estimator of :mod:`pyro_vd.linear`: its ``relevance_`` decides; SNR is
      :math:`\alpha^{-1/2}` for VD and :math:`|m_d| / \sqrt{\Sigma_{dd}}` for the RVM-type ones;
    * an ``InferenceData`` from :func:`to_inference_data`: read from its ``variational`` group.

    Rows are sorted as the features are; ``df.sort_values("snr")`` ranks them.
    """
    import pandas as pd

    if hasattr(obj, "get_log_alpha"):  # a guide
        names = obj.site_names
        if site is None:
            if len(names) != 1:
                raise ValueError(f"the guide has several weight sites {names}: pass site=")
            site = names[0]
        if site not in names:
            raise ValueError(f"site {site!r} is not a weight site of the guide ({names})")
        table = _vd_table(
            obj.get_theta(site).cpu().numpy().ravel(),
            obj.get_log_alpha(site).cpu().numpy().ravel(),
            threshold,
        )
    elif hasattr(obj, "groups") and "variational" in obj.groups():  # InferenceData
        group = obj["variational"]
        if "theta" in group:
            theta = group["theta"].values
            names_default = (
                group["theta"].coords["feature"].values if "feature" in group["theta"].coords else None
            )
            if "log_alpha" in group:
                table = _vd_table(theta, group["log_alpha"].values, threshold)
            else:
                alpha = group["alpha"].values
                table = {"theta": theta, "alpha": alpha, "snr": np.abs(theta) * np.sqrt(alpha)}
                table["relevant"] = np.isfinite(alpha) & (alpha < 1e4)
            if feature_names is None and names_default is not None:
                feature_names = list(names_default)
        else:
            sites = [k[: -len(".theta")] for k in group.data_vars if k.endswith(".theta")]
            site = site or (sites[0] if len(sites) == 1 else None)
            if site is None:
                raise ValueError(f"the InferenceData has several weight sites {sites}: pass site=")
            theta = group[f"{site}.theta"].values.ravel()
            table = _vd_table(theta, group[f"{site}.log_alpha"].values.ravel(), threshold)
    elif hasattr(obj, "relevance_"):  # a fitted estimator
        theta = np.atleast_2d(obj.coef_)[0]
        if hasattr(obj, "log_alpha_"):
            table = _vd_table(theta, np.atleast_2d(obj.log_alpha_)[0], threshold)
        else:
            alpha = np.atleast_2d(obj.alpha_)[0]
            variance = _posterior_variance(obj, alpha)
            with np.errstate(divide="ignore", invalid="ignore"):
                snr = np.where(variance > 0, np.abs(theta) / np.sqrt(variance), 0.0)
            table = {"theta": theta, "alpha": alpha, "snr": snr}
        table["relevant"] = np.asarray(obj.relevance_, bool)
    else:
        raise TypeError(
            f"relevance() takes a guide, a fitted pyro_vd.linear estimator or an InferenceData; got "
            f"{type(obj).__name__}"
        )
    n = len(table["theta"])
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"feature_names has {len(names)} names for {n} weights")
    return pd.DataFrame(table, index=pd.Index(names, name="feature"))


def _vd_table(theta, log_alpha, threshold):
    """The columns of a VD weight: θ, log α, SNR = α^{-1/2}, relevant when log α ≤ ``threshold``."""
    return {
        "theta": theta,
        "log_alpha": log_alpha,
        "snr": np.exp(-0.5 * log_alpha),
        "relevant": log_alpha <= threshold,
    }


def _posterior_variance(estimator, alpha):
    d = len(alpha)
    if hasattr(estimator, "covariance_"):
        return np.diag(estimator.covariance_).copy()
    if hasattr(estimator, "sigma_"):
        variance = np.zeros(d)
        active = np.asarray(getattr(estimator, "active_", np.flatnonzero(np.isfinite(alpha))))
        variance[active] = np.diag(estimator.sigma_)
        return variance
    if hasattr(estimator, "_fits") and "L" in estimator._fits[0]:
        L = estimator._fits[0]["L"]
        return (L * L).sum(1)
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(alpha), 1.0 / alpha, 0.0)  # the prior variance: an upper bound
