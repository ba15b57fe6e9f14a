r"""Variational dropout for linear regression: the seed's exact coordinate-ascent scheme."""

import numpy as np
import scipy.linalg

from ..distributions.kl_log_uniform import check_kl_method, kl_log_uniform
from ._base import (
    BaseEstimator,
    RegressorMixin,
    check_finite_statistics,
    check_is_fitted,
    check_positive_float,
    check_positive_int,
    check_X,
    check_y,
)
from .alpha_update import LOG_ALPHA_MAX, optimal_log_alpha_profile


class VDRegression(RegressorMixin, BaseEstimator):
    r"""
    Variational dropout (sparse VD) for linear regression, fitted by the seed's exact updates.

    Model: :math:`t_n \sim \mathcal{N}(w^\top x_n + b, \beta^{-1})`, prior :math:`p(\log|w_d|) =
    \text{const}`, posterior :math:`q(w_d) = \mathcal{N}(\theta_d, \alpha_d\theta_d^2)`. The ELBO

    .. math::

        \mathcal{L} = \tfrac N2\log\tfrac{\beta}{2\pi} - \tfrac\beta2\Big[\|X\theta - t\|^2
        + \sum_d \kappa_d\theta_d^2\Big] - \sum_d \mathrm{KL}(\alpha_d), \qquad
        \kappa_d = \alpha_d \sum_n x_{nd}^2,

    is maximized by coordinate ascent, each step exact given the others:
    :math:`\theta^* = (X^\top X + \operatorname{diag}\kappa)^{-1}X^\top t` (the seed's erratum fixed:
    **plus** diag κ), :math:`\beta^* = N / [\ldots]`, and each :math:`\alpha_d` by a 1-D maximization
    (:func:`~pyro_vd.linear.alpha_update.optimal_log_alpha`). Only :math:`X^\top X`,
    :math:`X^\top t`, :math:`t^\top t`, the column and target sums and :math:`N` are used, so
    :meth:`partial_fit` on chunks gives the same answer as :meth:`fit` on all rows (up to rounding).
    Features whose :math:`\log\alpha` reaches ``max_log_alpha`` (α = ∞) are pruned: θ = 0 exactly.

    A feature is **relevant** when ``log_alpha_ <= threshold`` (3 by default: Sparse VD's pruning rule,
    binary-dropout rate above 0.95 otherwise); constant columns carry nothing and get α = ∞.

    Parameters
    ----------
    fit_intercept : bool
        Fit an unpenalized intercept (by centering the statistics).
    kl_method : {"exact", "molchanov", "kingma"}
        The KL of the α updates.
    threshold : float
        log α above which a feature is irrelevant.
    max_iter : int
        Coordinate-ascent sweeps at most.
    tol : float
        Stop when θ changes by less than ``tol`` (relative) and log α by less than ``tol * 100``.
    max_log_alpha : float
        log α that stands for α = ∞.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Posterior means θ.
    intercept_ : float
    log_alpha_ : ndarray of shape (n_features,)
        log α per feature (``max_log_alpha`` for pruned features).
    noise_precision_ : float
        β.
    relevance_ : ndarray of bool, shape (n_features,)
    elbo_ : float
        The final ELBO (up to the prior's constant).
    n_iter_ : int
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        fit_intercept=True,
        kl_method="exact",
        threshold=3.0,
        max_iter=300,
        tol=1e-6,
        max_log_alpha=30.0,
    ):
        self.fit_intercept = fit_intercept
        self.kl_method = kl_method
        self.threshold = threshold
        self.max_iter = max_iter
        self.tol = tol
        self.max_log_alpha = max_log_alpha

    # ------------------------------------------------------------------------------------- fitting
    def fit(self, X, y):
        """Fit on all rows; returns ``self``."""
        for attribute in ("_stats", "n_features_in_"):
            if hasattr(self, attribute):
                delattr(self, attribute)
        return self.partial_fit(X, y)

    def partial_fit(self, X, y):
        """Add a chunk of rows to the sufficient statistics and refit; returns ``self``."""
        X = check_X(X, n_features=getattr(self, "n_features_in_", None), estimator=self, check_finite=False)
        y = check_y(y, X.shape[0])
        self._check_params()
        stats = getattr(self, "_stats", None)
        if stats is None:
            d = X.shape[1]
            stats = {
                "n": 0,
                "sx": np.zeros(d),
                "sy": 0.0,
                "xx": np.zeros((d, d)),
                "xy": np.zeros(d),
                "yy": 0.0,
            }
        sx, xx = X.sum(0), X.T @ X
        check_finite_statistics(X, sx, xx)
        stats["n"] += X.shape[0]
        stats["sx"] += sx
        stats["sy"] += y.sum()
        stats["xx"] += xx
        stats["xy"] += X.T @ y
        stats["yy"] += y @ y
        self._stats = stats
        self.n_features_in_ = X.shape[1]
        self._solve()
        return self

    def _check_params(self):
        check_kl_method(self.kl_method)
        check_positive_int(self.max_iter, "max_iter")
        check_positive_float(self.tol, "tol")
        check_positive_float(self.max_log_alpha, "max_log_alpha")
        if not isinstance(self.threshold, int | float) or not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number; got {self.threshold!r}")

    def _centered(self):
        s = self._stats
        n = s["n"]
        if self.fit_intercept:
            x_mean, y_mean = s["sx"] / n, s["sy"] / n
            xx = s["xx"] - n * np.outer(x_mean, x_mean)
            xy = s["xy"] - n * x_mean * y_mean
            yy = s["yy"] - n * y_mean**2
        else:
            x_mean, y_mean = np.zeros_like(s["sx"]), 0.0
            xx, xy, yy = s["xx"], s["xy"], s["yy"]
        return n, x_mean, y_mean, xx, xy, max(yy, 0.0)

    def _solve(self):
        n, x_mean, y_mean, xx, xy, yy = self._centered()
        d = xx.shape[0]
        diag = np.clip(np.diag(xx).copy(), 0.0, None)
        scale = max(diag.max(), np.finfo(float).tiny)
        usable = diag > 1e-12 * scale  # constant columns: no information, α = ∞
        cap = float(self.max_log_alpha)
        log_alpha = np.where(usable, 0.0, cap)
        theta = np.zeros(d)
        # A floor on the residual energy, relative to the target's scale, keeps β finite for an exactly
        # fitted (e.g. constant) target, so that rounding noise in XᵀT is not mistaken for signal.
        energy_floor = 1e-12 * max(self._stats["yy"], n * np.finfo(float).tiny)
        beta = n / max(yy, energy_floor)
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007
            active = usable & (log_alpha < cap)
            new_theta = np.zeros(d)
            if active.any():
                kappa = np.exp(log_alpha[active]) * diag[active]
                new_theta[active] = _solve_spd(xx[np.ix_(active, active)] + np.diag(kappa), xy[active])
            # β update: N / (‖Xθ − t‖² + Σ κ θ²), from the statistics.
            fit = new_theta @ xx @ new_theta - 2.0 * new_theta @ xy + yy
            penalty = np.sum(np.exp(np.minimum(log_alpha, cap)) * diag * new_theta**2 * active)
            beta = n / max(fit + penalty, energy_floor)
            # α updates, each jointly with its θ_d (the others fixed): argmax q_d/(1+α) − KL(α) with
            # q_d = β r_d² / (2 S_dd), r_d = x_dᵀ(t − X_{−d} θ_{−d}). Exact coordinate steps of the ELBO,
            # and a feature with q_d < ½ goes to α = ∞ at once.
            residual_corr = xy - xx @ new_theta + diag * new_theta
            q = np.where(active, 0.5 * beta * residual_corr**2 / np.where(usable, diag, 1.0), 0.0)
            new_log_alpha = np.where(
                active, optimal_log_alpha_profile(q, self.kl_method, max_log_alpha=cap), cap
            )
            theta_change = np.max(np.abs(new_theta - theta)) / max(1.0, np.max(np.abs(new_theta)))
            alpha_change = np.max(np.abs(new_log_alpha - log_alpha))
            theta, log_alpha = new_theta, new_log_alpha
            if theta_change < self.tol and alpha_change < 100 * self.tol:
                break
        theta[log_alpha >= cap] = 0.0
        self.coef_ = theta
        self.intercept_ = float(y_mean - x_mean @ theta) if self.fit_intercept else 0.0
        self.log_alpha_ = log_alpha
        self.noise_precision_ = float(beta)
        self.relevance_ = log_alpha <= self.threshold
        self.n_iter_ = n_iter
        fit = theta @ xx @ theta - 2.0 * theta @ xy + yy
        kept = log_alpha < cap
        penalty = np.sum(np.exp(log_alpha[kept]) * diag[kept] * theta[kept] ** 2)
        kl = float(kl_log_uniform(_tensor(log_alpha), self.kl_method).sum())
        self.elbo_ = 0.5 * n * np.log(beta / (2 * np.pi)) - 0.5 * beta * (fit + penalty) - kl

    # ---------------------------------------------------------------------------------- prediction
    def predict(self, X, return_std=False):
        """
        Predictive mean :math:`X\\theta + b`; with ``return_std`` also the predictive standard
        deviation :math:`\\sqrt{\\beta^{-1} + \\sum_d x_d^2 \\alpha_d\\theta_d^2}`.
        """
        check_is_fitted(self)
        X = check_X(X, n_features=self.n_features_in_, estimator=self)
        mean = X @ self.coef_ + self.intercept_
        if not return_std:
            return mean
        kept = self.log_alpha_ < self.max_log_alpha
        weight_var = np.where(kept, np.exp(np.where(kept, self.log_alpha_, 0.0)) * self.coef_**2, 0.0)
        return mean, np.sqrt(1.0 / self.noise_precision_ + (X**2) @ weight_var)


def _tensor(array):
    import torch

    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def _solve_spd(matrix, rhs):
    """Solve a symmetric positive-definite system; a jitter fallback instead of a raw LinAlgError."""
    try:
        return scipy.linalg.cho_solve(
            scipy.linalg.cho_factor(matrix, check_finite=False), rhs, check_finite=False
        )
    except np.linalg.LinAlgError:
        jitter = 1e-10 * max(np.abs(np.diag(matrix)).max(), 1.0)
        for _ in range(10):
            try:
                factor = scipy.linalg.cho_factor(matrix + jitter * np.eye(len(matrix)), check_finite=False)
                return scipy.linalg.cho_solve(factor, rhs, check_finite=False)
            except np.linalg.LinAlgError:
                jitter *= 100
        return np.linalg.lstsq(matrix, rhs, rcond=None)[0]


__all__ = ["LOG_ALPHA_MAX", "VDRegression"]
