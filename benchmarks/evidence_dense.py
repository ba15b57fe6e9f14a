"""
VDRegression's evidence rule where many features are relevant (dense truths): the relevant features kept,
the irrelevant ones kept and the test MSE (against the noiseless truth) per generator, over seeds, with
the plain rule (``threshold="sparse_vd"``) beside it. The draws: n rows of d AR(1) columns (ρ between
neighbours), k relevant with |w| uniform in [low, high] and a random sign, Gaussian noise.

    python benchmarks/evidence_dense.py [--seeds 3] [--out results/evidence_dense]
"""

import argparse
import json
import pathlib
import statistics
import warnings

import numpy as np

from pyro_vd.linear import VDRegression

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


def draw(n, d, k, rho, noise, low, high, seed, n_test=2000):
    """Training rows, targets, test rows, the test rows' noiseless targets and the relevant columns."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n + n_test, d))
    X = Z.copy()
    for j in range(1, d):
        X[:, j] = rho * X[:, j - 1] + np.sqrt(1 - rho**2) * Z[:, j]
    w = np.zeros(d)
    relevant = rng.choice(d, k, replace=False)
    w[relevant] = rng.uniform(low, high, k) * rng.choice([-1, 1], k)
    y = X[:n] @ w + noise * rng.standard_normal(n)
    return X[:n], y, X[n:], X[n:] @ w, relevant


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/evidence_dense"))
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    print("| draw | rule | relevant kept (per seed) | irrelevant kept | median test MSE |")
    print("|---|---|---|---|---:|")
    rows = run(args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\nresults: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
