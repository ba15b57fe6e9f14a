r"""
How each linear model decides that a feature is relevant. Every rule compares a precision-like
quantity with a bound, and the defaults are those of the methods' own literature:

* **variational dropout** (:class:`VDRegression`, :class:`VDClassifier`): irrelevant when
  :math:`\log\alpha_d > 3` (Molchanov et al. 2017), i.e. the posterior
  :math:`q(w_d) = \mathcal{N}(\theta_d, \alpha_d\theta_d^2)` has a signal-to-noise ratio
  :math:`\alpha_d^{-1/2}` below :math:`e^{-3/2} \approx 0.22` (a binary-dropout rate above 0.95);
* **ARD models** (:class:`RVR`, :class:`RVC`, :class:`GKLRegression`, :class:`GKLClassifier`): irrelevant
  when the prior precision :math:`\alpha_d` exceeds 1e4 (prior standard deviation below 0.01; the
  bound of scikit-learn's ``ARDRegression.threshold_lambda``), or is infinite (basis removed).

The two are not the same number: a VD α is a noise-to-signal ratio of the posterior, an ARD α a prior
precision, and a Type-II maximum-likelihood posterior can have a high SNR for a weight of 0.001 when N is
large.
"""

#: Sparse VD's log α pruning threshold.
DEFAULT_LOG_ALPHA_THRESHOLD = 3.0
#: ARD prior-precision bound.
DEFAULT_ALPHA_BOUND = 1e4
