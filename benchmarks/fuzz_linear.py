"""
The properties of ``tests/linear/test_fuzz.py`` with many more cases: every linear estimator (and
``VDRegression.partial_fit``) on random hostile data must give a finite answer or a clear
ValueError / TypeError, with at most a handful of warnings. Prints a table "estimator × cases tried,
failing" and the first failures of each estimator.

    python benchmarks/fuzz_linear.py --examples 200 --seed 0
    python benchmarks/fuzz_linear.py --examples 50 --only RVR VDClassifier --show 5
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.linear.test_fuzz import ESTIMATORS, check_case, random_case


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--examples", type=int, default=200, help="cases per estimator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="estimator names (default: all)")
    parser.add_argument("--show", type=int, default=3, help="failures listed per estimator")
    args = parser.parse_args(argv)
    names = args.only or list(ESTIMATORS)
    rows, details = [], []
    for name in names:
        rng = np.random.default_rng([args.seed, sorted(ESTIMATORS).index(name)])
        start, failures = time.perf_counter(), []
        for _ in range(args.examples):
            case = random_case(rng)
            problem = check_case(name, case)
            if problem is not None:
                failures.append((case, problem))
        rows.append((name, args.examples, len(failures), time.perf_counter() - start))
        details += [(name, case, problem) for case, problem in failures[: args.show]]
    width = max(len(r[0]) for r in rows)
    print(f"{'estimator':{width}}  {'tried':>6}  {'failing':>7}  {'seconds':>8}")
    for name, tried, failing, seconds in rows:
        print(f"{name:{width}}  {tried:6d}  {failing:7d}  {seconds:8.1f}")
    print(f"{'total':{width}}  {sum(r[1] for r in rows):6d}  {sum(r[2] for r in rows):7d}")
    for name, case, problem in details:
        print(f"\n{name}: {problem}\n  {case}")


if __name__ == "__main__":
    main()
