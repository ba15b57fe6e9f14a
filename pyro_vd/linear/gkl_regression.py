r"""Gaussian-KL ("G-KL") variational ARD for linear regression."""

import numpy as np

from ._base import (
    BaseEstimator,
    RegressorMixin,
    check_is_fitted,
    dask_method,
    is_dask,
    unchanged_on_failure,
    validate_X,
)
from ._convergence import warn_not_converged
from ._interpolation import warn_if_ard_interpolating
from ._threads import single_threaded_blas
from .relevance import DEFAULT_ALPHA_BOUND
from .rvr import prepare_ard_regression, standardized_relevance
from .vd_regression import _solve_spd

#: Bases whose prior precision passes this are removed from the computation (their weight is 0).
_ALPHA_PRUNE = 1e12


def _hopeless(G, Xt, alpha, beta):
    r"""
    The bases whose evidence-optimal α with the others fixed is ∞, the largest rise of the log evidence
    by its deletion first (Tipping & Faul 2003):
    :math:`q_m^2 \le s_m`, with :math:`s_m = \alpha_m S_m / (\alpha_m - S_m)`,
    :math:`q_m = \alpha_m Q_m / (\alpha_m - S_m)`, :math:`S_m = \beta G_{mm} - \beta^2 G_{mA}\Sigma G_{Am}`,
    :math:`Q_m = \beta X^\top t_m - \beta^2 G_{mA}\Sigma X^\top t_A` at the posterior Σ of ``active``
    for the precisions ``alpha`` (its bases: α below the pruning bound).
    """
    active = np.flatnonzero(alpha < _ALPHA_PRUNE)
    if active.size == 0:
        return active
    G_aa = G[np.ix_(active, active)]
    S_active = _solve_spd(beta * G_aa + np.diag(alpha[active]), np.eye(active.size))
    S_active = 0.5 * (S_active + S_active.T)
    G_sigma = G_aa @ S_active
    S = beta * np.diag(G_aa) - beta**2 * np.sum(G_sigma * G_aa, axis=1)
    Q = beta * Xt[active] - beta**2 * G_sigma @ Xt[active]
    a = alpha[active]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s, q = a * S / (a - S), a * Q / (a - S)
        # the rise of the log evidence (times 2) when the basis is deleted, the others fixed
        gain = Q**2 / (S - a) - np.log1p(-S / a)
        hopeless = (a > S) & (S > 0) & (q**2 <= s) & (gain > 0)
    order = np.argsort(-np.where(hopeless, gain, -np.inf))[: int(hopeless.sum())]
    return active[order]


def _evidence(G, Xt, tt, n, alpha, beta):
    """The bound (= the log evidence) of the exact posterior for the precisions ``alpha``."""
    active = np.flatnonzero(alpha < _ALPHA_PRUNE)
    if active.size == 0:
        return _active_bound(n, tt, np.zeros(0), np.zeros((0, 0)), np.zeros(0), beta)
    G_aa = G[np.ix_(active, active)]
    S = _solve_spd(beta * G_aa + np.diag(alpha[active]), np.eye(active.size))
    S = 0.5 * (S + S.T)
    m = beta * S @ Xt[active]
    expected_fit = tt - 2.0 * m @ Xt[active] + m @ G_aa @ m + np.sum(G_aa * S)
    return _active_bound(n, expected_fit, m, S, alpha[active], beta)


def _delete(G, Xt, tt, n, alpha, beta, hopeless):
    """``alpha`` with the ``hopeless`` bases deleted (α = ∞): all of them where that raises the log evidence,
    else the first (its deletion the largest rise by the test) where that raises it (as RVR deletes, one
    at a time): correlated bases, each redundant given the others, deleted together may lose what they
    carried between them. One at a time throughout took the 1000 × 1000 table's fit 668 deletions and
    1542 EM steps. None where neither raises the evidence (a deletion never lowers it: near a noise-free
    fit of n < d data one took it from 85.5 to −2.4e6)."""
    now = _evidence(G, Xt, tt, n, alpha, beta)
    every = alpha.copy()
    every[hopeless] = np.inf
    if _evidence(G, Xt, tt, n, every, beta) > now:
        return every
    one = alpha.copy()
    one[hopeless[0]] = np.inf
    if hopeless.size > 1 and _evidence(G, Xt, tt, n, one, beta) > now:
        return one
    # neither raises it (near a noise-free fit, β ~ 1e11, the test and its gain are rounding): no
    # deletion, the fit has converged
    return None


class GKLRegression(RegressorMixin, BaseEstimator):
    r"""
    Gaussian-KL variational inference (Challis & Barber 2013) with an ARD prior, for linear
    regression: a full-covariance :math:`q(w) = \mathcal{N}(m, S)` maximizes

    .. math::

        \mathcal{L}(m, S, \alpha, \beta) = \mathbb{E}_q \log \mathcal{N}(t \mid Xw, \beta^{-1})
        - \mathrm{KL}\big(q \,\|\, \mathcal{N}(0, \operatorname{diag}\alpha^{-1})\big),

    and α, β are updated on that bound: :math:`\alpha_d = 1/(m_d^2 + S_{dd})`,
    :math:`\beta = N / (\|t - Xm\|^2 + \operatorname{tr}(X^\top X S))`.

    For a Gaussian likelihood the optimal :math:`q` is the exact posterior,
    :math:`S = (A + \beta X^\top X)^{-1}`, :math:`m = \beta S X^\top t`, so the bound **equals the log
    evidence** at every α, β, and these updates are the EM algorithm for the evidence: G-KL regression
    converges to the same kind of Type-II maximum-likelihood solution as :class:`RVR` (by a different,
    slower path). ``elbo_`` reports the bound.

    Relevance: irrelevant when α, for standardized data, exceeds ``alpha_bound`` (as :class:`RVR`,
    :mod:`pyro_vd.linear.relevance`). EM creeps towards α = ∞ for irrelevant weights, so the fit also
    stops when the bound stops rising (by less than ``tol`` nats per data point a step), once no weight
    is still creeping: a weight whose evidence-optimal α, the others fixed, is ∞ (Tipping & Faul's
    :math:`q^2 \le s`, the test :class:`RVR` deletes by) is removed and EM goes on; a
    ``ConvergenceWarning`` says when it stops at ``max_iter`` instead.

    Attributes
    ----------
    coef_ (m), intercept_, alpha_, noise_precision_, covariance_ (S over all features; rows and columns
    of removed features are 0), relevance_, elbo_ (= log_evidence_), n_iter_, n_features_in_,
    feature_names_in_ (fitted on a data frame with string column names)
    """

    def __init__(self, *, fit_intercept=True, max_iter=500, tol=1e-5, alpha_bound=DEFAULT_ALPHA_BOUND):
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.alpha_bound = alpha_bound

    def fit(self, X, y):
        """
        Fit; returns ``self``. BLAS runs on one thread during the fit
        (:func:`~pyro_vd.linear._threads.single_threaded_blas`: on the 1000 × 1000 ARD table the fit takes
        22–23 s this way, 36–48 s with OpenBLAS on two threads). The same fit up to rounding.
        """
        with unchanged_on_failure(self), single_threaded_blas():
            return self._fit(X, y)

    def _fit(self, X, y):
        n, x_mean, y_mean, G, Xt, tt, diag, usable, yy, scaling = prepare_ard_regression(self, X, y)
        d = len(diag)
        floor = 1e-12 * max(yy, n)  # unit-scale y: yy ≈ n unless y is all zero
        beta = n / max(tt, floor)
        # start α as β: both scale as 1/(units of y)², so the whole EM path is equivariant in y's units
        alpha = np.where(usable, beta, np.inf)
        m = np.zeros(d)
        S_active = np.zeros((0, 0))
        n_iter = 0
        previous, rise = -np.inf, np.inf
        converged = False
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007
            active = np.flatnonzero(alpha < _ALPHA_PRUNE)
            new_m = np.zeros(d)
            S_active = np.zeros((0, 0))
            if active.size:
                S_active = _solve_spd(
                    beta * G[np.ix_(active, active)] + np.diag(alpha[active]), np.eye(active.size)
                )
                S_active = 0.5 * (S_active + S_active.T)
                new_m[active] = beta * S_active @ Xt[active]
            ma = new_m[active]
            residual = tt - 2.0 * ma @ Xt[active] + ma @ G[np.ix_(active, active)] @ ma
            trace = np.sum(G[np.ix_(active, active)] * S_active)
            # the bound (= the log evidence) at the current α, β: EM raises it at every step
            bound = _active_bound(n, residual + trace, ma, S_active, alpha[active], beta)
            beta = n / max(residual + trace, floor)
            new_alpha = np.full(d, np.inf)
            new_alpha[active] = 1.0 / (ma**2 + np.diag(S_active))
            change = np.max(
                np.abs(np.log(np.minimum(new_alpha, _ALPHA_PRUNE)) - np.log(np.minimum(alpha, _ALPHA_PRUNE)))
            )
            m, alpha = new_m, new_alpha
            # EM only creeps towards α = ∞ for an irrelevant weight (α grows by about β S_dd a step), so
            # log α alone never settles there: stop also when the bound rises by less than tol nats per
            # data point a step (scale free: the units of X and y shift the bound by a constant)
            if change < self.tol or bound - previous <= self.tol * n:  # a fall is rounding at the optimum
                # ... but not while a weight is still creeping: where the evidence's optimum of its α,
                # the others fixed, is ∞ (Tipping & Faul's q² ≤ s), it is taken there (a coordinate
                # step up the same bound) and EM goes on. Stopped by the bound's rise alone, EM kept
                # every chance feature of 40 × 10 data relevant (α far below the bound, still creeping).
                hopeless = _hopeless(G, Xt, alpha, beta)
                if hopeless.size == 0:
                    converged = True
                    break
                deleted = _delete(G, Xt, tt, n, alpha, beta, hopeless)
                if deleted is None:
                    converged = True
                    break
                alpha, bound = deleted, -np.inf
            rise, previous = bound - previous, bound
        if not converged:
            warn_not_converged(self, n_iter, f"the bound still rose by {rise:.3g} a step")
        active = np.flatnonzero(alpha < _ALPHA_PRUNE)
        covariance = np.zeros((d, d))
        if active.size:
            S_active = _solve_spd(
                beta * G[np.ix_(active, active)] + np.diag(alpha[active]), np.eye(active.size)
            )
            covariance[np.ix_(active, active)] = 0.5 * (S_active + S_active.T)
            m = np.zeros(d)
            m[active] = beta * covariance[np.ix_(active, active)] @ Xt[active]
        alpha = np.where(alpha < _ALPHA_PRUNE, alpha, np.inf)
        # the bound of unit-scale y, minus N log c_y for the density of y in its own units
        elbo = _bound(G, Xt, tt, n, m, covariance, alpha, beta, active) - n * np.log(scaling.y)
        self.noise_precision_ = scaling.noise_precision(beta)
        self.coef_ = scaling.coef(m)
        self.intercept_ = scaling.intercept(y_mean, x_mean, m) if self.fit_intercept else 0.0
        self.X_offset_ = x_mean * scaling.x  # where the intercept is taken (the column means, or 0)
        self.alpha_ = scaling.alpha(alpha)
        self.covariance_ = scaling.covariance(covariance, np.arange(d))
        self.relevance_ = standardized_relevance(alpha, scaling.y_spread, diag, self.alpha_bound)
        self.n_iter_ = n_iter
        self.elbo_ = float(elbo)
        self.log_evidence_ = float(elbo)  # the bound is the log evidence for a Gaussian likelihood
        self._scaling, self._scaled_covariance, self._scaled_beta = scaling, covariance, beta
        warn_if_ard_interpolating(
            self, n=n, usable=usable, kept=active.size, beta=beta, energy=yy, scaling=scaling
        )
        return self

    def predict(self, X, return_std=False):
        """Predictive mean; with ``return_std`` the standard deviation √(1/β + (x − x̄)ᵀ S (x − x̄)), x̄ the
        column means ``X_offset_`` (where the intercept is taken)."""
        if is_dask(X):
            return dask_method(self, "predict", X, return_std)
        check_is_fitted(self)
        X, _ = validate_X(self, X, reset=False)
        mean = X @ self.coef_ + self.intercept_
        if not return_std:
            return mean
        # centred, in the fitted units (no x² or 1/β overflows), then back to those of y
        Xs = (X - getattr(self, "X_offset_", 0.0)) / self._scaling.x
        var = 1.0 / self._scaled_beta + ((Xs @ self._scaled_covariance) * Xs).sum(1)
        return mean, self._scaling.y * np.sqrt(var)


def _active_bound(n, expected_fit, ma, Sa, aa, beta):
    """The bound of :func:`_bound` from the active block (expected fit ‖t − Xm‖² + tr(XᵀX S) given)."""
    logdet = np.linalg.slogdet(Sa)[1] if ma.size else 0.0
    kl = 0.5 * (np.sum(aa * (np.diag(Sa) + ma**2)) - ma.size - np.sum(np.log(aa)) - logdet)
    return float(0.5 * n * np.log(beta / (2 * np.pi)) - 0.5 * beta * expected_fit - kl)


def _bound(G, Xt, tt, n, m, S, alpha, beta, active):
    r"""E_q log N(t | Xw, β⁻¹) − KL(N(m, S) ‖ N(0, A⁻¹)) over the features still in the model."""
    ma, Sa, aa = m[active], S[np.ix_(active, active)], alpha[active]
    Ga = G[np.ix_(active, active)]
    expected_fit = tt - 2.0 * ma @ Xt[active] + ma @ Ga @ ma + np.sum(Ga * Sa)
    log_likelihood = 0.5 * n * np.log(beta / (2 * np.pi)) - 0.5 * beta * expected_fit
    logdet = np.linalg.slogdet(Sa)[1] if active.size else 0.0
    kl = 0.5 * (np.sum(aa * (np.diag(Sa) + ma**2)) - active.size - np.sum(np.log(aa)) - logdet)
    return float(log_likelihood - kl)


def log_evidence(X, y, alpha, beta):
    r"""
    :math:`\log \mathcal{N}(t \mid 0, \beta^{-1} I + X A^{-1} X^\top)` for finite ``alpha`` (no intercept):
    the quantity the G-KL bound equals for regression (used by the tests).
    """
    C = np.eye(len(y)) / beta + (X / alpha) @ X.T
    logdet = np.linalg.slogdet(C)[1]
    return float(-0.5 * (len(y) * np.log(2 * np.pi) + logdet + y @ np.linalg.solve(C, y)))
