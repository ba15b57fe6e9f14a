"""
G-KL RVC from its default start against RVC (issue 13, item 2: at least RVC's test accuracy, at most
10 s on the seed's 1000 × 1000 table and 2 s on 50 × 60 random data), over seeds:

1. The table (``make_ard_classification(1000, 1000, 10)``, seeds 0..S-1): RVC, ``GKLClassifier()`` and
   ``GKLClassifier(init="rvc")``: test accuracy, irrelevant pruned, relevant kept, fit seconds, log
   evidence (Laplace for RVC, the G-KL bound for G-KL), ConvergenceWarnings.
2. 50 × 60 random data (X ~ N(0, 1), labels by fair coin), seeds 0..S-1: fit seconds and features kept.

    OMP_NUM_THREADS=2 python benchmarks/gkl_start.py [--seeds 10] [--out results/gkl_start]
"""

import argparse
import json
import pathlib
import time
import warnings

import numpy as np

from pyro_vd.experiments.ard_data import make_ard_classification
from pyro_vd.linear import RVC, GKLClassifier

METHODS = {
    "RVC": RVC,
    "G-KL (default start)": GKLClassifier,
    "G-KL (RVC start)": lambda: GKLClassifier(init="rvc"),
}


def _fit(make, X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model = make().fit(X, y)
        seconds = time.perf_counter() - start
    return model, seconds, len(caught)


def table(seeds):
    rows = {name: [] for name in METHODS}
    for seed in range(seeds):
        X, y, X_test, y_test, _ = make_ard_classification(1000, 1000, 10, seed=seed)
        for name, make in METHODS.items():
            model, seconds, n_warnings = _fit(make, X, y)
            relevance = np.asarray(model.relevance_, bool)
            rows[name].append(
                {
                    "seed": seed,
                    "accuracy": float(np.mean(model.predict(X_test) == y_test)),
                    "pruned": int((~relevance[10:]).sum()),
                    "kept": int(relevance[:10].sum()),
                    "seconds": seconds,
                    "log_evidence": float(model.log_evidence_),
                    "warnings": n_warnings,
                }
            )
        line = ", ".join(
            f"{name} {rows[name][-1]['accuracy']:.4f} ({rows[name][-1]['seconds']:.1f} s, "
            f"{rows[name][-1]['pruned']}/990)"
            for name in METHODS
        )
        print(f"seed {seed}: {line}", flush=True)
    return rows


def random_data(seeds):
    rows = {name: [] for name in METHODS}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        X, y = rng.normal(size=(50, 60)), rng.integers(0, 2, 50)
        for name, make in METHODS.items():
            model, seconds, _ = _fit(make, X, y)
            rows[name].append({"seed": seed, "seconds": seconds, "kept": int(np.sum(model.relevance_))})
    for name, runs in rows.items():
        seconds = [r["seconds"] for r in runs]
        print(f"50 x 60 random, {name}: {min(seconds):.2f}-{max(seconds):.2f} s", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", default="results/gkl_start")
    args = parser.parse_args()
    results = {"table": table(args.seeds), "random_50x60": random_data(args.seeds)}
    rvc = np.array([r["accuracy"] for r in results["table"]["RVC"]])
    for name in list(METHODS)[1:]:
        runs = results["table"][name]
        difference = np.array([r["accuracy"] for r in runs]) - rvc
        seconds = [r["seconds"] for r in runs]
        print(
            f"{name} - RVC accuracy: median {np.median(difference):+.4f} ({difference.min():+.4f} to "
            f"{difference.max():+.4f}); seconds {np.median(seconds):.1f} ({min(seconds):.1f}-"
            f"{max(seconds):.1f})"
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gkl_start.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
