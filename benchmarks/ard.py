"""
The seed's ARD experiments and the fit-time comparison with scikit-learn, in one run:

1. "more features": 1000 objects, 10 relevant + 990 irrelevant (regression and classification);
2. 100 000 × 100 with 10 relevant: every method, and minibatch SVI at 0.1 %, 1 %, 10 % batches;
3. fit time of VDRegression and RVR against scikit-learn's ARDRegression on 100 000 × 100
   (ratio from the same run; target ≥ 5× faster at equal test MSE).

    python benchmarks/ard.py [--out results/ard] [--skip-minibatch]
"""

import argparse
import json
import pathlib
import time

import numpy as np
import torch

from pyro_vd.experiments.ard import format_rows, minibatch, more_features
from pyro_vd.experiments.ard_data import make_ard_regression
from pyro_vd.linear import RVR, VDRegression


def fit_time_comparison(repeats=5):
    from sklearn.linear_model import ARDRegression

    X, y, X_test, y_test, _ = make_ard_regression(100000, 100, 10, seed=0)
    result = {}
    for name, make in (
        ("VDRegression", VDRegression),
        ("RVR", RVR),
        ("sklearn ARDRegression", ARDRegression),
    ):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model = make().fit(X, y)
            times.append(time.perf_counter() - start)
        result[name] = {
            "seconds": float(np.median(times)),
            "mse": float(np.mean((model.predict(X_test) - y_test) ** 2)),
        }
    base = result["sklearn ARDRegression"]["seconds"]
    for name in ("VDRegression", "RVR"):
        result[name]["speedup_vs_sklearn"] = base / result[name]["seconds"]
    return result


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="results/ard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-minibatch", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"more_features": more_features()}
    print("\n## More features (1000 objects, 10 relevant + 990 irrelevant)\n")
    print(format_rows(results["more_features"]["regression"]) + "\n")
    print(format_rows(results["more_features"]["classification"]) + "\n")
    if not args.skip_minibatch:
        results["minibatch"] = minibatch()
        print("\n## 100 000 × 100 (10 relevant)\n")
        print(format_rows(results["minibatch"]["regression"]) + "\n")
        print(format_rows(results["minibatch"]["classification"]) + "\n")
    results["fit_time"] = fit_time_comparison()
    print("\n## Fit time on 100 000 × 100 (median of 5)\n")
    for name, r in results["fit_time"].items():
        extra = (
            f", {r['speedup_vs_sklearn']:.1f}× faster than scikit-learn" if "speedup_vs_sklearn" in r else ""
        )
        print(f"- {name}: {r['seconds']:.3f} s, test MSE {r['mse']:.4f}{extra}")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out}/results.json")


if __name__ == "__main__":
    main()
