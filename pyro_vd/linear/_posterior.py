"""The Gaussian posterior of a fitted linear estimator's weights, one binary model (class) at a time."""

import numpy as np


def weight_posteriors(estimator):
    r"""
    One dict per row of ``coef_``: a single one for regressors and binary classifiers, one per class for a
    one-vs-rest classifier (in the order of ``classes_``). Each has

    * ``theta``: the posterior mean, shape (n_features,);
    * VD estimators: ``log_alpha``, with :math:`q(w_d) = \mathcal{N}(\theta_d, \alpha_d\theta_d^2)`
      factorized;
    * ARD estimators: ``alpha`` (the prior precisions, inf when removed) and ``covariance``, the
      (n_features, n_features) posterior covariance, zero for removed weights (RVR's Σ, G-KL's S, RVC's
      Laplace Σ without the intercept), or None when the estimator keeps none;
    * ``relevant``: the estimator's own rule (``log α <= threshold``, ``α < alpha_bound``) for this row.
    """
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
    d = coef.shape[1]
    rows = []
    for k, theta in enumerate(coef):
        if hasattr(estimator, "log_alpha_"):
            log_alpha = np.atleast_2d(estimator.log_alpha_)[k]
            row = {"theta": theta, "log_alpha": log_alpha}
            if coef.shape[0] == 1:
                row["relevant"] = np.asarray(estimator.relevance_, bool)
            else:  # the class's own flags, as the estimator decides (the evidence rule inside its fit)
                row["relevant"] = estimator._kept_by_class()[k]
        else:
            alpha = np.atleast_2d(estimator.alpha_)[k]
            row = {"theta": theta, "alpha": alpha, "covariance": _covariance(estimator, k, alpha, d)}
            if coef.shape[0] == 1:
                row["relevant"] = np.asarray(estimator.relevance_, bool)
            else:  # the class's own flags by the estimator's rule: α for standardized columns
                from ._classifier import ard_relevance

                row["relevant"] = ard_relevance([estimator._fits[k]], estimator.alpha_bound)
        rows.append(row)
    return rows


def _covariance(estimator, k, alpha, d):
    if hasattr(estimator, "covariance_"):  # GKLRegression
        return np.asarray(estimator.covariance_, dtype=float)
    if hasattr(estimator, "sigma_"):  # RVR: Σ over the active bases
        cov = np.zeros((d, d))
        active = np.asarray(getattr(estimator, "active_", np.flatnonzero(np.isfinite(alpha))))
        cov[np.ix_(active, active)] = estimator.sigma_
        return cov
    fit = getattr(estimator, "_fits", [None] * (k + 1))[k]
    if fit is None:
        return None
    if "L" in fit:  # GKLClassifier: S = L Lᵀ
        return fit["L"] @ fit["L"].T
    if "sigma" in fit and "active" in fit:  # RVC: Laplace Σ over the active weights and the intercept (d)
        active = np.asarray(fit["active"])
        features = active < d
        cov = np.zeros((d, d))
        cov[np.ix_(active[features], active[features])] = fit["sigma"][np.ix_(features, features)]
        return cov
    return None


__all__ = ["weight_posteriors"]
