"""
The seed's ARD experiments and the fit-time comparison with scikit-learn, in one run:

1. "more features": 1000 objects, 10 relevant + 990 irrelevant (regression and classification);
2. 100 000 × 100 with 10 relevant: every method, and minibatch SVI at 0.1 %, 1 %, 10 % batches;
3. fit time (``benchmarks/linear_speed.py``): VDRegression and RVR against scikit-learn's ARDRegression
   on 100 000 × 100 on three draws (fits interleaved, medians of repeats, the ratios from the same run;
   target: VDRegression ≥ 5× faster at equal test MSE on two draws), the share of VDRegression's one pass
   over the rows, and RVR on the 1000 × 1000 table with the thread pools set by the fit or as found.

    python benchmarks/ard.py [--out results/ard] [--skip-minibatch] [--skip-tables] [--repeats 7]
                             [--rvr-repeats 3]
"""

import argparse
import json
import pathlib

import torch
from linear_speed import format_report, speed_report  # benchmarks/, next to this script

from pyro_vd.experiments.ard import format_rows, minibatch, more_features


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="results/ard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-minibatch", action="store_true")
    parser.add_argument("--skip-tables", action="store_true", help="only the fit times (part 3)")
    parser.add_argument("--repeats", type=int, default=7, help="timed fits per method and draw")
    parser.add_argument("--rvr-repeats", type=int, default=3, help="RVR 1000 × 1000 fits per thread setting")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    if not args.skip_tables:
        results["more_features"] = more_features()
        print("\n## More features (1000 objects, 10 relevant + 990 irrelevant)\n")
        print(format_rows(results["more_features"]["regression"]) + "\n")
        print(format_rows(results["more_features"]["classification"]) + "\n")
        if not args.skip_minibatch:
            results["minibatch"] = minibatch()
            print("\n## 100 000 × 100 (10 relevant)\n")
            print(format_rows(results["minibatch"]["regression"]) + "\n")
            print(format_rows(results["minibatch"]["classification"]) + "\n")
    results["fit_time"] = speed_report(args.repeats, args.rvr_repeats)
    print("\n" + format_report(results["fit_time"]))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out}/results.json")


if __name__ == "__main__":
    main()
