"""
Where VDClassifier's EvidenceRuleWarning fires: per family of draws (dense truths, where many features are
relevant; the seed's sparse generator, independent and AR(1)-correlated; rare positives; pure noise;
t₃-tailed columns; weak signals on 100–200 rows; d close to n, where no check is made) the fits, those
whose left-out features carried signal together (the check's z-score above ``DENSE_SCORE_Z``, so that the
plain fit was made and compared), those warned, the fits that kept under half of the relevant features,
the fits whose plain fit (``threshold="sparse_vd"``) had a test log loss over 10 % lower, and the
extremes of the z-score and of the ratio of cross-validated log losses (evidence / plain) that the
warning compares with ``DENSE_CV_RATIO``.

    python benchmarks/evidence_dense_classifier.py [--seeds 3] [--out results/evidence_dense_classifier]
"""

import argparse
import itertools
import json
import math
import pathlib
import warnings

import numpy as np

from pyro_vd.experiments.ard_data import make_ard_classification, make_dense_classification
from pyro_vd.linear import EvidenceRuleWarning, VDClassifier
from pyro_vd.linear import vd_classifier as _vd_classifier

#: (n, d, k, low, high): dense truths, each at ρ = 0 and 0.6.
DENSE = (
    (1000, 100, 60, 0.5, 1.5),
    (500, 50, 40, 0.5, 1.5),
    (2000, 200, 120, 0.35, 1.05),
    (1000, 100, 30, 0.25, 0.75),
    (400, 60, 40, 0.2, 0.6),
    (800, 200, 120, 0.3, 1.0),
    (300, 150, 100, 0.3, 1.0),
    (3000, 300, 150, 0.25, 0.75),
)
#: (n, d): the seed's sparse generator, with k relevant of N(0, 1) weights.
SPARSE = ((1000, 100), (500, 50), (2000, 200), (300, 200), (200, 150), (5000, 100))


def _families(seeds):
    """(family, draw) pairs: draw() gives X, y, X_test, y_test and the relevant columns."""
    for (n, d, k, low, high), rho, seed in itertools.product(DENSE, (0.0, 0.6), seeds):
        yield (
            "dense",
            lambda a=(n, d, k), kw=dict(low=low, high=high, rho=rho, seed=seed): make_dense_classification(
                *a, **kw
            ),
        )
    for (n, d), k, rho, seed in itertools.product(SPARSE, (1, 5, 10), (0.0, 0.9), seeds):
        yield "seed's generator", lambda a=(n, d, k, seed, rho): _seed_generator(*a)
    for (n, d), k, seed in itertools.product(((2000, 100), (1000, 300)), (3, 10), seeds):
        yield "rare positives", lambda a=(n, d, k, seed): _rare(*a)
    for (n, d), share, seed in itertools.product(((1000, 100), (500, 300), (300, 200)), (0.5, 0.9), seeds):
        yield "pure noise", lambda a=(n, d, share, seed): _noise(*a)
    for (n, d), k, seed in itertools.product(((1000, 100), (400, 200)), (3, 10), seeds):
        yield "t3-tailed", lambda a=(n, d, k, seed): _heavy(*a)
    for (n, d), share, (low, high), seed in itertools.product(
        ((100, 20), (140, 35), (200, 50)), (0.3, 0.6, 0.9), ((0.2, 0.6), (0.1, 0.35)), seeds
    ):
        yield "weak signals", lambda a=(n, d, max(1, int(share * d)), low, high, seed): _weak(*a)
    for (n, d), k, seed in itertools.product(((200, 190), (120, 110)), (5, 60), seeds):
        yield (
            "d close to n",
            lambda a=(n, d, k), s=seed: make_dense_classification(*a, low=0.5, high=1.5, seed=s),
        )


def _weak(n, d, k, low, high, seed):
    """A review's draws: few rows, k of d weights of size uniform in [low, high], an intercept of 0.5;
    where the plain fit's cross-validated loss is too noisy to trust a small gain."""
    rng = np.random.default_rng(seed + 100)
    X = rng.standard_normal((n + 5000, d))
    w = np.zeros(d)
    w[:k] = rng.choice([-1, 1], k) * rng.uniform(low, high, k)
    y = _labels(rng, X, w, 0.5)
    return X[:n], y[:n], X[n:], y[n:], np.arange(k)


def _seed_generator(n, d, k, seed, rho):
    X, y, X_test, y_test, _ = make_ard_classification(n, d, k, seed=seed, n_test=5000, rho=rho)
    return X, y, X_test, y_test, np.arange(k)


def _labels(rng, X, w, bias):
    return (rng.random(len(X)) < 1.0 / (1.0 + np.exp(-(X @ w + bias)))).astype(np.int64)


def _rare(n, d, k, seed):
    """About 5 % positives: an intercept of −4 and k relevant weights uniform in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + 5000, d))
    w = np.zeros(d)
    w[:k] = rng.uniform(0.5, 1.5, k)
    y = _labels(rng, X, w, -4.0)
    return X[:n], y[:n], X[n:], y[n:], np.arange(k)


def _noise(n, d, share, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + 5000, d))
    y = (rng.random(n + 5000) < share).astype(np.int64)
    return X[:n], y[:n], X[n:], y[n:], np.arange(0)


def _heavy(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_t(3, (n + 5000, d))
    w = np.zeros(d)
    w[:k] = rng.uniform(0.5, 1.5, k)
    y = _labels(rng, X, w, 0.0)
    return X[:n], y[:n], X[n:], y[n:], np.arange(k)


def _log_loss(fit, X, y):
    p = np.clip(fit.predict_proba(X)[:, 1], 1e-15, 1.0 - 1e-15)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))


def sweep(seeds):
    """The warning's record per family (module docstring)."""
    record = {}
    check, cv = VDClassifier._check_dense, _vd_classifier.cross_validated_log_loss

    def checked(self, rows, fit, q, *args):  # the z-score the check compares with DENSE_SCORE_Z
        out = ~np.isfinite(fit[1]) & (q > 0.0)
        m = int(out.sum())
        record["z"] = (2.0 * q[out].sum() - m) / math.sqrt(2.0 * m) if m else math.nan
        return check(self, rows, fit, q, *args)

    def recorded(*args):
        losses = cv(*args)
        record["cv"] = losses
        return losses

    VDClassifier._check_dense, _vd_classifier.cross_validated_log_loss = checked, recorded
    table = {}
    try:
        for family, make in _families(range(seeds)):
            X, y, X_test, y_test, relevant = make()
            record.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit = VDClassifier().fit(X, y)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                plain = VDClassifier(threshold="sparse_vd").fit(X, y)
            warned = any(issubclass(w.category, EvidenceRuleWarning) for w in caught)
            lost = len(relevant) > 0 and fit.relevance_[relevant].sum() < 0.5 * len(relevant)
            better = _log_loss(plain, X_test, y_test) < 0.9 * _log_loss(fit, X_test, y_test)
            row = table.setdefault(
                family,
                {
                    "fits": 0,
                    "compared": 0,
                    "warned": 0,
                    "lost half": 0,
                    "warned where lost half": 0,
                    "plain better": 0,
                    "warned where plain better": 0,
                    "z": [],
                    "ratio warned": [],
                    "ratio silent": [],
                },
            )
            row["fits"] += 1
            row["warned"] += warned
            row["lost half"] += bool(lost)
            row["warned where lost half"] += bool(lost and warned)
            row["plain better"] += bool(better)
            row["warned where plain better"] += bool(better and warned)
            if "z" in record:
                row["z"].append(record["z"])
            if record.get("cv"):
                row["compared"] += 1
                ours, theirs = record["cv"]
                row["ratio warned" if warned else "ratio silent"].append(ours / theirs)
    finally:
        VDClassifier._check_dense, _vd_classifier.cross_validated_log_loss = check, cv
    print(
        "| family | fits | compared | warned | kept < half the relevant (warned) "
        "| plain's test log loss 10 % lower (warned) | z: max | CV ratio: max silent | min warned |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for family, row in table.items():
        silent = max(row["ratio silent"], default=math.nan)
        loud = min(row["ratio warned"], default=math.nan)
        z = max((v for v in row["z"] if math.isfinite(v)), default=math.nan)
        print(
            f"| {family} | {row['fits']} | {row['compared']} | {row['warned']} | {row['lost half']} "
            f"({row['warned where lost half']}) | {row['plain better']} ({row['warned where plain better']}) "
            f"| {z:.3g} | {silent:.3g} | {loud:.3g} |",
            flush=True,
        )
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/evidence_dense_classifier"))
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    table = sweep(args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warning.json").write_text(json.dumps(table, indent=1))
    print(f"\nresults: {args.out / 'warning.json'}")


if __name__ == "__main__":
    main()
