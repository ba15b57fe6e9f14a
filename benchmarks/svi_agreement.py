"""
Does minibatch SVI of the Pyro linear models reach the exact VD optimum? Per generator × size × seed ×
batch fraction × task: the symmetric difference between the relevant sets of SVI and of
``VDRegression()`` / ``VDClassifier(solver="newton", threshold="evidence")`` on the same data, with the
exact estimator's rule (the evidence rule, log α ≤ τ(d)) applied to both and the features whose exact
log α lies within 1 of τ(d) left out (:func:`pyro_vd.experiments.ard.agreement`); the largest relative
θ error of the features relevant in both (also in posterior standard deviations) and of the truly
relevant ones; the noise scale against ``VDRegression``'s; and the time. ``--averaging``,
``--init-log-alpha``, ``--log-alpha-scale``, ``--hold-log-alpha`` and ``--train-prune`` override the
guide's defaults (``--averaging -1`` turns the iterate averaging off) and ``--adam-betas`` Adam's
(torch's 0.9 0.999) to compare them; ``--rule sparse_vd`` compares log α ≤ 3 with the plain VD
optimum instead; ``--train-prune -2.294`` prunes at the evidence bound τ(100) while training. The
previous defaults of the linear models: ``--init-log-alpha -1.294 --hold-log-alpha 0`` (d = 100).

SVI uses what a user gets by default: ``AutoVariationalDropout(LinearRegression(d, num_data=n))`` (or
``LogisticRegression``), ``pyro.optim.Adam({"lr": 1e-2})``, 3000 steps under
``local_reparameterization()``.

    OMP_NUM_THREADS=1 python benchmarks/svi_agreement.py --sizes 20000 --seeds 0 1 \\
        [--generators seed correlated] [--fractions 0.001 0.01 0.1] [--tasks regression classification]
"""

import argparse
import json
import time

import numpy as np
import torch

from pyro_vd.experiments.ard import agreement, exact_vd, svi_linear
from pyro_vd.experiments.ard_data import make_ard_classification, make_ard_regression

GENERATORS = {"seed": 0.0, "correlated": 0.5, "strong": 0.8}  # ρ of corr(x_i, x_j) = ρ^|i−j|


def run(
    generator,
    n,
    seed,
    fraction,
    task,
    *,
    d=100,
    n_relevant=10,
    steps=3000,
    guide_kwargs=None,
    rule="evidence",
    betas=None,
):
    make = make_ard_classification if task == "classification" else make_ard_regression
    X, y, _, _, w = make(n, 100, 10, seed=seed, n_test=1, rho=GENERATORS[generator])
    start = time.perf_counter()
    exact = exact_vd(task, X, y, rule)
    exact_seconds = time.perf_counter() - start
    theta, log_alpha, _, seconds, noise = svi_linear(
        X,
        y,
        classification=task == "classification",
        batch_size=max(1, round(fraction * n)),
        steps=steps,
        seed=seed,
        return_noise_scale=True,
        guide_kwargs=guide_kwargs,
        betas=betas,
    )
    row = {
        "generator": generator,
        "n": n,
        "seed": seed,
        "fraction": fraction,
        "task": task,
        **agreement(theta, log_alpha, exact, truth=w),
        "svi_pruned": int((log_alpha[w == 0] > exact.threshold_).sum()),
        "exact_pruned": int((~exact.relevance_.reshape(-1)[w == 0]).sum()),
        "true_kept": int((log_alpha[w != 0] <= exact.threshold_).sum()),
        "seconds": seconds,
        "exact_seconds": exact_seconds,
    }
    if noise is not None:
        row["noise_scale_ratio"] = noise * exact.noise_precision_**0.5
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--generators",
        nargs="+",
        default=["seed", "correlated"],
        choices=list(GENERATORS),
        help="the seed's (ρ = 0), correlated (ρ = 0.5) and strongly correlated (ρ = 0.8) features",
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[20000, 100000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.001, 0.01, 0.1])
    parser.add_argument("--tasks", nargs="+", default=["regression", "classification"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--averaging", type=float, help="the guide's averaging η (default: the model's; < 0 turns it off)"
    )
    parser.add_argument(
        "--init-log-alpha", type=float, help="the guide's init_log_alpha (default: the model's)"
    )
    parser.add_argument(
        "--log-alpha-scale", type=float, help="the guide's log_alpha_scale c (default: the model's)"
    )
    parser.add_argument(
        "--hold-log-alpha", type=int, help="the guide's hold_log_alpha K (default: the model's)"
    )
    parser.add_argument(
        "--train-prune",
        help="the guide's train_prune: a log α (τ(100) = -2.294), or 'none' (default: the model's, none)",
    )
    parser.add_argument(
        "--adam-betas",
        type=float,
        nargs=2,
        metavar=("BETA1", "BETA2"),
        help="Adam's betas (default: torch's 0.9 0.999; 0.9 0.99 shortens the second moment's memory)",
    )
    parser.add_argument(
        "--rule",
        choices=("evidence", "sparse_vd"),
        default="evidence",
        help="the relevance rule of both sides (sparse_vd: log α ≤ 3 against the plain VD optimum)",
    )
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    guide_kwargs = {}
    if args.averaging is not None:
        guide_kwargs["averaging"] = False if args.averaging < 0 else args.averaging
    if args.init_log_alpha is not None:
        guide_kwargs["init_log_alpha"] = args.init_log_alpha
    if args.log_alpha_scale is not None:
        guide_kwargs["log_alpha_scale"] = args.log_alpha_scale
    if args.hold_log_alpha is not None:
        guide_kwargs["hold_log_alpha"] = args.hold_log_alpha
    if args.train_prune is not None:
        guide_kwargs["train_prune"] = False if args.train_prune == "none" else float(args.train_prune)
    rows = []
    print(
        "| task | generator | n | seed | batch % | sym. diff. | near thr. | pruned SVI/exact | true kept "
        "| θ err (both) | θ err / post. sd | θ err (true) | σ/σ_exact | SVI s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for task in args.tasks:
        for generator in args.generators:
            for n in args.sizes:
                for seed in args.seeds:
                    for fraction in args.fractions:
                        r = run(
                            generator,
                            n,
                            seed,
                            fraction,
                            task,
                            steps=args.steps,
                            guide_kwargs=guide_kwargs,
                            rule=args.rule,
                            betas=args.adam_betas,
                        )
                        rows.append(r)
                        ratio = f"{r['noise_scale_ratio']:.3f}" if "noise_scale_ratio" in r else "–"
                        print(
                            f"| {task} | {generator} | {n} | {seed} | {100 * fraction:g} "
                            f"| {r['symmetric_difference']} | {r['near_threshold']} "
                            f"| {r['svi_pruned']}/{r['exact_pruned']} | {r['true_kept']} "
                            f"| {100 * r['theta_error']:.1f} % | {r['theta_error_sd']:.2f} "
                            f"| {100 * r['theta_error_true']:.1f} % "
                            f"| {ratio} "
                            f"| {r['seconds']:.1f} |",
                            flush=True,
                        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
