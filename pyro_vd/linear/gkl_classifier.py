r"""Gaussian-KL ("G-KL") variational ARD for logistic regression."""

import numpy as np
import torch

from ._base import check_positive_float, check_positive_int, power_of_two_scales
from ._classifier import LinearClassifierBase
from .ard_update import fast_ard_alpha
from .relevance import DEFAULT_ALPHA_BOUND
from .rvc import RVC
from .vd_classifier import expected_log_sigmoid, expected_sigmoid, gauss_hermite

_ALPHA_PRUNE = 1e12


def _fit_q(X, t, alpha, m0, log_lambda0, b0, nodes, weights, max_iter):
    r"""
    Maximize the G-KL bound over q = N(m, S) and the intercept for fixed α (torch L-BFGS), with S in the
    form the optimum takes, :math:`S^{-1} = A + X^\top\Lambda X` with Λ diagonal (Opper & Archambeau
    2009): n + d + 1 parameters instead of d(d + 1)/2 + d + 1.

    :returns: (m, L with LLᵀ = S, b, bound, λ, data precision P = XᵀΛX).
    """
    m = torch.tensor(m0, requires_grad=True)
    log_lambda = torch.tensor(log_lambda0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    eye = torch.eye(len(m0), dtype=torch.float64)
    optimizer = torch.optim.LBFGS(
        [m, log_lambda, b],
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-8,
        tolerance_change=1e-10,
    )

    def parts():
        precision = torch.diag(alpha) + (X.T * log_lambda.exp()) @ X
        C = torch.linalg.cholesky(precision)
        C_inv = torch.linalg.solve_triangular(C, eye, upper=False)  # S = C⁻ᵀ C⁻¹
        return precision, C, C_inv

    def negative_bound():
        _, C, C_inv = parts()
        mu = t * (X @ m + b)
        s = (C_inv @ X.T).square().sum(0).clamp_min(1e-300).sqrt()  # s_n² = ‖C⁻¹ x_n‖²
        data = expected_log_sigmoid(mu, s, nodes, weights).sum()
        s_diag = C_inv.square().sum(0)
        log_det_s = -2.0 * C.diagonal().log().sum()
        kl = 0.5 * ((alpha * (s_diag + m.square())).sum() - len(m) - alpha.log().sum() - log_det_s)
        return kl - data

    def closure():
        optimizer.zero_grad()
        loss = negative_bound()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        precision, _, C_inv = parts()
        bound = -float(negative_bound())
        data_precision = precision - torch.diag(alpha)
    return (
        m.detach().numpy().copy(),
        C_inv.T.numpy().copy(),
        float(b.detach()),
        bound,
        log_lambda.detach().numpy().copy(),
        data_precision.numpy(),
    )


class GKLClassifier(LinearClassifierBase):
    r"""
    Gaussian-KL variational inference (Challis & Barber 2013) with an ARD prior for logistic regression:
    a full-covariance :math:`q(w) = \mathcal{N}(m, S)` maximizes

    .. math::

        \mathcal{L} = \sum_n \int \log\sigma\big(t_n(\mu_n + s_n y)\big)\mathcal{N}(y\mid0,1)\,dy
        - \mathrm{KL}\big(\mathcal{N}(m, S)\,\|\,\mathcal{N}(0, \operatorname{diag}\alpha^{-1})\big),

    :math:`\mu_n = x_n^\top m + b`, :math:`s_n^2 = x_n^\top S x_n` (Gauss–Hermite quadrature; torch L-BFGS
    over :math:`m`, the intercept b and Λ in :math:`S^{-1} = A + X^\top\Lambda X`, the form the optimum
    takes), and α is updated on the bound,
    :math:`\alpha_d = 1/(m_d^2 + S_{dd})` at the fixed point, reached by the fast ARD step on the bound's
    Gaussian view of the likelihood (:func:`~pyro_vd.linear.ard_update.fast_ard_alpha`, with
    :math:`P = S^{-1} - A`), alternating until α settles; weights whose α passes 1e12 leave
    the model. The bound is concave in (m, L) for fixed α (Challis & Barber), so each inner fit is
    well-posed. More than two classes: one-vs-rest. Relevance: α below ``alpha_bound``.

    ``init="rvc"`` starts α and m at the :class:`~pyro_vd.linear.RVC` solution (Laplace evidence), so the
    expensive full-covariance fits run on RVC's few active features only; weights RVC pruned stay
    pruned. ``init="ones"`` (default) starts every α at 1 with all features active: slower on wide
    data (d = 1000: minutes), and independent of RVC.

    Attributes
    ----------
    coef_ (m), intercept_, alpha_, relevance_, elbo_ (per binary model), n_iter_ (outer α updates),
    n_features_in_, classes_, feature_names_in_ (fitted on a data frame with string column names)
    """

    def __init__(
        self,
        *,
        max_iter=50,
        inner_iter=200,
        tol=1e-3,
        n_quadrature=32,
        alpha_bound=DEFAULT_ALPHA_BOUND,
        init="ones",
    ):
        self.init = init
        self.max_iter = max_iter
        self.inner_iter = inner_iter
        self.tol = tol
        self.n_quadrature = n_quadrature
        self.alpha_bound = alpha_bound

    def _check_params(self):
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.inner_iter, "inner_iter")
        check_positive_int(self.n_quadrature, "n_quadrature")
        check_positive_float(self.tol, "tol")
        check_positive_float(self.alpha_bound, "alpha_bound")
        if self.init not in ("ones", "rvc"):
            raise ValueError(f"init must be 'ones' or 'rvc'; got {self.init!r}")

    def _fit_binary(self, X, t01):
        scale = power_of_two_scales(X)
        fit = self._fit_scaled(X / scale, t01)
        # back to the units of X (powers of two: exact): m_d / c_d, L's rows / c_d, α_d c_d²
        with np.errstate(over="ignore", under="ignore"):
            fit["L_scaled"], fit["x_scale"] = fit["L"], scale
            fit["L"] = fit["L"] / scale[:, None]
            fit["coef"] = fit["coef"] / scale
            fit["alpha"] = fit["alpha"] * scale**2
        return fit

    def _fit_scaled(self, X, t01):
        d = X.shape[1]
        X_all = torch.tensor(X)
        t = torch.as_tensor(2.0 * t01 - 1.0)
        nodes, weights = gauss_hermite(self.n_quadrature)
        usable = X.std(0) > 1e-12 * max(X.std(0).max(), np.finfo(float).tiny)
        alpha = np.where(usable, 1.0, np.inf)
        m = np.zeros(d)
        if self.init == "rvc":
            start = RVC(alpha_bound=self.alpha_bound)._fit_binary(X, t01)
            alpha = np.where(usable & (start["alpha"] < _ALPHA_PRUNE), start["alpha"], np.inf)
            m = np.where(np.isfinite(alpha), start["coef"], 0.0)
        L_full = np.zeros((d, d))
        log_lambda = np.full(len(X), np.log(0.25))  # the curvature of log σ at 0
        bias = 0.0
        elbo = -np.inf
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007
            active = np.flatnonzero(alpha < _ALPHA_PRUNE)
            Xa = X_all[:, active]
            a = torch.as_tensor(alpha[active])
            fitted = _fit_q(Xa, t, a, m[active], log_lambda, bias, nodes, weights, self.inner_iter)
            previous_elbo = elbo
            m_active, L, bias, elbo, log_lambda, P = fitted
            m = np.zeros(d)
            m[active] = m_active
            L_full = np.zeros((d, d))
            L_full[np.ix_(active, active)] = L
            new_alpha = np.full(d, np.inf)
            # Fast ARD step on the bound's Gaussian view of the likelihood: precision P = XᵀΛX and
            # linear term S⁻¹m.
            S_active = L @ L.T
            new_alpha[active] = fast_ard_alpha(
                P, (P + np.diag(alpha[active])) @ m_active, alpha[active], S_active
            )
            new_alpha[new_alpha >= _ALPHA_PRUNE] = np.inf
            kept = np.isfinite(new_alpha) & np.isfinite(alpha)
            change = np.max(np.abs(np.log(new_alpha[kept]) - np.log(alpha[kept]))) if kept.any() else 0.0
            removed = (np.isfinite(alpha) & ~np.isfinite(new_alpha)).any()
            alpha = new_alpha
            if change < self.tol and not removed:
                break
            # α of weakly determined weights creep towards ∞ for many steps while the bound no longer
            # moves: stop when it changes by less than tol · 1e-3 (relative)
            if not removed and abs(elbo - previous_elbo) < 1e-3 * self.tol * (1.0 + abs(elbo)):
                break
        m[~np.isfinite(alpha)] = 0.0
        return {"coef": m, "intercept": bias, "alpha": alpha, "L": L_full, "elbo": elbo, "n_iter": n_iter}

    def _set_relevance(self):
        self.alpha_ = self._stacked("alpha")
        self.relevance_ = (np.atleast_2d(self.alpha_) < self.alpha_bound).any(0)
        self.elbo_ = [f["elbo"] for f in self._fits]

    def _binary_proba(self, X, fit):
        nodes, weights = gauss_hermite(self.n_quadrature)
        mu = torch.as_tensor(X @ fit["coef"] + fit["intercept"])
        s = torch.as_tensor(X / fit["x_scale"]) @ torch.as_tensor(fit["L_scaled"])
        s = s.square().sum(1).sqrt()
        return expected_sigmoid(mu, s, nodes, weights).numpy()
