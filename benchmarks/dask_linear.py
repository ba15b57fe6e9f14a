"""
Linear ARD on Dask: fit time and the client's peak memory for N × 100 generated on a local cluster.

The rows are drawn lazily by ``dask.array.random`` on the workers (never stored, never sent to the
client); each regressor's fit is one pass over them, each classifier's (``--estimators VDClassifier,RVC``,
labels y > 1, balanced) one pass per Newton or IRLS evaluation. The client should stay well under
500 MB whatever N.

    python benchmarks/dask_linear.py                 # N = 20 000 000 (16 GB of float64)
    python benchmarks/dask_linear.py --n 2000000 --workers 2
    python benchmarks/dask_linear.py --n 2000000 --estimators VDClassifier,RVC
"""

import argparse
import os
import resource
import sys
import time

import numpy as np


def client_peak_rss_mb():
    """Peak resident memory of this (the client) process, in MB (ru_maxrss is kB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000_000, help="rows (default 20 000 000)")
    parser.add_argument("--d", type=int, default=100, help="features (default 100)")
    parser.add_argument("--chunk", type=int, default=250_000, help="rows per block (default 250 000)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    parser.add_argument("--estimators", default="VDRegression,RVR,GKLRegression")
    args = parser.parse_args()

    # this folder holds a distributed.py of its own, which would shadow the distributed package
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    import pyro_vd.linear

    start_rss = client_peak_rss_mb()
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        rng = da.random.default_rng(0)
        X = rng.normal(size=(args.n, args.d), chunks=(args.chunk, args.d))
        w = np.zeros(args.d)
        w[:10] = np.linspace(1.0, 0.1, 10)  # 10 relevant features
        y = X @ w + 1.0 + rng.normal(size=args.n, chunks=args.chunk)
        labels = (y > 1.0).astype(int)
        gb = args.n * args.d * 8 / 1e9
        print(f"N = {args.n:,} × {args.d} ({gb:.1f} GB, never stored), {args.workers} workers")
        print(f"client peak RSS before the fits: {start_rss:.0f} MB")
        for name in args.estimators.split(","):
            estimator = getattr(pyro_vd.linear, name)()
            began = time.perf_counter()
            estimator.fit(X, labels if hasattr(estimator, "predict_proba") else y)
            seconds = time.perf_counter() - began
            relevant = int(np.sum(estimator.relevance_))
            steps = f" ({estimator.n_iter_} steps)" if hasattr(estimator, "predict_proba") else ""
            print(
                f"{name:14s} fit {seconds:7.1f} s{steps}  relevant {relevant:3d}  "
                f"client peak RSS {client_peak_rss_mb():.0f} MB"
            )
        began = time.perf_counter()
        total = float(estimator.predict(X).sum().compute())
        seconds = time.perf_counter() - began
        print(f"predict (map_blocks, summed on the cluster) {seconds:.1f} s, Σŷ = {total:.4g}")
        print(f"client peak RSS at the end: {client_peak_rss_mb():.0f} MB (target < 500 MB)")


if __name__ == "__main__":
    main()
