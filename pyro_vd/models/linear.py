"""Linear and logistic regression as Pyro models with log-uniform priors (the linear issue's card)."""

import numbers

import torch
from torch import nn

from .._warnings import warn_at_caller
from .vd_model import VDModel

#: The linear models' start of log α: dense (every feature in, α too small to shrink θ or to add noise
#: that matters), 5.5–6 units below the evidence rule's bound τ(d) for d from 20 to 1000.
LINEAR_INIT_LOG_ALPHA = -8.0

#: The linear models' start of θ: ``"near_zero"``, θ ~ N(0, (10⁻³)²) (the weight noise αθ² is then
#: negligible and the data's first gradient on θ has one sign) but not 0: θ = 0 is a point mass, where
#: an ELBO that samples w (Pyro's ``Trace_ELBO``, ``JitTrace_ELBO``, ``TraceGraph_ELBO``) cannot
#: differentiate log q(w) or the log-uniform log p(w), which gave NaN from the first step; and random,
#: because Adam's first step from a constant c is ± its learning rate, which put θ on 0 where the two
#: were equal.
LINEAR_INIT_THETA = "near_zero"

#: What :class:`~pyro_vd.guides.AutoVariationalDropout` uses for a linear model's settings left at None
#: (:func:`linear_guide_defaults`). A linear model is not a deep net:
#:
#: * the "shrinkage" parameterization θ = φ / (1 + α) keeps φ's optimum fixed while α moves (the
#:   optimal θ given α is r / (S (1 + α)) for a linear model);
#: * the posterior is the polynomial-decay average of the iterates (η = 3, ``averaging``): with Adam's
#:   constant step the last iterate jitters around the optimum by several posterior standard deviations
#:   when minibatches are small (its spread grows as √(N/B)), the average does not;
#: * log α learned as 5ψ (``log_alpha_scale``): a relevant feature's log α travels 4–7 units from the
#:   start, and Adam's step on a noisy gradient is far below its learning rate (see
#:   :func:`linear_guide_defaults`);
#: * θ starts next to 0 (``init_theta`` = :data:`LINEAR_INIT_THETA`): with next to no weight noise at
#:   the start the data's gradient on θ has one sign, so no relevant weight wanders through θ ≈ 0 under
#:   noise on its way;
#: * log α is held at its dense start for the first 500 steps (``hold_log_alpha``): θ first reaches the
#:   least-squares-like solution, then α moves, so that neither a transient of θ (a feature borrowing a
#:   correlated neighbour's weight) nor a θ still on its way decides which features are pruned.
#:
#: Measured in benchmarks/svi_agreement.py.
LINEAR_GUIDE_DEFAULTS = {
    "parameterization": "shrinkage",
    "init_theta": LINEAR_INIT_THETA,
    "averaging": 3.0,
    "log_alpha_scale": 5.0,
    "init_log_alpha": LINEAR_INIT_LOG_ALPHA,
    "hold_log_alpha": 500,
}

#: The relevance rule of the linear models (read by :func:`~pyro_vd.analysis.relevance` on their guide):
#: the evidence rule of :mod:`pyro_vd.linear.relevance`, log α ≤ τ(d), as ``VDRegression`` applies it.
LINEAR_RELEVANCE_RULE = "evidence"


def linear_guide_defaults(n_features):
    r"""
    The guide settings a linear model with ``n_features`` weights recommends (a copy of
    :data:`LINEAR_GUIDE_DEFAULTS`): among them the dense start :math:`\log\alpha_0 = -8`
    (:data:`LINEAR_INIT_LOG_ALPHA`), held for the first 500 training steps (``hold_log_alpha``).

    Why this start and the hold, measured with ``pyro.optim.Adam({"lr": 1e-2})`` and 3000 steps on
    20 000 × 100 draws (``benchmarks/svi_agreement.py``, 20 seeds, independent and correlated features):

    * the previous start, one unit on the pruned side of τ(d) with no hold, left an irrelevant feature
      kept in 6 of 120 regression fits: a feature that borrows a correlated neighbour's weight early
      drives its log α down with gradients of several hundred, Adam's second-moment estimate (β₂ = 0.999,
      about 1000 steps of memory) keeps them, and the later climb to the bound runs at 0.001–0.004 a
      step;
    * the dense start without the hold dropped a relevant feature in 3 of 9 correlated fits: its θ
      still lagged behind its neighbour's when its α, learned 5 times as fast, reached the bound;
    * with the hold, θ settles first (it moves about one learning rate a step, so 500 steps carry it
      about 5 units), and each log α then starts a fresh Adam state and travels 2–6 units in the
      2500 steps left.

    **Train-time pruning at the evidence bound** is not recommended, though measured: with
    ``train_prune=evidence_log_alpha_threshold(d)``
    (:func:`~pyro_vd.linear.relevance.evidence_log_alpha_threshold`) a feature whose iterate-averaged log α
    passes τ(d) leaves the model, as ``VDRegression``'s and ``VDClassifier``'s search removes it, and the
    kept features' θ are fitted without it: θ within 5 % of the exact solvers' in 232 of 240 fits instead of
    225 (classification at 1 % and 10 % batches, where the plain ELBO keeps a feature just past τ(d) at a
    finite α and its correlated neighbour's θ was up to 12.5 % off). But a pruned weight's log α is then
    moved by the KL alone, whose slope is about −½/(1 + α) (−0.06 at log α = 2), and by minibatch noise: it
    random-walks where it used to climb (the irrelevant features' median log α after 3000 steps 3.0 against
    4.6 on the 100 000 × 100 draw of ``pyro-vd ard-minibatch``), and at 0.1 % batches one came back below
    τ(d) and was read as relevant. Relevance is what these models are read for.

    ``n_features`` no longer changes the settings (it did when the start followed τ(d)); it is kept so
    that models written against it still work.
    """
    if isinstance(n_features, bool) or not isinstance(n_features, numbers.Integral):
        raise TypeError(f"n_features must be an int (the number of weights); got {n_features!r}")
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1; got {n_features}")
    return dict(LINEAR_GUIDE_DEFAULTS)


#: The scales the linear models' SVI defaults are set for: columns of X (and y, in regression) with a
#: standard deviation in [1/8, 8] and a mean within 3 standard deviations of 0. They were measured on
#: standardized data; Adam's step moves θ and the bias by about its learning rate (0.01) whatever their
#: units, and the held start gives θ 500 steps (about 5 units) to settle.
STANDARDIZED_SCALES = (1 / 8, 8.0)
STANDARDIZED_OFFSET = 3.0
#: The rows the check reads: the first training batches' until this many (on 8 rows of globally
#: standardized log-normal columns it warned in 193 of 300 draws, on 32 in 7, on 128 in 1; on 2 rows
#: of 20 Gaussian columns in every draw).
STANDARDIZED_MIN_ROWS = 64


class StandardizationWarning(UserWarning):
    """The data given to a linear model's SVI are far from standardized (see :func:`check_standardized`)."""


class _Moments:
    """Running count, sums and sums of squares of the columns of the batches seen (float64), and whether
    every value so far was 0 or 1."""

    def __init__(self):
        self.n, self.sum, self.squares, self.binary = 0, None, None, None

    def add(self, values):
        values = values.detach().double().reshape(len(values), -1)
        binary = ((values == 0) | (values == 1)).all(0)
        if self.sum is None:
            self.sum, self.squares, self.binary = values.sum(0), (values * values).sum(0), binary
        else:
            self.sum = self.sum + values.sum(0)
            self.squares = self.squares + (values * values).sum(0)
            self.binary = self.binary & binary
        self.n += len(values)

    def problems(self, name):
        """(descriptions of at most 3 columns far from standardized, how many there are)."""
        low, high = STANDARDIZED_SCALES
        mean = self.sum / self.n
        sd = (self.squares / self.n - mean * mean).clamp(min=0.0).sqrt()
        sd = torch.where(sd <= 1e-12 * mean.abs(), torch.zeros_like(sd), sd)  # rounding of a constant
        # 0/1 columns (indicators, one-hot codes) are standard as they are: their weight is an effect
        # in y's units whatever their frequency, so a rare or common category is no problem of units
        spread = (sd > 0) & ((sd < low) | (sd > high) | (mean.abs() > STANDARDIZED_OFFSET * sd))
        constant = (sd == 0) & (mean.abs() > high)  # a column constant far from 0 so far
        bad = ~self.binary & (spread | constant)
        described = [
            f"{name(i)} has mean {mean[i].item():.3g} and standard deviation {sd[i].item():.3g}"
            for i in torch.nonzero(bad).flatten()[:3].tolist()
        ]
        return described, int(bad.sum())


class _Rows:
    """The moments of the rows ``x`` (and targets ``y``) a check reads, at most ``limit`` rows."""

    def __init__(self, targets, limit=None):
        self.x, self.y, self.limit = _Moments(), _Moments() if targets else None, limit

    def add(self, x, y):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2 or len(x) == 0:
            return
        take = None if self.limit is None else self.limit - self.x.n
        with torch.no_grad():
            self.x.add(x[:take])
            if self.y is not None and isinstance(y, torch.Tensor) and y.is_floating_point():
                if y.numel() == len(x):
                    self.y.add(y.reshape(-1, 1)[:take])

    def warn(self, model, what):
        """Warn of what lies far from standardized; returns the warning's text, or None."""
        if self.x.n == 0:
            return None
        problems, count = self.x.problems(lambda index: f"column {index}")
        if self.y is not None and self.y.n:
            problems += self.y.problems(lambda _: "y")[0]
        if not problems:
            return None
        more = f" ({count} columns in all)" if count > 3 else ""
        message = (
            f"{type(model).__name__}: SVI's defaults are set for standardized data (each column, and y "
            f"in regression, of standard deviation 1/8 to 8 and mean within 3 of them), and the "
            f"{self.x.n} {what} are far from it: {'; '.join(problems)}{more}. Adam moves θ and the bias "
            "by about its learning rate a step whatever their units, so relevance and θ would depend on "
            "the units. Standardize: (x - mean) / sd per column (and y); a coefficient w in those units "
            "is w·sd_y/sd_x in yours. VDRegression and VDClassifier are unit-free."
        )
        warn_at_caller(message, StandardizationWarning)
        return message


def check_standardized(model, x, y=None):
    """
    Warn (:class:`StandardizationWarning`) when the rows ``x`` (and targets ``y``) are far from the data
    the linear models' SVI defaults are set for (:data:`STANDARDIZED_SCALES`,
    :data:`STANDARDIZED_OFFSET`). The exact solvers are unit-free; SVI with Adam is not: with y × 100
    every one of 20 features was read as relevant, with an intercept of 10 (y's spread 2) five
    irrelevant ones were and the test error was 10⁵ times the exact solver's, and a column with an
    offset of 100 stood in for the intercept. 0/1 columns are not judged; a constant column is, when it
    lies beyond 8. The linear models call it once on their first :data:`STANDARDIZED_MIN_ROWS` training
    rows (over as many batches as that takes). Returns the warning's text, or None.
    """
    rows = _Rows(targets=y is not None)
    rows.add(x, y)
    return rows.warn(model, "rows given")


def _check_n_features(n_features):
    """A ValueError unless ``n_features`` is an integer >= 1 (torch's errors named no argument)."""
    if isinstance(n_features, bool) or not isinstance(n_features, numbers.Integral) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer; got {n_features!r}")


class _CheckedLinear(VDModel):
    """Checks its first :data:`STANDARDIZED_MIN_ROWS` training rows (:func:`check_standardized`)."""

    _check_y = False

    def forward(self, x, y=None):
        rows = self.__dict__.get("_standardization")
        if y is not None and rows != "checked":
            if rows is None:
                rows = self.__dict__["_standardization"] = _Rows(self._check_y, STANDARDIZED_MIN_ROWS)
            # rows the network takes only (of another width the network's own check names the shape;
            # summed here first, they were a raw size-mismatch RuntimeError)
            if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[1] == self.template.in_features:
                rows.add(x, y)
            if rows.x.n >= STANDARDIZED_MIN_ROWS:
                self.__dict__["_standardization"] = "checked"
                rows.warn(self, "first training rows")
        return super().forward(x, y)


class LinearRegression(_CheckedLinear):
    r"""
    :math:`t \sim \mathcal{N}(w^\top x + b, \sigma^2)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro
    counterpart of :class:`~pyro_vd.linear.VDRegression`, trained by SVI in minibatches (the weight site
    ``net.weight`` has shape (1, n_features), so the local reparameterization applies). The noise scale
    σ is learned (a point estimate maximizing the same ELBO, so :math:`\sigma^{-2}` estimates
    ``VDRegression``'s ``noise_precision_``) unless given.

    Its SVI defaults are set for standardized data: the first training rows are checked, and a
    :class:`StandardizationWarning` says what lies far from it (:func:`check_standardized`).

    :attr:`guide_defaults` holds the settings :class:`~pyro_vd.guides.AutoVariationalDropout` takes
    when they are left at None (:func:`linear_guide_defaults`), and :attr:`relevance_rule` the rule
    :func:`~pyro_vd.analysis.relevance` applies to its guide by default (the evidence rule, as
    ``VDRegression`` decides).
    """

    _check_y = True

    def __init__(self, n_features, num_data=None, *, noise_scale=None):
        _check_n_features(n_features)
        super().__init__(
            nn.Linear(n_features, 1), num_data=num_data, likelihood="normal", noise_scale=noise_scale
        )
        self.guide_defaults = linear_guide_defaults(n_features)
        self.relevance_rule = LINEAR_RELEVANCE_RULE


class LogisticRegression(_CheckedLinear):
    r"""
    :math:`p(t = 1) = \sigma(w^\top x + b)` with :math:`p(\log|w_d|) = \text{const}`: the Pyro counterpart
    of :class:`~pyro_vd.linear.VDClassifier` (binary), trained by SVI in minibatches. Its
    :attr:`guide_defaults` and :attr:`relevance_rule` are those of :class:`LinearRegression`: it
    decides by the evidence bound τ(d) on its guide's log α, the rule ``VDClassifier``'s default applies
    inside its own fit. Its first training rows are checked as :class:`LinearRegression`'s (X only).
    """

    def __init__(self, n_features, num_data=None):
        _check_n_features(n_features)
        super().__init__(nn.Linear(n_features, 1), num_data=num_data, likelihood="bernoulli")
        self.guide_defaults = linear_guide_defaults(n_features)
        self.relevance_rule = LINEAR_RELEVANCE_RULE
