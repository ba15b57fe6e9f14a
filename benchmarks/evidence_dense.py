"""
VDRegression's evidence rule where many features are relevant (dense truths): the relevant features kept,
the irrelevant ones kept and the test MSE (against the noiseless truth) per generator, over seeds, with
the plain rule (``threshold="sparse_vd"``) beside it. The draws: n rows of d AR(1) columns (ρ between
neighbours), k relevant with |w| uniform in [low, high] and a random sign, Gaussian noise.

With ``--warning``, where :class:`~pyro_vd.linear.EvidenceRuleWarning` fires instead: per family of draws
(these dense ones, sparse AR(1) draws, the seed's generator, pure noise, t₃-tailed data, and d close to
n, where no check is made) the fits, those checked, those warned, and the ratio of the evidence fit's
generalized cross-validation error to the plain fit's (largest where it did not warn, smallest where it
did); for the dense family also the fits that kept under half of the relevant features.

    python benchmarks/evidence_dense.py [--seeds 3] [--warning] [--out results/evidence_dense]
"""

import argparse
import itertools
import json
import math
import pathlib
import statistics
import warnings

import numpy as np

from pyro_vd.experiments.ard_data import make_ard_regression, make_dense_regression
from pyro_vd.linear import EvidenceRuleWarning, VDRegression
from pyro_vd.linear import vd_regression as _vd_regression

#: (n, d, k, low, high): the generators; each is run at ρ = 0 and 0.6 and noise 0.1 and 1.
GENERATORS = (
    (400, 300, 130, 0.5, 1.5),
    (400, 300, 200, 0.2, 0.6),
    (400, 300, 120, 0.5, 2.0),
    (200, 400, 30, 0.5, 2.0),
    (300, 200, 50, 0.5, 2.0),
    (200, 100, 60, 0.3, 1.0),
    (1000, 300, 300, 0.1, 0.5),
    (100, 50, 40, 0.5, 1.5),
)


def draw(n, d, k, rho, noise, low, high, seed):
    """Training rows, targets, test rows, the test rows' noiseless targets and the relevant columns."""
    return make_dense_regression(n, d, k, low=low, high=high, noise_sd=noise, rho=rho, seed=seed)


def run(seeds):
    rows = []
    for n, d, k, low, high in GENERATORS:
        for rho in (0.0, 0.6):
            for noise in (0.1, 1.0):
                for threshold in ("evidence", "sparse_vd"):
                    kept, extra, mse = [], [], []
                    for seed in range(seeds):
                        X, y, X_test, truth, relevant = draw(n, d, k, rho, noise, low, high, seed)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            fit = VDRegression(threshold=threshold).fit(X, y)
                        kept.append(int(fit.relevance_[relevant].sum()))
                        extra.append(int(fit.relevance_.sum()) - kept[-1])
                        mse.append(float(np.mean((fit.predict(X_test) - truth) ** 2)))
                    rows.append(
                        {
                            "n": n,
                            "d": d,
                            "k": k,
                            "w": f"{low}–{high}",
                            "rho": rho,
                            "noise": noise,
                            "threshold": threshold,
                            "relevant_kept": kept,
                            "irrelevant_kept": extra,
                            "test_mse": mse,
                        }
                    )
                    print(
                        f"| {n} × {d}, {k} relevant, |w| {low}–{high}, ρ = {rho}, noise {noise} "
                        f"| {threshold} "
                        f"| {'/'.join(map(str, kept))} of {k} | {'/'.join(map(str, extra))} "
                        f"| {statistics.median(mse):.4g} |",
                        flush=True,
                    )
    return rows


def _families(seeds):
    """(family, draw) pairs: draw() gives X, y and the relevant columns."""
    for (n, d, k, low, high), rho, noise, seed in itertools.product(
        GENERATORS, (0.0, 0.6), (0.1, 1.0), seeds
    ):
        yield "dense", lambda a=(n, d, k, rho, noise, low, high, seed): _xy(draw(*a))
    sizes = ((100, 20), (400, 300), (1000, 100), (2000, 50), (200, 150))
    for (n, d), k, rho, noise, seed in itertools.product(
        sizes, (1, 5, 10), (0.0, 0.6, 0.9), (0.1, 1.0, 3.0), seeds
    ):
        yield "sparse AR(1)", lambda a=(n, d, k, rho, noise, 0.5, 2.0, seed): _xy(draw(*a))
    sizes = ((1000, 100), (500, 300), (2000, 500), (300, 100), (100, 20))
    for (n, d), k, rho, noise, seed in itertools.product(
        sizes, (1, 10), (0.0, 0.5, 0.9), (0.1, 1.0, 3.0), seeds
    ):
        yield "seed's generator", lambda a=(n, d, k, noise, seed, rho): _seed_generator(*a)
    for (n, d), seed in itertools.product(((1000, 100), (500, 300), (300, 200), (100, 20), (60, 45)), seeds):
        yield "pure noise", lambda a=(n, d, seed): _noise(*a)
    for (n, d), k, seed in itertools.product(((1000, 100), (400, 300), (200, 100)), (3, 10), seeds):
        yield "t3-tailed", lambda a=(n, d, k, seed): _heavy(*a)
    for (n, d), k, noise, seed in itertools.product(
        ((60, 55), (100, 90), (200, 190)), (1, 5), (1.0, 3.0), seeds
    ):
        yield "d close to n", lambda a=(n, d, k, 0.0, noise, 0.5, 2.0, seed): _xy(draw(*a))


def _xy(drawn):
    X, y, _, _, relevant = drawn
    return X, y, relevant


def _seed_generator(n, d, k, noise, seed, rho):
    X, y = make_ard_regression(n, d, k, noise=noise, seed=seed, rho=rho)[:2]
    return np.asarray(X), np.asarray(y), np.arange(k)


def _noise(n, d, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), 5.0 + 3.0 * rng.standard_normal(n), np.arange(0)


def _heavy(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_t(3, (n, d))
    w = np.zeros(d)
    w[:k] = rng.uniform(0.5, 2.0, k)
    return X, X @ w + rng.standard_t(3, n), np.arange(k)


def warning_sweep(seeds):
    """The EvidenceRuleWarning's record per family (module docstring)."""
    ratios = []
    check = VDRegression._check_dense

    def recorded(self, problem, log_alpha, plain):  # the ratio the check compares with DENSE_GCV_RATIO
        ours = _vd_regression._gcv(problem, log_alpha, self.fit_intercept)
        ratios.append(ours / _vd_regression._gcv(problem, plain, self.fit_intercept))
        return check(self, problem, log_alpha, plain)

    VDRegression._check_dense = recorded
    table = {}
    try:
        for family, make in _families(range(seeds)):
            X, y, relevant = make()
            ratios.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit = VDRegression().fit(X, y)
            checked = bool(ratios) and X.shape[1] <= _vd_regression.DENSE_CHECK_FEATURES_PER_ROW * X.shape[0]
            warned = any(issubclass(w.category, EvidenceRuleWarning) for w in caught)
            lost = len(relevant) > 0 and fit.relevance_[relevant].sum() < 0.5 * len(relevant)
            row = table.setdefault(
                family,
                {
                    "fits": 0,
                    "checked": 0,
                    "warned": 0,
                    "lost half": 0,
                    "warned where lost half": 0,
                    "ratio warned": [],
                    "ratio silent": [],
                },
            )
            row["fits"] += 1
            row["checked"] += checked
            row["warned"] += warned
            row["lost half"] += bool(lost)
            row["warned where lost half"] += bool(lost and warned)
            if checked:
                row["ratio warned" if warned else "ratio silent"].append(ratios[0])
    finally:
        VDRegression._check_dense = check
    print(
        "| family | fits | checked | warned | kept < half the relevant (warned) "
        "| GCV ratio: max silent | min warned |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for family, row in table.items():
        silent = max(row["ratio silent"], default=math.nan)
        loud = min(row["ratio warned"], default=math.nan)
        print(
            f"| {family} | {row['fits']} | {row['checked']} | {row['warned']} | {row['lost half']} "
            f"({row['warned where lost half']}) | {silent:.3g} | {loud:.3g} |"
        )
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--warning", action="store_true", help="where EvidenceRuleWarning fires, per family")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/evidence_dense"))
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.warning:
        table = warning_sweep(args.seeds)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "warning.json").write_text(json.dumps(table, indent=1))
        print(f"\nresults: {args.out / 'warning.json'}")
        return
    print("| draw | rule | relevant kept (per seed) | irrelevant kept | median test MSE |")
    print("|---|---|---|---|---:|")
    rows = run(args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\nresults: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
