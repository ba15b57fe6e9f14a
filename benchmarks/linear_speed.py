"""
Fit time of the linear ARD regressors and what the thread pools do to it, in one run (issue 14, item 3):

1. VDRegression against scikit-learn's ARDRegression on 100 000 × 100 (10 relevant), on several draws
   (seeds, and correlated columns): the fits interleaved in this process, the median of repeats and the
   ratio per draw (target: VDRegression ≥ 5× faster on two draws). RVR is timed alongside.
2. Where VDRegression's time goes: its one pass over the rows (XᵀX with the sums and Xᵀy, one symmetric
   rank-k update per block of rows, on every core) as a share of the fit, and numpy's plain X.T @ X with
   the pools as found for comparison (numpy already uses syrk for it).
3. RVR on the 1000 × 1000 ARD table: the pools as the fit sets them (BLAS on one thread) against the pools
   as found (OpenBLAS on every core), with torch's pool on every core or on one.

The machine is shared: next to every timing the CPU that other processes used meanwhile is printed (in
cores, from /proc/stat; Linux only), since a busy core slows multi-threaded BLAS far more than a
single-threaded fit. Every timed fit starts 0.2 s after the previous one ended (``PAUSE``).

    python benchmarks/linear_speed.py [--repeats 7] [--rvr-repeats 3] [--out results/linear_speed]
"""

import argparse
import contextlib
import json
import os
import pathlib
import time
import warnings

import numpy as np
import torch

from pyro_vd.experiments.ard_data import make_ard_regression
from pyro_vd.linear import RVR, VDRegression
from pyro_vd.linear._threads import pools_as_found
from pyro_vd.linear.vd_regression import _chunk_statistics

#: (seed, rho) of the 100 000 × 100 draws: the seed's generator on two seeds, and AR(1) columns.
DRAWS = ((0, 0.0), (1, 0.0), (2, 0.5))


class OthersLoad:
    """CPU used by other processes between ``start()`` and ``stop()``, in cores (None off Linux)."""

    def __init__(self):
        self.cores = None

    @staticmethod
    def _busy_seconds():
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + values[4]  # idle and iowait
        return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        try:
            self._start = (self._busy_seconds(), sum(os.times()[:2]), time.perf_counter())
        except (OSError, ValueError, IndexError):
            self._start = None
        return self

    def __exit__(self, *exc):
        if self._start is not None:
            busy, own, wall = self._start
            elapsed = time.perf_counter() - wall
            others = (self._busy_seconds() - busy) - (sum(os.times()[:2]) - own)
            self.cores = max(others, 0.0) / elapsed if elapsed > 0 else None
        return False


#: Seconds between timed fits: OpenBLAS's threads spin for a while after a multi-threaded call, and a fit
#: started in that time shares a core with them (the fits before it would decide how fast it runs).
PAUSE = 0.2


def _timed(fit, pause=PAUSE):
    time.sleep(pause)
    start = time.perf_counter()
    result = fit()
    return time.perf_counter() - start, result


def _mse(model, X, y):
    return float(np.mean((model.predict(X) - y) ** 2))


def vd_against_sklearn(seed, rho, repeats):
    """Medians of interleaved fits on one 100 000 × 100 draw, the ratios, and the pass's share."""
    from sklearn.linear_model import ARDRegression

    X, y, X_test, y_test, _ = make_ard_regression(100000, 100, 10, seed=seed, rho=rho)

    def vd_as_found():
        with pools_as_found():
            return VDRegression().fit(X, y)

    runs = {
        "VDRegression": lambda: VDRegression().fit(X, y),
        "sklearn ARDRegression": lambda: ARDRegression().fit(X, y),
        "one pass over the rows": lambda: _chunk_statistics(X, y),
        "numpy X.T @ X, pools as found": lambda: X.T @ X,
        "VDRegression, pools as found": vd_as_found,
        "RVR": lambda: RVR().fit(X, y),
    }
    times = {name: [] for name in runs}
    models = {}
    for name, run in runs.items():  # warm up (imports, caches, thread pools)
        models[name] = run()
    with OthersLoad() as load:
        for _ in range(repeats):
            for name, run in runs.items():
                seconds, _ = _timed(run)
                times[name].append(seconds)
    median = {name: float(np.median(t)) for name, t in times.items()}
    vd, sk, found = (
        models["VDRegression"],
        models["sklearn ARDRegression"],
        models["VDRegression, pools as found"],
    )
    return {
        "draw": {"seed": seed, "rho": rho, "n": 100000, "d": 100, "relevant": 10},
        "seconds": median,
        "all_seconds": times,
        "speedup_vs_sklearn": median["sklearn ARDRegression"] / median["VDRegression"],
        "rvr_speedup_vs_sklearn": median["sklearn ARDRegression"] / median["RVR"],
        "pass_share_of_fit": median["one pass over the rows"] / median["VDRegression"],
        "pools_speedup": median["VDRegression, pools as found"] / median["VDRegression"],
        "test_mse": {
            "VDRegression": _mse(vd, X_test, y_test),
            "sklearn ARDRegression": _mse(sk, X_test, y_test),
            "RVR": _mse(models["RVR"], X_test, y_test),
        },
        "pools_change_the_fit": {
            "max_abs_coef_difference": float(np.abs(vd.coef_ - found.coef_).max()),
            "same_relevance": bool(np.array_equal(vd.relevance_, found.relevance_)),
        },
        "others_load_cores": load.cores,
    }


@contextlib.contextmanager
def _torch_threads(n):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def rvr_thread_settings(repeats):
    """RVR on the 1000 × 1000 ARD table (seed 0) under each thread setting, interleaved."""
    X, y, X_test, y_test, _ = make_ard_regression(1000, 1000, 10, seed=0)
    torch.ones(1 << 20).sum()  # torch's pool exists, as after the VD fits of the table
    settings = {
        "set by the fit (BLAS on one thread)": contextlib.nullcontext,
        "pools as found (OpenBLAS and torch on every core)": pools_as_found,
        "pools as found, torch on one thread": lambda: _stack(pools_as_found(), _torch_threads(1)),
    }
    result = {}
    for _ in range(repeats):
        for name, setting in settings.items():
            with OthersLoad() as load, setting(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds, model = _timed(lambda: RVR().fit(X, y))
            entry = result.setdefault(name, {"seconds": [], "others_load_cores": []})
            entry["seconds"].append(seconds)
            entry["others_load_cores"].append(load.cores)
            entry["n_iter"] = int(model.n_iter_)
            entry["test_mse"] = _mse(model, X_test, y_test)
            entry["coef"] = model.coef_
    reference = result["set by the fit (BLAS on one thread)"]["coef"]
    for entry in result.values():
        entry["median_seconds"] = float(np.median(entry["seconds"]))
        entry["max_abs_coef_difference"] = float(np.abs(entry.pop("coef") - reference).max())
    return result


@contextlib.contextmanager
def _stack(*managers):
    with contextlib.ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


def speed_report(repeats=7, rvr_repeats=3, draws=DRAWS):
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "vd_vs_sklearn": [vd_against_sklearn(seed, rho, repeats) for seed, rho in draws],
        "rvr_1000x1000": rvr_thread_settings(rvr_repeats) if rvr_repeats > 0 else None,
    }


def _load(cores):
    return "?" if cores is None else f"{cores:.2f}"


def format_report(report):
    lines = [
        f"## VDRegression vs scikit-learn ARDRegression, 100 000 × 100 (median of {report['repeats']})",
        "",
    ]
    lines.append(
        "| draw | VDRegression s | sklearn s | ratio | RVR s | one pass s (share) | numpy XᵀX s "
        "| VD, pools as found s | test MSE VD / sklearn | others' load |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in report["vd_vs_sklearn"]:
        s, draw, mse = r["seconds"], r["draw"], r["test_mse"]
        lines.append(
            f"| seed {draw['seed']}, ρ = {draw['rho']} | {s['VDRegression']:.4f} "
            f"| {s['sklearn ARDRegression']:.4f} "
            f"| **{r['speedup_vs_sklearn']:.2f}×** | {s['RVR']:.3f} | {s['one pass over the rows']:.4f} "
            f"({r['pass_share_of_fit']:.0%}) | {s['numpy X.T @ X, pools as found']:.4f} "
            f"| {s['VDRegression, pools as found']:.4f} | {mse['VDRegression']:.4f} / "
            f"{mse['sklearn ARDRegression']:.4f} | {_load(r['others_load_cores'])} |"
        )
    diffs = [r["pools_change_the_fit"] for r in report["vd_vs_sklearn"]]
    lines.append("")
    lines.append(
        "Pools set vs as found: max |Δcoef| "
        f"{max(d['max_abs_coef_difference'] for d in diffs):.2g}, same relevance: "
        f"{all(d['same_relevance'] for d in diffs)}"
    )
    if report["rvr_1000x1000"]:
        lines += ["", "## RVR on the 1000 × 1000 ARD table (seed 0)", ""]
        lines.append(
            "| thread setting | median s | all s | n_iter | test MSE | max abs Δcoef | others' load |"
        )
        lines.append("|---|---:|---|---:|---:|---:|---|")
        for name, e in report["rvr_1000x1000"].items():
            lines.append(
                f"| {name} | {e['median_seconds']:.2f} | {', '.join(f'{t:.1f}' for t in e['seconds'])} "
                f"| {e['n_iter']} | {e['test_mse']:.4f} | {e['max_abs_coef_difference']:.2g} "
                f"| {', '.join(_load(c) for c in e['others_load_cores'])} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rvr-repeats", type=int, default=3, help="0 skips the RVR thread settings")
    parser.add_argument("--out", default="results/linear_speed")
    args = parser.parse_args()
    report = speed_report(args.repeats, args.rvr_repeats)
    print(format_report(report))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {out}/results.json")


if __name__ == "__main__":
    main()
