r"""Relevance vector regression by Tipping & Faul's fast marginal-likelihood maximization."""

import numpy as np

from .._validation import check_bool
from ._base import (
    CONSTANT_RATIO,
    BaseEstimator,
    RegressorMixin,
    check_is_fitted,
    check_positive_float,
    check_positive_int,
    check_y,
    dask_method,
    fitted_units,
    is_dask,
    set_features,
    unchanged_on_failure,
    usable_columns,
    validate_X,
)
from ._convergence import warn_not_converged
from ._interpolation import warn_if_ard_interpolating
from ._threads import single_threaded_blas
from .relevance import DEFAULT_ALPHA_BOUND
from .vd_regression import _solve_spd

_NOISE_EVERY = 10


def _centered_statistics(X, y, fit_intercept):
    x_mean = X.mean(0) if fit_intercept else np.zeros(X.shape[1])
    y_mean = y.mean() if fit_intercept else 0.0
    Xc, yc = X - x_mean, y - y_mean
    return x_mean, y_mean, Xc.T @ Xc, Xc.T @ yc, float(yc @ yc)


class ArdScaling:
    r"""
    The units an ARD regressor is fitted in: column ``d`` of X divided by ``x[d]`` and y by ``y``, powers
    of two near their root mean squares as fitted — about their means with an intercept, so that an offset
    (a year, a timestamp) does not make a column's spread vanish in its units — (exact divisions;
    :func:`~pyro_vd.linear._base.fitted_units`). The evidence is invariant under
    :math:`x_d \to x_d/c_d`, :math:`t \to t/c_y` with :math:`w_d \to w_d c_d/c_y`,
    :math:`\alpha_d \to \alpha_d c_y^2/c_d^2`, :math:`\beta \to \beta c_y^2` (up to the constant
    :math:`-N\log c_y`), so the fit maps back exactly and data of any finite scale fit alike: no β²
    or XᵀX overflows, no absolute floor meets data of scale 1e-150.
    """

    def __init__(self, X, y, center=False):
        self.x, self.x_ratio = fitted_units(X, center)
        y_scale, y_ratio = fitted_units(y, center)
        self.y, self.y_ratio = float(y_scale), float(y_ratio)

    def coef(self, coef):
        return coef * (self.y / self.x)

    def intercept(self, y_mean, x_mean, coef):
        """The intercept of original units from the scaled means and weights."""
        return float(self.y * (y_mean - x_mean @ coef))

    def alpha(self, alpha):
        with np.errstate(over="ignore"):
            return alpha * (self.x / self.y) ** 2  # may overflow to inf: a weight of ~0 in these units

    def covariance(self, sigma, index):
        with np.errstate(over="ignore", under="ignore"):
            ratio = self.y / self.x[index]
            return sigma * ratio[:, None] * ratio[None, :]

    def noise_precision(self, beta):
        with np.errstate(over="ignore", divide="ignore"):
            beta = np.float64(beta) / np.float64(self.y) ** 2  # (numpy's: y² may underflow to 0)
        if not np.isfinite(beta):
            raise ValueError(
                f"the noise precision overflows float64: y is so small (scale {self.y:.3g}) and fitted so "
                "closely that 1/σ² is not representable; rescale y"
            )
        return float(beta)


def _log_evidence(G, Phi_t, tt, n, alpha, active, beta, sigma):
    r"""
    :math:`\log\mathcal{N}(t \mid 0, \beta^{-1}I + \Phi_A A^{-1}\Phi_A^\top)` from the statistics
    (Tipping 2001, eq. 32 via Σ): :math:`-\tfrac12[N\log 2\pi - N\log\beta - \sum\log\alpha_i
    - \log|\Sigma| + \beta\|t - \Phi\mu\|^2 + \mu^\top A\mu]`, :math:`\mu = \beta\Sigma\Phi^\top t`.
    """
    if active.size == 0:
        fit, logdet, log_alpha, prior = tt, 0.0, 0.0, 0.0
    else:
        mu = beta * sigma @ Phi_t[active]
        fit = max(tt - 2.0 * mu @ Phi_t[active] + mu @ G[np.ix_(active, active)] @ mu, 0.0)
        logdet = np.linalg.slogdet(sigma)[1]
        log_alpha = np.sum(np.log(alpha[active]))
        prior = np.sum(alpha[active] * mu**2)
    return float(-0.5 * (n * np.log(2 * np.pi) - n * np.log(beta) - log_alpha - logdet + beta * fit + prior))


def standardized_relevance(alpha, tt, diag, bound):
    r"""
    ``alpha`` (prior precisions in the fitted units, inf when removed) below ``bound`` once expressed for
    standardized data (every column and y centred as fitted and of unit root mean square):
    :math:`\alpha_d^{\rm std} = \alpha_d\,\|t - \bar t\|^2 / S_{dd}` (``tt``: y's spread about its mean,
    also without an intercept, so that an offset does not count). The rule then does not depend on the units
    of X or y (a weight's prior standard deviation above 0.01 in standard deviations of y per standard
    deviation of x_d).
    """
    ratio = max(tt, np.finfo(float).tiny) / np.where(diag > 0, diag, np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        standardized = alpha * ratio
    return np.isfinite(alpha) & (diag > 0) & (standardized < bound)


def check_ard_params(estimator):
    """The ARD regressors' parameters, checked (in memory and on Dask)."""
    check_bool(estimator.fit_intercept, "fit_intercept")
    check_positive_int(estimator.max_iter, "max_iter")
    check_positive_float(estimator.tol, "tol")
    check_positive_float(estimator.alpha_bound, "alpha_bound")


def prepare_ard_regression(estimator, X, y):
    """
    Checks and statistics shared by the ARD regressors: validated ``X``, ``y`` and parameters, then
    ``(n, x_mean, y_mean, G = XᵀX, Xᵀt, tᵀt, diag G, usable, energy, scaling)`` on centered data in the
    units of ``scaling`` (:class:`ArdScaling`), where ``usable`` marks the non-constant columns and
    ``energy`` is what the fits' floors on the residual are relative to: tᵀt, or y's plain Σ y² where y is
    constant up to rounding (an intercept fits it; its spread about it is rounding). Relative to Σ y²
    always, the floors read an offset of y as signal: at y + 1e6 the noise precision came out 100 times
    too small, at y + 1e8 every feature was pruned. Sets ``n_features_in_`` (and ``feature_names_in_``
    for a data frame).
    """
    if is_dask(X):
        return dask_method(estimator, "prepare_ard_regression", X, y)
    X, names = validate_X(estimator, X, reset=True)
    y = check_y(y, X.shape[0])
    check_ard_params(estimator)
    scaling = ArdScaling(X, y, estimator.fit_intercept)
    X, y = X / scaling.x, y / scaling.y
    # y's spread about its mean, in these units: the scale relevance is standardized by, whether or not
    # the fit has an intercept (an offset that a bias column explains is no spread of y)
    scaling.y_spread = float(((y - y.mean()) ** 2).sum())
    set_features(estimator, X, names)
    x_mean, y_mean, G, Xt, tt = _centered_statistics(X, y, estimator.fit_intercept)
    diag = np.diag(G).copy()
    usable = usable_columns(scaling.x_ratio) & (diag > 0)
    energy = target_energy(tt, float(y @ y), scaling)
    return X.shape[0], x_mean, y_mean, G, Xt, tt, diag, usable, energy, scaling


def target_energy(tt, yy, scaling):
    """The energy the residual floors are relative to (see :func:`prepare_ard_regression`)."""
    return tt if scaling.y_ratio > CONSTANT_RATIO else yy


class RVR(RegressorMixin, BaseEstimator):
    r"""
    Relevance vector regression (Tipping 2001): :math:`t \sim \mathcal{N}(\Phi w, \beta^{-1})`,
    :math:`w \sim \mathcal{N}(0, \operatorname{diag}(\alpha)^{-1})`, with α and β maximizing the
    evidence (Type-II maximum likelihood). ``X`` is any design matrix: features, or a kernel basis
    built by the user.

    Fitted by the fast marginal-likelihood algorithm of Tipping & Faul (2003): with sparsity and
    quality factors :math:`s_m, q_m`, each iteration takes the single action (add a basis with
    :math:`\alpha_m = s_m^2/(q_m^2 - s_m)` when :math:`q_m^2 > s_m`, re-estimate it, or delete it when
    :math:`q_m^2 \le s_m`) that increases the log evidence most; β is re-estimated each iteration.
    Only :math:`\Phi^\top\Phi` and :math:`\Phi^\top t` are used.

    A feature is **relevant** when its prior precision, expressed for standardized data (columns and y
    of unit standard deviation, so that the rule does not depend on units), stays below ``alpha_bound``
    (1e4, scikit-learn's ``threshold_lambda``: prior standard deviation above 0.01); bases the algorithm
    removed have α = ∞ (see :mod:`pyro_vd.linear.relevance` for the rules of every model).

    Parameters
    ----------
    fit_intercept : bool
    max_iter : int
    tol : float
        Stop when the best single action (add, re-estimate or delete a basis) would raise the log
        evidence by less than ``tol``.
    alpha_bound : float

    Attributes
    ----------
    coef_, intercept_, alpha_ (inf for pruned bases), noise_precision_, log_evidence_ (the log marginal
    likelihood of the centred y at the solution: Type-II maximum likelihood maximizes it), sigma_
    (posterior covariance of the active bases), active_ (their indices), relevance_, n_iter_,
    n_features_in_, feature_names_in_ (fitted on a data frame with string column names)
    """

    def __init__(self, *, fit_intercept=True, max_iter=3000, tol=1e-3, alpha_bound=DEFAULT_ALPHA_BOUND):
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.alpha_bound = alpha_bound

    def fit(self, X, y):
        """
        Fit; returns ``self``. BLAS runs on one thread during the fit
        (:func:`~pyro_vd.linear._threads.single_threaded_blas`): its products are of d × |active| matrices,
        hundreds to thousands of them, where OpenBLAS's threads wait for each other (and for any other
        work on the cores) longer than they compute. The fit is the same up to rounding.
        """
        with unchanged_on_failure(self), single_threaded_blas():
            return self._fit(X, y)

    def _fit(self, X, y):
        n, x_mean, y_mean, G, Phi_t, tt, diag, usable, yy, scaling = prepare_ard_regression(self, X, y)
        d = len(diag)
        alpha = np.full(d, np.inf)
        # (unit-scale y: yy / n is 1 unless y is all zero)
        beta = 1.0 / max(0.1 * tt / n, 1e-12 * max(yy / n, 1.0))
        n_iter = 0
        if usable.any() and tt > 1e-12 * max(yy, 1e-300):
            # Start from the basis best aligned with the target.
            score = np.where(usable, Phi_t**2 / np.where(usable, diag, 1.0), -np.inf)
            first = int(np.argmax(score))
            projection = Phi_t[first] ** 2 / diag[first]
            alpha[first] = diag[first] / max(projection - 1.0 / beta, 1e-12 * projection)
            for n_iter in range(1, self.max_iter + 1):
                active = np.flatnonzero(np.isfinite(alpha))
                sigma, mu = self._posterior(G, Phi_t, alpha, active, beta)
                G_a = G[:, active]
                S = beta * diag - beta**2 * ((G_a @ sigma) * G_a).sum(1)
                Q = beta * Phi_t - beta * G_a @ mu
                # In exact arithmetic S_m ≥ 0, and S_i < α_i for a basis in the model; with n ≪ d, once
                # the active bases span the data (S ≈ 0), rounding breaks both: actions whose formulas
                # then divide by 0 or take the log of a negative number are left out (delta = −∞)
                # instead of flooding warnings and being picked by argmax as NaN.
                with np.errstate(divide="ignore", invalid="ignore"):
                    s, q = S.copy(), Q.copy()
                    a = alpha[active]
                    s[active] = a * S[active] / (a - S[active])
                    q[active] = a * Q[active] / (a - S[active])
                    theta = q**2 - s
                    delta = np.full(d, -np.inf)
                    new_alpha = np.full(d, np.inf)
                    in_model = np.isfinite(alpha)
                    grow = (theta > 0) & (s > 0) & usable
                    new_alpha[grow] = s[grow] ** 2 / theta[grow]
                    add = grow & ~in_model
                    delta[add] = (Q[add] ** 2 - S[add]) / S[add] + np.log(S[add] / Q[add] ** 2)
                    reestimate = grow & in_model
                    if reestimate.any():
                        inv_diff = 1.0 / new_alpha[reestimate] - 1.0 / alpha[reestimate]
                        inv_diff = np.where(inv_diff == 0, np.finfo(float).tiny, inv_diff)
                        delta[reestimate] = Q[reestimate] ** 2 / (S[reestimate] + 1.0 / inv_diff) - np.log1p(
                            S[reestimate] * inv_diff
                        )
                    delete = in_model & ~grow
                    if len(active) > 1 and delete.any():
                        delta[delete] = Q[delete] ** 2 / (S[delete] - alpha[delete]) - np.log1p(
                            -S[delete] / alpha[delete]
                        )
                delta[~np.isfinite(delta)] = -np.inf
                best = int(np.argmax(delta))
                # delta is twice the change of the log evidence; stop when no action is worth tol and
                # the noise precision has settled too.
                converged = not np.isfinite(delta[best]) or 0.5 * delta[best] < self.tol
                if converged or n_iter % _NOISE_EVERY == 0:
                    new_beta = self._noise_precision(G, Phi_t, tt, n, alpha, active, sigma, mu)
                    settled = abs(np.log(new_beta / beta)) < 1e-6
                    beta = new_beta
                    if converged and settled:
                        break
                    if converged:
                        continue
                alpha[best] = new_alpha[best] if grow[best] else np.inf
            else:
                warn_not_converged(self, n_iter, f"the best action still gains {0.5 * delta[best]:.3g}")
        active = np.flatnonzero(np.isfinite(alpha))
        coef = np.zeros(d)
        sigma = np.zeros((0, 0))
        if active.size:
            sigma, mu = self._posterior(G, Phi_t, alpha, active, beta)
            coef[active] = mu
        scaled_alpha, alpha = alpha, scaling.alpha(alpha)
        self.noise_precision_ = scaling.noise_precision(beta)
        self.coef_ = scaling.coef(coef)
        self.intercept_ = scaling.intercept(y_mean, x_mean, coef) if self.fit_intercept else 0.0
        self.X_offset_ = x_mean * scaling.x  # where the intercept is taken (the column means, or 0)
        self.alpha_ = alpha
        self.sigma_ = scaling.covariance(sigma, active)
        self.active_ = active
        self.relevance_ = standardized_relevance(scaled_alpha, scaling.y_spread, diag, self.alpha_bound)
        self.n_iter_ = n_iter
        # the log evidence of the centred y, minus N log c_y for its density in its own units
        self.log_evidence_ = _log_evidence(G, Phi_t, tt, n, scaled_alpha, active, beta, sigma) - n * np.log(
            scaling.y
        )
        self._scaling, self._scaled_sigma, self._scaled_beta = scaling, sigma, beta
        warn_if_ard_interpolating(
            self, n=n, usable=usable, kept=active.size, beta=beta, energy=yy, scaling=scaling
        )
        return self

    @staticmethod
    def _noise_precision(G, Phi_t, tt, n, alpha, active, sigma, mu):
        """β = (N − Σγ) / ‖t − Φμ‖², γ_i = 1 − α_i Σ_ii (re-estimated every few actions, as Tipping &
        Faul: after every action it would make add/delete decisions chase a moving target)."""
        gamma = 1.0 - alpha[active] * np.diag(sigma)
        residual = tt - 2.0 * mu @ Phi_t[active] + mu @ G[np.ix_(active, active)] @ mu
        return max(n - gamma.sum(), 1e-6) / max(residual, 1e-12 * tt + 1e-300)

    @staticmethod
    def _posterior(G, Phi_t, alpha, active, beta):
        """Σ = (A + β Φ_AᵀΦ_A)⁻¹ and μ = β Σ Φ_Aᵀ t."""
        precision = beta * G[np.ix_(active, active)] + np.diag(alpha[active])
        sigma = _solve_spd(precision, np.eye(len(active)))
        sigma = 0.5 * (sigma + sigma.T)
        return sigma, beta * sigma @ Phi_t[active]

    def predict(self, X, return_std=False):
        """Predictive mean; with ``return_std`` the standard deviation √(1/β + (x − x̄)_Aᵀ Σ (x − x̄)_A), x̄ the
        column means ``X_offset_`` (where the intercept is taken)."""
        if is_dask(X):
            return dask_method(self, "predict", X, return_std)
        check_is_fitted(self)
        X, _ = validate_X(self, X, reset=False)
        mean = X @ self.coef_ + self.intercept_
        if not return_std:
            return mean
        # in the fitted units (no x² or 1/β overflows), then back to those of y
        centred = X - getattr(self, "X_offset_", 0.0)
        Xa = centred[:, self.active_] / self._scaling.x[self.active_]
        var = 1.0 / self._scaled_beta + ((Xa @ self._scaled_sigma) * Xa).sum(1)
        return mean, self._scaling.y * np.sqrt(var)
