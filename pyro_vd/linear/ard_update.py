r"""The fast ARD step for a Gaussian approximation of the likelihood (Tipping & Faul 2003)."""

import numpy as np


def fast_ard_alpha(P, r, alpha, sigma):
    r"""
    New prior precisions for all weights at once, each the optimum of the (approximate) evidence given
    the others. The likelihood is approximated by a Gaussian in the weights with precision ``P`` and
    linear term ``r`` (so the posterior is :math:`\Sigma = (P + A)^{-1}`, :math:`\mu = \Sigma r`): for
    the RVC, :math:`P = \Phi^\top B\Phi` at the IRLS mode; for the G-KL classifier, :math:`P = S^{-1} - A`.
    With the sparsity and quality factors :math:`S_i = P_{ii} - (P\Sigma P)_{ii}`,
    :math:`Q_i = r_i - (P\Sigma r)_i`, :math:`s_i = \alpha_i S_i/(\alpha_i - S_i)`,
    :math:`q_i = \alpha_i Q_i/(\alpha_i - S_i)`: :math:`\alpha_i = s_i^2/(q_i^2 - s_i)` when
    :math:`q_i^2 > s_i`, else :math:`\infty` (the weight leaves the model in one step, where the
    MacKay / EM updates only grow α by a constant factor per iteration).

    :param P: (k, k) data precision over the weights in the model.
    :param r: (k,) linear term.
    :param alpha: (k,) current prior precisions (finite).
    :param sigma: (k, k) current posterior covariance :math:`(P + A)^{-1}`.
    :returns: (k,) new prior precisions (``inf`` for weights to remove).
    """
    P_sigma = P @ sigma
    S = np.diag(P) - np.einsum("ij,ji->i", P_sigma, P, optimize=True)
    Q = r - P_sigma @ r
    denominator = alpha - S
    safe = np.where(np.abs(denominator) > 1e-300, denominator, 1e-300)
    s = alpha * S / safe
    q = alpha * Q / safe
    theta = q**2 - s
    new_alpha = np.full_like(alpha, np.inf)
    grow = (theta > 0) & (s > 0)
    new_alpha[grow] = s[grow] ** 2 / theta[grow]
    return new_alpha
