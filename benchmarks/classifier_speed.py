"""
VDClassifier against RVC on 100 000 × 100 (issue 13, item 5: at most 3× RVC's time at the same optimum),
in one run:

1. Fit time: RVC, ``VDClassifier()`` (the default: the evidence rule's selection, each model fitted by
   Newton) and ``VDClassifier(threshold="sparse_vd")`` (Newton over every feature: the plain optimum)
   interleaved, ``--repeats`` times each per draw (the seed's generator on two seeds and AR(1) columns
   with ρ = 0.5), medians and their ratios to RVC.
2. The same optimum: the default fit as shipped (row blocks on the cores) against the same search in one
   block on one thread: ELBO, relevant sets, coefficients.
3. ``--lbfgs``: the L-BFGS solver's time and ELBO at its 500-step cap (the default before issue 13), once
   per draw.

    OMP_NUM_THREADS=2 python benchmarks/classifier_speed.py [--repeats 3] [--lbfgs] [--out DIR]
"""

import argparse
import contextlib
import json
import pathlib
import time
import warnings

import numpy as np

import pyro_vd.linear.vd_classifier as vd_classifier
from pyro_vd.experiments.ard_data import make_ard_classification
from pyro_vd.linear import RVC, VDClassifier
from pyro_vd.linear._rows import InMemoryRows

DRAWS = ((0, 0.0), (1, 0.0), (2, 0.5))
PAUSE = 0.2


def _timed(fit):
    time.sleep(PAUSE)
    start = time.perf_counter()
    result = fit()
    return time.perf_counter() - start, result


@contextlib.contextmanager
def _reference_solver():
    """Newton with the rows in one block, on one thread."""

    def one_block(X, t, **_):
        return InMemoryRows(X, t, max_block_rows=len(t), n_threads=1)

    saved = vd_classifier.InMemoryRows
    vd_classifier.InMemoryRows = one_block
    try:
        yield
    finally:
        vd_classifier.InMemoryRows = saved


def _summary(model):
    log_alpha = np.asarray(model.log_alpha_)
    return {
        "elbo": float(model.log_evidence_),
        "n_iter": int(model.n_iter_),
        "relevant_evidence": np.flatnonzero(model.relevance_).tolist(),
        "relevant_log_alpha_le_3": np.flatnonzero(log_alpha <= 3.0).tolist(),
    }


def one_draw(seed, rho, repeats, lbfgs):
    X, y, X_test, y_test, _ = make_ard_classification(100000, 100, 10, seed=seed, rho=rho)
    runs = {
        "RVC": lambda: RVC().fit(X, y),
        "VDClassifier": lambda: VDClassifier().fit(X, y),
        "VDClassifier plain": lambda: VDClassifier(threshold="sparse_vd").fit(X, y),
    }
    models = {name: run() for name, run in runs.items()}  # warm up
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds, _ = _timed(run)
            times[name].append(seconds)
    median = {name: float(np.median(t)) for name, t in times.items()}
    newton = models["VDClassifier"]
    with _reference_solver():
        reference_seconds, reference = _timed(lambda: VDClassifier().fit(X, y))
    new, ref = _summary(newton), _summary(reference)
    result = {
        "draw": {"seed": seed, "rho": rho, "n": 100000, "d": 100, "relevant": 10},
        "seconds": median,
        "all_seconds": times,
        "newton_over_rvc": median["VDClassifier"] / median["RVC"],
        "plain_over_rvc": median["VDClassifier plain"] / median["RVC"],
        "plain": _summary(models["VDClassifier plain"]),
        "newton": new,
        "reference_newton": {**ref, "seconds": reference_seconds},
        "elbo_difference": new["elbo"] - ref["elbo"],
        "same_relevant_sets": {
            "evidence": new["relevant_evidence"] == ref["relevant_evidence"],
            "log_alpha_le_3": new["relevant_log_alpha_le_3"] == ref["relevant_log_alpha_le_3"],
        },
        "max_coef_difference_relative": float(
            np.abs(newton.coef_ - reference.coef_).max() / np.abs(reference.coef_).max()
        ),
        "test_accuracy": {
            name: float(np.mean(model.predict(X_test) == y_test)) for name, model in models.items()
        },
    }
    if lbfgs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, model = _timed(
                lambda: VDClassifier(solver="lbfgs", threshold="sparse_vd", max_iter=500).fit(X, y)
            )
        result["lbfgs"] = {**_summary(model), "seconds": seconds}
    return result


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lbfgs", action="store_true", help="also time the L-BFGS solver once")
    parser.add_argument("--out", default="results/classifier_speed")
    args = parser.parse_args()
    results = []
    for seed, rho in DRAWS:
        r = one_draw(seed, rho, args.repeats, args.lbfgs)
        results.append(r)
        s = r["seconds"]
        line = (
            f"seed {seed} rho {rho}: RVC {s['RVC']:.2f} s, VDClassifier {s['VDClassifier']:.2f} s "
            f"({r['newton']['n_iter']} steps) = {r['newton_over_rvc']:.2f}x RVC; plain "
            f"{s['VDClassifier plain']:.2f} s ({r['plain']['n_iter']} steps) = {r['plain_over_rvc']:.2f}x; "
            "reference "
            f"{r['reference_newton']['seconds']:.2f} s; ELBO {r['newton']['elbo']:.4f} "
            f"(reference {r['elbo_difference']:+.2e}); same sets {r['same_relevant_sets']}; "
            f"coef rel diff {r['max_coef_difference_relative']:.1e}"
        )
        if "lbfgs" in r:
            line += f"; L-BFGS {r['lbfgs']['seconds']:.1f} s, ELBO {r['lbfgs']['elbo']:.4f}"
        print(line, flush=True)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classifier_speed.json").write_text(json.dumps(results, indent=2))
    ratios = [r["newton_over_rvc"] for r in results]
    print(
        f"VDClassifier / RVC per draw: {', '.join(f'{x:.2f}' for x in ratios)}; "
        f"median {np.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
