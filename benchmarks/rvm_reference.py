r"""
Our RVR and RVC against an independent RVM implementation from the package index (issue 13, item 4):
``sklearn-rvm``'s EM RVM (``EMRVR``, ``EMRVC``; Tipping 2001's EM updates of α, not the fast marginal
likelihood maximization of Tipping & Faul 2003 that ours uses). Benchmarks only; install it with

    pip install --no-deps sklearn-rvm   # 0.1.1; its fit() returns None, handled here

Its basis functions are kernel columns; with ``kernel="precomputed"`` and the design itself given as the
"kernel" they are the features (it requires a square matrix: the seed's 1000 × 1000 table is square). It
divides the "kernel" by :math:`\sqrt{\sum K}/n`, NaN for a design whose entries sum below 0, so the
design's sign is flipped there (w → −w, the same model under a symmetric prior); its α are mapped back
to the units of X (× that scale²), and the predictions are computed here from its ``mu_`` (its own
``predict`` rejects a non-square test "kernel").
For each method: test MSE or accuracy, irrelevant pruned and relevant kept (α below 1e4 for standardized
columns and, for regression, y), fit seconds, and the log evidence of each method's hyper-parameters
computed here by one formula for all: for regression log N(y_c | 0, β⁻¹I + X_c A⁻¹ X_cᵀ) (y and X
centred: the intercept without a prior, as in RVR), for classification RVC's Laplace approximation at
the mode.

    python benchmarks/rvm_reference.py [--seed 0] [--task regression classification] [--out DIR]
"""

import argparse
import json
import pathlib
import time
import warnings

import numpy as np
import scipy.linalg

from pyro_vd.experiments.ard_data import make_ard_classification, make_ard_regression
from pyro_vd.linear import RVC, RVR
from pyro_vd.linear._rows import InMemoryRows
from pyro_vd.linear.relevance import DEFAULT_ALPHA_BOUND
from pyro_vd.linear.rvc import _INTERCEPT_ALPHA, _laplace_log_evidence, _mode_of_rows


def log_evidence(X, y, alpha, beta):
    """log N(y_c | 0, β⁻¹I + X_c diag(α)⁻¹ X_cᵀ) over the features with finite α (y, X centred)."""
    Xc, yc = X - X.mean(0), y - y.mean()
    keep = np.isfinite(alpha) & (alpha > 0)
    C = np.eye(len(y)) / beta + (Xc[:, keep] / alpha[keep]) @ Xc[:, keep].T
    L = scipy.linalg.cholesky(C, lower=True)
    z = scipy.linalg.solve_triangular(L, yc, lower=True)
    return float(-0.5 * (len(y) * np.log(2 * np.pi) + z @ z) - np.log(np.diag(L)).sum())


def laplace_log_evidence(X, y, alpha):
    """RVC's Laplace approximation of log p(t | α) at the mode for the α of any method (X centred, the
    intercept under RVC's broad prior): one formula for all."""
    Phi = np.column_stack([X - X.mean(0), np.ones(len(X))])
    full = np.append(alpha, _INTERCEPT_ALPHA)
    active = np.isfinite(full)
    rows = InMemoryRows(Phi, y.astype(float), squares=False)
    w, hessian, _, log_likelihood = _mode_of_rows(rows, active, full[active], np.zeros(active.sum()))
    return _laplace_log_evidence(log_likelihood, full[active], w, hessian)


def _em_alpha(model, d):
    """EMRVR/EMRVC's α per feature in the units of X (∞ for the bases it removed; the bias's left out)."""
    alpha = np.full(d, np.inf)
    kept = np.asarray(model.alpha_, float)
    if model.bias_used:
        kept = kept[1:]
    alpha[np.asarray(model.relevance_, int)] = kept * model._scale**2
    return alpha


def _em_score(model, X, sign):
    """xᵀw + b of an EM RVM fitted on ``sign`` · X."""
    K = sign * X[:, np.asarray(model.relevance_, int)] / model._scale
    mu = np.asarray(model.mu_, float)
    return K @ mu[1:] + mu[0] if model.bias_used else K @ mu


def _sign(X):
    return 1.0 if X.sum() > 0 else -1.0


def _counts(alpha, n_relevant, X, y=None):
    """Irrelevant pruned and relevant kept: α below 1e4 for standardized columns (and, for regression,
    y of unit standard deviation), the rule of ``pyro_vd.linear.relevance``."""
    standardized = alpha * (1.0 if y is None else np.var(y)) / np.var(X, axis=0)
    relevant = standardized < DEFAULT_ALPHA_BOUND
    return int((~relevant[n_relevant:]).sum()), int(relevant[:n_relevant].sum())


def _fit(model, X, y):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn-rvm's deprecation warnings against today's numpy
        returned = model.fit(X, y)
    return (model if returned is None else returned), time.perf_counter() - start


def regression(seed, n=1000, d=1000, n_relevant=10):
    from sklearn_rvm import EMRVR

    X, y, X_test, y_test, _ = make_ard_regression(n, d, n_relevant, seed=seed)
    rows = []
    ours, seconds = _fit(RVR(), X, y)
    rows.append(
        {
            "method": "RVR (ours, fast marginal likelihood)",
            "test_mse": float(np.mean((ours.predict(X_test) - y_test) ** 2)),
            "counts": _counts(ours.alpha_, n_relevant, X, y),
            "counts_own_rule": [
                int((~ours.relevance_[n_relevant:]).sum()),
                int(ours.relevance_[:n_relevant].sum()),
            ],
            "seconds": seconds,
            "log_evidence_reported": float(ours.log_evidence_),
            "log_evidence": log_evidence(X, y, ours.alpha_, ours.noise_precision_),
        }
    )
    sign = _sign(X)
    em, seconds = _fit(EMRVR(kernel="precomputed"), sign * X, y)
    alpha = _em_alpha(em, d)
    rows.append(
        {
            "method": "EMRVR (sklearn-rvm, EM)",
            "test_mse": float(np.mean((_em_score(em, X_test, sign) - y_test) ** 2)),
            "counts": _counts(alpha, n_relevant, X, y),
            "seconds": seconds,
            "log_evidence": log_evidence(X, y, alpha, float(em.beta_)),
        }
    )
    return rows


def classification(seed, n=1000, d=1000, n_relevant=10):
    from sklearn_rvm import EMRVC

    X, y, X_test, y_test, _ = make_ard_classification(n, d, n_relevant, seed=seed)
    ours, seconds = _fit(RVC(), X, y)
    rows = [
        {
            "method": "RVC (ours, fast marginal likelihood)",
            "test_accuracy": float(np.mean(ours.predict(X_test) == y_test)),
            "counts": _counts(np.asarray(ours.alpha_, float), n_relevant, X),
            "seconds": seconds,
            "log_evidence_reported": float(ours.log_evidence_),
            "log_evidence": laplace_log_evidence(X, y, np.asarray(ours.alpha_, float)),
        }
    ]
    sign = _sign(X)
    em, seconds = _fit(EMRVC(kernel="precomputed"), sign * X, y)
    predicted = np.asarray(em.classes_)[(_em_score(em, X_test, sign) > 0).astype(int)]
    rows.append(
        {
            "method": "EMRVC (sklearn-rvm, EM)",
            "test_accuracy": float(np.mean(predicted == y_test)),
            "counts": _counts(_em_alpha(em, d), n_relevant, X),
            "seconds": seconds,
            "log_evidence": laplace_log_evidence(X, y, _em_alpha(em, d)),
        }
    )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", nargs="+", default=["regression", "classification"])
    parser.add_argument("--out", default="results/rvm_reference")
    args = parser.parse_args()
    results = {}
    for task in args.task:
        rows = {"regression": regression, "classification": classification}[task](args.seed)
        results[task] = rows
        for row in rows:
            pruned, kept = row["counts"]
            metric = (
                f"test MSE {row['test_mse']:.4f}"
                if "test_mse" in row
                else (f"accuracy {row['test_accuracy']:.4f}")
            )
            evidence = f", log evidence {row['log_evidence']:.1f}" if "log_evidence" in row else ""
            print(
                f"{task}: {row['method']}: {metric}, {pruned}/990 pruned, {kept}/10 kept, "
                f"{row['seconds']:.1f} s{evidence}",
                flush=True,
            )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rvm_reference.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
