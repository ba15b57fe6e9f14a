"""
When does a linear regressor's fit interpolate its training rows, and does
:class:`~pyro_vd.linear.InterpolationWarning` say so? Per design (rows n × columns d, independent or
correlated columns, 5 relevant weights of sd 2, noise sd σ) and seed: each regressor's fitted noise sd
against the true σ, its test error against its own mean ``predict(X, return_std=True)``, and whether it
warned. A fit that interpolates reports a noise sd orders of magnitude below σ and a predictive sd far
below its test error; the warning should come with exactly those.

    OMP_NUM_THREADS=1 python benchmarks/interpolation.py [--seeds 0 1 2 3 4]
"""

import argparse
import warnings

import numpy as np

from pyro_vd.linear import RVR, GKLRegression, InterpolationWarning, VDRegression

DESIGNS = [(20, 40), (20, 200), (50, 100), (100, 1000), (30, 30), (20, 19), (100, 50), (200, 100)]
ESTIMATORS = {
    "RVR": lambda: RVR(),
    "GKLRegression": lambda: GKLRegression(),
    "VDRegression(sparse_vd)": lambda: VDRegression(threshold="sparse_vd"),
    "VDRegression(evidence)": lambda: VDRegression(),
}


def draw(n, d, noise, rho, seed, n_test=500):
    rng = np.random.default_rng(seed)
    cov_root = np.linalg.cholesky(rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d))))
    X = rng.standard_normal((n + n_test, d)) @ cov_root.T
    w = np.zeros(d)
    w[rng.choice(d, min(5, d), replace=False)] = 2.0 * rng.standard_normal(min(5, d))
    y = X @ w + noise * rng.standard_normal(n + n_test)
    return X[:n], y[:n], X[n:], y[n:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    print(
        "| estimator | warned | noise sd / σ (warned, median) | noise sd / σ (not warned, range) "
        "| test rmse / mean predictive sd (warned, median) | (not warned, range) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, make in ESTIMATORS.items():
        warned, quiet = [], []
        for n, d in DESIGNS:
            for noise in (0.5, 0.05):
                for rho in (0.0, 0.5):
                    for seed in args.seeds:
                        X, y, Xt, yt = draw(n, d, noise, rho, seed)
                        with warnings.catch_warnings(record=True) as caught:
                            warnings.simplefilter("always")
                            estimator = make().fit(X, y)
                        mean, sd = estimator.predict(Xt, return_std=True)
                        rmse = np.sqrt(np.mean((yt - mean) ** 2))
                        row = (
                            estimator.noise_precision_**-0.5 / noise,
                            rmse / np.mean(sd),
                            (n, d, noise, rho),
                        )
                        hit = any(issubclass(c.category, InterpolationWarning) for c in caught)
                        (warned if hit else quiet).append(row)
        total = len(warned) + len(quiet)

        def median(rows, k):
            return f"{np.median([r[k] for r in rows]):.2g}" if rows else "–"

        def span(rows, k):
            return f"{min(r[k] for r in rows):.2g}–{max(r[k] for r in rows):.2g}" if rows else "–"

        print(
            f"| {name} | {len(warned)}/{total} | {median(warned, 0)} | {span(quiet, 0)} "
            f"| {median(warned, 1)} | {span(quiet, 1)} |",
            flush=True,
        )
        if quiet:
            worst = min(quiet, key=lambda r: r[0])
            print(
                f"|   lowest unwarned noise sd / σ: {worst[0]:.2g} at (n, d, σ, ρ) = {worst[2]} | | | | | |"
            )


if __name__ == "__main__":
    main()
