"""
The VD relevance rules across data the evidence rule was not designed on: seeds 0..S-1 of the seed's
generator, AR(1)-correlated features (ρ = 0.5, 0.9), other sizes, and (``--classifier``) logistic
regression. For each setting and rule: irrelevant features kept and relevant lost (median, min–max over
seeds) and the test MSE (accuracy for classifiers), with RVR alongside for regression.

Rules: ``sparse_vd`` (log α ≤ 3, the plain VD fit) and ``evidence`` (ELBO gain > log d, in the fit; see
:mod:`pyro_vd.linear.relevance`; for VDClassifier the search of :mod:`pyro_vd.linear._vd_selection`).

    python benchmarks/relevance_rule.py [--seeds 10] [--classifier] [--no-regression]
        [--methods sparse_vd,evidence,RVC] [--quick] [--out results/relevance_rule]
"""

import argparse
import json
import pathlib
import time
import warnings

import numpy as np

from pyro_vd.experiments.ard_data import make_ard_classification, make_ard_regression
from pyro_vd.linear import RVC, RVR, VDClassifier, VDRegression
from pyro_vd.linear._convergence import ConvergenceWarning

SETTINGS = {  # name: (n, d, n_relevant, rho)
    "1000 × 1000": (1000, 1000, 10, 0.0),
    "100 000 × 100": (100000, 100, 10, 0.0),
    "1000 × 1000, ρ = 0.5": (1000, 1000, 10, 0.5),
    "1000 × 1000, ρ = 0.9": (1000, 1000, 10, 0.9),
    "300 × 3000": (300, 3000, 10, 0.0),
    "5000 × 200, 50 relevant": (5000, 200, 50, 0.0),
}
QUICK = {"1000 × 1000": (1000, 1000, 10, 0.0), "100 000 × 100": (100000, 100, 10, 0.0)}
HEADER = (
    "| setting | rule | irrelevant kept | relevant lost | {metric} | fit s |\n|---|---|---:|---:|---:|---:|"
)
CLASSIFIER_SETTINGS = SETTINGS | {"20 000 × 100": (20000, 100, 10, 0.0)}
CLASSIFIER_METHODS = ("sparse_vd", "evidence", "RVC")


def _counts(relevance, n_relevant):
    relevance = np.asarray(relevance, bool)
    return int(relevance[n_relevant:].sum()), int((~relevance[:n_relevant]).sum())


def regression_setting(n, d, n_relevant, rho, seeds, rvr=True):
    rows = {"VD, sparse_vd": [], "VD, evidence": []} | ({"RVR": []} if rvr else {})
    for seed in range(seeds):
        X, y, X_test, y_test, _ = make_ard_regression(n, d, n_relevant, seed=seed, rho=rho, n_test=5000)
        makers = {
            "VD, sparse_vd": lambda: VDRegression(threshold="sparse_vd"),
            "VD, evidence": lambda: VDRegression(threshold="evidence"),
            "RVR": RVR,
        }
        for name in rows:
            start = time.perf_counter()
            model = makers[name]().fit(X, y)
            seconds = time.perf_counter() - start
            false, lost = _counts(model.relevance_, n_relevant)
            mse = float(np.mean((model.predict(X_test) - y_test) ** 2))
            rows[name].append({"false": false, "lost": lost, "metric": mse, "seconds": seconds})
    return rows


def classification_setting(n, d, n_relevant, rho, seeds, solver="newton", methods=CLASSIFIER_METHODS):
    """``methods`` of VD-RVC's two rules (``sparse_vd``: the plain fit read at log α ≤ 3; ``evidence``: the
    selection inside the fit) and ``RVC``, with the oracle (the relevant features only) alongside."""
    makers = {
        "VD-RVC, sparse_vd": lambda: VDClassifier(solver=solver, threshold="sparse_vd"),
        "VD-RVC, evidence": lambda: VDClassifier(threshold="evidence"),
        "RVC": RVC,
    }
    names = {"sparse_vd": "VD-RVC, sparse_vd", "evidence": "VD-RVC, evidence", "RVC": "RVC"}
    rows = {names[m]: [] for m in methods} | {"oracle": []}
    for seed in range(seeds):
        X, y, X_test, y_test, _ = make_ard_classification(n, d, n_relevant, seed=seed, rho=rho, n_test=5000)
        for name in rows:
            if name == "oracle":
                continue
            start = time.perf_counter()
            with warnings.catch_warnings():  # L-BFGS warns at its cap: the figures are of that early stop
                if solver == "lbfgs":
                    warnings.simplefilter("ignore", ConvergenceWarning)
                model = makers[name]().fit(X, y)
            seconds = time.perf_counter() - start
            accuracy = float(np.mean(model.predict(X_test) == y_test))
            false, lost = _counts(model.relevance_, n_relevant)
            rows[name].append({"false": false, "lost": lost, "metric": accuracy, "seconds": seconds})
        # the relevant features only, every one kept (the plain fit)
        oracle = VDClassifier(threshold="sparse_vd").fit(X[:, :n_relevant], y)
        accuracy = float(np.mean(oracle.predict(X_test[:, :n_relevant]) == y_test))
        rows["oracle"].append({"false": 0, "lost": 0, "metric": accuracy, "seconds": 0.0})
    return rows


def _summary(values):
    values = np.asarray(values, float)
    return f"{np.median(values):g} ({values.min():g}–{values.max():g})"


def format_table(results, n_irrelevant, n_relevant, metric):
    lines = [
        f"| setting | rule | irrelevant kept (of {n_irrelevant}) | relevant lost (of {n_relevant}) | "
        f"{metric} | fit s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for setting, rows in results.items():
        for name, runs in rows.items():
            lines.append(
                f"| {setting} | {name} | {_summary([r['false'] for r in runs])} | "
                f"{_summary([r['lost'] for r in runs])} | "
                f"{np.median([r['metric'] for r in runs]):.4f} "
                f"({min(r['metric'] for r in runs):.4f}–{max(r['metric'] for r in runs):.4f}) | "
                f"{np.median([r['seconds'] for r in runs]):.2f} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the two seed tables only")
    parser.add_argument("--no-rvr", action="store_true")
    parser.add_argument("--classifier", action="store_true")
    parser.add_argument("--no-regression", action="store_true", help="the classifiers' tables only")
    parser.add_argument(
        "--methods",
        default=",".join(CLASSIFIER_METHODS),
        help="the classifiers to fit (sparse_vd, evidence, RVC; sparse_vd takes about a minute a seed at "
        "1000 x 1000)",
    )
    parser.add_argument(
        "--solver",
        choices=("newton", "lbfgs"),
        default="newton",
        help="VDClassifier's for the sparse_vd rule (the evidence rule always runs Newton)",
    )
    parser.add_argument("--out", default="results/relevance_rule")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"regression": {}, "classification": {}}
    settings = QUICK if args.quick else SETTINGS
    methods = tuple(args.methods.split(","))
    if not set(methods) <= set(CLASSIFIER_METHODS):
        parser.error(f"--methods: each of {', '.join(CLASSIFIER_METHODS)}; got {args.methods!r}")
    if not args.no_regression:
        print("## Regression: irrelevant kept, relevant lost (median (min–max) over seeds), test MSE\n")
        print(HEADER.format(metric="test MSE"))
    for setting, (n, d, k, rho) in () if args.no_regression else settings.items():
        rows = regression_setting(n, d, k, rho, args.seeds, rvr=not args.no_rvr)
        results["regression"][setting] = {"config": [n, d, k, rho], "rows": rows}
        print(format_table({setting: rows}, d - k, k, "test MSE").split("\n", 2)[2], flush=True)
    if args.classifier:
        print("\n## Classification (test accuracy)\n")
        print(HEADER.format(metric="accuracy"))
        for setting, (n, d, k, rho) in (QUICK if args.quick else CLASSIFIER_SETTINGS).items():
            rows = classification_setting(n, d, k, rho, args.seeds, args.solver, methods)
            results["classification"][setting] = {"config": [n, d, k, rho], "rows": rows}
            print(format_table({setting: rows}, d - k, k, "accuracy").split("\n", 2)[2], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out}/results.json")


if __name__ == "__main__":
    main()
