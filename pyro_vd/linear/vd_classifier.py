r"""Variational dropout for logistic regression, with Gauss–Hermite quadrature."""

import math

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

from .._warnings import warn_at_caller
from ..distributions.kl_log_uniform import check_kl_method, kl_log_uniform_additive
from ._base import check_positive_float, check_positive_int, check_random_state, count_candidates
from ._classifier import CentredUnits, LinearClassifierBase
from ._convergence import warn_not_converged
from ._cross_validation import FOLDS, cross_validated_log_loss
from ._rows import InMemoryRows
from ._vd_newton import fit_log_alpha, max_block_rows, newton_fit
from ._vd_selection import evidence_fit
from .relevance import (
    DEFAULT_LOG_ALPHA_THRESHOLD,
    EvidenceRuleWarning,
    check_evidence_kl,
    check_vd_threshold,
    log_alpha_threshold,
)

SOLVERS = ("lbfgs", "newton")
#: More Gauss–Hermite points than this buy nothing (and cost n_samples × n_quadrature memory); one point
#: is the margin's mean alone: the weights' noise drops out of the likelihood, and every α runs off to ∞
#: while the means stay (no feature "relevant", yet all of them predicting).
MIN_QUADRATURE, MAX_QUADRATURE = 2, 1000
#: An EvidenceRuleWarning where the plain fit's cross-validated log loss is this many times lower than
#: the evidence fit's, checked where the features left out carry signal together (a z-score above
#: DENSE_SCORE_Z), with at least DENSE_CHECK_MIN_ROWS rows and at most DENSE_CHECK_FEATURES_PER_ROW
#: usable features a row (``python benchmarks/evidence_dense_classifier.py``: the warned dense fits'
#: ratios were 1.22 and up; on the seed's generator at most 1.06; on a review's weak signals, 100–200
#: rows, up to 1.18, and at 1.12–1.14 where the plain fit's test loss was the higher. At 150 features on
#: 300 rows an estimate favoured the plain fit where its test loss was the higher in 2 of 6 draws.)
DENSE_CV_RATIO = 1.2
DENSE_SCORE_Z = 3.0
#: The cross-validation's refits stop at this tolerance at the finest (nats per row and step): at 1e-8
#: their features creeping to α = ∞ took a fit of 5000 × 200 from 1.1 s to 14.1 s, at 1e-6 to 7.4 s,
#: with cross-validated losses within 1.3 % of those at 1e-8.
CV_TOL = 1e-6
DENSE_CHECK_MIN_ROWS = 100
DENSE_CHECK_FEATURES_PER_ROW = 0.25


def check_n_quadrature(n_quadrature):
    """``n_quadrature`` if it is an integer in [MIN_QUADRATURE, MAX_QUADRATURE], else a ValueError."""
    check_positive_int(n_quadrature, "n_quadrature")
    if not MIN_QUADRATURE <= n_quadrature <= MAX_QUADRATURE:
        raise ValueError(
            f"n_quadrature must be in [{MIN_QUADRATURE}, {MAX_QUADRATURE}] (one point drops the weights' "
            f"noise from the likelihood); got {n_quadrature!r}"
        )
    return n_quadrature


def gauss_hermite(n_points):
    r"""
    Nodes :math:`y_k` and weights :math:`w_k` with
    :math:`\int f(y)\mathcal{N}(y|0,1)dy \approx \sum_k w_k f(y_k)`: the probabilists' Hermite rule of
    :func:`scipy.special.roots_hermitenorm`, finite for any number of points (numpy's ``hermgauss``
    overflows to NaN weights beyond about 370).
    """
    nodes, weights = scipy.special.roots_hermitenorm(n_points)
    return torch.as_tensor(nodes), torch.as_tensor(weights / np.sqrt(2.0 * np.pi))


def log_predictive_scale2(X, log_sigma2):
    r""":math:`\log s_n^2 = \log\sum_d x_{nd}^2\sigma_d^2` by ``logsumexp`` (−inf when every term is 0): no
    overflow for huge x or σ², no underflow to 0 for tiny ones."""
    X = torch.tensor(np.asarray(X))  # a copy: X may be read-only (a data frame's values, a memmap)
    return torch.logsumexp(2.0 * X.abs().log() + torch.as_tensor(log_sigma2), dim=-1)


def expected_log_sigmoid(m, s, nodes, weights):
    r""":math:`\mathbb{E}_{y\sim\mathcal{N}(0,1)} \log\sigma(m + s y)` by quadrature, elementwise."""
    return (F.logsigmoid(m[..., None] + s[..., None] * nodes) * weights).sum(-1)


def expected_sigmoid(m, s, nodes, weights):
    r""":math:`\mathbb{E}_{y\sim\mathcal{N}(0,1)} \sigma(m + s y)`: the predictive probability."""
    return (torch.sigmoid(m[..., None] + s[..., None] * nodes) * weights).sum(-1)


def predictive_log_odds(m, s, nodes, weights):
    r""":math:`\log p - \log(1 - p)` of the predictive :math:`p = \mathbb{E}\,\sigma(m + s y)`, each
    term a ``logsumexp`` over the quadrature points: finite and increasing in m where p rounds to 1 (the
    log of rounded probabilities jumped from 36 to 690.8 and tied every row beyond)."""
    z = m[..., None] + s[..., None] * nodes
    log_weights = weights.log()
    return torch.logsumexp(F.logsigmoid(z) + log_weights, -1) - torch.logsumexp(
        F.logsigmoid(-z) + log_weights, -1
    )


class QuadraturePredictive:
    r"""The predictive probability and log-odds of a binary fit whose margin is Gaussian given the row,
    :math:`\mathcal{N}(m, s^2)` (``_binary_predictive``), by ``n_quadrature``-point Gauss–Hermite
    quadrature (:class:`VDClassifier`, :class:`~pyro_vd.linear.GKLClassifier`)."""

    def _binary_proba(self, X, fit):
        return expected_sigmoid(*self._binary_predictive(X, fit), *gauss_hermite(self.n_quadrature)).numpy()

    def _binary_log_odds(self, X, fit):
        return predictive_log_odds(
            *self._binary_predictive(X, fit), *gauss_hermite(self.n_quadrature)
        ).numpy()


class VDClassifier(QuadraturePredictive, LinearClassifierBase):
    r"""
    Variational dropout for logistic regression (the seed's VD-RVC). Model:
    :math:`p(t_n = \pm1 \mid x_n, w) = \sigma(t_n (w^\top x_n + b))`, prior
    :math:`p(\log|w_d|) = \text{const}`, posterior
    :math:`q(w_d) = \mathcal{N}(\theta_d, \alpha_d\theta_d^2)` (additive parameters
    :math:`\theta, \log\sigma^2`; the intercept b is a point estimate). With
    :math:`m_n = t_n(x_n^\top\theta + b)` and :math:`s_n^2 = \sum_d x_{nd}^2\,\sigma_d^2`,

    .. math::

        \mathcal{L} = \sum_n \int \log\sigma(s_n y + m_n)\,\mathcal{N}(y\mid 0, 1)\,dy
        - \sum_d \mathrm{KL}(\alpha_d),

    each one-dimensional integral by ``n_quadrature``-point Gauss–Hermite quadrature
    (``numpy.polynomial.hermite``), maximized over (θ, log σ², b) in float64 — deterministic, no
    sampling — by ``solver``:

    * ``"newton"`` (the default): damped Newton steps with the quadrature objective's exact gradient and
      Hessian (:mod:`pyro_vd.linear._vd_newton`), run until a step raises the ELBO by less than ``tol``
      nats per data point (a ``ConvergenceWarning`` at ``max_iter``). A feature whose log α passes 40
      (KL below 1e-17 nats) is removed (θ = σ = 0, log α = ∞), as RVM solvers remove α = ∞. Each step is
      a few sums over the rows, taken in cache-sized blocks on every core, so a Dask array fits too
      (:mod:`pyro_vd.linear.dask`).
    * ``"lbfgs"``: torch's L-BFGS with a strong Wolfe line search, at most ``max_iter`` iterations, for
      the plain rules only. It nearly always stops at that cap with the ELBO still rising (a
      ``ConvergenceWarning``): 0.3–1.3 nats short on 100 000 × 100 after 44–47 s at 500 iterations.

    **Relevance** (``threshold``, :mod:`pyro_vd.linear.relevance`). By default (``"evidence"``) a feature
    is in the model only when the ELBO it adds exceeds log d, the log prior odds 1 : d against it, as in
    :class:`VDRegression`: the fit maximizes :math:`F(A) = \mathcal{L}^*(A) - |A|\log d` over sets A of
    features (:math:`\mathcal{L}^*(A)` the ELBO's optimum over A, by Newton), by the search of
    :mod:`pyro_vd.linear._vd_selection` (from the intercept alone: features admitted on their score and
    removed when their log α passes τ(d), a move admitting every promising feature at once, and exact
    refits near the bound, the last two kept only when F rises by more than ``tol`` × n_samples nats).
    The search is local: features that only matter as a difference (each useless alone) are missed, and
    on strongly correlated columns a single toggle it does not try may still raise F (5 of 110 small
    ρ = 0.9 draws, by 0.07–1.8 nats). ``relevance_`` is the features in the model (their log α is at
    most τ(d) but for the exact moves' decisions, up to ``BORDER`` above it);
    the others have θ = σ = 0 and ``log_alpha_`` = ∞. ``"sparse_vd"`` (log α ≤ 3) or a number instead
    fits every feature (the plain ELBO's optimum) and reads ``log α <= threshold`` from it. On the seed's
    1000 × 1000 table (``pyro-vd ard-table``) the evidence fit keeps the 7 relevant features RVC finds
    and none of the 990 irrelevant ones, at test accuracy 0.789 (the oracle's 0.791) in about 3 s; the
    plain optimum takes 62 s (about 255 Newton steps, each a 2001 × 2001 system, as hundreds of features
    creep towards α = ∞), keeps 195 features at log α ≤ 3 and predicts at 0.725: at N = D it overfits.
    On 100 000 × 100 the evidence fit takes about RVC's time (``benchmarks/classifier_speed.py``), the
    plain one 5–6 s. Across seeds, correlated features and sizes:
    ``python benchmarks/relevance_rule.py --classifier``. With more than two classes each one-vs-rest
    model selects its own features, and a feature is relevant when any keeps it. Under softmax labels a
    feature whose class weights nearly agree (the softmax ignores their common part) is weak in every
    binary model, and the evidence rule drops it where log α ≤ 3 keeps it (600 × 20, 3 classes, seeds
    0–5: 3 of 24 features with |w| ≥ 1.5 dropped, and 0 of 96 irrelevant kept, against 62 for
    log α ≤ 3). Kingma's KL has no evidence rule (it falls to −∞ as α grows): a ValueError.
    Where many features are relevant (a dense truth) the rule's prior odds 1 : d per feature are wrong,
    and its optimum can keep few of them (22 of 40 relevant on 500 × 50, at a test log loss of 0.41
    against the plain fit's 0.31). Where the features it left out carry signal together (their
    :math:`2q_d`, each about :math:`\chi^2_1` when irrelevant, sum to a z-score above 3) on at least 100
    rows and at most d = n/4 usable features, the fit makes the plain fit as well and warns
    (:class:`~pyro_vd.linear.EvidenceRuleWarning`) when that fit's 5-fold cross-validated log loss
    (:mod:`pyro_vd.linear._cross_validation`) is more than 1.2 times lower: refit with
    ``threshold="sparse_vd"``.

    ``predict_proba`` is the predictive :math:`\int\sigma(s y + m)\mathcal{N}(y)dy`.

    More than two classes: one binary model per class against the rest (one-vs-rest), probabilities
    normalized; ``coef_`` and ``log_alpha_`` then have one row per class, and a feature is relevant
    when it is relevant for any class.

    Parameters
    ----------
    kl_method : {"exact", "molchanov", "kingma"}
    n_quadrature : int
        Gauss–Hermite points, 2 to 1000.
    solver : {"newton", "lbfgs"}
    max_iter : int
        L-BFGS iterations, or Newton steps (all the evidence search's fits together: on 1000 × 1000 with
        AR(1) columns at ρ = 0.9 it takes 250–310, at most 620 before the search's grow move ran once).
    tol : float
        Newton's convergence test: a step raises the ELBO by less than ``tol`` nats per data point, and
        so would the full Newton step (the L-BFGS solver keeps torch's own tests); for the evidence
        search also the margin, ``tol`` × n_samples nats, by which a move must raise F (a large ``tol``
        changes which moves count).
    threshold : "evidence", "sparse_vd" or float
        The relevance rule (:mod:`pyro_vd.linear.relevance`): ``"evidence"`` (the default; gain above
        log d, in the fit, with ``solver="newton"`` only), ``"sparse_vd"`` (log α ≤ 3) or
        ``log α <= threshold`` for a number, read from the plain fit.
    random_state : int, None, numpy.random.RandomState or numpy.random.Generator
        Seed of the plain fit's initialization (θ ~ N(0, 0.01²), log σ² = −10, for standardized columns);
        None draws one from numpy's global generator (scikit-learn's convention). The evidence fit starts
        from the intercept alone and draws nothing.

    The fit runs on centred columns of unit root mean square (a power of two per column and the column
    means, :class:`~pyro_vd.linear._classifier.CentredUnits`, so the map back is exact:
    :math:`b = b' - \sum_d\theta_d\bar x_d`); the log-uniform prior is scale invariant, so the scale
    changes nothing but the rounding, and columns of any finite scale (1e-150 or 1e150) fit alike. The
    intercept is a point estimate with no prior, taken at the column means: q's noise
    :math:`s_n^2` then counts the centred :math:`x_{nd}` only, and the fit is the same for X and
    X + shift up to the optimizer's stop. Taken at x = 0 (before issue 13) a column offset entered
    :math:`s_n^2` as noise and relevant features were pruned (at X + 30 on 150 × 20, all of them).

    Attributes
    ----------
    coef_, intercept_, log_alpha_, relevance_, threshold_ (the log α bound used), profile_log_alpha_
    (each feature's optimal log α given the others: log_alpha_ for the features in the model; for a feature
    the evidence rule left out, the optimum of its Gaussian view, 60 where that is α = ∞), n_iter_,
    n_features_in_, classes_, feature_names_in_
    (fitted on a data frame with string column names), log_evidence_: the ELBO :math:`\mathcal{L}` at
    the solution (the KL normalized to 0 as α → ∞: the improper prior's constant dropped), a float, or
    one per class for one-vs-rest; elbo_: the same as a list per binary model
    """

    def __init__(
        self,
        *,
        kl_method="exact",
        n_quadrature=32,
        solver="newton",
        max_iter=1000,
        tol=1e-8,
        threshold="evidence",
        random_state=0,
    ):
        self.kl_method = kl_method
        self.n_quadrature = n_quadrature
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.threshold = threshold
        self.random_state = random_state

    def _check_params(self):
        check_kl_method(self.kl_method)
        check_n_quadrature(self.n_quadrature)
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}; got {self.solver!r}")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_float(self.tol, "tol")
        check_vd_threshold(self.threshold)
        if self.threshold == "evidence":
            check_evidence_kl(self.kl_method)
        if self.threshold == "evidence" and self.solver != "newton":
            raise ValueError(
                "threshold='evidence' selects the features inside the fit, which needs solver='newton'; "
                f"got solver={self.solver!r} (for L-BFGS pass threshold='sparse_vd' or a number)"
            )
        self._seed = check_random_state(self.random_state)

    def _set_relevance(self):
        self.log_alpha_ = self._stacked("log_alpha")
        self.profile_log_alpha_ = self._stacked("profile_log_alpha")
        # τ(d) for the d features that vary (what relevance(estimator, threshold="evidence") reads too)
        self._n_varying = count_candidates(self._fits[0]["units"].usable)
        self.threshold_ = log_alpha_threshold(self.threshold, self._n_varying, self.kl_method)
        self.relevance_ = self._kept_by_class().any(0)
        self.elbo_ = [f["elbo"] for f in self._fits]
        self.log_evidence_ = self._stacked("elbo") if len(self._fits) == 1 else np.array(self.elbo_)

    def _kept_by_class(self):
        """The features each binary fit keeps, shape (binary fits, n_features): the evidence rule selects
        in the fit (still in the model: log α ≤ τ(d) there, but for the exact moves near the bound), the
        others by log α ≤ ``threshold_``."""
        log_alpha = np.atleast_2d(self.log_alpha_)
        kept = np.isfinite(log_alpha)  # (a weight at α = ∞ is out, whatever the threshold)
        return kept if self.threshold == "evidence" else kept & (log_alpha <= self.threshold_)

    def _fit_binary(self, X, t):
        units = CentredUnits(X)
        X = torch.as_tensor(units.transform(X))  # centred unit-scale columns (a new array, never X itself)
        t = torch.as_tensor(2.0 * t - 1.0)  # {0, 1} → {−1, +1}
        theta, log_sigma2 = self._start(units.unit_rms)
        if self.solver == "newton":
            rows = InMemoryRows(X.numpy(), t.numpy(), max_block_rows=max_block_rows(self.n_quadrature))
            return self._finish(units, *self._newton(rows, theta, log_sigma2, units.usable))
        theta.requires_grad_()
        log_sigma2.requires_grad_()
        bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
        nodes, weights = gauss_hermite(self.n_quadrature)
        X2 = X * X
        optimizer = torch.optim.LBFGS(
            [theta, log_sigma2, bias],
            lr=1.0,
            max_iter=self.max_iter,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            history_size=20,
        )
        evaluations = [0]

        def negative_elbo():
            m = t * (X @ theta + bias)
            s = (X2 @ log_sigma2.exp()).clamp_min(1e-300).sqrt()
            loss = -expected_log_sigmoid(m, s, nodes, weights).sum()
            return loss + kl_log_uniform_additive(theta, log_sigma2, self.kl_method).sum()

        def closure():
            optimizer.zero_grad()
            loss = negative_elbo()
            loss.backward()
            evaluations[0] += 1
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            elbo = -float(negative_elbo())
        state = optimizer.state[optimizer._params[0]]
        n_iter = state.get("n_iter", evaluations[0])
        max_eval = optimizer.param_groups[0]["max_eval"]
        if n_iter >= self.max_iter or state.get("func_evals", evaluations[0]) >= max_eval:
            # torch stops at its caps without a word; its tolerances were not met
            warn_not_converged(
                self, self.max_iter, "L-BFGS's tolerances were not met (the ELBO may still rise)"
            )
        return self._finish(units, theta.detach(), log_sigma2.detach(), float(bias.detach()), elbo, n_iter)

    def _start(self, rms):
        """
        θ and log σ² to start from, for columns of root mean square ``rms`` in the fit's units: in units of
        standardized columns (the powers of two standardize X only to within √2), θ_d ~ N(0, 0.01²) / rms_d
        and σ_d² = e⁻¹⁰ / rms_d², covariant under X·c.
        """
        generator = torch.Generator().manual_seed(self._seed)
        rms = torch.as_tensor(rms)
        rms = torch.where(rms > 0, rms, torch.ones_like(rms))
        theta = 0.01 * torch.randn(len(rms), generator=generator, dtype=torch.float64) / rms
        return theta, -10.0 - 2.0 * rms.log()

    def _newton(self, rows, theta, log_sigma2, usable):
        """Newton's fit over ``rows`` (in memory, or a Dask array's) from (θ, log σ², b = 0); under the
        evidence rule the search of :mod:`pyro_vd.linear._vd_selection` from the intercept alone
        (``usable``: the columns that vary, for the dense check's message)."""
        nodes, weights = (a.numpy() for a in gauss_hermite(self.n_quadrature))
        if self.threshold == "evidence":
            *fit, profile, q = evidence_fit(
                rows,
                len(theta),
                nodes,
                weights,
                self.kl_method,
                self.max_iter,
                self.tol,
                candidates=count_candidates(usable),
            )
            if fit[-1]:  # converged
                self._check_dense(rows, fit, q, theta, log_sigma2, nodes, weights, usable)
        else:
            profile = None
            fit = self._plain_fit(rows, theta, log_sigma2, nodes, weights)
        theta, log_sigma2, bias, elbo, n_iter, converged = fit
        if not converged:
            detail = (
                "the feature search had not ended (the best model fitted so far is returned)"
                if profile is not None
                else "the ELBO still rose"
            )
            warn_not_converged(self, self.max_iter, detail)
        return torch.as_tensor(theta), torch.as_tensor(log_sigma2), bias, elbo, n_iter, profile

    def _plain_fit(self, rows, theta, log_sigma2, nodes, weights):
        """Newton's fit of every feature from (θ, log σ², b = 0): the plain rules' fit."""
        theta, log_sigma2 = theta.detach().numpy(), log_sigma2.detach().numpy()
        return newton_fit(rows, theta, log_sigma2, nodes, weights, self.kl_method, self.max_iter, self.tol)

    def _check_dense(self, rows, fit, q, theta, log_sigma2, nodes, weights, usable):
        r"""
        An :class:`~pyro_vd.linear.relevance.EvidenceRuleWarning` where the plain fit (every feature,
        from (``theta``, ``log_sigma2``) as ``threshold="sparse_vd"`` fits) predicts far better than the
        evidence rule's ``fit``: a cross-validated log loss (:mod:`pyro_vd.linear._cross_validation`)
        more than ``DENSE_CV_RATIO`` times lower. The plain fit (as long as the evidence fit, or longer)
        and the refits are made only where the features left out carry signal together: their profile
        coefficients ``q`` (:math:`2q_d \approx \chi^2_1` for an irrelevant one) sum to
        :math:`z = (\sum 2q_d - m)/\sqrt{2m} > ` ``DENSE_SCORE_Z`` over the m left out, and where at
        least ``DENSE_CHECK_MIN_ROWS`` rows and at most ``DENSE_CHECK_FEATURES_PER_ROW`` usable features a
        row. Their Newton steps do not count in ``n_iter_``. The message counts the ``usable`` features
        (constant columns left out).
        """
        n = rows.n_samples
        kept = np.isfinite(fit[1])
        out = ~kept & (q > 0.0)  # (a constant column has no score: q = 0)
        m = int(out.sum())
        if m == 0 or n < DENSE_CHECK_MIN_ROWS or m + kept.sum() > DENSE_CHECK_FEATURES_PER_ROW * n:
            return
        if not (2.0 * q[out].sum() - m) / math.sqrt(2.0 * m) > DENSE_SCORE_Z:
            return
        plain = self._plain_fit(rows, theta, log_sigma2, nodes, weights)
        if not plain[-1]:  # cut short by max_iter: no fair comparison
            return
        losses = cross_validated_log_loss(
            rows, [fit[:3], plain[:3]], nodes, weights, self.kl_method, self.max_iter, max(self.tol, CV_TOL)
        )
        if losses is None or not losses[0] > DENSE_CV_RATIO * losses[1]:
            return
        ours, theirs = losses
        # as threshold="sparse_vd" reads it
        plain_kept = int(np.sum(fit_log_alpha(plain[0], plain[1]) <= DEFAULT_LOG_ALPHA_THRESHOLD))
        d = int(np.sum(usable))  # constant columns not counted
        warn_at_caller(
            f"VDClassifier's evidence rule kept {int(kept.sum())} of {d} features, but the plain VD "
            f"fit (threshold='sparse_vd', {plain_kept} features) predicts better: its cross-validated log "
            f"loss is {theirs:.3g} nats per row against {ours:.3g} on these {n} rows ({FOLDS} folds). The "
            "evidence rule's prior odds of 1 : d per feature assume that few features are relevant; where "
            "many are, its optimum can keep few of them. Refit with threshold='sparse_vd' (or use RVC) if "
            "many features may be relevant",
            EvidenceRuleWarning,
        )

    @staticmethod
    def _finish(units, theta, log_sigma2, bias_centred, elbo, n_iter, profile=None):
        # a constant column is out of the model (θ = 0, α = ∞): L-BFGS left it near its start, at a large
        # but finite log α that a large threshold read as relevant
        theta = torch.where(torch.as_tensor(units.usable), theta, torch.zeros_like(theta))
        with torch.no_grad():
            log_alpha = log_sigma2 - theta.square().clamp_min(torch.finfo(torch.float64).tiny).log()
            log_alpha = torch.where(theta == 0, torch.full_like(log_alpha, math.inf), log_alpha)
        if profile is None:  # the plain fit: every feature at its own optimum
            profile = log_alpha.numpy().copy()
        # Back to the units and origin of X: θ_d / (c_d f_d), σ_d² / (c_d f_d)² (α is scale free; c_d and
        # f_d are powers of two), b = b' − Σ θ_d o_d / f_d (the intercept of the centred columns is b').
        theta_centred = theta.numpy().copy()
        coef = units.coef(theta_centred)
        intercept = units.intercept(theta_centred, bias_centred) if np.isfinite(coef).all() else np.nan
        if not (np.isfinite(coef).all() and np.isfinite(intercept)):
            raise ValueError(
                "the fit is not finite: the classes are separated so sharply for the scale of X that the "
                "weights overflow float64; rescale X"
            )
        log_sigma2_centred = log_sigma2.numpy().copy()
        return {
            "coef": coef,
            "log_alpha": log_alpha.numpy().copy(),
            "profile_log_alpha": np.asarray(profile, dtype=np.float64),
            "intercept": intercept,
            "units": units,
            "coef_centred": theta_centred,
            "intercept_centred": bias_centred,
            "log_sigma2_centred": log_sigma2_centred,
            "log_sigma2": log_sigma2_centred - 2.0 * (np.log(units.fine) + np.log(units.coarse)),
            "elbo": elbo,
            "n_iter": n_iter,
        }

    def _binary_predictive(self, X, fit):
        """The predictive margin's mean m and standard deviation s of each row."""
        Z = fit["units"].transform(X)
        m = torch.as_tensor(Z @ fit["coef_centred"] + fit["intercept_centred"])
        return m, log_predictive_scale2(Z, fit["log_sigma2_centred"]).mul(0.5).exp()
