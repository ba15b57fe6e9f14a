r"""Variational dropout for linear regression: the seed's exact coordinate-ascent scheme."""

import functools

import numpy as np
import scipy.linalg
import torch

from .._validation import check_bool
from .._warnings import warn_at_caller
from ..distributions.kl_log_uniform import check_kl_method, kl_log_uniform
from ._base import (
    CONSTANT_RATIO,
    BaseEstimator,
    RegressorMixin,
    check_finite_statistics,
    check_is_fitted,
    check_positive_float,
    check_positive_int,
    check_real,
    check_y,
    count_candidates,
    dask_method,
    is_dask,
    power_of_two_scales,
    set_features,
    usable_columns,
    validate_X,
)
from ._convergence import warn_not_converged
from ._gram import row_statistics
from ._interpolation import warn_if_interpolating
from ._threads import single_threaded_blas
from ._vd_selection import TWIN_CORRELATION
from .alpha_update import LOG_ALPHA_MAX, optimal_log_alpha_profile
from .relevance import (
    DEFAULT_LOG_ALPHA_THRESHOLD,
    EvidenceRuleWarning,
    check_evidence_kl,
    check_vd_threshold,
    evidence_penalty,
    log_alpha_threshold,
    profile_gain,
)

#: The largest ``max_log_alpha``: e^700 is still a finite float64 (e^710 is not).
MAX_LOG_ALPHA_LIMIT = 700.0
#: The evidence rule's second start: this many steps of the plain rule's search (on 1000 × 1000 the
#: plain search takes 261 steps and 1.1 s; see :meth:`VDRegression._evidence_search`).
PLAIN_START_STEPS = 5
#: Its third start: the plain search run on until β changes by less than BETA_SETTLED (relative) in a
#: step, at most PLAIN_SETTLE_STEPS steps.
PLAIN_SETTLE_STEPS = 200
BETA_SETTLED = 1e-3
#: ... made only where the plain fit's β after PLAIN_START_STEPS is over this many times the first
#: search's (from log α = 0).
SETTLE_BETA_RATIO = 2.0
#: An EvidenceRuleWarning when the plain fit's GCV error is this many times lower than the evidence fit's
#: (``python benchmarks/evidence_dense.py --warning``: at least 3.07 on the 42 of 96 dense-truth fits
#: where the evidence rule kept under half of the relevant features, at most 1.34 on the others; at most
#: 1.89 on 708 sparse, pure-noise and heavy-tailed fits with d ≤ 0.75 n, which the gate on β,
#: SETTLE_BETA_RATIO, now leaves unchecked), checked where d ≤ DENSE_CHECK_FEATURES_PER_ROW · n.
DENSE_GCV_RATIO = 2.5
DENSE_CHECK_FEATURES_PER_ROW = 0.75
#: ... and at least this many rows: below, the estimate favours the plain fit well short of d = n too
#: (at n ≤ 20 half the warnings on d = 0.75 n draws came where the evidence fit was the better one).
DENSE_CHECK_MIN_ROWS = 100


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
    They come from one pass over the rows, taken about the means of the first rows (so that centring
    them cancels no digits: a column with an offset of 10⁸ fits as well as a centred one), on every core.
    Features whose :math:`\log\alpha` reaches ``max_log_alpha`` (α = ∞) are pruned: θ = 0 exactly.

    **Relevance** (:mod:`pyro_vd.linear.relevance`). By default (``threshold="evidence"``) a feature stays
    in the model only while the ELBO it adds, :math:`\Delta_d = \max_\alpha q_d/(1+\alpha) -
    \mathrm{KL}(\alpha)`, exceeds :math:`\log d`, the log prior odds 1 : d against it: the α update
    sets α = ∞ otherwise (and a pruned feature comes back when its gain passes log d again). This is
    coordinate ascent on the ELBO of the model with an inclusion indicator per feature, and the relevant
    features are those left with a finite α (equivalently ``log_alpha_ <= threshold_``, the bound
    τ(d) of :func:`~pyro_vd.linear.relevance.evidence_log_alpha_threshold`). ``threshold="sparse_vd"``
    or a number fits the plain VD ELBO (a feature is pruned only when its optimum is α = ∞) and calls a
    feature relevant when ``log_alpha_ <= threshold`` (3 for Sparse VD): a test at a fixed level per
    feature, which keeps a fixed fraction of irrelevant features whatever N (and never a pruned one, at
    α = ∞). Constant columns carry nothing and get α = ∞, and d counts the features that vary (a
    constant column is no candidate).

    Parameters
    ----------
    fit_intercept : bool
        Fit an unpenalized intercept (by centering the statistics).
    kl_method : {"exact", "molchanov", "kingma"}
        The KL of the α updates.
    threshold : "evidence", "sparse_vd" or float
        The relevance rule: ``"evidence"`` (gain above log d, in the fit), ``"sparse_vd"`` (log α ≤ 3) or a
        log α bound (a finite number).
    max_iter : int
        Coordinate-ascent sweeps at most (1000: pruned features come back one per sweep, and the plain
        rule's fit of 1000 features takes about 300).
    tol : float
        Stop when θ changes by less than ``tol`` (relative) and log α by less than ``tol * 100``.
    max_log_alpha : float
        log α that stands for α = ∞, in (0, 700]. Optima beyond 35 (where the KL is below 1e-15) are
        reported as this value.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Posterior means θ.
    intercept_ : float
    log_alpha_ : ndarray of shape (n_features,)
        log α per feature (``max_log_alpha`` for pruned features).
    profile_log_alpha_ : ndarray of shape (n_features,)
        The log α each feature takes at its own optimum given the others,
        :math:`\arg\max_t q_d\sigma(-t) - \mathrm{KL}(t)`: ``log_alpha_`` for the features kept, and
        for a feature the evidence rule pruned the α it would have in the model (``max_log_alpha``
        where that optimum is α = ∞). How far a decision was from the rule's bound.
    noise_precision_ : float
        β.
    relevance_ : ndarray of bool, shape (n_features,)
    threshold_ : float
        The log α bound of the rule (τ(d) for ``"evidence"``, d the features that vary; 3 for
        ``"sparse_vd"``).
    elbo_ : float
        The final ELBO (up to the prior's constant; KL(α = ∞) = 0), without the prior-odds penalty.
    log_evidence_ : float
        The same number: the lower bound on the log evidence at the solution (for the ARD tables).
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        The column names of a data frame ``X`` (all strings), as scikit-learn: ``predict`` and
        ``partial_fit`` then refuse other names or another order. Absent when fitted on an array.
    """

    def __init__(
        self,
        *,
        fit_intercept=True,
        kl_method="exact",
        threshold="evidence",
        max_iter=1000,
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
        """
        Fit on all rows; returns ``self``. Refused data (a ValueError) leave a previous fit as it was.

        One pass over the rows gives the statistics (:func:`~pyro_vd.linear._gram.row_statistics`, on
        every core), the rest works on them alone. BLAS runs on one thread during the fit
        (:mod:`pyro_vd.linear._threads`): on few cores, OpenBLAS's own threads wait for each other and
        for any other work longer than they compute.
        """
        with single_threaded_blas():
            if is_dask(X):
                return dask_method(self, "fit", X, y)
            return self._update(X, y, reset=True)

    def partial_fit(self, X, y):
        """
        Add a chunk of rows to the sufficient statistics and refit; returns ``self``. The accumulated
        statistics are computed and checked first: a chunk that would make them overflow is refused with
        a ValueError and the estimator is left exactly as it was, so later chunks still work.
        """
        with single_threaded_blas():
            if is_dask(X):
                return dask_method(self, "partial_fit", X, y)
            return self._update(X, y, reset="_stats" not in vars(self))

    def _update(self, X, y, *, reset):
        X, names = validate_X(self, X, reset=reset, check_finite=False)
        y = check_y(y, X.shape[0])
        self._check_params()
        # a later chunk about the shifts of the first: its statistics add up without re-expressing them
        shift, y_shift = (None, None) if reset else _shifts(self._stats)
        return self._absorb(_chunk_statistics(X, y, shift=shift, y_shift=y_shift), X, names, reset=reset)

    def _absorb(self, stats, X, names, *, reset):
        """Fit to ``stats`` (added to the state's unless ``reset``) and commit only once it succeeded:
        a refused chunk leaves the state as it was."""
        if not reset:
            stats = _accumulate(self._stats, stats)
        fitted = self._solve(stats)
        self._stats = stats
        set_features(self, X, names)
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    def _check_params(self):
        check_kl_method(self.kl_method)
        check_bool(self.fit_intercept, "fit_intercept")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_float(self.tol, "tol")
        check_real(self.max_log_alpha, "max_log_alpha", low=0.0, high=MAX_LOG_ALPHA_LIMIT, low_open=True)
        check_vd_threshold(self.threshold)
        if self.threshold == "evidence":
            check_evidence_kl(self.kl_method)

    def _centered(self, s):
        r"""
        ``(n, x̄, ȳ, XᵀX, Xᵀy, yᵀy, rms, ratio)`` of the data as fitted: centred with an intercept
        (:math:`S_{xx} - s_xs_x^\top/n`, …: nothing cancels, the shifts being near the means), plain
        ones without; ``rms`` is y's root mean square as fitted (about ȳ with an intercept: an offset of
        y is the intercept's, not y's scale), or about 0 where y is constant up to rounding, for its
        units; ``ratio`` each column's root mean square as fitted relative to its plain one
        (:func:`~pyro_vd.linear._base.fitted_units`). A ValueError when the plain products overflow
        float64.
        """
        n = s["n"]
        shift, y_shift = _shifts(s)
        with np.errstate(over="ignore", invalid="ignore"):
            dx, dy = s["sx"] / n, s["sy"] / n  # x̄ − c, ȳ − c_y
            y_spread = max(s["yy"] - n * dy**2, 0.0)  # Σ (y − ȳ)²
            rms = float(np.hypot(y_shift + dy, np.sqrt(y_spread / n)))
            if self.fit_intercept and np.sqrt(y_spread / n) > CONSTANT_RATIO * rms:
                rms = float(np.sqrt(y_spread / n))
            if self.fit_intercept:
                x_mean, y_mean = shift + dx, y_shift + dy
                xx = s["xx"] - n * np.outer(dx, dx)
                xy = s["xy"] - n * dx * dy
                yy = y_spread
            else:
                x_mean, y_mean = np.zeros_like(s["sx"]), 0.0
                plain = _reshift(s, x_mean, 0.0)
                xx, xy, yy = plain["xx"], plain["xy"], max(plain["yy"], 0.0)
        for value, what in ((xx, "XᵀX"), (xy, "Xᵀy"), (yy, "yᵀy (Σ y²)"), (rms, "y's mean square")):
            if not np.isfinite(value).all():
                raise ValueError(f"{what} overflows float64 for this X and y; rescale them")
        spread = np.sqrt(np.clip(np.diag(xx), 0.0, None) / n)  # each column's as fitted
        with np.errstate(over="ignore", invalid="ignore"):
            ratio = spread / np.hypot(spread, x_mean) if self.fit_intercept else (spread > 0).astype(float)
        ratio = np.where(np.isfinite(ratio), ratio, 0.0)
        return n, x_mean, y_mean, xx, xy, yy, rms, ratio

    @torch.inference_mode()  # the α updates are torch functions of numpy arrays: no autograd bookkeeping
    def _solve(self, stats):
        """The fitted attributes for the statistics ``stats`` (a ValueError if they are not finite)."""
        n, x_mean, y_mean, xx, xy, yy, y_rms, ratio = self._centered(stats)
        diag = np.clip(np.diag(xx).copy(), 0.0, None)
        # constant columns (up to rounding, relative to each column's own size): no information, α = ∞.
        # Relative to the largest column's spread, a column in units 1e7 times smaller was dropped.
        usable = usable_columns(ratio) & (diag > 0)
        # Solve in columns scaled to Σ x² = 1: the ELBO is invariant to column scales (θ_d √S_dd and α_d
        # do not change), and XᵀX + diag κ, r_d² cannot overflow for any finite statistics.
        root = np.sqrt(np.where(usable, diag, 1.0))
        xx = xx / root[:, None] / root[None, :]
        # ... and y in units of its root mean square (a power of two): β, the floor below and q are O(1)
        # for y of any finite scale; β and the ELBO map back at the end.
        y_scale = float(power_of_two_scales(y_rms)) if y_rms > 0 else 1.0
        xy = xy / root / y_scale
        yy = yy / y_scale / y_scale  # (y_scale² underflows to 0 below 1e-162)
        y_energy = n * (y_rms / y_scale) ** 2  # yᵀy in these units
        diag = usable.astype(float)
        cap = float(self.max_log_alpha)
        # A floor on the residual energy, relative to the target's scale, keeps β finite for an exactly
        # fitted (e.g. constant) target, so that rounding noise in XᵀT is not mistaken for signal; an
        # all-zero target has no scale and is taken as of unit scale (β = 1e12, not ∞).
        energy_floor = 1e-12 * (y_energy if y_energy > 0 else n)
        # the log prior odds a feature's ELBO gain must pass to stay (or come back) in the model, over
        # the d features that vary
        d = count_candidates(usable)
        penalty = evidence_penalty(d) if self.threshold == "evidence" else 0.0  # 0 when d = 1
        problem = (xx, xy, yy, n, diag, usable, cap, energy_floor)
        start = np.where(usable, 0.0, cap)
        (log_alpha, beta, n_iter, converged, alpha_change), plain = self._evidence_search(
            problem, start, penalty
        )
        if plain is not None:
            self._check_dense(problem, log_alpha, plain)
        if not converged:
            warn_not_converged(self, n_iter, f"log α still moved by {alpha_change:.3g}")
        # θ for the final α (the loop's θ belongs to the α before its last update)
        scaled = self._theta(problem, log_alpha)
        theta = scaled / root
        fit = scaled @ xx @ scaled - 2.0 * scaled @ xy + yy
        kept = log_alpha < cap
        # each feature's profile optimum given the others (finite for a feature the evidence rule pruned)
        _, profile = self._profile(xx, xy, diag, scaled, beta, usable, cap)
        ridge = np.sum(np.exp(log_alpha[kept]) * scaled[kept] ** 2)
        # pruned features (α = ∞) have KL = 0, its limit (and Kingma's polynomial would overflow there)
        kl = float(kl_log_uniform(_tensor(log_alpha[kept]), self.kl_method).sum())
        # the ELBO of unit-scale y, minus N log c_y for the density of y in its own units
        elbo = 0.5 * n * np.log(beta / (2 * np.pi)) - 0.5 * beta * (fit + ridge) - kl - n * np.log(y_scale)
        # y's spread about its mean, with or without an intercept (see rvr's), from the shift-free sums
        spread = max(stats["yy"] - stats["sy"] ** 2 / n, 0.0) / y_scale / y_scale
        warn_if_interpolating(
            self,
            n=n,
            candidates=d,
            kept=int(kept.sum()),
            noise_variance=1.0 / beta,
            target_energy=spread if spread > 1e-12 * y_energy else 0.0,  # (y constant up to rounding)
        )
        with np.errstate(over="ignore"):
            theta, beta = theta * y_scale, np.float64(beta) / y_scale / y_scale
        fitted = {
            "coef_": theta,
            "intercept_": float(y_mean - x_mean @ theta) if self.fit_intercept else 0.0,
            "X_offset_": np.asarray(x_mean, dtype=float).copy(),
            "log_alpha_": log_alpha,
            "profile_log_alpha_": profile,
            "noise_precision_": float(beta),
            "n_iter_": n_iter,
            "elbo_": float(elbo),
            "log_evidence_": float(elbo),
        }
        bound = _log_alpha_threshold(self.threshold, d, self.kl_method)
        fitted["threshold_"] = bound
        fitted["_n_varying"] = d  # (what relevance(estimator, threshold="evidence") reads)
        # the evidence rule prunes in the fit: relevant = still in the model (log α ≤ τ(d) at convergence);
        # a weight at the cap is out of the model (θ = 0) whatever the threshold (at a threshold at or
        # above max_log_alpha every pruned feature read as relevant)
        fitted["relevance_"] = kept.copy() if self.threshold == "evidence" else kept & (log_alpha <= bound)
        bad = [name for name, value in fitted.items() if not np.isfinite(value).all()]
        if bad:
            raise ValueError(
                f"the fit is not finite ({', '.join(bad)}): the scales of X and y (y's root mean square "
                f"{y_scale:.3g}) are beyond float64 arithmetic for it (e.g. 1/σ² of a tiny y fitted "
                "exactly); rescale them"
            )
        return fitted

    def _evidence_search(self, problem, start, penalty):
        """
        The coordinate search of ``penalty`` (> 0: the evidence rule) from ``start`` and from up to two
        starts made by the plain rule's search; the fit highest in ELBO − penalty·|kept| of those that
        converged is kept (the first one's where none did). Returns :meth:`_search`'s tuple, and the
        settled plain fit's log α for :meth:`_check_dense` (None where it was not made, or was cut
        short by ``max_iter``).

        From log α = 0 the first steps' β comes from a fit shrunk by α = 1 throughout, too small when
        many features are relevant; each then adds less than the penalty and they are pruned one after
        another (120 relevant of 300, n = 400: 1 kept, test MSE 132 against 0.16 for the plain rule).
        Admitting the features with q_d > ½ at their profile optima at that β (a grow move) pruned them
        again: β must rise with them. So the search also starts from

        - the plain rule's search (every feature whose q_d passes ½ stays) after ``PLAIN_START_STEPS``
          steps: on n < d data its later steps overfit (β grows without bound), and this start found
          30 of 30 relevant features at n = 200, d = 400 where the settled one below kept 6 to 8;
        - the plain rule's search run on until its β settles (``BETA_SETTLED``, at most
          ``PLAIN_SETTLE_STEPS`` steps), where fewer features than rows are usable and the plain
          fit's β after its first steps is over ``SETTLE_BETA_RATIO`` times the first search's.
          After 5 plain steps β was still about half its settled value on dense truths, and from
          there the evidence search kept 0–5 of 40–120 relevant features (test MSE 17–223 against a
          noise variance of 0.01), while the settled plain fit alone was hundreds of nats higher in
          the penalized objective.

        The extra starts are also made when the first search did not converge (it can cycle where
        another converges: 31 nats higher on a correlated 100 × 50 draw).
        """
        best = self._search(problem, start, penalty)
        first_beta = best[1]
        plain_fit = None
        if penalty <= 0 or PLAIN_START_STEPS <= 0:
            return best, plain_fit
        n, usable = problem[3], problem[5]

        def score(log_alpha, beta):
            return self._penalized(problem, log_alpha, beta, penalty)

        plain, plain_beta, _, _, _ = self._search(problem, start, 0.0, max_steps=PLAIN_START_STEPS)
        for settled in (False, True):
            if settled:
                # (the plain fit's noise features, about a third of d < n, raise β by less than 1.5
                # times: beyond SETTLE_BETA_RATIO the first search leaves out what the plain one
                # explains; below it the search would cost up to PLAIN_SETTLE_STEPS steps for nothing.
                # Against the first search's β, not the second's: that one ran on from the plain
                # start and can pass its β while still far below the settled one, 49.8 against 30.2
                # with 1595 settled, keeping 25 of 30 relevant on a correlated draw where the third
                # start keeps all 30)
                if np.sum(usable) >= n or not plain_beta > SETTLE_BETA_RATIO * first_beta:
                    break
                plain, plain_beta, steps, settled_beta, _ = self._search(
                    problem, plain, 0.0, max_steps=PLAIN_SETTLE_STEPS, beta_tol=BETA_SETTLED
                )
                if settled_beta or steps == PLAIN_SETTLE_STEPS:  # (not cut short by max_iter)
                    plain_fit = plain
                # (searched from whatever its own score: the search prunes its noise features, log d
                # each; required to score higher, the settled fit 0.9 nats below the best fit so far
                # was passed over where the search from it rose 103 nats above, keeping all 150
                # relevant features against 2)
            other = self._search(problem, plain, penalty)
            if other[3]:
                ours, theirs = score(best[0], best[1]), score(other[0], other[1])
                # (the margin: where both reach one optimum, rounding must not pick between them)
                if not best[3] or theirs > ours + 1e-6 * max(1.0, abs(ours)):
                    best = other
        return best, plain_fit

    def _check_dense(self, problem, log_alpha, plain):
        """
        An :class:`~pyro_vd.linear.relevance.EvidenceRuleWarning` where the plain rule's settled fit
        (log α ``plain``) predicts far better than the evidence rule's (``log_alpha``) by generalized
        cross-validation (:func:`_gcv`): more than ``DENSE_GCV_RATIO`` times lower an estimated test
        error. Made where at most ``DENSE_CHECK_FEATURES_PER_ROW`` usable features per row and at least
        ``DENSE_CHECK_MIN_ROWS`` rows, and where the settled plain fit was made: nearer d = n the
        estimate favours the plain fit, whose features were chosen on the same rows (on 60 × 55 draws
        it warned in 8 of 72 fits, and in 3 of those the plain fit's test error was the higher).
        """
        n, usable, cap = problem[3], problem[5], problem[6]
        if n < DENSE_CHECK_MIN_ROWS or np.sum(usable) > DENSE_CHECK_FEATURES_PER_ROW * n:
            return
        ours, theirs = _gcv(problem, log_alpha, self.fit_intercept), _gcv(problem, plain, self.fit_intercept)
        if not ours > DENSE_GCV_RATIO * theirs:
            return
        kept, d = int(np.sum(log_alpha < cap)), int(np.sum(usable))  # constant columns not counted
        plain_kept = int(np.sum(plain <= DEFAULT_LOG_ALPHA_THRESHOLD))  # as threshold="sparse_vd" reads it
        warn_at_caller(
            f"VDRegression's evidence rule kept {kept} of {d} features, but the plain VD fit "
            f"(threshold='sparse_vd', {plain_kept} features) predicts better: its estimated test error "
            f"(generalized cross-validation) is {ours / theirs:.3g} times lower on these {n} rows. The "
            "evidence rule's prior odds of 1 : d per feature assume that few features are relevant; where "
            "many are, its optimum can keep almost none. Refit with "
            "threshold='sparse_vd' (or use RVR) if many features may be relevant",
            EvidenceRuleWarning,
        )

    def _search(self, problem, log_alpha, penalty, max_steps=None, beta_tol=None):
        """
        Coordinate steps of (θ, α) from ``log_alpha`` (scaled units) with the evidence ``penalty`` (0 for
        the plain rule), at most ``max_steps`` and ``max_iter``, and with ``beta_tol`` until β changes by
        at most that (relative) in a step: ``(log_alpha, beta, n_iter, converged, last change of
        log α)``. ``n_iter_`` reports the steps of the search whose fit is kept.
        """
        xx, xy, yy, n, diag, usable, cap, energy_floor = problem
        d = len(diag)
        theta = np.zeros(d)  # scaled units
        beta = n / max(yy, energy_floor)
        alpha_change = 0.0
        n_iter = 0
        converged = False
        steps = self.max_iter if max_steps is None else min(max_steps, self.max_iter)
        last_beta = beta
        for n_iter in range(1, steps + 1):
            active = usable & (log_alpha < cap)
            new_theta = self._theta(problem, log_alpha)
            # β update: N / (‖Xθ − t‖² + Σ κ θ²), from the statistics.
            fit = new_theta @ xx @ new_theta - 2.0 * new_theta @ xy + yy
            # (pruned features have θ = 0 and log α = cap: e^cap is never formed)
            ridge = np.sum(np.exp(log_alpha[active]) * diag[active] * new_theta[active] ** 2)
            beta = n / max(fit + ridge, energy_floor)
            # α updates, each jointly with its θ_d (the others fixed): argmax q_d/(1+α) − KL(α) with
            # q_d = β r_d² / (2 S_dd) (S_dd = 1 here), r_d = x_dᵀ(t − X_{−d} θ_{−d}). Exact coordinate
            # steps of the ELBO, and a feature with q_d < ½ goes to α = ∞ at once. A feature whose
            # gain at its optimum is below the penalty is pruned (and a pruned one returns above it).
            # A pruned feature comes back when its gain passes the penalty again (0 for the plain VD
            # rule: any q_d > ½). Keeping it out once pruned left the plain fit short of its optimum:
            # the first step, at θ = 0 with β from all of y, prunes features whose q_d passes ½ later.
            q, new_log_alpha = self._profile(xx, xy, diag, new_theta, beta, usable, cap)
            finite = new_log_alpha < cap
            gain = np.zeros(d)
            gain[finite] = profile_gain(q[finite], new_log_alpha[finite], self.kl_method)
            new_log_alpha = np.where(finite & (gain > penalty), new_log_alpha, cap)
            # pruned features come back one at a time, the largest gain first (as the fast RVM adds one
            # basis a step): re-admitting correlated features together, each useless given the other,
            # would prune them together again and cycle
            returning = np.flatnonzero(~active & (new_log_alpha < cap))
            if returning.size > 1:
                first = returning[np.argmax(gain[returning])]
                new_log_alpha[returning[returning != first]] = cap
            # θ's change relative to its own scale (scaled units: X columns and y of unit size)
            scale_theta = max(np.max(np.abs(new_theta)), np.finfo(float).tiny)
            with np.errstate(over="ignore"):  # (every feature pruned at once: θ's scale is tiny)
                theta_change = np.max(np.abs(new_theta - theta)) / scale_theta
            alpha_change = np.max(np.abs(new_log_alpha - log_alpha))
            theta, log_alpha = new_theta, new_log_alpha
            if beta_tol is not None and n_iter > 1 and abs(beta - last_beta) <= beta_tol * beta:
                converged = True  # (β settled: what a search with beta_tol is for)
                break
            last_beta = beta
            if theta_change < self.tol and alpha_change < 100 * self.tol:
                redundant = self._redundant(problem, log_alpha, beta, penalty)
                if redundant is None:
                    converged = True
                    break
                log_alpha = log_alpha.copy()
                log_alpha[redundant] = cap  # and the coordinate steps go on from there
        return log_alpha, beta, n_iter, converged, alpha_change

    def _penalized(self, problem, log_alpha, beta, penalty):
        """The evidence rule's objective: :meth:`_objective` − ``penalty`` per kept feature."""
        return self._objective(problem, log_alpha, beta) - penalty * np.sum(log_alpha < problem[6])

    @staticmethod
    def _theta(problem, log_alpha):
        r"""θ (scaled units) optimal for ``log_alpha``, :math:`(X^\top X + \operatorname{diag}\alpha)^{-1}
        X^\top t` over the kept features, 0 for the others (e^cap is never formed)."""
        xx, xy, _, _, diag, usable, cap, _ = problem
        active = usable & (log_alpha < cap)
        theta = np.zeros(len(diag))
        if active.any():
            kappa = np.exp(log_alpha[active]) * diag[active]
            theta[active] = _solve_spd(xx[np.ix_(active, active)] + np.diag(kappa), xy[active])
        return theta

    def _objective(self, problem, log_alpha, beta):
        """The ELBO (scaled units, up to a constant) at the θ optimal for ``log_alpha`` and ``beta``."""
        xx, xy, yy, n, diag, usable, cap, _ = problem
        active = usable & (log_alpha < cap)
        theta = self._theta(problem, log_alpha)
        kappa = np.exp(log_alpha[active]) * diag[active]
        fit = theta @ xx @ theta - 2.0 * theta @ xy + yy
        kl = float(kl_log_uniform(_tensor(log_alpha[active]), self.kl_method).sum())
        return 0.5 * n * np.log(beta) - 0.5 * beta * (fit + np.sum(kappa * theta[active] ** 2)) - kl

    def _redundant(self, problem, log_alpha, beta, penalty):
        r"""
        A kept feature whose removal raises the objective (the ELBO, less ``penalty`` per kept feature
        under the evidence rule), or None. The coordinate steps cannot leave a saddle where correlated
        features share a weight: with an exact copy of a column both copies kept half of it, each
        needed given the other, 4 nats below keeping one. Tried on the kept features that have a kept
        neighbour of correlation |r| ≥ 0.99 (scaled units: ``xx`` is their correlation where centred), each
        refitted with the others' α fixed (a lower bound on the gain), the largest gain first.
        """
        xx, cap = problem[0], problem[6]
        kept = np.flatnonzero(log_alpha < cap)
        if kept.size < 2:
            return None
        block = np.abs(xx[np.ix_(kept, kept)])
        np.fill_diagonal(block, 0.0)
        candidates = kept[block.max(1) >= TWIN_CORRELATION]
        if candidates.size == 0:
            return None

        def without(feature):
            reduced = log_alpha.copy()
            reduced[feature] = cap
            return self._penalized(problem, reduced, beta, penalty)

        now = self._penalized(problem, log_alpha, beta, penalty)
        gains = {c: without(c) - now for c in candidates}
        best = max(gains, key=gains.get)
        return best if gains[best] > 1e-9 * max(abs(now), 1.0) else None

    def _profile(self, xx, xy, diag, theta, beta, usable, cap):
        r"""Each usable feature's profile coefficient :math:`q_d = \beta r_d^2 / 2` (scaled units,
        :math:`S_{dd} = 1`; :math:`r_d = x_d^\top(t - X_{-d}\theta_{-d})`) and its optimal log α given
        the others, ``cap`` where that is α = ∞ or the feature is unusable."""
        residual_corr = xy - xx @ theta + diag * theta
        q = np.where(usable, 0.5 * beta * residual_corr**2, 0.0)
        return q, np.where(usable, optimal_log_alpha_profile(q, self.kl_method, max_log_alpha=cap), cap)

    # ---------------------------------------------------------------------------------- prediction
    def predict(self, X, return_std=False):
        """
        Predictive mean :math:`X\\theta + b`; with ``return_std`` also the predictive standard
        deviation :math:`\\sqrt{\\beta^{-1} + \\sum_d (x_d - \\bar x_d)^2 \\alpha_d\\theta_d^2}` (the
        intercept is fitted at the column means ``X_offset_``, so the weights' noise multiplies
        :math:`x - \\bar x`).
        """
        if is_dask(X):
            return dask_method(self, "predict", X, return_std)
        check_is_fitted(self)
        X, _ = validate_X(self, X, reset=False)
        mean = X @ self.coef_ + self.intercept_
        if not return_std:
            return mean
        kept = self.log_alpha_ < self.max_log_alpha
        # the terms x_d θ_d √α_d and β^{-1/2}, scaled by their largest before squaring (no overflow
        # for huge x with tiny θ or the converse)
        centred = X - getattr(self, "X_offset_", 0.0)  # the intercept is taken at the column means
        terms = np.abs(centred[:, kept] * self.coef_[kept]) * np.exp(0.5 * self.log_alpha_[kept])
        terms = np.column_stack([terms, np.full(len(X), self.noise_precision_**-0.5)])
        peak = terms.max(1, keepdims=True)
        return mean, peak[:, 0] * np.sqrt(((terms / peak) ** 2).sum(1))


def _gcv(problem, log_alpha, intercept):
    r"""
    The generalized cross-validation estimate of the test error of the fit at ``log_alpha`` (scaled
    units): :math:`\frac{\mathrm{RSS}/n}{(1 - \mathrm{df}/n)^2}` with θ the posterior mean,
    :math:`\mathrm{df} = \operatorname{tr}\big((S_A + \operatorname{diag}\kappa)^{-1} S_A\big)` over the
    kept features A (+ 1 for the intercept), ``inf`` where df ≥ n.
    """
    xx, xy, yy, n, diag, usable, cap, energy_floor = problem
    theta = VDRegression._theta(problem, log_alpha)
    rss = max(theta @ xx @ theta - 2.0 * theta @ xy + yy, energy_floor)
    active = usable & (log_alpha < cap)
    df = 1.0 if intercept else 0.0
    if active.any():
        block = xx[np.ix_(active, active)]
        df += float(np.trace(_solve_spd(block + np.diag(np.exp(log_alpha[active]) * diag[active]), block)))
    return rss / n / (1.0 - df / n) ** 2 if df < n else np.inf


_STATISTICS = {"sx": "column sums of X", "xx": "XᵀX", "sy": "sum of y", "xy": "Xᵀy", "yy": "yᵀy (Σ y²)"}


def _chunk_statistics(X, y, *, shift=None, y_shift=None):
    """
    One chunk's sufficient statistics about the shifts c, c_y (:func:`~pyro_vd.linear._gram.row_statistics`:
    Σ(x − c)(x − c)ᵀ, Σ(x − c), Σ(x − c)(y − c_y), Σ(y − c_y), Σ(y − c_y)² and N, from one pass over
    the rows; by default c, c_y are the means of the first rows), or a ValueError naming what is not
    finite.
    """
    stats = row_statistics(X, y, shift=shift, y_shift=y_shift)
    # NaN/inf in X, or (x − c)² overflows: sums of a NaN or inf are not finite, so finite sums prove X
    # finite (no isfinite pass over X)
    check_finite_statistics(X, stats["sx"], stats["xx"])
    if not np.isfinite(stats["yy"]):
        raise ValueError(
            f"y² overflows float64 (max |y| = {np.abs(y).max():.3g}): y has values so large that "
            "their squares are infinite; rescale y"
        )
    for key in ("sy", "xy"):
        if not np.isfinite(stats[key]).all():
            raise ValueError(f"{_STATISTICS[key]} overflows float64 for this X and y; rescale them")
    return stats


def _shifts(stats):
    """(c, c_y) of ``stats`` (0 for statistics saved before they were shifted)."""
    return stats.get("shift", np.zeros_like(stats["sx"])), stats.get("y_shift", 0.0)


def _reshift(stats, shift, y_shift):
    r"""
    ``stats`` about other shifts c', c'_y: with δ = c − c', :math:`x - c' = (x - c) + δ`, so
    :math:`S'_{xx} = S_{xx} + s_xδ^\top + δs_x^\top + nδδ^\top`, :math:`s'_x = s_x + nδ` and the same
    for the y terms. The shifts of two chunks are both near the data (means of their first rows), so δ
    is small and nothing cancels.
    """
    own, own_y = _shifts(stats)
    if np.array_equal(own, shift) and own_y == y_shift:
        return stats
    n, sx, sy = stats["n"], stats["sx"], stats["sy"]
    delta, delta_y = own - shift, own_y - y_shift
    return {
        "n": n,
        "shift": shift,
        "y_shift": y_shift,
        "sx": sx + n * delta,
        "xx": stats["xx"] + np.outer(sx, delta) + np.outer(delta, sx) + n * np.outer(delta, delta),
        "sy": sy + n * delta_y,
        "xy": stats["xy"] + sx * delta_y + delta * sy + n * delta * delta_y,
        "yy": stats["yy"] + 2.0 * delta_y * sy + n * delta_y**2,
    }


def _accumulate(total, chunk):
    """New totals about the shifts of ``total`` (``total`` untouched), or a ValueError when one of them
    overflows."""
    shift, y_shift = _shifts(total)
    with np.errstate(over="ignore", invalid="ignore"):
        chunk = _reshift(chunk, shift, y_shift)
        new = {key: total[key] + chunk[key] for key in ("n", *_STATISTICS)}
    for key, what in _STATISTICS.items():
        if not np.isfinite(new[key]).all():
            raise ValueError(
                f"the accumulated {what} overflows float64 with this chunk ({new['n']} rows in all); the "
                "chunk was refused and the fit is unchanged: rescale X and y"
            )
    new["shift"], new["y_shift"] = shift, y_shift
    return new


@functools.lru_cache(maxsize=64)
def _log_alpha_threshold(threshold, n_features, kl_method):
    """:func:`~pyro_vd.linear.relevance.log_alpha_threshold`, remembered: τ(d) is a root search of its own
    (as long as one α update of every feature), the same for every fit with d features."""
    return log_alpha_threshold(threshold, n_features, kl_method)


def _tensor(array):
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
