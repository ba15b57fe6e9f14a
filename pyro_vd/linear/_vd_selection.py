r"""
The evidence rule inside the VD logistic-regression fit (:class:`~pyro_vd.linear.VDClassifier`'s
``threshold="evidence"``), as :class:`~pyro_vd.linear.VDRegression` applies it inside its own.

A feature is in the model when the ELBO it adds exceeds :math:`\log d`, the log prior odds 1 : d
against it (:mod:`pyro_vd.linear.relevance`); a feature out of the model has θ = σ = 0, α = ∞ and KL 0.
Over sets A of features this is the score

.. math::  F(A) = \mathcal{L}^*(A) - |A|\log d,

:math:`\mathcal{L}^*(A)` the ELBO's optimum over the features in A (Newton,
:func:`~pyro_vd.linear._vd_newton.newton_fit`), and :math:`-|A|\log d` the log prior of A when each
feature is relevant with odds 1 : d. The fit is the best A the local search below finds: moves 2 and 3
are kept only when they raise F, so they end; move 1 ends at its fixed point or when ``MAX_RETURNS``
bars the features that cycle. It is a local search: features that matter only as a difference (each
useless alone) are never admitted, and on strongly correlated columns a toggle it does not try can
still raise F.

Two Gaussian views propose the moves, with the others fixed and the likelihood locally Gaussian in
:math:`w_d`:

* **a feature in the model** whose :math:`\log\alpha_d > \tau(d)` at the optimum adds less than
  :math:`\log d` (the optimum's α is a monotone function of the gain: its profile);
* **a feature out of the model**: with the expected log-likelihood :math:`\sum_n f(m_n, s_n)` expanded to
  second order in the new weight,
  :math:`\mathbb{E}_q\,\ell \approx \mathrm{const} + g_d\theta_d - \tfrac12 h_d(\theta_d^2 + \sigma_d^2)` with
  :math:`g_d = \sum_n x_{nd}t_n f_m(m_n, s_n)` and :math:`h_d = -\sum_n x_{nd}^2 f_{mm}(m_n, s_n)` (the
  score and curvature at :math:`\theta_d = \sigma_d = 0`; :math:`\partial f/\partial s^2 = f_{mm}/2`), the
  feature's ELBO is :math:`q_d/(1+\alpha_d) - \mathrm{KL}(\alpha_d)` with :math:`q_d = g_d^2/(2h_d)`:
  linear regression's profile, whose gain :math:`\Delta(q_d)`
  (:func:`~pyro_vd.linear.relevance.evidence_gain`) would have to pass :math:`\log d`.

The search:

1. **Settle** (the fast RVM's, Tipping & Faul 2003, on the VD bound): fit A by Newton (a new feature from
   its profile optimum :math:`\theta_d = g_d/(h_d(1+\alpha_d))`), remove the features whose log α passes
   τ(d), admit the best feature out of the model whose :math:`\Delta(q_d) > \log d`, one at a time
   (correlated features admitted together, each useless given the other, would leave together and
   cycle), until neither happens. A removed feature is admitted again at most ``MAX_RETURNS`` times.
   It starts from the intercept alone, admitting every passing feature at once (at θ = 0 an irrelevant
   feature's :math:`2q_d` is about :math:`\chi^2_1`, so at d = 1000 it passes with probability 2e-5).
2. **Grow**: admit the features out of the model with a positive gain at once (the best
   ``max(GROW_MIN, N/4)``), fit, and settle from there; kept when F rises. Logistic regression is not
   collapsible: a feature's effect looks smaller while the others are left out, so features that are
   strong together can each fall short of :math:`\log d` alone (10 features with |w| = 2, n = 150: one
   at a time stops at 1 feature).
3. **Exact moves near the bound**: the features in the model whose log α is within ``BORDER`` of τ(d),
   or that have a neighbour in the model of correlation ≥ ``TWIN_CORRELATION`` (two copies of a column
   kept both, far from the bound), are each tried out, and the features out of the model whose gain is
   within ``BORDER`` of
   :math:`\log d` each tried in, by refitting; a move is kept when F rises. At small N the Gaussian
   views err near the bound (a strong feature at log α 0.006 above τ(d) adds 5.1 nats, 1.8 above
   :math:`\log d`), and two copies of one column admitted together sit at a saddle.

Move 2 repeats while it raises F, then move 3 while it does (move 2 is not tried again after it: on
strongly correlated columns each try costs tens of Newton steps over hundreds of features). Every Newton
step runs on the features in the model, so a fit that keeps k of d features costs about k² per row a
step instead of d².
"""

import math
from dataclasses import dataclass

import numpy as np

from ._vd_newton import _points, _sigmoid, fit_log_alpha, newton_fit
from .alpha_update import optimal_log_alpha_profile
from .relevance import evidence_gain, evidence_log_alpha_threshold, evidence_penalty

#: A feature is admitted again, after it was removed, at most this many times (per settling).
MAX_RETURNS = 2
#: Features this close to the bound (in log α, or in nats of gain) are decided by refitting.
BORDER = 1.5
#: At most this many exact moves of each kind per round (the nearest to the bound first).
MAX_EXACT_MOVES = 4
#: Features in the model this correlated with another in it are tried out by refitting too (near
#: copies: at |r| = 0.9 it also took pairs of truly relevant features at |r| = 0.92 down to one, in 4
#: of 10 VDRegression fits that had kept both, raising the penalized objective each time: that
#: objective's choice, but not what the move is for).
TWIN_CORRELATION = 0.99
#: The grow move admits at most max(GROW_MIN, n_samples // 4) features, the best first.
GROW_MIN = 10
#: Newton steps at most for the grow move's first fit (the settling that follows fits to convergence).
GROW_STEPS = 50


def _gram_block(X, X2, t):
    """One block's Σ x xᵀ and Σ x over its (active) columns."""
    return X.T @ X, X.sum(0)


def _block_scores(X, X2, t, theta, sigma2, b, nodes, weights):
    r"""One block's score :math:`\sum_n x_{nd}t_nf_m` and curvature :math:`-\sum_n x_{nd}^2 f_{mm}` of every
    feature (θ and σ² of features out of the model are 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        Z, _ = _points(X, X2, t, theta, sigma2, b, nodes, 0.0)
        p = _sigmoid(Z)
    f_m = (1.0 - p) @ weights
    curvature = (p * (1.0 - p)) @ weights
    return X.T @ (f_m * t), X2.T @ curvature


def scores(rows, theta, rho, b, nodes, weights):
    """Every feature's profile coefficient :math:`q_d = g_d^2/(2h_d)` at (θ, ρ, b), with g and h:
    meaningful for the features out of the model (θ_d = σ_d = 0)."""
    everything = np.ones(len(theta), dtype=bool)
    sigma2 = np.where(np.isfinite(rho), np.exp(np.minimum(rho, 700.0)), 0.0)
    theta = np.where(np.isfinite(rho), theta, 0.0)
    g, h = rows.sum(_block_scores, everything, theta, sigma2, b, nodes, weights)
    tiny = np.finfo(float).tiny
    q = np.where(h > tiny, 0.5 * g * g / np.maximum(h, tiny), 0.0)
    return q, g, h


@dataclass
class _State:
    """A fitted model: θ, ρ (−inf out of the model), b, its ELBO and F = ELBO − |A| log d."""

    theta: np.ndarray
    rho: np.ndarray
    b: float
    elbo: float
    penalty: float
    converged: bool = True

    @property
    def active(self):
        return np.isfinite(self.rho)

    @property
    def score(self):
        return self.elbo - self.penalty * int(self.active.sum())

    def log_alpha(self):
        return fit_log_alpha(self.theta, self.rho)


class _Budget(Exception):
    """Newton's step budget (``max_iter``) ran out."""


class _Search:
    def __init__(self, rows, d, nodes, weights, method, max_iter, tol, candidates=None):
        self.rows, self.d, self.nodes, self.weights = rows, d, nodes, weights
        self.method, self.max_iter, self.tol = method, max_iter, tol
        # both over the features that vary (a bound over every column let a feature out at one and back
        # in at the other, up to MAX_RETURNS times: 17 → 48–67 Newton steps with 300 constant columns)
        candidates = d if candidates is None else candidates
        self.bound = evidence_log_alpha_threshold(candidates, method)
        self.penalty = evidence_penalty(candidates)
        self.margin = tol * rows.n_samples  # F must rise by more than Newton's own tolerance
        self.n_iter = 0
        self.best = None  # the fitted model with the highest F so far

    # ------------------------------------------------------------------ fits
    def fit(self, theta, rho, b, active, max_steps=None):
        """Newton over ``active`` from (θ, ρ, b); raises _Budget when ``max_iter`` runs out."""
        budget = self.max_iter - self.n_iter
        steps = budget if max_steps is None else min(budget, max_steps)
        if steps < 1:
            raise _Budget
        theta, rho, b, elbo, used, converged = newton_fit(
            self.rows, theta, rho, self.nodes, self.weights, self.method, steps, self.tol, b=b, active=active
        )
        self.n_iter += used
        if not converged and (max_steps is None or used < max_steps):
            raise _Budget
        state = _State(theta, rho, b, elbo, self.penalty, converged)
        if converged and (self.best is None or state.score > self.best.score):
            self.best = state
        return state

    def better(self, candidate, state):
        return candidate is not None and candidate.score > state.score + self.margin

    def scores(self, state):
        return scores(self.rows, state.theta, state.rho, state.b, self.nodes, self.weights)

    def gains(self, state):
        """Δ(q_d) of every feature out of the model (0 in it), with q, g, h."""
        q, g, h = self.scores(state)
        return np.where(state.active, 0.0, evidence_gain(q, self.method)), q, g, h

    def admit(self, state, features, q, g, h):
        """θ, ρ with ``features`` at their profile optima (the Gaussian view), and the new active set."""
        theta, rho = state.theta.copy(), state.rho.copy()
        t = optimal_log_alpha_profile(q[features], self.method)
        theta[features] = g[features] / (h[features] * (1.0 + np.exp(t)))
        rho[features] = t + np.log(theta[features] ** 2)
        return theta, rho, state.active | np.isin(np.arange(self.d), features)

    # ------------------------------------------------------------------ moves
    def settle(self, state, *, all_at_first):
        """Move 1 from a fitted ``state``: remove failing features, admit passing ones, to a fixed point."""
        if not state.converged:
            state = self.fit(state.theta, state.rho, state.b, state.active)
        returns = np.zeros(self.d, dtype=int)
        was_in = state.active.copy()
        first = all_at_first
        while True:
            failing = state.active & (state.log_alpha() > self.bound)
            gain, q, g, h = self.gains(state)
            passing = ~state.active & (gain > self.penalty) & (returns < MAX_RETURNS)
            if not failing.any() and not passing.any():
                return state
            theta, rho = state.theta.copy(), state.rho.copy()
            theta[failing], rho[failing] = 0.0, -math.inf
            reduced = _State(theta, rho, state.b, state.elbo, self.penalty)
            new = np.flatnonzero(passing)
            if new.size and not first:
                new = new[[np.argmax(gain[new])]]
            first = False
            returns[new] += was_in[new]
            theta, rho, active = self.admit(reduced, new, q, g, h)
            was_in |= active
            state = self.fit(theta, rho, state.b, active)

    def grow(self, state):
        """Move 2: every feature out of the model with a positive gain in at once, then settle."""
        gain, q, g, h = self.gains(state)
        new = np.flatnonzero(gain > 0.0)
        if not new.size:
            return None
        # the most promising ones, at most a quarter of the rows: at 300 × 3000 about 1000 features pass
        # Δ > 0, and Newton over them cost 35 s for nothing
        new = new[np.argsort(-gain[new], kind="stable")][: max(GROW_MIN, self.rows.n_samples // 4)]
        theta, rho, active = self.admit(state, new, q, g, h)
        return self.settle(self.fit(theta, rho, state.b, active, max_steps=GROW_STEPS), all_at_first=False)

    def twins(self, state):
        """The features in the model with a neighbour in it of correlation |r| ≥ ``TWIN_CORRELATION``
        (one pass over the rows for the model's columns)."""
        active = np.flatnonzero(state.active)
        if active.size < 2:
            return active[:0]
        gram, total = self.rows.sum(_gram_block, state.active)
        n = self.rows.n_samples
        covariance = gram - np.outer(total, total) / n
        sd = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            correlation = np.abs(covariance / np.outer(sd, sd))
        correlation = np.where(np.isfinite(correlation), correlation, 0.0)
        np.fill_diagonal(correlation, 0.0)
        return active[correlation.max(1) >= TWIN_CORRELATION]

    def exact_moves(self, state):
        """Move 3: single features near the bound, or with a twin in the model, tried out, and features
        near the bound tried in, by refitting; the first that raises F."""
        log_alpha = state.log_alpha()
        near_in = np.flatnonzero(state.active & (log_alpha > self.bound - BORDER))
        near_in = near_in[np.argsort(-log_alpha[near_in])][:MAX_EXACT_MOVES]
        # two copies of a column both kept, each holding part of the weight and needed given the other,
        # far from the bound: 4 nats below one copy alone
        twins = [f for f in self.twins(state)[:MAX_EXACT_MOVES] if f not in near_in]
        for feature in [*near_in, *twins]:
            theta, rho = state.theta.copy(), state.rho.copy()
            theta[feature], rho[feature] = 0.0, -math.inf
            candidate = self.fit(theta, rho, state.b, np.isfinite(rho))
            if self.better(candidate, state):
                return candidate
        gain, q, g, h = self.gains(state)
        near_out = np.flatnonzero(~state.active & (gain > self.penalty - BORDER) & (gain > 0.0))
        near_out = near_out[np.argsort(-gain[near_out])][:MAX_EXACT_MOVES]
        for feature in near_out:
            theta, rho, active = self.admit(state, np.array([feature]), q, g, h)
            candidate = self.fit(theta, rho, state.b, active)
            if self.better(candidate, state):
                return candidate
        return None


def evidence_fit(rows, n_features, nodes, weights, method, max_iter, tol, candidates=None):
    """
    The evidence rule's fit over ``rows`` (module docstring). Returns ``(theta, rho, b, elbo, n_iter,
    converged, profile, q)`` as :func:`~pyro_vd.linear._vd_newton.newton_fit` does, n_iter counting
    every Newton step, each feature's profile log α (its own for a feature in the model, the optimum of
    its Gaussian view for one out of it, ``LOG_ALPHA_MAX`` where that is α = ∞) and each feature's
    :math:`q_d` at the fit (the Gaussian view's coefficient, meaningful out of the model); both NaN
    everywhere when the search stopped at ``max_iter``. Features out of the model have θ = 0 and
    ρ = −inf. When ``max_iter`` runs out, the fitted model with the highest F so far is returned
    (``converged`` False). The prior odds are 1 : ``candidates`` per feature (the features that vary;
    by default ``n_features``): a constant column is no candidate, and counted it moved the bound.
    """
    d = n_features
    search = _Search(rows, d, nodes, weights, method, max_iter, tol, candidates)
    empty = np.zeros(d, dtype=bool)
    try:
        best = search.fit(np.zeros(d), np.full(d, -math.inf), 0.0, empty)  # the intercept alone
        best = search.settle(best, all_at_first=True)
        while search.better(candidate := search.grow(best), best):
            best = candidate
        while (candidate := search.exact_moves(best)) is not None:
            best = candidate
    except _Budget:  # the fitted model with the highest F so far (the zero model before any fit)
        best = search.best or _State(np.zeros(d), np.full(d, -math.inf), 0.0, -math.inf, search.penalty)
        unknown = np.full(d, np.nan)
        return best.theta, best.rho, best.b, best.elbo, search.n_iter, False, unknown, unknown
    q, _, _ = search.scores(best)
    profile = optimal_log_alpha_profile(q, method)
    profile[best.active] = best.log_alpha()[best.active]
    return best.theta, best.rho, best.b, best.elbo, search.n_iter, True, profile, q
