r"""
The warning a linear regressor gives when its fit interpolates the training rows.

With at least as many candidate columns as rows (:math:`d \ge n` less the intercept's), a Type-II
maximum-likelihood fit (RVR, G-KL) or the plain VD optimum can choose columns that span the targets:
the residual vanishes and the noise precision :math:`\beta` runs to the residual floor. Every number is
then computed correctly and the maximized evidence really is higher there, but the noise estimate says
nothing about the noise: on 20 × 200 data of noise sd 0.5, RVR reported a noise sd of 1e-5 and
``predict(X, return_std=True)`` a predictive sd of 1e-4 where the test error was 0.8. The evidence rule
of :class:`~pyro_vd.linear.VDRegression` (its default) kept 2 columns there and estimated a noise sd of
1.3.

The fit is taken as interpolating when all three hold:

* the columns that vary, with the intercept, number at least the rows (any target could be spanned);
* the fit keeps at least half as many columns as there are rows (less the intercept's);
* the fitted noise variance :math:`1/\beta` is below :data:`INTERPOLATION_RATIO` of the targets' own
  variance about their mean (a noise sd below 1 % of y's).

Measured with ``benchmarks/interpolation.py`` (8 designs from 20 × 200 to 200 × 100, noise sd 0.5 and
0.05, independent and correlated columns, 3 seeds: 96 fits per estimator): the fits it warned about
(52 of RVR's, 53 of G-KL's, 31 of ``threshold="sparse_vd"``'s) had a noise sd a median 1e-4 to 2e-4 of
the true one and a test error 180 to 6000 times their mean predictive sd; the others had 0.1 to 17
times the true noise sd. The evidence rule never warned. Noise-free data with :math:`d \ge n` are
warned about too: from the training rows alone they cannot be told from interpolation. Milder
overfitting is not caught: ``threshold="sparse_vd"`` at 50 × 100 reported a tenth of the noise sd
without interpolating.
"""

from .._warnings import warn_at_caller
from ._base import count_candidates

#: The fitted noise variance, relative to y's variance about its mean, below which a fit that could
#: interpolate is taken to do so (a noise sd below 1 % of y's).
INTERPOLATION_RATIO = 1e-4


class InterpolationWarning(UserWarning):
    """A linear regressor's fit interpolates its training rows: its noise precision (and the noise part of
    ``predict(X, return_std=True)``) is not an estimate of the noise (see
    :mod:`pyro_vd.linear._interpolation`)."""


def warn_if_interpolating(estimator, *, n, candidates, kept, noise_variance, target_energy):
    """
    Warn (:class:`InterpolationWarning`) when ``estimator``'s fit interpolates its ``n`` training rows:
    ``candidates`` columns vary, ``kept`` are in the fitted model, ``noise_variance`` is 1/β and
    ``target_energy`` the targets' energy about their mean (about 0 without an intercept), both in the
    same units. Returns whether it warned.
    """
    rows = n - (1 if estimator.fit_intercept else 0)
    if rows < 1 or target_energy <= 0.0:
        return False
    if candidates < rows or 2 * kept < rows:
        return False
    if not noise_variance * n < INTERPOLATION_RATIO * target_energy:
        return False
    name = type(estimator).__name__
    warn_at_caller(
        f"{name} interpolates its {n} training rows: it keeps {kept} of {candidates} columns, which span "
        f"the targets, and its noise standard deviation is {(noise_variance * n / target_energy) ** 0.5:.2g} "
        "of y's. Its noise_precision_ (and predict(X, return_std=True), which adds the noise) then says "
        "nothing about the noise, and the kept columns overfit. With at least as many columns as rows, "
        "use VDRegression's evidence rule (its default threshold), fewer columns, or more rows.",
        InterpolationWarning,
    )
    return True


def warn_if_ard_interpolating(estimator, *, n, usable, kept, beta, energy, scaling):
    """:func:`warn_if_interpolating` for an ARD regressor (RVR, G-KL) from what its fit has at hand:
    ``usable`` columns, ``kept`` in the model, the noise precision ``beta`` and the floors' ``energy``
    in the units of ``scaling`` (:class:`~pyro_vd.linear.rvr.ArdScaling`), whose ``y_spread`` is y's
    spread about its mean with or without an intercept (Σ y² without one: an offset of y, which a column
    of ones explains, lowered the bar, and an ordinary fit was warned about)."""
    spread = scaling.y_spread
    return warn_if_interpolating(
        estimator,
        n=n,
        candidates=count_candidates(usable),
        kept=kept,
        noise_variance=1.0 / beta,
        target_energy=spread if spread > 1e-12 * energy else 0.0,  # (y constant up to rounding)
    )


__all__ = [
    "INTERPOLATION_RATIO",
    "InterpolationWarning",
    "warn_if_ard_interpolating",
    "warn_if_interpolating",
]
